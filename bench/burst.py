"""Burst benchmark: a child writes a million lines as fast as it can while SSE and WebSocket
clients follow it; when does the last line reach the slowest client, from the child's exit?
What it measures and how, and recent figures: bench/README.md."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.lib, tests.util

from bench.lib.children import BURST_CHILD
from bench.lib.clients import ClientProcess, add_ws_client_options, check_ws_client_options, wait_clients
from bench.lib.meters import ServerMeter, event_loop_line
from bench.lib.servers import PollUntil, Server, start_logcast, start_naive, wait_subscribers

PROCESS = "flood"


def run_burst(
    kind: str, lines: int, n_sse: int, n_ws: int, timeout: float, ws_opts: dict[str, Any]
) -> dict[str, Any]:
    label = f"logcast: {n_sse} SSE + {n_ws} WS" if kind == "logcast" else f"naive thread + queue: {n_ws} WS"
    notes: list[str] = []
    results: list[dict[str, Any] | None] = []
    srv: dict[str, float] = {}
    srv_stats: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="logcast-burst-") as d:
        tmp = Path(d)
        script = tmp / "child.py"
        script.write_text(BURST_CHILD)
        report = tmp / "child.json"
        child = [sys.executable, str(script), str(lines), str(report)]
        server: Server = (
            start_logcast(tmp, {PROCESS: child}) if kind == "logcast" else start_naive(tmp, child)
        )
        clients: list[ClientProcess] = []
        child_info: dict[str, float] | None = None
        try:
            base = {
                "mode": "burst",
                "port": server.port,
                "sse_path": server.sse_path(PROCESS),
                "ws_url": server.ws_url(PROCESS),
                "expect": lines,
                "max_seconds": 120 + 300 + timeout,
                **ws_opts,
            }
            if n_sse:
                clients.append(ClientProcess({**base, "sse": n_sse, "ws": 0}))
            if n_ws:
                clients.append(ClientProcess({**base, "sse": 0, "ws": n_ws}))
            for c in clients:
                _ok, failed = c.wait_ready(60)
                if failed:
                    notes.append(
                        f"{failed} client stream(s) failed to connect" if failed > 0 else "client not ready"
                    )
            seen = wait_subscribers(server, PROCESS, n_sse + n_ws, 30)
            if seen < n_sse + n_ws:
                notes.append(f"server counted {seen} of {n_sse + n_ws} subscribers before the start")
            meter = ServerMeter(server.pid)
            meter.start()
            handed = handed_off(server, lines) if kind == "logcast" else None
            server.start(PROCESS)
            # the child: at most 300 s to write its lines
            child_deadline = time.monotonic() + 300
            while not report.exists() and time.monotonic() < child_deadline:
                if clients and all(c.done() for c in clients):  # they gave up early
                    break
                time.sleep(0.02)
            time.sleep(0.05)  # let the report be written completely
            if report.exists():
                child_info = json.loads(report.read_text())
            else:
                notes.append("the child did not finish within 300 s")
            finished = wait_clients(clients, time.monotonic() + timeout)
            srv = meter.stop()
            if handed is not None:
                handed.stop()
            if not finished:
                notes.append(
                    f"not every client had every line {timeout:.0f} s after the child's exit: stopped"
                )
            results = [c.finish() for c in clients]
            if kind == "logcast":
                try:
                    hub = server.http("GET", "/api/logs/stats")["processes"][PROCESS]
                    srv_stats = {
                        k: hub.get(k) for k in ("last_seq", "persisted_seq", "store_lost", "dropped")
                    }
                except Exception as exc:
                    notes.append(f"no /api/logs/stats at the end: {exc!r}")
        finally:
            for c in clients:
                c.kill()
            server.stop()

    end = child_info["end"] if child_info else math.nan
    per: list[dict[str, Any]] = []
    client_cpu: dict[str, float] = {}
    for res in results:
        if res is None:
            notes.append("a client process gave no result")
            continue
        for k in res["kinds"]:
            client_cpu[k.upper()] = res["cpu_s"]
        for k, data in res["kinds"].items():
            for i, s in enumerate(data["streams"]):
                ok = s["lines"] == lines and s["last"] == lines - 1 and s["order_errors"] == 0
                per.append(
                    {
                        "name": f"{k.upper()} {i + 1}",
                        "lines": s["lines"],
                        "in_order": s["order_errors"] == 0,
                        "complete": ok,
                        "after_exit": (s["t_last"] - end) if s["t_last"] else math.inf,
                        "gaps": s["gaps"],
                        "skipped": s["skipped"],
                        "jumps": s["order_errors"],
                        "announced": s["announced"],
                        "backwards": s["backwards"],
                        "first_skip": s["first_skip"],
                        "error": s["error"],
                    }
                )
            for e in data["errors"][:3]:
                notes.append(f"{k} client error: {e}")
    per.sort(key=lambda r: r["after_exit"], reverse=True)
    slowest = per[0]["after_exit"] if per else math.nan
    return {
        "label": label,
        "kind": kind,
        "lines": lines,
        "timeout": timeout,
        "child": child_info,
        "clients": per,
        "slowest": slowest,
        "all_ok": bool(per) and all(r["complete"] for r in per),
        "server": srv,
        "client_cpu": client_cpu,
        "hub": srv_stats,
        "handed_after_exit": (handed.at - end) if handed is not None and handed.at else math.nan,
        "notes": notes,
    }


def handed_off(server: Server, lines: int) -> PollUntil:
    """When every stream's cursor had reached the last line (the server had handed it to
    every socket), apart from the clients' pace at reading it; `/api/logs/stats` polled."""

    def check() -> bool:
        hub = server.http("GET", "/api/logs/stats")["processes"][PROCESS]
        # a client that has every line closes its stream: gone counts as caught up
        return bool(hub["last_seq"] >= lines and not any(hub.get("behind") or []))

    return PollUntil(check)


