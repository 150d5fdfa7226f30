#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (idempotent).
# Called by scripts/test.sh; safe to run by hand. Needs root (or sudo) for apt.
#
# Debian packages come from scripts/deps/*.apt (one name a line, # comments), one
# file per feature so each says why it is there; Python packages from
# tests/requirements.txt into the project's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

mapfile -t APT_PACKAGES < <(cat scripts/deps/*.apt | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python oracles and peers in a project-local virtualenv.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Pinned requirements that are already satisfied cost no download.
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt

# cargo-fuzz for the bounded fuzz runs.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz"
  cargo install -q cargo-fuzz --locked
fi
echo "setup: done"
