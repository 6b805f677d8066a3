#!/usr/bin/env bash
# What the Redis backplane costs a message: fanout latency with the
# publisher on one node and the subscribers on another, against the same
# workload with everyone on one node.
#
#   scripts/backplane-latency.sh
#
# It builds release binaries (switchboard, and switchboard-bench from the
# workspace's bench/ package), starts a redis-server and three servers on free
# loopback ports (nodes a and b sharing rooms through that Redis, and a
# single node without it), and runs switchboard-bench fanout three ways for
# each workload:
#
#   cross-node   subscribers on node b, the publisher on node a (--publish-to)
#   same-node    subscribers and publisher on node b (its backplane still on)
#   single-node  the server without --redis
#
# Workloads: one message in flight to one subscriber (the hop itself, no
# queueing); 100 subscribers at 500 messages/s; 1,000 subscribers at 100
# messages/s (scripts/bench.sh's). It writes target/backplane-latency/
# results.md (a table per workload, with ratios) and the JSON and log of
# every run, in about two minutes once built. redis-server is Debian's,
# installed with apt-get when missing. Everything it starts, it stops, by pid.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="$PWD/target/backplane-latency"
rm -rf "$out"
mkdir -p "$out/json" "$out/logs"

if ! command -v redis-server >/dev/null; then
  scripts/apt-install.sh redis-server
fi

pids=()
stop_all() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# shellcheck source=lib/loopback.sh
source scripts/lib/loopback.sh

echo "== building release binaries"
cargo build --release --quiet --workspace --bins
bench="${CARGO_TARGET_DIR:-target}/release/switchboard-bench"

redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$out" --logfile redis.log --daemonize no &
pids+=($!)
deadline=$((SECONDS + 10))
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "redis-server did not answer" >&2; exit 1; }
  sleep 0.1
done

# Starts a server with "$@" on a port of its choosing; sets $addr to it.
start_server() {
  local name="$1" log="$out/logs/server-$1.log"
  shift
  # Every client comes from 127.0.0.1, and a publisher sends as fast as it
  # may: no per-address limit, no message rate limit.
  RUST_LOG=info "${CARGO_TARGET_DIR:-target}/release/switchboard" --listen 127.0.0.1:0 --max-connections-per-ip 0 --max-messages-per-sec 0 "$@" \
    >/dev/null 2>"$log" &
  pids+=($!)
  addr="$(listening_address "$log" "${pids[-1]}")" || { echo "$name did not start" >&2; exit 1; }
  echo "$name on $addr" >&2
}
redis="redis://127.0.0.1:$redis_port"
start_server node-a --redis "$redis" --node-id a
node_a="$addr"
start_server node-b --redis "$redis" --node-id b
node_b="$addr"
start_server single
single="$addr"

# One workload, three placements, and their comparison.
workload() {
  local case="$1"
  shift
  for placement in cross-node same-node single-node; do
    local where=()
    case "$placement" in
      cross-node) where=(--server "$node_b" --publish-to "$node_a") ;;
      same-node) where=(--server "$node_b") ;;
      single-node) where=(--server "$single") ;;
    esac
    local command=("$bench" fanout "${where[@]}" "$@" --label "$placement" --case "$case"
      --json "$out/json/$case-$placement.json")
    echo "${command[*]}" >>"$out/commands.txt"
    echo "== $case, $placement" >&2
    "${command[@]}" >"$out/logs/$case-$placement.txt" 2>&1
    grep -E "latency|messages " "$out/logs/$case-$placement.txt" >&2
  done
}
workload one-in-flight -n 1 --window 1 --duration 5s
workload 100-subscribers -n 100 --rate 500 --duration 10s
workload 1000-subscribers -n 1000 --rate 100 --duration 10s

"$bench" report --baseline cross-node --markdown "$out/results.md" "$out"/json/*.json >/dev/null
echo "results: $out/results.md" >&2
