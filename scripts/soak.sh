#!/usr/bin/env bash
# A soak: a mixed load for MINUTES, sampled every ten seconds, then a verdict.
#   scripts/soak.sh MINUTES        (1 to 120)
#
# Starts two release servers on loopback, one plain (ws://) and one with a
# certificate made for the run (wss://), both with a 64 KiB outbox and
# 16 KiB messages at most, and parked threads that end after 5 s, so that a client that stops reading is
# closed within the run and idle threads are given back before the end.
# Against them, all at once and each bounded by the same end:
#   - a room at a steady rate: every ten seconds, 50 subscribers and a
#     publisher at 20 messages/s of 1,000 bytes (switchboard-bench fanout,
#     for 8 s): the sample's delivery p99, lost and duplicated;
#   - echo: 20 connections at 25 messages/s each;
#   - churn: connect, upgrade, one echo, close, 20 times a second;
#   - clients that never read, in a room of their own where another client
#     publishes 1 MB/s (each must be closed as a slow consumer);
#   - wss:// cycles on the TLS server, 5 a second: upgrade, echo, close;
#   - hostile sockets, 10 a second on ws:// and 2 on wss://, from other
#     loopback addresses: silent, trickling, oversized heads, garbage.
# Each sample also records each server's RSS (and of it, the anonymous
# part), file descriptors and threads.
# At the end the load stops, the servers are given 30 s to settle, and
# scripts/lib/soak_report.py writes target/soak/results.md (the table and
# the verdict: fds and threads back to where they started, RSS within 5%
# after the first minute, nothing lost or duplicated, p99 under 50 ms) and
# target/soak/soak.svg. Exits 1 if the verdict is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

minutes="${1:-}"
if ! [[ "$minutes" =~ ^[0-9]+$ ]] || [ "$minutes" -lt 1 ] || [ "$minutes" -gt 120 ]; then
  echo "usage: scripts/soak.sh MINUTES (1 to 120)" >&2
  exit 2
fi
for tool in python3 openssl; do
  command -v "$tool" >/dev/null || { echo "soak.sh needs $tool" >&2; exit 1; }
done
seconds=$((minutes * 60))
out=target/soak
# Where cargo puts the build: CARGO_TARGET_DIR when set, so that the soak
# runs what it just built, never an older binary left in target/.
build="${CARGO_TARGET_DIR:-target}/release"
bench="$build/switchboard-bench"
server="$build/switchboard"
rm -rf "$out"
mkdir -p "$out"

cargo build --release --workspace --bins --quiet

# shellcheck source=lib/loopback.sh
source scripts/lib/loopback.sh

pids=()
server_pids=()
cleanup() {
  # A load loop is a subshell running the bench tool: its child is ended
  # with it, or an interrupted soak would leave load running.
  local children
  for p in "${pids[@]}" "${server_pids[@]}"; do
    children="$(pgrep -P "$p" || true)"
    kill -TERM "$p" $children 2>/dev/null || true
  done
  for p in "${pids[@]}" "${server_pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null

common=(--listen 127.0.0.1:0 --outbox-bytes 65536 --max-message-size 16384 --max-frame-size 16384
  --spare-thread-timeout 5s)
"$server" "${common[@]}" >"$out/server-ws.log" 2>&1 &
server_pids+=($!)
ws_pid=$!
"$server" "${common[@]}" --tls-cert "$out/cert.pem" --tls-key "$out/key.pem" >"$out/server-wss.log" 2>&1 &
server_pids+=($!)
wss_pid=$!
ws="$(listening_address "$out/server-ws.log" "$ws_pid")"
wss="$(listening_address "$out/server-wss.log" "$wss_pid")"
echo "soak: ws://$ws (pid $ws_pid), wss://$wss (pid $wss_pid), $minutes min" >&2

# RSS KiB, anonymous RSS KiB, fds, threads of one process. The anonymous
# part is the heap and the stacks, where a leak would show; the rest is
# mostly the binary's own code, paged in as paths run for the first time.
measure() {
  local pid="$1"
  local rss anon threads fds
  rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"
  anon="$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status")"
  threads="$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")"
  fds="$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)"
  echo "$rss $anon $fds $threads"
}
mark() {
  echo "$1 ws $(measure "$ws_pid")" >>"$out/baseline.tsv"
  echo "$1 wss $(measure "$wss_pid")" >>"$out/baseline.tsv"
}
mark start

