"""Latency benchmark: how late each line of a steadily writing child reaches many SSE and
WebSocket clients, beside the naive thread-and-queue pattern; and what idle subscribers cost
the server.
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

from bench.lib.children import PACED_CHILD
from bench.lib.clients import ClientProcess, add_ws_client_options, check_ws_client_options, wait_clients
from bench.lib.histogram import LatencyHistogram, format_ms
from bench.lib.meters import ServerMeter, event_loop_line
from bench.lib.servers import Server, start_logcast, start_naive, start_relay, wait_subscribers

PROCESS = "src"


def _client_cpu(c: ClientProcess) -> float:
    import psutil

    try:
        t = psutil.Process(c.proc.pid).cpu_times()
        return float(t.user + t.system)
    except Exception:
        return math.nan


def run_config(args: argparse.Namespace, kind: str, n_sse: int, n_ws: int) -> dict[str, Any]:
    """One server, one child, n_sse + n_ws clients; the figures of that run."""
    total = int(args.rate * args.seconds)
    label = {
        "logcast": f"logcast: {n_sse} SSE + {n_ws} WS",
        "naive": f"naive thread + queue: {n_ws} WS",
        "relay": f"minimal relay: {n_sse} SSE + {n_ws} WS",
    }[kind]
    with tempfile.TemporaryDirectory(prefix="logcast-latency-") as d:
        tmp = Path(d)
        script = tmp / "child.py"
        script.write_text(PACED_CHILD)
        report = tmp / "child.json"
        child = [
            sys.executable,
            str(script),
            str(args.rate),
            str(args.seconds),
            str(args.batch_ms),
            str(report),
        ]
        server: Server
        if kind == "logcast":
            server = start_logcast(tmp, {PROCESS: child})
        elif kind == "naive":
            server = start_naive(tmp, child)
        else:
            server = start_relay(tmp, child)
        clients: list[ClientProcess] = []
        notes: list[str] = []
        try:
            base = {
                "mode": "latency",
                "port": server.port,
                "sse_path": server.sse_path(PROCESS),
                "ws_url": server.ws_url(PROCESS),
                "expect": total,
                "max_seconds": 90 + args.seconds + args.drain,
                "ws_compression": args.ws_compression,
                "ws_client": args.ws_client,
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
            cpu0 = [_client_cpu(c) for c in clients]
            meter = ServerMeter(server.pid)
            meter.start()
            t0 = time.monotonic()
            server.start(PROCESS)
            deadline = t0 + args.seconds + 3 + args.drain
            finished = wait_clients(clients, deadline)
            srv = meter.stop()
            wall = time.monotonic() - t0
            cpu1 = [_client_cpu(c) for c in clients]
            if not finished:
                notes.append(
                    f"not every line arrived within {args.drain:.0f} s after the child's end: clients stopped"
                )
            results = [c.finish() for c in clients]
        finally:
            for c in clients:
                c.kill()
            server.stop()
        child_info = json.loads(report.read_text()) if report.exists() else None
    if child_info is None:
        notes.append("the child did not finish (no report)")

    rows = []
    for res, a, b in zip(results, cpu0, cpu1, strict=True):
        if res is None:
            notes.append("a client process gave no result")
            continue
        for k, data in res["kinds"].items():
            streams = data["streams"]
            n = len(streams)
            histogram = LatencyHistogram.from_json(data["hist"])
            lines = sum(s["lines"] for s in streams)
            complete = sum(1 for s in streams if s["lines"] == total and s["last"] == total - 1)
            in_order = sum(1 for s in streams if s["order_errors"] == 0)
            gaps = sum(s["gaps"] for s in streams)
            skipped = sum(s["skipped"] for s in streams)
            backwards = sum(s["backwards"] for s in streams)
            announced = sum(s["announced"] for s in streams)
            expected = n * total
            rows.append(
                {
                    "label": label,
                    "kind": k.upper(),
                    "n": n,
                    "connected": sum(1 for s in streams if s["connected"]),
                    "complete": complete,
                    "in_order": in_order,
                    "gaps": gaps,
                    "skipped": skipped,
                    "backwards": backwards,
                    "announced": announced,
                    "delivered": lines / expected if expected else math.nan,
                    "p50": histogram.percentile(50, expected),
                    "p99": histogram.percentile(99, expected),
                    "max": histogram.max_value() if lines == expected else math.inf,
                    "capture_p50": data.get("capture_ms_p50"),
                    "client_cpu_pct": 100.0 * (b - a) / wall if wall > 0 else math.nan,
                    "errors": data["errors"][:3],
                }
            )
    return {
        "label": label,
        "kind": kind,
        "rows": rows,
        "server": srv,
        "child": child_info,
        "notes": notes,
        "total": total,
    }


def print_run(r: dict[str, Any], drain: float) -> None:
    print(f"\n{r['label']}  ({r['total']:,} lines per client)")
    print(
        f"  {'streams':<9}{'connected':>10}{'complete':>10}{'in order':>10}{'delivered':>11}"
        f"{'p50':>11}{'p99':>11}{'max':>11}   client CPU"
    )
    missing = f">{drain:.0f}s/lost"
    for row in r["rows"]:
        print(
            f"  {row['kind'] + ' ' + str(row['n']):<9}{row['connected']:>10}{row['complete']:>10}"
            f"{row['in_order']:>10}{100 * row['delivered']:>10.2f}%"
            f"{format_ms(row['p50'], missing):>11}{format_ms(row['p99'], missing):>11}"
            f"{format_ms(row['max'], missing):>11}   {row['client_cpu_pct']:.0f}% of a core"
        )
        if row["gaps"] or row["skipped"] or row["backwards"]:
            silent = row["skipped"] - row["announced"]
            print(
                f"    all {row['kind']} streams together: {row['skipped']:,} lines skipped, "
                f"{row['backwards']} backward steps; {row['gaps']} gap notices announcing {row['announced']:,} lines"
                + (f"; {silent:,} LINES SKIPPED WITHOUT NOTICE" if silent > 0 else "")
            )
        if row["errors"]:
            print(f"    errors: {'; '.join(row['errors'])}")
    s = r["server"]
    print(
        f"  server: CPU {s['cpu_s']:.1f} s over {s['wall_s']:.1f} s = {s['cpu_pct']:.0f}% of a core; "
        f"RSS {s['rss_mb']:.0f} MB at the end, peak {s['peak_rss_mb']:.0f} MB"
    )
    if event_loop_line(s):
        print(event_loop_line(s))
    caps = [row["capture_p50"] for row in r["rows"] if row.get("capture_p50") is not None]
    if caps:
        print(f"  child write -> the server's read stamp (sampled per SSE read): p50 {format_ms(caps[0])}")
    c = r["child"]
    if c:
        span = c["end"] - c["start"]
        print(
            f"  child: {c['lines']:,} lines in {span:.2f} s = {c['lines'] / span:,.0f} lines/s; "
            f"a batch was written up to {1000 * c['late_max']:.0f} ms after its due time"
        )
    for note in r["notes"]:
        print(f"  NOTE: {note}")


def measure_idle(args: argparse.Namespace) -> dict[str, Any]:
    """RSS of the server with no subscriber, then with idle_sse + idle_ws held."""
    with tempfile.TemporaryDirectory(prefix="logcast-idle-") as d:
        tmp = Path(d)
        quiet = [sys.executable, "-c", "import time; time.sleep(3600)"]
        server = start_logcast(tmp, {"quiet": quiet})
        clients: list[ClientProcess] = []
        notes: list[str] = []
        try:
            server.start("quiet")
            base = {
                "mode": "idle",
                "port": server.port,
                "sse_path": server.sse_path("quiet"),
                "ws_url": server.ws_url("quiet"),
                "expect": 1,
                "max_seconds": 300,
                "connect_parallel": 100,
            }
            warm = ClientProcess({**base, "sse": 2, "ws": 2})  # load the lazily imported code first
            warm.wait_ready(30)
            wait_subscribers(server, "quiet", 4, 10)
            warm.finish()
            wait_subscribers_below(server, "quiet", 1, 10)
            time.sleep(1.0)
            meter = ServerMeter(server.pid)
            rss0 = meter.rss()
            want = args.idle_sse + args.idle_ws
            if args.idle_sse:
                clients.append(ClientProcess({**base, "sse": args.idle_sse, "ws": 0}))
            if args.idle_ws:
                clients.append(ClientProcess({**base, "sse": 0, "ws": args.idle_ws}))
            connected = 0
            for c in clients:
                ok, failed = c.wait_ready(120)
                connected += ok
                if failed:
                    notes.append(f"{failed} idle stream(s) failed to connect")
            seen = wait_subscribers(server, "quiet", want, 60)
            time.sleep(2.0)
            cpu_a = meter.cpu()
            time.sleep(3.0)
            cpu_idle = (meter.cpu() - cpu_a) / 3.0
            rss1 = meter.rss()
            for c in clients:
                c.finish()
        finally:
            for c in clients:
                c.kill()
            server.stop()
    return {
        "want": want,
        "connected": connected,
        "seen": seen,
        "rss0_mb": rss0 / 2**20,
        "rss1_mb": rss1 / 2**20,
        "cpu_idle_pct": 100 * cpu_idle,
        "notes": notes,
    }


def wait_subscribers_below(server: Server, process: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if server.subscribers(process) < n:
                return
        except Exception:
            pass
        time.sleep(0.1)


def print_idle(r: dict[str, Any]) -> None:
    per = (r["rss1_mb"] - r["rss0_mb"]) * 1024 / max(r["seen"], 1)
    print(f"\nidle subscribers on a running, quiet process ({r['want']:,} asked)")
    print(f"  server RSS without subscribers   {r['rss0_mb']:.0f} MB")
    print(
        f"  server RSS with {r['seen']:,} held        {r['rss1_mb']:.0f} MB   (target <= 300 MB; "
        f"{per:.0f} KB per subscriber; connected {r['connected']:,})"
    )
    print(f"  server CPU while they idle       {r['cpu_idle_pct']:.1f}% of a core")
    for note in r["notes"]:
        print(f"  NOTE: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sse", type=int, default=100, help="SSE clients, heavy configuration (100)")
    parser.add_argument("--ws", type=int, default=100, help="WebSocket clients, heavy configuration (100)")
    parser.add_argument("--light-sse", type=int, default=10, help="SSE clients, light configuration (10)")
    parser.add_argument(
        "--light-ws", type=int, default=10, help="WebSocket clients, light configuration (10)"
    )
    parser.add_argument("--rate", type=float, default=10_000, help="child lines/s (10000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the child writes (10)")
    parser.add_argument("--batch-ms", type=float, default=1.0, help="the child writes every N ms (1)")
    parser.add_argument(
        "--drain", type=float, default=20.0, help="wait this long after the child's end for late lines (20)"
    )
    parser.add_argument("--idle-sse", type=int, default=500, help="idle SSE subscribers (500)")
    parser.add_argument("--idle-ws", type=int, default=500, help="idle WebSocket subscribers (500)")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle-subscriber measurement")
    parser.add_argument("--no-light", action="store_true", help="skip the light configuration")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive thread-and-queue baseline")
    parser.add_argument(
        "--relay",
        action="store_true",
        help="also the heavy configuration through a minimal relay (bench/lib/relay.py): the floor "
        "of any server between the pipe and the sockets on this machine (it never takes permessage-deflate)",
    )
    add_ws_client_options(parser)
    parser.add_argument("--runs", type=int, default=1, help="repeat everything K times; median summary (1)")
    args = parser.parse_args()
    check_ws_client_options(parser, args)

    configs: list[tuple[str, int, int]] = [("logcast", args.sse, args.ws)]
    if args.relay:
        configs.append(("relay", args.sse, args.ws))
    if not args.no_light:
        configs.append(("logcast", args.light_sse, args.light_ws))
    if not args.no_naive:
        configs.append(("naive", 0, args.ws))
        if not args.no_light:
            configs.append(("naive", 0, args.light_ws))
    print(
        f"latency: child writes {args.rate:,.0f} lines/s for {args.seconds:g} s "
        f"(every {args.batch_ms:g} ms), ~100-byte lines; clients join with lines=0; "
        f"WebSocket format=text, {args.ws_client} client{' with permessage-deflate' if args.ws_compression else ''}"
    )
    print(
        "latency = client receive time - child write time; SSE per socket read from its oldest line "
        "(upper bound), WS per frame; undelivered lines count as infinitely late"
    )
    all_runs: list[list[dict[str, Any]]] = []
    idles: list[dict[str, Any]] = []
    for run in range(args.runs):
        if args.runs > 1:
            print(f"\n=== run {run + 1} of {args.runs} ===")
        results = []
        for kind, n_sse, n_ws in configs:
            r = run_config(args, kind, n_sse, n_ws)
            print_run(r, args.drain)
            results.append(r)
        all_runs.append(results)
        if not args.no_idle:
            idle = measure_idle(args)
            print_idle(idle)
            idles.append(idle)

    if args.runs > 1:
        print_summary(all_runs, idles, args.drain)


def print_summary(all_runs: list[list[dict[str, Any]]], idles: list[dict[str, Any]], drain: float) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else math.nan

    missing = f">{drain:.0f}s/lost"
    print(f"\nmedian of {len(all_runs)} runs")
    print(
        f"  {'configuration':<34}{'streams':<9}{'delivered':>10}{'complete':>9}{'p50':>11}{'p99':>11}"
        f"{'max':>11}{'server CPU':>12}{'RSS peak':>10}"
    )
    for i, first in enumerate(all_runs[0]):
        for j, row in enumerate(first["rows"]):
            rows = [run[i]["rows"][j] for run in all_runs if len(run[i]["rows"]) > j]
            servers = [run[i]["server"] for run in all_runs]
            print(
                f"  {first['label']:<34}{row['kind'] + ' ' + str(row['n']):<9}"
                f"{100 * med([r['delivered'] for r in rows]):>9.2f}%"
                f"{med([r['complete'] for r in rows]):>9.0f}"
                f"{format_ms(med([r['p50'] for r in rows]), missing):>11}"
                f"{format_ms(med([r['p99'] for r in rows]), missing):>11}"
                f"{format_ms(med([r['max'] for r in rows]), missing):>11}"
                f"{med([s['cpu_pct'] for s in servers]):>11.0f}%"
                f"{med([s['peak_rss_mb'] for s in servers]):>7.0f} MB"
            )
    if idles:
        print(
            f"  idle: {idles[0]['want']:,} subscribers, server RSS "
            f"{med([i['rss0_mb'] for i in idles]):.0f} MB without, "
            f"{med([i['rss1_mb'] for i in idles]):.0f} MB with them (target <= 300 MB)"
        )


if __name__ == "__main__":
    main()
