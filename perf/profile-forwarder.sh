#!/usr/bin/env bash
# Where a forwarder's CPU goes under the e2e load: samples it with
# `perf record -e cpu-clock` (software clock, works without hardware counters)
# while ferrelay-load drives 500 calls x 50 pps per direction, then prints the
# user/kernel split and the top symbols.
#
#   perf/profile-forwarder.sh fwd-uring
#   perf/profile-forwarder.sh bench-relay --backend io_uring
# Needs root (or perf_event_paranoid <= 1) for kernel samples; forwarder on core 1,
# load on core 0, as in bench/e2e-forward.sh. Bounded: about 15 s per call.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
bin=target/release/$name
load=target/release/ferrelay-load
[ -x "$bin" ] && [ -x "$load" ] || cargo build --release -p ferrelay-bench -p ferrelay-tools --bins
out=$(mktemp -d)
taskset -c 1 "$bin" --base-port 30000 --pairs 500 --seconds 30 "$@" >"$out/fwd.out" &
fwd=$!
trap 'kill $fwd 2>/dev/null || true; wait $fwd 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 50); do grep -q ready "$out/fwd.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$out/fwd.out" || { echo "forwarder did not start" >&2; exit 1; }
"$load" --base-port 30000 --calls 500 --pps 50 --duration 12 --warmup 2 --cpus 0 >"$out/load.txt" &
ld=$!
sleep 3
timeout 30 perf record -q -e cpu-clock -F 4999 -p "$fwd" -o "$out/perf.data" -- sleep 6 2>/dev/null
wait $ld
echo "## $name $*"
echo
echo '```'
cat "$out/load.txt"
echo
perf report -i "$out/perf.data" --stdio --sort sym 2>/dev/null | awk '
  /^#/ || NF == 0 { next }
  { pct = $1; sub("%", "", pct); if ($2 == "[k]") k += pct; else u += pct }
  { if (n < 25) { print; n++ } }
  END { printf "\nkernel %.1f%%  user %.1f%% of samples\n", k, u }'
echo '```'