began=$SECONDS
end=$((began + seconds))
left() { echo $((end - SECONDS)); }

# Load that runs in segments of at most five minutes (the tool's runs are
# bounded), until the end.
segments() {
  local name="$1"
  shift
  local n=0
  while [ "$(left)" -gt 5 ]; do
    local d=$(($(left) < 300 ? $(left) : 300))
    n=$((n + 1))
    "$bench" "$@" --server "$ws" --duration "${d}s" --drain 5s \
      --json "$out/load-$name-$n.json" >>"$out/load-$name.log" 2>&1 || true
  done
}
segments echo echo --connections 20 --rate 25 &
pids+=($!)
segments churn churn --workers 2 --rate 20 &
pids+=($!)
python3 scripts/lib/soak_clients.py slow-reader "$ws" /ws/soak-slow "$seconds" >"$out/clients-slow-reader.json" &
pids+=($!)
python3 scripts/lib/soak_clients.py wss "$wss" "$out/cert.pem" "$seconds" 5 >"$out/clients-wss.json" &
pids+=($!)
python3 scripts/lib/soak_clients.py hostile "$ws" "$seconds" 10 >"$out/clients-hostile.json" &
pids+=($!)
python3 scripts/lib/soak_clients.py hostile "$wss" "$seconds" 2 >"$out/clients-hostile-tls.json" &
pids+=($!)

echo "seconds ws_rss ws_anon ws_fds ws_threads wss_rss wss_anon wss_fds wss_threads p99_ms lost dup" \
  >"$out/samples.tsv"
n=0
while [ "$(left)" -ge 10 ]; do
  # One sample every ten seconds: the probe takes about nine.
  next=$((began + n * 10))
  while [ "$SECONDS" -lt "$next" ]; do sleep 0.2; done
  n=$((n + 1))
  json="$out/rooms-$n.json"
  "$bench" fanout --subscribers 50 --rate 20 --size 1000 --path /ws/soak-room --server "$ws" \
    --duration 8s --drain 1s --json "$json" >>"$out/rooms.log" 2>&1 || true
  read -r p99 lost dup < <(python3 - "$json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
    print(r["latency"]["p99_us"] / 1000, r["messages"]["lost"], r["messages"]["duplicated"])
except (OSError, ValueError, KeyError):
    print(9999, 1, 0)  # a probe that did not report counts as a failure
PY
  )
  echo "$((SECONDS - began)) $(measure "$ws_pid") $(measure "$wss_pid") $p99 $lost $dup" >>"$out/samples.tsv"
  printf 'soak: %4d s  room p99 %6.2f ms  ws %s  wss %s\n' "$((SECONDS - began))" "$p99" \
    "$(measure "$ws_pid")" "$(measure "$wss_pid")" >&2
done

# The loads end by themselves at the end; then the servers settle: every
# connection closed, parked threads ended (5 s), at most 30 s.
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()
start_fds() { awk -v n="$1" '$1 == "start" && $2 == n {print $5}' "$out/baseline.tsv"; }
start_threads() { awk -v n="$1" '$1 == "start" && $2 == n {print $6}' "$out/baseline.tsv"; }
for _ in $(seq 60); do
  read -r _ _ ws_fds ws_threads < <(measure "$ws_pid")
  read -r _ _ wss_fds wss_threads < <(measure "$wss_pid")
  if [ "$ws_fds" = "$(start_fds ws)" ] && [ "$ws_threads" = "$(start_threads ws)" ] &&
    [ "$wss_fds" = "$(start_fds wss)" ] && [ "$wss_threads" = "$(start_threads wss)" ]; then
    break
  fi
  sleep 0.5
done
mark end
curl -fsS "http://$ws/stats" >"$out/stats-ws.json" 2>/dev/null || echo '{}' >"$out/stats-ws.json"

python3 scripts/lib/soak_report.py "$out"
