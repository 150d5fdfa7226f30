#!/usr/bin/env bash
# Call setup rate of ferrelay's SIP front end: SIPp's built-in `uac` -> ferrelay
# (--listen-sip) -> SIPp `uas`, every INVITE/200 carrying SDP, so each call is an
# NG offer, answer and delete inside the relay. Steps up the rate; each step places
# RATE*SECONDS calls and reports how many succeeded and the achieved rate.
#
#   perf/sip/run.sh [FERRELAY_BINARY] [SECONDS] [RATES...]
#
# Loopback only, bounded: each step is limited to SECONDS+20 s by sipp -timeout.
set -euo pipefail
bin="${1:-target/release/ferrelay}"
secs="${2:-5}"
shift $(( $# > 2 ? 2 : $# )) || true
rates=("${@:-100 200 400 800}")
read -r -a rates <<< "${rates[*]}"
command -v sipp >/dev/null || { echo "sipp missing: apt-get install sip-tester" >&2; exit 1; }

base=$((20000 + RANDOM % 20000))
sip=$base; ng=$((base + 1)); http=$((base + 2)); uas=$((base + 4)); uac=$((base + 6))
tmp=$(mktemp -d)
"$bin" --listen-sip "127.0.0.1:$sip" --listen-ng "127.0.0.1:$ng" --listen-tcp-ng "127.0.0.1:$ng" \
  --listen-http "127.0.0.1:$http" --delete-delay 0 --port-min 42000 --port-max 49999 \
  --log-level warn >"$tmp/ferrelay.log" 2>&1 &
relay=$!
trap 'kill $relay 2>/dev/null; wait $relay 2>/dev/null; rm -rf "$tmp"' EXIT
sleep 0.5

printf '%-8s %-8s %-10s %-8s %-10s %-10s\n' target calls succeeded failed seconds calls/s
for r in "${rates[@]}"; do
  n=$((r * secs))
  sipp -sn uas -i 127.0.0.1 -p "$uas" -nostdin -m "$n" -timeout "$((secs + 20))s" >/dev/null 2>&1 &
  uas_pid=$!
  sleep 0.3
  start=$(date +%s.%N)
  rc=0
  sipp "127.0.0.1:$uas" -sn uac -i 127.0.0.1 -p "$uac" -rsa "127.0.0.1:$sip" -nostdin \
    -m "$n" -r "$r" -l "$((r * 2))" -timeout "$((secs + 20))s" -timeout_error \
    -trace_stat -stf "$tmp/uac.csv" >/dev/null 2>"$tmp/uac.err" || rc=$?
  end=$(date +%s.%N)
  [ "$rc" = 0 ] || tail -3 "$tmp/uac.err" >&2
  # The UAS exits after its calls; if some never came, stop it rather than wait.
  sleep 1
  kill "$uas_pid" 2>/dev/null || true
  wait "$uas_pid" 2>/dev/null || true
  ok=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="SuccessfulCall(C)") c=i} END{print $c}' "$tmp/uac.csv")
  failed=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="FailedCall(C)") c=i} END{print $c}' "$tmp/uac.csv")
  rm -f "$tmp/uac.csv"
  printf '%-8s %-8s %-10s %-8s %-10.2f %-10.0f (sipp rc %s)\n' "$r" "$n" "$ok" "$failed" \
    "$(echo "$end - $start" | bc)" "$(echo "$ok / ($end - $start)" | bc -l)" "$rc"
done
