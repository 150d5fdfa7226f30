#!/usr/bin/env bash
# The CPU cost of RTP<->SRTP bridging (issue 4): ferrelay and rtpengine each with
# plain RTP on both legs and with the B leg SDES-SRTP (AES_CM_128_HMAC_SHA1_80 and
# AEAD_AES_128_GCM), all in the same alternating rounds (A..F, F..A, A..F), 500 calls x 50 pps per
# direction, relay on core 1, load generator (which encrypts and verifies the SRTP
# leg itself) on core 0. Reports µs/pkt per variant and bridged - plain per round.
# Writes perf/results/srtp-bridge-<date>.{json,md} and a line in perf/README.md.
#
#   bench/srtp-bridge.sh                  # about 4-5 minutes (18 runs)
#   bench/srtp-bridge.sh --rounds 1       # extra flags go to compare-relays
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
    --warmup 2 --window 8 --rounds 3 \
    --forwarder-core 1 --load-cores 0 \
    --only ferrelay,ferrelay-aescm,ferrelay-gcm,rtpengine,rtpengine-aescm,rtpengine-gcm \
    --stem srtp-bridge \
    --out-dir perf/results --readme perf/README.md \
    --record-command "bench/srtp-bridge.sh $*" \
    "$@"
