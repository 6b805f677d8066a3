# Shell functions for the scripts that run servers on loopback; source it.

# A TCP port on 127.0.0.1 that nothing listens on now, below the ephemeral
# range that clients' own ports are taken from.
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# The address a switchboard started with `--listen 127.0.0.1:0` says it
# listens on, read from its log LOG; waits at most 10 s, and fails if the
# process PID ends first.
listening_address() {
  local log="$1" pid="$2" addr="" deadline=$((SECONDS + 10))
  until [ -n "$addr" ]; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "the server did not say where it listens; its log:" >&2
      tail -20 "$log" >&2
      return 1
    fi
    sleep 0.05
    addr="$(grep -o 'listening on https\?://[0-9.:]*' "$log" | head -1 | sed 's|.*://||' || true)"
  done
  echo "$addr"
}

# Waits until the server PID answers GET /healthz on 127.0.0.1:PORT, for at
# most 60 s; fails, with the end of its log LOG, if it ends or never does.
wait_healthy() {
  local port="$1" pid="$2" log="$3" deadline=$((SECONDS + 60))
  until curl -fsS --max-time 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "no answer on http://127.0.0.1:$port/healthz; the server's log:" >&2
      tail -20 "$log" >&2
      return 1
    fi
    sleep 0.05
  done
}

# Starts COMMAND pinned to CPU, with PORT in it replaced by a free port and
# its output in LOG; sets server_pid and server_port, and waits until it
# answers GET /healthz (fails as wait_healthy does).
start_pinned() {
  local cpu="$1" log="$2"
  shift 2
  server_port="$(free_port)"
  taskset -c "$cpu" "${@//PORT/$server_port}" >"$log" 2>&1 &
  server_pid=$!
  wait_healthy "$server_port" "$server_pid" "$log"
}

# Ends PID, a process this script started, if it still runs: SIGTERM, and
# waits for it.
end_process() {
  local pid="$1"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
