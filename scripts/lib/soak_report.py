#!/usr/bin/env python3
"""The report and verdict of scripts/soak.sh.

    soak_report.py DIR

Reads DIR/samples.tsv (one line per sample: seconds, then for each server
RSS KiB, anonymous RSS KiB, fds, threads; then the room's p99 in ms, lost
and duplicated for the interval), DIR/baseline.tsv (the servers before any
load, and after the load once settled), and the JSON files the loads
wrote. Writes DIR/results.md (the table and the verdict) and DIR/soak.svg
(the chart), prints results.md, and exits 1 if the verdict is a failure.

Memory is judged by the RSS. Its anonymous part (the heap and the
stacks, which a leak grows) is shown beside it: the rest is mostly the
binary's code, paged in 128 KiB or so at a time when a path first runs,
however late in the soak that is, so a step in the RSS alone is code.
"""

import glob
import json
import os
import sys

P99_LIMIT_MS = 50.0
RSS_TOLERANCE = 0.05
SERVERS = ("ws", "wss")
FIGURES = ("rss", "anon", "fds", "threads")


def read_samples(path):
    rows = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields or fields[0] == "seconds":
                continue
            t = float(fields[0])
            servers = {}
            width = len(FIGURES)
            for i, name in enumerate(SERVERS):
                values = fields[1 + width * i : 1 + width * (i + 1)]
                servers[name] = dict(zip(FIGURES, (int(x) for x in values)))
            after = 1 + width * len(SERVERS)
            p99, lost, dup = float(fields[after]), int(fields[after + 1]), int(fields[after + 2])
            rows.append({"t": t, "servers": servers, "p99": p99, "lost": lost, "dup": dup})
    return rows


def read_baseline(path):
    marks = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) == 2 + len(FIGURES):
                mark, name = fields[:2]
                marks.setdefault(mark, {})[name] = dict(zip(FIGURES, (int(x) for x in fields[2:])))
    return marks


def accounting(directory):
    """Lost and duplicated messages and failures over every load's JSON."""
    lost = dup = troubles = 0
    runs = 0
    for path in sorted(glob.glob(os.path.join(directory, "load-*.json"))):
        report = json.load(open(path))
        runs += 1
        lost += report["messages"]["lost"]
        dup += report["messages"]["duplicated"]
        endings = report.get("endings", {})
        troubles += sum(v for k, v in endings.items() if isinstance(v, int) and k not in ("closed_by_client",))
    return runs, lost, dup, troubles


def clients(directory):
    found = {}
    for path in sorted(glob.glob(os.path.join(directory, "clients-*.json"))):
        with open(path) as f:
            for line in f:
                if line.strip().startswith("{"):
                    counts = json.loads(line)
                    found[os.path.basename(path)[len("clients-") : -len(".json")]] = counts
    return found


