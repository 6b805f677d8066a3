"""The load side of scripts/flood-latency.sh: a probe, holders and flooders,
each in its own process. Usage: flood_latency.py HOST:PORT ATTEMPTS"""

import multiprocessing as mp
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from raw_ws import frame, read_frame, read_head, upgrade  # noqa: E402

LIMIT_PER_ADDRESS = 50
LIMIT_TOTAL = 200


def connect(addr, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(addr)
    return s


def upgraded(addr, source, path):
    s = connect(addr, source)
    try:
        upgrade(s, "t", path)
    except ConnectionError as e:
        raise RuntimeError(f"upgrade from {source} refused: {e}") from e
    return s


PROBE_INTERVAL = 0.002


def probe(addr, ready, stop, results):
    """Round trips through room "probe", one every 2 ms (within the
    server's default rate limit of 1,000 a second), until told to stop.
    Each result is (when it started, how long it took)."""
    s = upgraded(addr, "127.0.0.1", "/ws/probe")
    ready.set()
    rtts = []
    n = 0
    next_send = time.perf_counter()
    while not stop.is_set():
        next_send += PROBE_INTERVAL
        time.sleep(max(0.0, next_send - time.perf_counter()))
        n += 1
        payload = str(n).encode()
        started = time.perf_counter()
        s.sendall(frame(0x1, payload))
        while True:
            opcode, body = read_frame(s)
            if opcode == 0x1 and body == payload:
                break
            if opcode == 0x8:
                raise RuntimeError(f"probe closed: {body!r}")
        rtts.append((started, time.perf_counter() - started))
    results.put(rtts)


def hold(addr, source, count, ready, stop):
    """Takes `count` places from `source` with idle WebSocket connections."""
    held = [upgraded(addr, source, "/ws/holders") for _ in range(count)]
    ready.set()
    stop.wait()
    for s in held:
        s.close()


def flood(addr, sources, attempts, results):
    """Connection attempts, each a GET whose answer is read in full."""
    statuses = {}
    for i in range(attempts):
        try:
            s = connect(addr, sources[i % len(sources)])
        except OSError as e:
            statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
            continue
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            head = read_head(s)
            status = head.split(" ")[1] if head else "no answer"
        except OSError as e:
            status = type(e).__name__
        finally:
            s.close()
        statuses[status] = statuses.get(status, 0) + 1
    results.put(statuses)


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def run_flood(addr, sources, attempts, workers=4):
    results = mp.Queue()
    share = [attempts // workers + (1 if i < attempts % workers else 0) for i in range(workers)]
    procs = [mp.Process(target=flood, args=(addr, sources, n, results), daemon=True) for n in share]
    for p in procs:
        p.start()
    total = {}
    for _ in procs:
        for status, n in results.get(timeout=120).items():
            total[status] = total.get(status, 0) + n
    for p in procs:
        p.join()
    return total


def started_in_time(event, seconds, what):
    """Waits for a helper process to say it is ready; fails the run if it does not."""
    if not event.wait(seconds):
        raise SystemExit(f"FAIL: {what} not ready within {seconds} s")


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    addr = (host, int(port))
    attempts = int(sys.argv[2])
    stop = mp.Event()
    try:
        measure(addr, attempts, stop)
    finally:
        # Whatever failed, the helpers stop: they are daemons, and told so.
        stop.set()


def measure(addr, attempts, stop):
    probe_ready = mp.Event()
    probe_results = mp.Queue()
    prober = mp.Process(target=probe, args=(addr, probe_ready, stop, probe_results), daemon=True)
    prober.start()
    started_in_time(probe_ready, 10, "the prober")

    # Three addresses take their 50 places each: 151 of 200 in use.
    holders = []
    for last in (2, 3, 4):
        ready = mp.Event()
        p = mp.Process(target=hold, args=(addr, f"127.0.0.{last}", LIMIT_PER_ADDRESS, ready, stop), daemon=True)
        p.start()
        started_in_time(ready, 30, f"the holder on 127.0.0.{last}")
        holders.append(p)

    started = time.perf_counter()
    phase1 = run_flood(addr, ["127.0.0.2", "127.0.0.3", "127.0.0.4"], attempts // 2)
    # The last 49 places go, then fresh addresses find the server full.
    ready = mp.Event()
    p = mp.Process(target=hold, args=(addr, "127.0.0.5", LIMIT_TOTAL - 151, ready, stop), daemon=True)
    p.start()
    started_in_time(ready, 30, "the holder on 127.0.0.5")
    holders.append(p)
    phase2 = run_flood(addr, [f"127.0.0.{i}" for i in range(10, 60)], attempts - attempts // 2)
    flood_seconds = time.perf_counter() - started

    finished = started + flood_seconds
    stop.set()
    samples = probe_results.get(timeout=30)
    rtts = sorted(rtt for at, rtt in samples if started <= at <= finished)
    prober.join()
    for p in holders:
        p.join()

    print(f"attempts beyond the limits: {attempts} in {flood_seconds:.2f} s")
    print(f"  phase 1 (addresses at their limit): {phase1}")
    print(f"  phase 2 (server at its limit):      {phase2}")
    ms = lambda v: f"{v * 1000:.2f} ms"
    print(f"probe round trips during the flood: {len(rtts)}")
    print(
        f"  p50 {ms(percentile(rtts, 0.50))}  p99 {ms(percentile(rtts, 0.99))}  "
        f"p99.9 {ms(percentile(rtts, 0.999))}  max {ms(rtts[-1])}"
    )
    refused = phase1.get("429", 0) + phase2.get("503", 0)
    if refused != attempts:
        print(f"NOTE: {attempts - refused} attempts were not refused with the expected status")


if __name__ == "__main__":
    main()
