"""The check of scripts/cluster.sh: clients that enter through the load
balancer and land on different nodes share a room.

Usage: cluster_check.py BALANCER_HOST:PORT NODE_HOST:PORT NODE_HOST:PORT

It opens WebSocket connections to one room through the balancer until it
has one on each node (it tells which from each node's /stats), waits until
a message crosses between them, then has each client send a line and
checks that every client receives both lines, once. A client in another
room must receive nothing. It prints each step and exits 1 on the first
failure. Every wait has a deadline."""

import json
import os
import socket
import struct
import sys
import time

DEADLINE = 10.0
ROOM = "/ws/cluster-check"


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def address(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def http_get(addr, path):
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: check\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer.split(b"\r\n\r\n", 1)[1]


def open_connections(node):
    return json.loads(http_get(node, "/stats"))["connections_open"]


class Client:
    """A minimal WebSocket client: text frames out (masked), frames in."""

    def __init__(self, addr, path):
        self.sock = socket.create_connection(addr, timeout=DEADLINE)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: check\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            chunk = self.sock.recv(1)
            if not chunk:
                break
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            fail(f"upgrade through the balancer refused: {head[:60]!r}")

    def send(self, text):
        payload = text.encode()
        key = os.urandom(4)
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + key + masked)

    def recv(self, timeout):
        """The next text message, or None if none comes within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                head = self.sock.recv(2, socket.MSG_WAITALL)
                if len(head) < 2:
                    fail("a connection through the balancer closed")
                length = head[1] & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self.sock.recv(2, socket.MSG_WAITALL))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self.sock.recv(8, socket.MSG_WAITALL))[0]
                payload = self.sock.recv(length, socket.MSG_WAITALL) if length else b""
                if head[0] & 0x0F == 0x1:
                    return payload.decode()
        except socket.timeout:
            return None


def main():
    balancer, nodes = address(sys.argv[1]), [address(a) for a in sys.argv[2:4]]
    on = {}  # node index -> a client connected to it through the balancer
    for _ in range(6):
        before = [open_connections(n) for n in nodes]
        client = Client(balancer, ROOM)
        deadline = time.monotonic() + DEADLINE
        while True:
            after = [open_connections(n) for n in nodes]
            grew = [i for i in range(2) if after[i] > before[i]]
            if grew or time.monotonic() > deadline:
                break
        if not grew:
            fail("a connection through the balancer reached neither node")
        on.setdefault(grew[0], client)
        if len(on) == 2:
            break
    if len(on) < 2:
        fail("the balancer sent every connection to the same node")
    a, b = on[0], on[1]
    print(f"ok: two clients through the balancer, one on each node ({nodes[0][1]} and {nodes[1][1]})")

    # Node b subscribes to the room within milliseconds of its first member
    # joining; until then a message from node a does not reach it.
    deadline = time.monotonic() + DEADLINE
    probe = 0
    while True:
        if time.monotonic() > deadline:
            fail("no message crossed between the nodes")
        probe += 1
        a.send(f"probe {probe}")
        got = b.recv(0.2)
        while got is not None and got != f"probe {probe}":
            got = b.recv(0.2)
        if got == f"probe {probe}":
            break
    while a.recv(DEADLINE) != f"probe {probe}":
        pass
    print(f"ok: a message crossed from node {nodes[0][1]} to node {nodes[1][1]} (probe {probe})")

    other = Client(balancer, "/ws/cluster-check-elsewhere")
    a.send("hello from the client on the first node")
    b.send("hello from the client on the second node")
    for name, client in (("first", a), ("second", b)):
        got = sorted(client.recv(DEADLINE) or "(nothing)" for _ in range(2))
        want = sorted(["hello from the client on the first node", "hello from the client on the second node"])
        if got != want:
            fail(f"the client on the {name} node got {got}, expected {want}")
        extra = client.recv(0.3)
        if extra is not None:
            fail(f"the client on the {name} node got a message twice: {extra!r}")
    if (leak := other.recv(0.3)) is not None:
        fail(f"a client in another room got {leak!r}")
    print("ok: both clients received both messages, once each; another room received nothing")
    for i, node in enumerate(nodes):
        stats = json.loads(http_get(node, "/stats"))["backplane"]
        print(
            f"node {node[1]}: id {stats['node_id']}, backplane up: {stats['up']}, "
            f"published {stats['published']}, received {stats['received']}, not relayed {stats['not_relayed']}"
        )


if __name__ == "__main__":
    main()
