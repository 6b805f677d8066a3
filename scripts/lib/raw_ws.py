"""A WebSocket client over a raw socket, as the load scripts play one:
a masked frame, a frame read back, the request head, an upgrade. Only the
standard library is used; a socket's timeout bounds every read."""

import base64
import os

REQUEST = (
    "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def address(text):
    """HOST:PORT as (host, port)."""
    host, port = text.rsplit(":", 1)
    return host, int(port)


def frame(opcode, payload):
    """A masked client frame (payloads under 64 KiB)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        length = bytes([0x80 | len(payload)])
    else:
        length = bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return bytes([0x80 | opcode]) + length + mask + masked


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed early")
        data += chunk
    return data


def read_head(sock):
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
    return head.decode("latin-1")


def read_frame(sock):
    first, second = read_exact(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(read_exact(sock, 2), "big")
    elif length == 127:
        length = int.from_bytes(read_exact(sock, 8), "big")
    return first & 0x0F, read_exact(sock, length)


def upgrade(sock, host, path):
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(REQUEST.format(path=path, host=host, key=key).encode())
    head = read_head(sock)
    if not head.startswith("HTTP/1.1 101 "):
        raise ConnectionError("no 101: " + head.split("\r\n", 1)[0])
