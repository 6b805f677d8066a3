#!/usr/bin/env bash
# switchboard against the reference servers, on loopback, in one run:
#   PEERS_DIR=path/to/bench-peers scripts/bench.sh
#
# Builds release binaries, starts switchboard and (when PEERS_DIR names a
# directory holding them) the two reference servers, tungstenite-threads/
# and tokio-tungstenite/, each started with its run.sh PORT (run.sh
# --prepare builds it), each on a free port and pinned to CPU 0, and runs
# switchboard-bench pinned to CPU 1 against each of them: echo, fanout as
# fast as possible, fanout at 100 publishes/s, and churn, each in ROUNDS
# rounds in which the servers take turns, a different one going first in
# each; last idle with 10,000 connections, one server at a time, each
# started afresh for it and stopped after its turn so that its threads are
# freed before the next.
#
# Rounds, because this machine has slow spells of 20 to 30 s in which
# every server slows by up to a quarter, and one run per server lets a
# spell decide a ratio. The report shows each server's
# median round, every round's figure beside it, and what any round lost.
#
# Writes under target/bench/: results.md (the table, with ratios of
# switchboard against each reference, the machine and the exact commands),
# results.svg (the chart), json/ (one file per run) and logs/. Prints
# results.md at the end.
#
# Environment: DURATION (measured time per run, default 4s), ROUNDS (5),
# IDLE_CONNECTIONS (10000), SUBSCRIBERS (1000), PEERS_DIR (none: switchboard
# alone), SERVER_CPU (0), LOAD_CPU (1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration="${DURATION:-4s}"
rounds="${ROUNDS:-5}"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a whole number from 1 (it is '$rounds')" >&2; exit 2; }
idle_connections="${IDLE_CONNECTIONS:-10000}"
subscribers="${SUBSCRIBERS:-1000}"
peers_dir="${PEERS_DIR:-}"
server_cpu="${SERVER_CPU:-0}"
load_cpu="${LOAD_CPU:-1}"
out=target/bench
bench="${CARGO_TARGET_DIR:-target}/release/switchboard-bench"

declare -A pid=() port=() start_command=() fate=()
servers=()
troubles=()

say() { printf '\n== %s\n' "$*" >&2; }

# Stops one server we started: SIGTERM (switchboard shuts down gracefully;
# SIGINT would not do, as a script's background jobs ignore it), then
# SIGKILL if it is still there after 10 s. Records how it ended.
stop_server() {
  local name="$1" p="${pid[$1]:-}"
  [ -n "$p" ] || return 0
  unset 'pid[$name]'
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
  fi
  local status=0
  wait "$p" 2>/dev/null || status=$?
  if [ -z "${fate[$name]:-}" ]; then fate[$name]="stopped by the script (exit status $status)"; fi
}

cleanup() {
  for name in "${!pid[@]}"; do stop_server "$name"; done
  if [ -n "$original_map_count" ]; then sysctl -qw vm.max_map_count="$original_map_count" || true; fi
}
trap cleanup EXIT

# shellcheck source=lib/loopback.sh
source scripts/lib/loopback.sh

# Starts a server in the background and waits until GET /healthz answers;
# returns 1 if it does not come up.
start_server() {
  local name="$1"
  shift
  local p
  p="$(free_port)"
  local command=()
  if [ -n "$pinning" ]; then command=(taskset -c "$server_cpu"); fi
  command+=("${@//PORT/$p}")
  # As the report shows it: the peers by $PEERS_DIR, not where they are here.
  start_command[$name]="${command[*]}"
  if [ -n "$peers_dir" ]; then start_command[$name]="${start_command[$name]//$peers_dir/\$PEERS_DIR}"; fi
  "${command[@]}" >>"$out/logs/server-$name.log" 2>&1 &
  pid[$name]=$!
  port[$name]=$p
  wait_healthy "$p" "${pid[$name]}" "$out/logs/server-$name.log" || return 1
  echo "$name: pid ${pid[$name]}, port $p" >&2
}

