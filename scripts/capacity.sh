#!/usr/bin/env bash
# How many idle room connections one server holds on this machine as it is:
#   scripts/capacity.sh [CONNECTIONS]          (default 15000)
# Starts a release build, unpinned, with its connection limit raised to
# CONNECTIONS and the per-address limit off, and holds CONNECTIONS idle
# connections in one room with `switchboard-bench idle`, from
# 127.0.0.2-127.0.0.9 (one source address has only ~28,000 local ports to
# one server port). It changes no system setting: the machine's own
# vm.max_map_count, kernel.pid_max and open-file limit apply, and are
# printed first. At the end one message to the room must reach every
# connection. Prints the tool's report (RSS, threads and descriptors per
# connection, messages lost) and a verdict: it fails unless every
# connection opened, was held, and received the message once. Writes the
# report as JSON to target/capacity/idle.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
connections="${1:-15000}"
echo "machine: vm.max_map_count $(cat /proc/sys/vm/max_map_count), kernel.pid_max $(cat /proc/sys/kernel/pid_max)," \
  "ulimit -n $(ulimit -n), $(nproc) CPUs" >&2
cargo build --release --workspace --bins --quiet
log="$(mktemp)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -f "$log"
}
trap cleanup EXIT
RUST_LOG=info "${CARGO_TARGET_DIR:-target}/release/switchboard" --listen 127.0.0.1:0 --max-connections "$((connections + 100))" \
  --max-connections-per-ip 0 >"$log" 2>&1 &
server_pid=$!
# shellcheck source=lib/loopback.sh
source scripts/lib/loopback.sh
addr="$(listening_address "$log" "$server_pid")"
# The server's own start-up warnings, such as a connection limit lowered to
# what the machine allows.
grep -E "WARN|ERROR" "$log" >&2 || true
mkdir -p target/capacity
"${CARGO_TARGET_DIR:-target}/release/switchboard-bench" idle --server "$addr" --server-pid "$server_pid" \
  --connections "$connections" --from 127.0.0.2-127.0.0.9 --duration 3s --json target/capacity/idle.json
grep -E "WARN|ERROR" "$log" | tail -5 >&2 || true
python3 - target/capacity/idle.json <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
wanted, opened = report["connections"]["wanted"], report["connections"]["opened"]
held = report["resources"]["held"]
messages = report["messages"]
trouble = []
if opened < wanted or held < wanted:
    trouble.append(f"{opened} of {wanted} opened, {held} held")
if messages["received"] != messages["sent"] or messages["lost"] or messages["duplicated"]:
    trouble.append(f"messages: {messages}")
if trouble:
    sys.exit("FAIL: " + "; ".join(trouble))
print(f"PASS: one server held {held:,} idle room connections, and each got the room's message once")
PY
