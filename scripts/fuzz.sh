#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets/ for SECONDS each (default 10)
# and fails on the first crash, leak or timeout. Works on the stable toolchain:
# cargo-fuzz needs nightly-only flags (-Zsanitizer), which RUSTC_BOOTSTRAP=1 unlocks.
#
#   scripts/fuzz.sh [SECONDS]
#
# FUZZ_SANITIZER=none|address (default address) picks the sanitizer; ASan works on
# stable x86_64 Linux with RUSTC_BOOTSTRAP=1, `none` is the fallback elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-10}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
cd fuzz
targets=$(cargo fuzz list)
if [ -z "$targets" ]; then
  echo "no fuzz targets found" >&2
  exit 1
fi

for t in $targets; do
  echo "==> fuzz $t for ${seconds}s (sanitizer: $sanitizer)"
  mkdir -p "corpus/$t"
  # -max_total_time bounds the run; any crash makes cargo fuzz exit non-zero and
  # leaves the input under fuzz/artifacts/$t/.
  # A target's dictionary (dicts/<target>.dict), when it has one, seeds the
  # mutations with the protocol's own tokens.
  dict=()
  [ -f "dicts/$t.dict" ] && dict=(-dict="dicts/$t.dict")
  cargo fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -max_len=2048 -timeout=10 -rss_limit_mb=2048 "${dict[@]}"
done
echo "==> all fuzz targets ran ${seconds}s without a crash"
