#!/usr/bin/env bash
# What a server keeps of its throughput and latency when another busy
# process shares its core:
#   scripts/contended.sh NAME COMMAND...      (PORT in COMMAND is replaced)
# e.g.
#   scripts/contended.sh batch "${CARGO_TARGET_DIR:-target}/release/switchboard" --listen 127.0.0.1:PORT \
#     --max-connections-per-ip 0 --max-messages-per-sec 0 --scheduling batch
#
# Runs churn (8 workers) and fan-out at 100 publishes/s to 1,000
# subscribers, each for DURATION seconds (default 4) against a fresh
# server pinned to CPU 0 (SERVER_CPU), the load pinned to CPU 1
# (LOAD_CPU): with the server alone on its core, then beside a CPU-bound
# loop pinned to the same core at nice 19, then at nice 0. Prints a
# Markdown table; the runs' reports are in target/contended/NAME/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$#" -ge 2 ] || { echo "usage: scripts/contended.sh NAME COMMAND... (PORT is replaced)" >&2; exit 2; }
name="$1"
shift
server_cpu="${SERVER_CPU:-0}"
load_cpu="${LOAD_CPU:-1}"
duration="${DURATION:-4}"
case "$duration" in
  [1-9] | [1-5][0-9] | 60) ;;
  *) echo "DURATION must be whole seconds, 1 to 60" >&2; exit 2 ;;
esac
command -v curl >/dev/null || { echo "contended.sh needs curl (to wait on /healthz)" >&2; exit 1; }
cargo build --release --workspace --bins --quiet
out="target/contended/$name"
rm -rf "$out"
mkdir -p "$out"
bench="${CARGO_TARGET_DIR:-target}/release/switchboard-bench"

server_pid=""
server_port=""
hog_pid=""
stop() {
  end_process "$server_pid"
  end_process "$hog_pid"
  server_pid=""
  hog_pid=""
}
trap stop EXIT

# shellcheck source=lib/loopback.sh
source scripts/lib/loopback.sh

declare -A SCENARIO=(
  [churn]="churn --workers 8"
  [fanout-rate100]="fanout --subscribers 1000 --rate 100"
)

# Runs one scenario against a fresh server, beside a busy loop at nice
# NICE ("none": alone); its report is $out/CASE-NICE.json.
measure() {
  local case="$1" nice="$2"
  shift 2
  local label="$case-$nice"
  start_pinned "$server_cpu" "$out/server-$label.log" "$@" || exit 1
  local port="$server_port"
  if [ "$nice" != none ]; then
    # Bounded like every load here: it ends with the run at the latest.
    taskset -c "$server_cpu" nice -n "$nice" timeout "$((duration + 30))" bash -c 'while :; do :; done' &
    hog_pid=$!
  fi
  # shellcheck disable=SC2086 # the scenario's own arguments
  taskset -c "$load_cpu" "$bench" ${SCENARIO[$case]} --server "127.0.0.1:$port" --server-pid "$server_pid" \
    --duration "${duration}s" --json "$out/$label.json" >"$out/$label.txt" 2>&1
  stop
}

echo "| $name | alone on its core | beside a busy loop at nice 19 | beside one at nice 0 |"
echo "| --- | ---: | ---: | ---: |"
for case in churn fanout-rate100; do
  for nice in none 19 0; do
    measure "$case" "$nice" "$@"
  done
  python3 - "$case" "$out/$case-none.json" "$out/$case-19.json" "$out/$case-0.json" <<'PY'
import json, sys
case, paths = sys.argv[1], sys.argv[2:]
reports = [json.load(open(path)) for path in paths]
def cell(report):
    latency = report["latency"]
    if case == "churn":
        return f"{report['throughput']['per_second'] / 1000:.1f} k/s, p50 {latency['p50_us'] / 1000:.2f} ms"
    return f"p50 {latency['p50_us'] / 1000:.2f} ms, p99 {latency['p99_us'] / 1000:.2f} ms"
figure = "handshakes, cycle" if case == "churn" else "publish to delivery"
print(f"| {case}: {figure} | " + " | ".join(cell(r) for r in reports) + " |")
PY
done
