#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (idempotent).
# Called by scripts/test.sh; safe to run by hand. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages: the C toolchain for -sys crates, the libsrtp oracle, and
# rtpengine as the reference relay (userspace only; tests start it themselves).
APT_PACKAGES=(build-essential pkg-config python3 python3-pip python3-venv libsrtp2-dev
  rtpengine-daemon)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python oracles (pylibsrtp bundles libsrtp 2.7) in a project-local virtualenv.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import pylibsrtp" 2>/dev/null; then
  echo "setup: installing Python test dependencies"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt
fi

# cargo-fuzz for the bounded fuzz runs.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz"
  cargo install -q cargo-fuzz --locked
fi
echo "setup: done"
