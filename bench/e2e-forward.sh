#!/usr/bin/env bash
# End-to-end forwarding comparison: fwd-mmsg, fwd-uring and the ferrelay relay
# (bench-relay, io_uring and mmsg backends) under 500 calls x 50 pps per direction of
# 172-byte RTP, CPU per forwarded packet read from procfs, 3 alternating rounds.
# --perf adds one perf-sampled run per forwarder for a tick-independent user/kernel
# split (perf is skipped with a message where it cannot run).
# Writes perf/results/e2e-forward-<date>.{json,md} and updates perf/README.md.
#
#   bench/e2e-forward.sh                 # the full comparison (about 2-3 minutes)
#   bench/e2e-forward.sh --rounds 1      # extra flags go to e2e-forward
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ferrelay-bench --bins
cores=$(nproc)
if [ "$cores" -lt 2 ]; then
    echo "needs at least 2 cores (forwarder and load on different cores)" >&2
    exit 1
fi
exec timeout 600 target/release/e2e-forward \
    --calls 500 --pps 50 --payload 160 \
    --warmup 2 --window 8 --rounds 3 \
    --forwarder-core 1 --load-cores 0 --perf \
    --out-dir perf/results --readme perf/README.md \
    --record-command "bench/e2e-forward.sh $*" \
    "$@"
