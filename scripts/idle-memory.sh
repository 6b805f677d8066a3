#!/usr/bin/env bash
# Quick measurement of what an idle WebSocket connection costs the server.
#   scripts/idle-memory.sh [CONNECTIONS] [-- SERVER FLAGS...]   (default 2000)
# Starts a release build on a free loopback port, opens CONNECTIONS idle
# connections to /ws/idle from one Python process (no thread per connection
# on the load side), and prints the server's RSS, threads and file
# descriptors per connection, from /proc, before and after.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
count="${1:-2000}"
shift || true
[ "${1:-}" = "--" ] && shift

cargo build --release --quiet
log="$(mktemp)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -INT "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -f "$log"
}
trap cleanup EXIT
RUST_LOG=info ./target/release/switchboard --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
server_pid=$!
addr=""
for _ in $(seq 1 200); do
  addr="$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | sed 's|listening on http://||' || true)"
  [ -n "$addr" ] && break
  sleep 0.05
done
[ -n "$addr" ] || { cat "$log" >&2; exit 1; }

python3 - "$addr" "$count" "$server_pid" <<'PY'
import os, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
count, pid = int(sys.argv[2]), int(sys.argv[3])

def sample():
    status = open(f"/proc/{pid}/status").read()
    field = lambda name: int(next(l for l in status.splitlines() if l.startswith(name)).split()[1])
    return field("VmRSS:"), field("Threads:"), len(os.listdir(f"/proc/{pid}/fd"))

def mem_available():
    return int(next(l for l in open("/proc/meminfo") if l.startswith("MemAvailable:")).split()[1])

request = (b"GET /ws/idle HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
rss0, threads0, fds0 = sample()
avail0 = mem_available()
socks = []
deadline = time.time() + 120
for i in range(count):
    s = socket.create_connection((host, int(port)))
    s.sendall(request)
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    socks.append(s)
    assert time.time() < deadline, "took too long"
# Every connection has its two threads once the last writer has started.
while sample()[1] < threads0 + 2 * len(socks) and time.time() < deadline:
    time.sleep(0.01)
rss1, threads1, fds1 = sample()
avail1 = mem_available()
n = len(socks)
print(f"idle connections:         {n}")
print(f"server RSS:               {rss0} KiB -> {rss1} KiB")
print(f"RSS per connection:       {(rss1 - rss0) / n:.1f} KiB")
print(f"threads per connection:   {(threads1 - threads0) / n:.2f}")
print(f"fds per connection:       {(fds1 - fds0) / n:.2f}")
print(f"MemAvailable per conn.:   {(avail0 - avail1) / n:.1f} KiB (whole machine: includes kernel stacks and socket buffers, both ends)")
if os.environ.get("SMAPS"):
    # Where the memory is: thread stacks (mappings of the configured stack
    # size plus a guard page) against everything else.
    stacks = other = 0
    size = rss = None
    for line in open(f"/proc/{pid}/smaps"):
        parts = line.split()
        if "-" in parts[0] and len(parts) >= 5:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            size = (hi - lo) // 1024
        elif parts[0] == "Rss:":
            if size is not None and 64 <= size <= 8200 and size != 65536:
                stacks += int(parts[1])
            else:
                other += int(parts[1])
    print(f"  stack-sized mappings:   {stacks / n:.1f} KiB per connection; everything else {other} KiB")
for s in socks:
    s.close()
PY