# Starts switchboard or the reference server NAME. The references have no
# per-client limits; switchboard's defaults (256 connections per address,
# 1,000 messages a second per connection) would refuse a load generator on
# one address, so they are lifted for the run.
launch() {
  if [ "$1" = switchboard ]; then
    start_server switchboard "${CARGO_TARGET_DIR:-target}/release/switchboard" --listen 127.0.0.1:PORT \
      --max-connections-per-ip 0 --max-messages-per-sec 0
  else
    start_server "$1" "$peers_dir/$1/run.sh" PORT
  fi
}

# Runs round ROUND of one scenario against one server; a failure is
# recorded, not fatal.
run() {
  local server="$1" case="$2" round="$3"
  shift 3
  [ -n "${pid[$server]:-}" ] || return 0
  local name="$case-$server-$round"
  local command=()
  if [ -n "$pinning" ]; then command=(taskset -c "$load_cpu"); fi
  command+=("$bench" "$@" --server "127.0.0.1:${port[$server]}" --server-pid "${pid[$server]}"
    --label "$server" --case "$case" --json "$out/json/$name.json")
  echo "${command[*]}" >>"$out/commands.txt"
  say "$case on $server, round $round"
  set +e
  "${command[@]}" 2>&1 | tee "$out/logs/$name.txt"
  local status="${PIPESTATUS[0]}"
  set -e
  if [ "$status" -ne 0 ]; then
    troubles+=("$case on $server, round $round: switchboard-bench exited with status $status (see logs/$name.txt)")
  fi
  if ! kill -0 "${pid[$server]}" 2>/dev/null; then
    local exit_status=0
    wait "${pid[$server]}" 2>/dev/null || exit_status=$?
    fate[$server]="died during $case, round $round (exit status $exit_status)"
    troubles+=("$server died during $case, round $round (exit status $exit_status); last lines of its log:"$'\n\n```\n'"$(tail -5 "$out/logs/server-$server.log")"$'\n```')
    unset 'pid[$server]'
  fi
}

command -v curl >/dev/null || { echo "bench.sh needs curl (to wait on /healthz)" >&2; exit 1; }
pinning=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pinning=yes
else
  echo "warning: no taskset or fewer than 2 CPUs; servers and load share the CPUs" >&2
fi
# A thread-per-connection server needs about eight memory mappings per
# connection (two threads, each with a stack, a signal stack and their guard
# pages): Linux's default vm.max_map_count (65,530) stops it near 8,000
# connections. When allowed, the run raises it and puts it back at the end;
# RAISE_MAP_COUNT=0 leaves it alone.
map_count="$(cat /proc/sys/vm/max_map_count 2>/dev/null || echo '?')"
original_map_count=""
needed_maps=$((idle_connections * 8 + 65536))
if [ "$map_count" != "?" ] && [ "$map_count" -lt "$needed_maps" ]; then
  if [ "${RAISE_MAP_COUNT:-1}" = "1" ] && [ "$(id -u)" = 0 ] && sysctl -qw vm.max_map_count="$needed_maps" 2>/dev/null; then
    echo "vm.max_map_count raised from $map_count to $needed_maps for this run (put back at the end)" >&2
    original_map_count="$map_count"
    map_count="$needed_maps"
  else
    echo "warning: vm.max_map_count is $map_count; a server with two threads per connection" \
      "(four memory mappings each) cannot hold $idle_connections connections" >&2
  fi
fi

rm -rf "$out"
mkdir -p "$out/json" "$out/logs"
: >"$out/commands.txt"
began=$SECONDS