def chart(rows, path):
    """Panels over time: RSS, its anonymous part, fds, threads (both servers), room p99."""
    width, height, pad = 720, 150, 40
    panels = [
        ("RSS (MiB)", lambda r, s: r["servers"][s]["rss"] / 1024.0, True),
        ("anonymous RSS (MiB)", lambda r, s: r["servers"][s]["anon"] / 1024.0, True),
        ("file descriptors", lambda r, s: r["servers"][s]["fds"], True),
        ("threads", lambda r, s: r["servers"][s]["threads"], True),
        ("room p99 (ms)", lambda r, s: r["p99"], False),
    ]
    colours = {"ws": "#1f77b4", "wss": "#d62728"}
    t_max = max((r["t"] for r in rows), default=1.0) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height * len(panels) + 20}" '
             f'font-family="sans-serif" font-size="11">']
    for n, (title, value, per_server) in enumerate(panels):
        top = n * height + 10
        series = SERVERS if per_server else ("ws",)
        values = [value(r, s) for r in rows for s in series] or [0]
        v_max = max(values) * 1.1 or 1.0
        if not per_server:
            v_max = max(v_max, P99_LIMIT_MS * 1.1)
        parts.append(f'<text x="{pad}" y="{top + 12}">{title}; max {max(values):.1f}</text>')
        parts.append(f'<rect x="{pad}" y="{top + 18}" width="{width - 2 * pad}" height="{height - 40}" '
                     f'fill="none" stroke="#999"/>')

        def xy(t, v):
            x = pad + (width - 2 * pad) * t / t_max
            y = top + 18 + (height - 40) * (1 - v / v_max)
            return f"{x:.1f},{y:.1f}"

        if not per_server:
            y = top + 18 + (height - 40) * (1 - P99_LIMIT_MS / v_max)
            parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}" '
                         f'stroke="#aaa" stroke-dasharray="4"/>')
        for s in series:
            points = " ".join(xy(r["t"], value(r, s)) for r in rows)
            colour = colours[s] if per_server else "#2ca02c"
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        if per_server:
            for i, s in enumerate(series):
                parts.append(f'<text x="{width - pad - 80 + 40 * i}" y="{top + 12}" fill="{colours[s]}">{s}</text>')
    parts.append(f'<text x="{pad}" y="{height * len(panels) + 14}">seconds since the load began '
                 f'(0 to {t_max:.0f})</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def cells(m):
    """A server's RSS, anonymous RSS (MiB), fds and threads, as table cells."""
    return f"{m['rss'] / 1024:.1f} | {m['anon'] / 1024:.1f} | {m['fds']} | {m['threads']}"


def moved_after_first_minute(rows, name, key):
    """The most `key` strayed from its first sample after the first minute,
    as a fraction of it; None without two such samples."""
    later = [r["servers"][name][key] for r in rows if r["t"] >= 60]
    if len(later) < 2:
        return None
    reference = later[0]
    return max(abs(v - reference) / reference for v in later)


def main(directory):
    rows = read_samples(os.path.join(directory, "samples.tsv"))
    marks = read_baseline(os.path.join(directory, "baseline.tsv"))
    runs, lost, dup, troubles = accounting(directory)
    found_clients = clients(directory)
    failures = []

    lines = ["# Soak", "", f"{len(rows)} samples, one every ~10 s; load runs: {runs}.", ""]
    lines.append("| t (s) | ws RSS (MiB) | ws anon (MiB) | ws fds | ws threads | wss RSS (MiB) | wss anon (MiB) "
                 "| wss fds | wss threads | room p99 (ms) | lost / dup |")
    lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ws, wss = r["servers"]["ws"], r["servers"]["wss"]
        lines.append(f"| {r['t']:.0f} | {cells(ws)} | {cells(wss)} | {r['p99']:.2f} "
                     f"| {r['lost']} / {r['dup']} |")
    lines.append("")
    lines.append("| server | | RSS (MiB) | anonymous (MiB) | fds | threads |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: |")
    movements = []
    unjudged = []
    for name in SERVERS:
        start, end = marks.get("start", {}).get(name), marks.get("end", {}).get(name)
        peak = {k: max([r["servers"][name][k] for r in rows] or [0]) for k in FIGURES}
        for label, m in (("start", start), ("peak", peak), ("end", end)):
            if m:
                lines.append(f"| {name} | {label} | {cells(m)} |")
        if start and end:
            if end["fds"] != start["fds"]:
                failures.append(f"{name}: {end['fds']} fds at the end, {start['fds']} at the start")
            if end["threads"] != start["threads"]:
                failures.append(f"{name}: {end['threads']} threads at the end, {start['threads']} at the start")
        else:
            failures.append(f"{name}: no start or end sample")
        moved = {k: moved_after_first_minute(rows, name, k) for k in ("rss", "anon")}
        if moved["rss"] is None:
            unjudged.append(name)
        else:
            movements.append(f"{name}: after the first minute, RSS moved {moved['rss']:.1%} at most, "
                             f"its anonymous part {moved['anon']:.1%}.")
            if moved["rss"] > RSS_TOLERANCE:
                failures.append(f"{name}: RSS moved {moved['rss']:.1%} after the first minute (limit 5%)")
    lines.append("")
    if movements:
        lines.append(" ".join(movements))
        lines.append("")
    if found_clients:
        lines.append("Other clients: " + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "mode")
            for name, counts in found_clients.items()))
        lines.append("")
    stats_path = os.path.join(directory, "stats-ws.json")
    stats = json.load(open(stats_path)) if os.path.exists(stats_path) else {}
    figures = ("slow_consumer_closes", "write_timeouts", "connections_shed", "http_responses",
               "connections_total", "threads_started", "threads_reused")
    lines.append("The ws server's own count at the end: " + ", ".join(
        f"{name} {stats.get(name)}" for name in figures) + ".")
    lines.append("")
    if not stats.get("slow_consumer_closes"):
        failures.append("no client that stopped reading was closed as a slow consumer")
    wss = found_clients.get("wss", {})
    if wss.get("wrong", 0) or wss.get("failed", 0) or not wss.get("echoed", 0):
        failures.append(f"wss clients: {wss}")
    # A load that never ran would lose nothing: each must have reported.
    for load in ("echo", "churn"):
        if not glob.glob(os.path.join(directory, f"load-{load}-*.json")):
            failures.append(f"the {load} load never reported")
    for name in ("hostile", "hostile-tls"):
        sent = sum(v for k, v in found_clients.get(name, {}).items() if isinstance(v, int))
        if not sent:
            failures.append(f"no {name} sockets were sent")
    slow = found_clients.get("slow-reader", {})
    if slow.get("failed", 0) or not slow.get("rounds", 0):
        failures.append(f"slow readers that could not connect: {slow}")
    worst_p99 = max((r["p99"] for r in rows), default=0.0)
    if not rows:
        failures.append("no samples")
    if worst_p99 >= P99_LIMIT_MS:
        failures.append(f"room p99 reached {worst_p99:.1f} ms (limit {P99_LIMIT_MS:.0f} ms)")
    room_lost = sum(r["lost"] for r in rows)
    room_dup = sum(r["dup"] for r in rows)
    if lost or dup or room_lost or room_dup:
        failures.append(f"lost {lost + room_lost}, duplicated {dup + room_dup}")
    if troubles:
        failures.append(f"{troubles} well-behaved connections ended in trouble")

    lines.append(f"Room p99 at worst {worst_p99:.2f} ms; messages lost {lost + room_lost}, "
                 f"duplicated {dup + room_dup}; connection trouble {troubles}.")
    lines.append("")
    if failures:
        lines.append("**Verdict: FAIL**")
        lines.extend(f"- {failure}" for failure in failures)
    else:
        # A soak of a minute has no two samples after its first: its RSS is
        # shown, but not judged, and the verdict says so.
        rss = ("RSS flat after the first minute" if not unjudged else
               f"RSS not judged for {', '.join(unjudged)} (fewer than two samples after the first minute)")
        lines.append(f"**Verdict: PASS**: fds and threads back to where they started, {rss}, "
                     "nothing lost or duplicated, the room's p99 under 50 ms throughout.")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(directory, "results.md"), "w") as f:
        f.write(text)
    chart(rows, os.path.join(directory, "soak.svg"))
    print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
