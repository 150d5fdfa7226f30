#!/usr/bin/env bash
# ferrelay worker scaling: --workers N for N in $WORKERS (default "1 2 4 8"), each
# with 500*N calls x 50 pps per direction (the same load per worker), the relay
# confined to cores 1..N and the load generator to the cores above (or core 0 when
# there are none). On a 16-core machine: relay cores 1-8, generator cores 9-15 with
# N sender and N receiver threads. Writes perf/results/scaling-w<N>-<date>.{json,md}.
#
#   bench/scaling.sh                      # on a 16-core machine (about 4 minutes)
#   WORKERS=1 bench/scaling.sh --rounds 1 --window 2   # smoke check on 2 cores
#   NO_BUILD=1 bench/scaling.sh           # binaries already built
set -euo pipefail
cd "$(dirname "$0")/.."
cores=$(nproc)
workers=${WORKERS:-"1 2 4 8"}
max=0
for n in $workers; do [ "$n" -gt "$max" ] && max=$n; done
if [ "$cores" -lt $((max + 1)) ]; then
    echo "needs at least $((max + 1)) cores for up to $max workers (have $cores)" >&2
    exit 1
fi
# Two generator sockets and two relay ports per call.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# NO_BUILD=1 uses the release binaries already in target/release.
[ -n "${NO_BUILD:-}" ] || cargo build --release -p ferrelay-bench --bins -p ferrelay --bin ferrelay
for n in $workers; do
    if [ "$cores" -gt $((max + 1)) ]; then
        load="$(seq -s, $((max + 1)) $((cores - 1)))"
    else
        load=0
    fi
    timeout 600 target/release/compare-relays \
        --only ferrelay --workers "$n" --relay-cpus "1-$n" \
        --calls $((500 * n)) --pps 50 --payload 160 \
        --warmup 2 --window 8 --rounds 3 \
        --forwarder-core 1 --load-cores "$load" --load-threads "$n" \
        --stem "scaling-w$n" \
        --out-dir perf/results --readme perf/README.md \
        --record-command "WORKERS=\"$workers\" bench/scaling.sh $*" \
        "$@" >/dev/null
done