say "building (cargo build --release --workspace --bins)"
cargo build --release --workspace --bins --quiet
peers=()
for peer in tungstenite-threads tokio-tungstenite; do
  if [ -z "$peers_dir" ]; then
    echo "warning: PEERS_DIR not set; measuring switchboard alone" >&2
    break
  elif [ -x "$peers_dir/$peer/run.sh" ]; then
    "$peers_dir/$peer/run.sh" --prepare
    peers+=("$peer")
  else
    echo "warning: $peers_dir/$peer/run.sh not found; comparing without it" >&2
  fi
done

say "starting servers"
for server in switchboard "${peers[@]}"; do
  launch "$server" || exit 1
  servers+=("$server")
done

# Runs CASE (the tool's arguments follow) in every round, the servers
# taking turns: in round r the r-th server goes first.
in_rounds() {
  local case="$1" round i
  shift
  local n="${#servers[@]}"
  for round in $(seq "$rounds"); do
    for i in $(seq 0 $((n - 1))); do
      run "${servers[$(((i + round - 1) % n))]}" "$case" "$round" "$@"
    done
  done
}

in_rounds echo echo --duration "$duration"
in_rounds fanout-max fanout --subscribers "$subscribers" --duration "$duration"
in_rounds fanout-rate100 fanout --subscribers "$subscribers" --rate 100 --duration "$duration"
in_rounds churn churn --workers 8 --duration "$duration"
# Idle last and one server at a time: 10,000 connections cost a
# thread-per-connection server 20,000 threads, and the machine has ~32k.
# Each server is started afresh for it, so that what the workloads before
# left (threads parked for reuse, memory its allocator kept) is counted
# neither for nor against its connections.
for server in "${servers[@]}"; do
  [ -n "${pid[$server]:-}" ] || continue
  stop_server "$server"
  fate[$server]=""
  if ! launch "$server"; then
    fate[$server]="did not start again for idle"
    troubles+=("$server did not start again for idle (see logs/server-$server.log)")
    continue
  fi
  run "$server" idle 1 idle --connections "$idle_connections" --duration 3s
  stop_server "$server"
done

say "report"
files=()
for case in echo fanout-max fanout-rate100 churn idle; do
  for server in "${servers[@]}"; do
    # In the order the rounds ran (idle has one).
    for round in $(seq "$rounds"); do
      file="$out/json/$case-$server-$round.json"
      if [ -f "$file" ]; then files+=("$file"); fi
    done
  done
done
{
  if [ "${#files[@]}" -gt 0 ]; then
    "$bench" report --baseline switchboard --markdown "$out/table.md" --svg "$out/results.svg" "${files[@]}" >/dev/null
    cat "$out/table.md"
  fi
  echo
  echo "## Machine"
  echo
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc --all) cores"
  echo "- kernel: $(uname -sr); memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "- limits: ulimit -n $(ulimit -n), kernel.pid_max $(cat /proc/sys/kernel/pid_max)," \
    "kernel.threads-max $(cat /proc/sys/kernel/threads-max), vm.max_map_count $map_count"
  echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work may share the machine)"
  echo "- switchboard $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'), $(rustc --version)"
  if [ -n "$pinning" ]; then
    echo "- servers pinned to CPU $server_cpu (\`taskset -c $server_cpu\`), switchboard-bench to CPU $load_cpu" \
      "(\`taskset -c $load_cpu\`; the exact command lines, in order, are in commands.txt)"
  else
    echo "- not pinned (taskset or a second CPU missing): servers and load shared the CPUs"
  fi
  echo "- whole run: $((SECONDS - began)) s, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "## Servers"
  echo
  for server in "${servers[@]}"; do
    echo "- $server: \`${start_command[$server]}\`; ${fate[$server]:-still running}"
  done
  if [ "${#troubles[@]}" -gt 0 ]; then
    echo
    echo "## Trouble during the run"
    echo
    for trouble in "${troubles[@]}"; do echo "- $trouble"; done
  fi
} >"$out/results.md"
cat "$out/results.md"
echo >&2
echo "written: $out/results.md, $out/results.svg, $out/json/, $out/logs/" >&2
