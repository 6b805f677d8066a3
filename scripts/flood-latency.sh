#!/usr/bin/env bash
# Measures what a connection flood costs the clients already admitted.
#   scripts/flood-latency.sh [ATTEMPTS]        (default 2000)
# Starts a release build with small limits (--max-connections 200,
# --max-connections-per-ip 50) and, all on loopback:
#   - a probe: one WebSocket client in room "probe", doing round trips
#     through its room (send, receive its own message) the whole time;
#   - holders: WebSocket clients from 127.0.0.2-5 taking 50 places each;
#   - phase 1: ATTEMPTS/2 connection attempts from those full addresses
#     (the server has room overall: each gets 429);
#   - phase 2: the remaining places taken, then ATTEMPTS/2 attempts from
#     fresh addresses 127.0.0.10+ (the server is full: each gets 503).
# The probe, the holders and the flooders are separate processes, so the
# load generator's own scheduling does not count against the server.
# Prints the refusals by status and the probe's round-trip percentiles
# while the flood ran.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
attempts="${1:-2000}"
cargo build --release --quiet
log="$(mktemp)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -INT "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -f "$log"
}
trap cleanup EXIT
RUST_LOG=info "${CARGO_TARGET_DIR:-target}/release/switchboard" --listen 127.0.0.1:0 \
  --max-connections 200 --max-connections-per-ip 50 >"$log" 2>&1 &
server_pid=$!
# shellcheck source=lib/loopback.sh
source scripts/lib/loopback.sh
addr="$(listening_address "$log" "$server_pid")"
python3 scripts/flood_latency.py "$addr" "$attempts"
echo "server log, refusal summaries:"
grep -E 'refused' "$log" | tail -5 || true
