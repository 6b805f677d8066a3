#!/usr/bin/env bash
# Two switchboard nodes sharing rooms through Redis, behind nginx as a
# WebSocket-aware load balancer, all on loopback; then a check that clients
# entering through the balancer on different nodes share a room.
#
#   scripts/cluster.sh          start everything, check, stop everything
#   scripts/cluster.sh --keep   start and check, then keep it all running
#                               until Ctrl-C, to try by hand
#
# redis-server and nginx are Debian's, installed with apt-get when missing.
# Each runs from a config, pid file and logs of its own under
# target/cluster/, on a free port, and only the processes this script
# started are stopped, by their pid: a system Redis or nginx is left alone.
# The nginx config it writes (target/cluster/nginx.conf) is the one the
# README shows. Exits 0 if and only if the check passed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

keep=false
[ "${1:-}" = "--keep" ] && keep=true

dir="$PWD/target/cluster"
rm -rf "$dir"
mkdir -p "$dir/nginx"

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ "${#need[@]}" -gt 0 ]; then
  scripts/apt-install.sh "${need[@]}"
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
command -v python3 >/dev/null || { echo "FAIL: python3 is needed for the check" >&2; exit 1; }

# shellcheck source=lib/loopback.sh
source scripts/lib/loopback.sh

pids=()
stop_all() {
  # Newest first: the balancer, the nodes (gracefully: SIGTERM), then Redis.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

echo "== building switchboard (release)"
cargo build --release --quiet --bin switchboard

redis_port="$(free_port)"
echo "== redis-server on 127.0.0.1:$redis_port"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$dir" --logfile redis.log --pidfile "$dir/redis.pid" --daemonize no &
pids+=($!)
deadline=$((SECONDS + 10))
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "FAIL: redis-server did not answer" >&2; exit 1; }
  sleep 0.1
done

# Each node listens on a port of its own choosing and logs it; start_node
# sets $addr to it. (Not a command substitution: the node would inherit its
# pipe, and the substitution would wait for the node to exit.)
start_node() {
  local name="$1" log="$dir/node-$1.log"
  RUST_LOG=info "${CARGO_TARGET_DIR:-target}/release/switchboard" --listen 127.0.0.1:0 \
    --redis "redis://127.0.0.1:$redis_port" --node-id "$name" --trust-proxy 127.0.0.1 \
    >/dev/null 2>"$log" &
  pids+=($!)
  local deadline=$((SECONDS + 10))
  addr=""
  until [ -n "$addr" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "FAIL: node $name did not start; see $log" >&2; exit 1; }
    sleep 0.1
    addr="$(grep -o 'listening on http://[0-9.:]*' "$log" | sed 's|.*http://||' || true)"
  done
}
start_node a
node_a="$addr"
start_node b
node_b="$addr"
echo "== nodes a on $node_a and b on $node_b, sharing rooms through Redis"

lb_port="$(free_port)"
cat >"$dir/nginx.conf" <<EOF
# nginx in front of two switchboard nodes: WebSocket-aware load balancing.
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log $dir/nginx/access.log;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;

    # "Connection: upgrade" only when the client asked for an upgrade, so
    # that plain requests (/, /healthz, /stats) keep their own.
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      close;
    }

    upstream switchboard {
        # Round robin. Rooms span the nodes, so any node will do for any
        # client: no sticky sessions are needed.
        server $node_a;
        server $node_b;
    }

    server {
        listen 127.0.0.1:$lb_port;
        location / {
            proxy_pass http://switchboard;
            # WebSocket needs HTTP/1.1 to the node and the hop-by-hop
            # Upgrade and Connection headers passed on explicitly.
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$http_host;
            # The nodes count and log clients by this (--trust-proxy).
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            # nginx closes a proxied connection idle for proxy_read_timeout
            # (60 s by default). Longer than the nodes' --idle-timeout
            # (60 s, with pings every 20 s), so that the nodes decide.
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_buffering off;
        }
    }
}
EOF
echo "== nginx on 127.0.0.1:$lb_port (config: $dir/nginx.conf)"
"$nginx_bin" -p "$dir/nginx" -e "$dir/nginx/error.log" -c "$dir/nginx.conf" &
pids+=($!)
deadline=$((SECONDS + 10))
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $lb_port), 1)" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "FAIL: nginx did not start; see $dir/nginx/error.log" >&2; exit 1; }
  sleep 0.1
done

echo "== check: clients through the balancer, on different nodes, share a room"
if ! python3 scripts/cluster_check.py "127.0.0.1:$lb_port" "$node_a" "$node_b"; then
  echo "logs: $dir/node-a.log $dir/node-b.log $dir/redis.log $dir/nginx/error.log" >&2
  exit 1
fi
echo "PASS: rooms span both nodes through the balancer"

if $keep; then
  echo
  echo "Running until Ctrl-C: open http://127.0.0.1:$lb_port/ in two tabs, or"
  echo "  ${CARGO_TARGET_DIR:-target}/release/switchboard client ws://127.0.0.1:$lb_port/ws/lobby"
  echo "in two terminals. Logs are in $dir/."
  wait "${pids[0]}"
fi
