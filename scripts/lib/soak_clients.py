#!/usr/bin/env python3
"""Clients for scripts/soak.sh that the benchmark tool does not play.

    soak_clients.py wss HOST:PORT CAFILE SECONDS RATE
        wss:// cycles, RATE a second: TLS, upgrade on /echo, one message,
        its echo checked, a close handshake.
    soak_clients.py slow-reader HOST:PORT PATH SECONDS
        a client that joins a busy room of its own and never reads, one
        after another: the server must close each as a slow consumer and
        free what it held.
    soak_clients.py hostile HOST:PORT SECONDS RATE
        hostile sockets, RATE a second, in turn: silent, trickling an
        unfinished head, an oversized head, garbage; each from one of
        127.0.0.2 to 127.0.0.9, as from other machines.

Each mode runs for SECONDS, bounded, and ends by printing one JSON line of
counts to stdout. Only the standard library is used.
"""

import json
import os
import socket
import ssl
import sys
import threading
import time

from raw_ws import address, frame, read_frame, read_head, upgrade

def wss(target, cafile, seconds, rate):
    host, port = address(target)
    context = ssl.create_default_context(cafile=cafile)
    counts = {"cycles": 0, "echoed": 0, "wrong": 0, "failed": 0}
    end = time.monotonic() + seconds
    turn = time.monotonic()
    n = 0
    while time.monotonic() < end:
        turn += 1.0 / rate
        n += 1
        counts["cycles"] += 1
        text = f"wss {n}".encode()
        try:
            with socket.create_connection((host, port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname=host) as sock:
                    upgrade(sock, host, "/echo")
                    sock.sendall(frame(0x1, text))
                    while True:
                        opcode, payload = read_frame(sock)
                        if opcode == 0x9:
                            sock.sendall(frame(0xA, payload))
                            continue
                        break
                    counts["echoed" if (opcode, payload) == (0x1, text) else "wrong"] += 1
                    sock.sendall(frame(0x8, (1000).to_bytes(2, "big")))
                    while read_frame(sock)[0] != 0x8:
                        pass
        except (OSError, ConnectionError, ssl.SSLError):
            counts["failed"] += 1
        time.sleep(max(0.0, turn - time.monotonic()))
    return counts


def slow_reader(target, path, seconds):
    """Rounds of 20 s: a publisher sends 1 MB/s to a room of its own, where
    a client with a 4 KiB receive buffer reads nothing. Once the kernel's
    send buffer (it grows to megabytes on loopback) and the client's outbox
    are full, the server closes that client as a slow consumer (1008) and
    frees what it held; the publisher is not held up."""
    host, port = address(target)
    counts = {"rounds": 0, "published_kib": 0, "failed": 0}
    end = time.monotonic() + seconds
    payload = b"x" * 2000
    while time.monotonic() < end - 1:
        counts["rounds"] += 1
        try:
            slow = socket.socket()
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.settimeout(5)
            slow.connect((host, port))
            upgrade(slow, host, path)
            publisher = socket.create_connection((host, port), timeout=5)
            upgrade(publisher, host, path)
            # The publisher hears its own messages: read and drop them.
            threading.Thread(target=drain_socket, args=(publisher,), daemon=True).start()
            round_end = min(end, time.monotonic() + 20)
            turn = time.monotonic()
            while time.monotonic() < round_end:
                turn += 0.002
                publisher.sendall(frame(0x2, payload))
                counts["published_kib"] += 2
                time.sleep(max(0.0, turn - time.monotonic()))
            publisher.close()
            slow.close()
        except (OSError, ConnectionError):
            counts["failed"] += 1
            time.sleep(0.5)
    return counts


def drain_socket(sock):
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def hostile_one(kind, host, port, source, counts, lock):
    answer = "none"
    try:
        with socket.create_connection((host, port), timeout=15, source_address=(source, 0)) as sock:
            if kind == "silent":
                time.sleep(3)
            elif kind == "trickle":
                sock.sendall(b"GET / HTTP/1.1\r\n")
                sock.settimeout(0.2)
                for byte in b"X-Slow: " * 5:
                    try:
                        if sock.recv(1, socket.MSG_PEEK):
                            break
                    except socket.timeout:
                        pass
                    sock.sendall(bytes([byte]))
                sock.settimeout(15)
            elif kind == "oversized":
                sock.sendall(b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n")
            else:
                sock.sendall(os.urandom(512))
            if kind != "silent":
                head = read_head(sock)
                answer = head.split(" ")[1] if head.startswith("HTTP/1.1 ") else "closed"
    except (OSError, ConnectionError):
        answer = "reset"
    with lock:
        key = f"{kind} {answer}"
        counts[key] = counts.get(key, 0) + 1


def hostile(target, seconds, rate):
    host, port = address(target)
    counts = {}
    lock = threading.Lock()
    threads = []
    kinds = ["silent", "trickle", "oversized", "garbage"]
    end = time.monotonic() + seconds
    turn = time.monotonic()
    n = 0
    while time.monotonic() < end:
        turn += 1.0 / rate
        threads = [t for t in threads if t.is_alive()]
        if len(threads) < 64:
            # From 127.0.0.2 to 127.0.0.9, as from other machines.
            source = f"127.0.0.{2 + n % 8}"
            args = (kinds[n % 4], host, port, source, counts, lock)
            t = threading.Thread(target=hostile_one, args=args, daemon=True)
            t.start()
            threads.append(t)
        n += 1
        time.sleep(max(0.0, turn - time.monotonic()))
    for t in threads:
        t.join(timeout=20)
    return counts


def main(argv):
    mode = argv[1]
    if mode == "wss":
        counts = wss(argv[2], argv[3], float(argv[4]), float(argv[5]))
    elif mode == "slow-reader":
        counts = slow_reader(argv[2], argv[3], float(argv[4]))
    elif mode == "hostile":
        counts = hostile(argv[2], float(argv[3]), float(argv[4]))
    else:
        sys.exit(f"unknown mode {mode}; see the docstring")
    print(json.dumps({"mode": mode, **counts}))


if __name__ == "__main__":
    main(sys.argv)
