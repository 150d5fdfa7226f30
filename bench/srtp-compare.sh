#!/usr/bin/env bash
# SRTP per-packet cost, ferrelay vs libsrtp, same run, same machine.
#
# Builds bench/libsrtp/bench.c against Debian's libsrtp2 (NSS crypto, NSS
# initialised first) and, when pylibsrtp is installed, against the libsrtp +
# OpenSSL it bundles; runs the criterion bench bench/benches/srtp.rs; writes
# perf/srtp/README.md. Needs: gcc, pkg-config, libsrtp2-dev, libnss3-dev,
# python3 (pylibsrtp optional).
#
# Debian packages: gcc pkg-config libsrtp2-dev libnss3-dev.
# Usage: bench/srtp-compare.sh [batches-per-round for the C bench, default 200]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
batches=${1:-200}
# The project's virtualenv (scripts/setup.sh) holds pylibsrtp; FERRELAY_PYTHON overrides.
py=${FERRELAY_PYTHON:-python3}
if [ -z "${FERRELAY_PYTHON:-}" ] && [ -x .venv/bin/python ]; then py=.venv/bin/python; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== building libsrtp bench (Debian libsrtp2 + NSS)" >&2
gcc -O2 -Wall -DWITH_NSS $(pkg-config --cflags nss) bench/libsrtp/bench.c \
    -o "$work/bench-debian" -lsrtp2 $(pkg-config --libs nss)

bundled=""
if pyso=$("$py" -c 'import pylibsrtp._binding as b; print(b.__file__)' 2>/dev/null); then
    pylib=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
    pyver=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("LDVERSION"))')
    echo "== building libsrtp bench (pylibsrtp-bundled libsrtp + OpenSSL: $pyso)" >&2
    # The bundled library is a Python extension: link libpython so it loads.
    if gcc -O2 -Wall bench/libsrtp/bench.c -o "$work/bench-bundled" "$pyso" \
        -L"$pylib" -lpython"$pyver" -Wl,-rpath,"$pylib" -Wl,-rpath,"$(dirname "$pyso")"; then
        bundled="$work/bench-bundled"
    fi
fi

echo "== ferrelay (criterion)" >&2
rm -rf target/criterion/srtp
cargo bench -p ferrelay-bench --bench srtp -- --noplot >&2

echo "== libsrtp (Debian, NSS)" >&2
"$work/bench-debian" "$batches" | tee "$work/debian.txt" >&2
if [ -n "$bundled" ]; then
    echo "== libsrtp (pylibsrtp bundle, OpenSSL)" >&2
    "$bundled" "$batches" | tee "$work/bundled.txt" >&2
else
    : >"$work/bundled.txt"
fi

"$py" - "$root" "$work/debian.txt" "$work/bundled.txt" "$batches" <<'PY'
import json, os, platform, subprocess, sys, datetime
root, debian, bundled, batches = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def read(path):
    out, version = {}, "libsrtp"
    for line in open(path):
        if line.startswith("version "):
            version = line.split(None, 1)[1].strip()
            continue
        suite, op, ns = line.split()
        out[(suite, op)] = float(ns)
    return out, version

(deb, deb_name), (bun, bun_name) = read(debian), read(bundled)
suites = ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AES_256_CM_HMAC_SHA1_80",
          "AES_256_CM_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM", "NULL"]
rows = []
for s in suites:
    for op in ("protect", "unprotect"):
        est = os.path.join(root, "target/criterion/srtp", f"{s}_{op}", "new/estimates.json")
        ours = json.load(open(est))["median"]["point_estimate"]
        d, b = deb.get((s, op)), bun.get((s, op))
        fmt = lambda x: f"{x:.0f}" if x is not None else "-"
        ratio = lambda x: f"{ours / x:.2f}" if x else "-"
        rows.append(f"| {s} | {op} | {ours:.0f} | {fmt(b)} | {ratio(b)} | {fmt(d)} | {ratio(d)} |")

cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
flags = open("/proc/cpuinfo").read()
feat = ", ".join(f for f in ("aes", "pclmulqdq", "sha_ni", "avx2") if f" {f}" in flags)
load = open("/proc/loadavg").read().split()[:3]
deb_ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libsrtp2-1"],
                         capture_output=True, text=True).stdout or "?"
pyl = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print(m.version('pylibsrtp'))"],
                     capture_output=True, text=True).stdout.strip() or "?"
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
text = f"""# SRTP transform cost: ferrelay vs libsrtp

Nanoseconds per packet (lower is better) for one 172-byte RTP packet
(12-byte header + 160-byte payload), protect and unprotect in place, on one
core. Ratio = ferrelay / libsrtp (below 1.00: ferrelay is faster).

| suite | op | ferrelay ns | {bun_name} + OpenSSL ns | ratio | {deb_name} ({deb_ver}) + NSS ns | ratio |
|---|---|---:|---:|---:|---:|---:|
""" + "\n".join(rows) + f"""

- Date: {now}. Machine: {cpu}, {os.cpu_count()} cores ({feat}), {platform.system()} {platform.release()};
  load average when the table was written: {' '.join(load)} (other builds were running: treat
  differences under ~20 % as noise).
- Command: `bench/srtp-compare.sh {batches}` (criterion bench `bench/benches/srtp.rs`, median of
  its samples; C bench `bench/libsrtp/bench.c`, median of 11 rounds of {batches} x 1024 packets).
- Same method both sides: a batch of 1024 packets with consecutive sequence numbers (crossing the
  16-bit wrap) is prepared untimed, protect is timed over the batch, unprotect is timed over the
  protected batch.
- ferrelay: crate `ferrelay-srtp`, RustCrypto `aes` + `ctr`, `hmac` + `sha1`, `aes-gcm`
  (AES-NI, PCLMULQDQ and SHA-NI picked at run time). Release profile of the workspace.
- "{bun_name} + OpenSSL" is the libsrtp that the `pylibsrtp` {pyl} wheel bundles (statically
  linked with OpenSSL), called from C, not from Python. "libsrtp + NSS" is Debian's `libsrtp2-1`, whose
  crypto is NSS; `NSS_NoDB_Init` is called once before `srtp_init`, as advised for Debian's build
  (libsrtp otherwise initialises NSS itself). With the two sessions this bench holds, a build
  without that call measured the same (4.1 vs 4.2 us for AES_CM_128_HMAC_SHA1_80 on 2026-11-23);
  a slowdown with many sessions was not measured here.
- NULL: ferrelay's `Suite::Null` is the identity (no cipher, no tag, no replay state); libsrtp's
  null cipher + null auth still runs its stream lookup and replay database, so that row shows
  fixed per-packet overhead, not equal work.
"""
extra = os.path.join(root, "perf/srtp/backend-choice.md")
if os.path.exists(extra):
    text += "\n" + open(extra).read()
open(os.path.join(root, "perf/srtp/README.md"), "w").write(text)
print(text)
PY
