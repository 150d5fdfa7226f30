#!/usr/bin/env bash
# ferrelay vs rtpengine vs fwd-uring: CPU per forwarded packet, loss, latency and NG
# call setup rate under 500 calls x 50 pps per direction of 172-byte RTP. The relays
# (the real ferrelay binary with --workers 1, and Debian's rtpengine in userspace)
# get their calls over NG and run pinned to core 1; fwd-uring forwards a fixed port
# layout on core 1; the load generator runs on core 0. 5 rounds in A B C / C B A order.
# Writes perf/results/compare-relays-<date>.{json,md} and a line in perf/README.md.
#
#   bench/compare-relays.sh               # the full comparison (about 4 minutes)
#   bench/compare-relays.sh --rounds 1    # extra flags go to compare-relays
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v rtpengine >/dev/null; then
    echo "rtpengine not found: apt-get install rtpengine-daemon (listed in scripts/deps/)" >&2
    exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "needs at least 2 cores (relay and load on different cores)" >&2
    exit 1
fi
# NO_BUILD=1 uses the release binaries already in target/release.
[ -n "${NO_BUILD:-}" ] || cargo build --release -p ferrelay-bench --bins -p ferrelay --bin ferrelay
exec timeout 600 target/release/compare-relays \
    --calls 500 --pps 50 --payload 160 \
    --warmup 2 --window 8 --rounds 5 \
    --forwarder-core 1 --load-cores 0 \
    --only ferrelay,rtpengine,fwd-uring \
    --out-dir perf/results --readme perf/README.md \
    --record-command "bench/compare-relays.sh $*" \
    "$@"
