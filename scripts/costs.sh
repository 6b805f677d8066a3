#!/usr/bin/env bash
# What one unit of work costs a server, counted by the kernel:
#   scripts/costs.sh NAME COMMAND...      (PORT in COMMAND is replaced)
# e.g.
#   scripts/costs.sh switchboard "${CARGO_TARGET_DIR:-target}/release/switchboard" --listen 127.0.0.1:PORT \
#     --max-connections-per-ip 0 --max-messages-per-sec 0
#
# Starts the server pinned to CPU 0 (SERVER_CPU), waits on /healthz, and
# runs switchboard-bench pinned to CPU 1 (LOAD_CPU): echo (100 connections,
# one message in flight each), fanout at 100 publishes/s to 1,000
# subscribers, and churn (8 workers). During each, once the load has run
# for WARMUP seconds, `perf stat` counts the server's CPU time, context
# switches and system calls for WINDOW seconds; each count is divided by
# the work done in that window (messages, deliveries or handshakes, from
# the tool's throughput). Prints a Markdown table; the runs' reports are
# in target/costs/NAME/. Needs perf (Debian: linux-perf) and the
# raw_syscalls tracepoints, so run it as root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$#" -ge 2 ] || { echo "usage: scripts/costs.sh NAME COMMAND... (PORT is replaced)" >&2; exit 2; }
name="$1"
shift
server_cpu="${SERVER_CPU:-0}"
load_cpu="${LOAD_CPU:-1}"
warmup="${WARMUP:-2}"
window="${WINDOW:-4}"
command -v perf >/dev/null || { echo "costs.sh needs perf (Debian: apt-get install linux-perf)" >&2; exit 1; }
command -v curl >/dev/null || { echo "costs.sh needs curl (to wait on /healthz)" >&2; exit 1; }
cargo build --release --workspace --bins --quiet
out="target/costs/$name"
rm -rf "$out"
mkdir -p "$out"
bench="${CARGO_TARGET_DIR:-target}/release/switchboard-bench"

server_pid=""
server_port=""
stop_server() {
  end_process "$server_pid"
  server_pid=""
}
trap stop_server EXIT

# shellcheck source=lib/loopback.sh
source scripts/lib/loopback.sh

# Runs one scenario against a fresh server; prints "unit throughput cpu_ms
# context_switches syscalls".
measure() {
  local case="$1"
  shift
  start_pinned "$server_cpu" "$out/server-$case.log" "$@" || exit 1
  local port="$server_port"
  local duration=$((warmup + window + 2))
  (sleep "$warmup" && perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter -p "$server_pid" \
    -o "$out/perf-$case.csv" -- sleep "$window" 2>"$out/perf-$case.log") &
  local perf_pid=$!
  # shellcheck disable=SC2086 # the scenario's own arguments
  taskset -c "$load_cpu" "$bench" ${SCENARIO[$case]} --server "127.0.0.1:$port" --server-pid "$server_pid" \
    --duration "${duration}s" --json "$out/$case.json" >"$out/$case.txt" 2>/dev/null
  wait "$perf_pid"
  stop_server
  python3 - "$out/$case.json" "$out/perf-$case.csv" <<'PY'
import csv, json, sys
report = json.load(open(sys.argv[1]))
counts = {}
for row in csv.reader(line for line in open(sys.argv[2]) if line.strip() and not line.startswith("#")):
    counts[row[2]] = float(row[0])
print(report["throughput"]["unit"], report["throughput"]["per_second"], counts["task-clock"],
      counts["context-switches"], counts["raw_syscalls:sys_enter"])
PY
}

declare -A SCENARIO=(
  [echo]="echo"
  [fanout-rate100]="fanout --subscribers 1000 --rate 100"
  [churn]="churn --workers 8"
)
echo "| per unit of work, $name | CPU | context switches | system calls |"
echo "| --- | ---: | ---: | ---: |"
for case in echo fanout-rate100 churn; do
  read -r unit per_second cpu_ms switches syscalls < <(measure "$case" "$@")
  python3 - "$case" "$unit" "$per_second" "$cpu_ms" "$switches" "$syscalls" "$window" <<'PY'
import sys
case, unit, per_second, cpu_ms, switches, syscalls, window = sys.argv[1:]
units = float(per_second) * float(window)
singular = {"messages": "message", "deliveries": "delivery", "handshakes": "handshake"}.get(unit, unit)
print(f"| {case}: per {singular} | {float(cpu_ms) * 1000 / units:.2f} µs | {float(switches) / units:.2f} "
      f"| {float(syscalls) / units:.2f} |")
PY
done