def format_seconds(x: float, timeout: float) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return f"not done (>{timeout:.0f} s)"
    return f"{x:.2f} s"


def print_burst(r: dict[str, Any]) -> None:
    print(f"\n{r['label']}, {r['lines']:,} lines")
    c = r["child"]
    if c:
        span = c["end"] - c["start"]
        print(
            f"  child: wrote {c['lines']:,} lines in {span:.2f} s ({c['lines'] / span:,.0f} lines/s), then exited"
        )
    timeout = r["timeout"]
    print(
        f"  last line at the slowest client, after the child's exit: {format_seconds(r['slowest'], timeout)}"
        + ("" if r["all_ok"] else " (NOT every line arrived: see below)")
    )
    ok = sum(1 for x in r["clients"] if x["complete"])
    print(f"  every line, in order: {'yes' if r['all_ok'] else 'NO'} ({ok} of {len(r['clients'])} clients)")
    times = ", ".join(
        f"{x['name']} {format_seconds(x['after_exit'], timeout)}{'' if x['complete'] else ' (incomplete)'}"
        for x in r["clients"]
    )
    print(f"  per client (slowest first): {times}")
    for kind in ("SSE", "WS"):
        bad = [x for x in r["clients"] if not x["complete"] and x["name"].startswith(kind + " ")]
        if not bad:
            continue

        def span(key: str, xs: list[dict[str, Any]] = bad) -> str:
            lo, hi = min(x[key] for x in xs), max(x[key] for x in xs)
            return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"

        problem = f"    {kind}, {len(bad)} incomplete client(s): {span('lines')} of {r['lines']:,} lines"
        if any(x["skipped"] or x["backwards"] for x in bad):
            before, after = next(x["first_skip"] for x in bad if x["first_skip"])
            problem += (
                f"; skipped {span('skipped')} lines at {span('jumps')} places, {span('backwards')} backward steps "
                f"(first: line {after} after line {before})"
            )
        problem += f"; gap notices {span('gaps')}, announcing {span('announced')} lines"
        for x in bad:
            x["silent"] = max(0, x["skipped"] - x["announced"])
        if any(x["silent"] for x in bad):
            problem += f"; {span('silent')} LINES SKIPPED WITHOUT NOTICE per client"
        errors = sorted({x["error"] for x in bad if x["error"]})
        if errors:
            problem += f"; errors: {'; '.join(errors[:2])}"
        print(problem)
    s = r["server"]
    if not math.isnan(r.get("handed_after_exit", math.nan)):
        print(
            f"  the server had handed the last line to every stream {r['handed_after_exit']:.2f} s after the "
            "child's exit (polled every 20 ms; the rest is the clients reading it)"
        )
    if s:
        delivered = r["lines"] * len(r["clients"])
        print(
            f"  server: CPU {s['cpu_s']:.1f} s over {s['wall_s']:.1f} s = {s['cpu_pct']:.0f}% of a core "
            f"({1e6 * s['cpu_s'] / max(delivered, 1):.2f} us per line delivered, ingest included); "
            f"peak RSS {s['peak_rss_mb']:.0f} MB"
        )
        if event_loop_line(s):
            print(event_loop_line(s))
    if r["hub"]:
        h = r["hub"]
        print(
            f"  server's own count at the end: last seq {h['last_seq']:,}, persisted {h['persisted_seq']:,}, "
            f"lost before persisting (store_lost) {h['store_lost']:,}, announced as gaps (dropped) {h['dropped']:,}"
        )
    if r["client_cpu"]:
        cpu = ", ".join(f"{k} {v:.1f} s" for k, v in r["client_cpu"].items())
        print(f"  client processes' CPU (connect to end): {cpu}")
    for note in r["notes"]:
        print(f"  NOTE: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines the child writes (1,000,000)")
    parser.add_argument("--sse", type=int, default=10, help="SSE clients (10)")
    parser.add_argument("--ws", type=int, default=10, help="WebSocket clients (10)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="stop the clients this long after the child's exit (120)"
    )
    parser.add_argument(
        "--naive-lines", type=int, default=200_000, help="lines for the naive baseline (200,000)"
    )
    parser.add_argument(
        "--naive-ws", type=int, default=10, help="WebSocket clients of the naive baseline (10)"
    )
    parser.add_argument("--naive-timeout", type=float, default=90.0, help="cap of the naive baseline (90 s)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive thread-and-queue baseline")
    add_ws_client_options(parser)
    parser.add_argument("--runs", type=int, default=1, help="repeat K times; median summary (1)")
    args = parser.parse_args()
    check_ws_client_options(parser, args)
    ws_opts = {"ws_client": args.ws_client, "ws_compression": args.ws_compression}

    print(
        "burst: the child writes numbered ~100-byte lines as fast as it can; clients join with lines=0 "
        f"before it starts; WebSocket format=text, {args.ws_client} client"
        f"{' with permessage-deflate' if args.ws_compression else ''}"
    )
    runs: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for run in range(args.runs):
        if args.runs > 1:
            print(f"\n=== run {run + 1} of {args.runs} ===")
        logcast = run_burst("logcast", args.lines, args.sse, args.ws, args.timeout, ws_opts)
        print_burst(logcast)
        naive_run = None
        if not args.no_naive:
            naive_run = run_burst("naive", args.naive_lines, 0, args.naive_ws, args.naive_timeout, ws_opts)
            print_burst(naive_run)
        runs.append((logcast, naive_run))

    if args.runs > 1:

        def med(xs: list[float]) -> float:
            return statistics.median(xs) if xs else math.nan

        print(f"\nmedian of {len(runs)} runs")
        first = runs[0][0]
        print(
            f"  {first['label']}, {args.lines:,} lines: last line at the slowest client "
            f"{format_seconds(med([r['slowest'] for r, _ in runs]), args.timeout)} after the child's exit "
            f"(target <= 3 s); every line in order in {sum(r['all_ok'] for r, _ in runs)} of {len(runs)} runs; "
            f"child {med([r['child']['end'] - r['child']['start'] for r, _ in runs if r['child']]):.2f} s; "
            f"server peak RSS {med([r['server'].get('peak_rss_mb', math.nan) for r, _ in runs]):.0f} MB"
        )
        naive = [naive_run for _, naive_run in runs if naive_run is not None]
        if naive:
            print(
                f"  {naive[0]['label']}, {args.naive_lines:,} lines: all lines at all clients "
                f"{format_seconds(med([n['slowest'] for n in naive]), args.naive_timeout)} after the child's exit"
            )


if __name__ == "__main__":
    main()
