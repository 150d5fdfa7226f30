#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, formatting, lints, unit and
# end-to-end tests (real peers on loopback), then bounded fuzz runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

# Tests that talk to Python oracles (libsrtp) use the project's virtualenv.
export FERRELAY_PYTHON="$PWD/.venv/bin/python"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "fuzz every parser briefly"
scripts/fuzz.sh "${FUZZ_SECONDS:-15}"

echo
echo "ferrelay: all checks passed"
