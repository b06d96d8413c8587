"""Cluster benchmark: burst.py's 1,000,000-line burst and latency.py's 10,000 lines/s to N SSE + N WS
clients, against one `logcast serve` (SQLite) and one agent + two replicas on a real redis-server, the
clients split across the replicas: time to the last line, p50/p99, CPU per process, Redis memory."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.lib, tests.util

from bench.lib.children import BURST_CHILD, PACED_CHILD
from bench.lib.clients import ClientProcess, add_ws_client_options, check_ws_client_options, wait_clients
from bench.lib.cluster_servers import Cluster, start_cluster
from bench.lib.histogram import LatencyHistogram, format_ms
from bench.lib.machine import MachineMeter, process_cpu
from bench.lib.meters import ServerMeter
from bench.lib.servers import Server, start_logcast, wait_subscribers

PROCESS = "src"
SETUPS = ("serve", "cluster")
QUICK = {
    "lines": 20_000,
    "burst_sse": 2,
    "burst_ws": 2,
    "sse": 2,
    "ws": 2,
    "rate": 2_000.0,
    "seconds": 2.0,
    "timeout": 30.0,
    "drain": 5.0,
}


@dataclass
class Setup:
    """What the clients connect to (`fronts`: the one server, or the replicas) and which
    processes are metered (label -> pid)."""

    kind: str
    fronts: list[Server]
    pids: dict[str, int]
    stop: Callable[[], None]
    cluster: Cluster | None = None


def setup_label(kind: str, replicas: int) -> str:
    if kind == "serve":
        return "one logcast serve (SQLite)"
    return f"one agent + {replicas} replica{'s' if replicas > 1 else ''} (redis-server)"


def open_setup(kind: str, tmp: Path, child: list[str], replicas: int) -> Setup:
    if kind == "serve":
        server = start_logcast(tmp, {PROCESS: child})
        return Setup(kind, [server], {"serve": server.pid}, server.stop)
    cluster = start_cluster(tmp, {PROCESS: child}, replicas=replicas)
    assert cluster.agent is not None
    pids = {"agent": cluster.agent.pid}
    pids |= {f"replica {i + 1}": r.pid for i, r in enumerate(cluster.replicas)}
    pids["redis-server"] = cluster.redis.pid
    return Setup(kind, cluster.replicas, pids, cluster.stop, cluster)


def shares(n: int, k: int) -> list[int]:
    """`n` split in `k` shares as even as can be, the larger first."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def measure(args: argparse.Namespace, kind: str, mode: str) -> dict[str, Any]:
    """One setup, one child, clients in two processes (one per replica if there are more),
    each with its share of the SSE and of the WS streams, on its own front (the one server, or
    a replica: process i on replica i); the run's figures."""
    burst = mode == "burst"
    n_sse, n_ws = (args.burst_sse, args.burst_ws) if burst else (args.sse, args.ws)
    total = args.lines if burst else int(args.rate * args.seconds)
    notes: list[str] = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix=f"logcast-cluster-{mode}-") as d:
        tmp = Path(d)
        script = tmp / "child.py"
        script.write_text(BURST_CHILD if burst else PACED_CHILD)
        report = tmp / "child.json"
        child = [sys.executable, str(script)]
        if burst:
            child += [str(total), str(report)]
        else:
            child += [str(args.rate), str(args.seconds), str(args.batch_ms), str(report)]
        setup = open_setup(kind, tmp, child, args.replicas)
        clients: list[tuple[int, ClientProcess]] = []  # (front index, client)
        figures: dict[str, dict[str, float]] = {}
        whole: dict[str, float] = {}
        results: list[tuple[int, dict[str, Any] | None]] = []
        hub: dict[str, Any] = {}
        memory: dict[str, str] = {}
        child_info: dict[str, float] | None = None
        try:
            want = [0] * len(setup.fronts)
            parts = max(2, len(setup.fronts))
            for i, (h_sse, h_ws) in enumerate(zip(shares(n_sse, parts), shares(n_ws, parts), strict=True)):
                at = i % len(setup.fronts)
                front = setup.fronts[at]
                spec = {
                    "mode": mode,
                    "port": front.port,
                    "sse_path": front.sse_path(PROCESS),
                    "ws_url": front.ws_url(PROCESS),
                    "expect": total,
                    "max_seconds": (120 + 300 + args.timeout) if burst else (90 + args.seconds + args.drain),
                    "ws_client": args.ws_client,
                    "ws_compression": args.ws_compression,
                }
                if h_sse or h_ws:
                    clients.append((at, ClientProcess({**spec, "sse": h_sse, "ws": h_ws})))
                want[at] += h_sse + h_ws
            for _, c in clients:
                _ok, failed = c.wait_ready(60)
                if failed:
                    notes.append(
                        f"{failed} client stream(s) failed to connect" if failed > 0 else "client not ready"
                    )
            for i, front in enumerate(setup.fronts):
                seen = wait_subscribers(front, PROCESS, want[i], 30)
                if seen < want[i]:
                    notes.append(f"front {i + 1} counted {seen} of {want[i]} subscribers before the start")
            meters = {label: ServerMeter(pid) for label, pid in setup.pids.items()}
            machine = MachineMeter()
            pids = list(setup.pids.values())
            client_pids = [c.proc.pid for _, c in clients]
            clients0 = sum(process_cpu(pid) for pid in client_pids)
            child0 = sum(process_cpu(pid, children=True) for pid in pids)
            machine.start()
            for meter in meters.values():
                meter.start()
            t0 = time.monotonic()
            setup.fronts[0].start(PROCESS)  # on the cluster: a command through Redis to the agent
            only = [c for _, c in clients]
            if burst:
                child_deadline = time.monotonic() + 300
                while not report.exists() and time.monotonic() < child_deadline:
                    if only and all(c.done() for c in only):
                        break
                    time.sleep(0.02)
                time.sleep(0.05)
                if not report.exists():
                    notes.append("the child did not finish within 300 s")
                finished = wait_clients(only, time.monotonic() + args.timeout)
                if not finished:
                    notes.append(
                        f"not every client had every line {args.timeout:.0f} s after the child's exit: stopped"
                    )
            else:
                finished = wait_clients(only, t0 + args.seconds + 3 + args.drain)
                if not finished:
                    notes.append(
                        f"not every line arrived within {args.drain:.0f} s after the child's end: clients stopped"
                    )
            figures = {label: meter.stop() for label, meter in meters.items()}
            clients1 = sum(process_cpu(pid) for pid in client_pids)
            child1 = sum(process_cpu(pid, children=True) for pid in pids)
            whole = machine.stop()
            whole["clients_s"] = clients1 - clients0
            whole["child_s"] = child1 - child0  # the child, once its parent reaped it
            results = [(at, c.finish()) for at, c in clients]
            try:
                stats = setup.fronts[0].http("GET", "/api/logs/stats")["processes"][PROCESS]
                hub = {k: stats.get(k) for k in ("last_seq", "persisted_seq", "store_lost", "dropped")}
            except Exception as exc:
                notes.append(f"no /api/logs/stats at the end: {exc!r}")
            if setup.cluster is not None:
                memory = setup.cluster.redis_memory()
        finally:
            for _, c in clients:
                c.kill()
            setup.stop()
        if report.exists():
            child_info = json.loads(report.read_text())
    if child_info is None:
        notes.append("the child left no report")
    out: dict[str, Any] = {
        "kind": kind,
        "label": setup_label(kind, args.replicas),
        "mode": mode,
        "n_sse": n_sse,
        "n_ws": n_ws,
        "total": total,
        "load": load,
        "child": child_info,
        "cpu": figures,
        "machine": whole,
        "hub": hub,
        "redis_memory": memory,
        "notes": notes,
    }
    if any(r is None for _, r in results):
        notes.append("a client process gave no result")
    done = [(at, r) for at, r in results if r is not None]
    if burst:
        out |= burst_figures(done, total, child_info)
    else:
        out |= latency_figures(done, total, len(setup.fronts) > 1)
    return out


def burst_figures(
    results: list[tuple[int, dict[str, Any]]], total: int, child: dict[str, float] | None
) -> dict[str, Any]:
    end = child["end"] if child else math.nan
    streams = []
    for _, res in results:
        for kind, data in res["kinds"].items():
            for s in data["streams"]:
                complete = s["lines"] == total and s["last"] == total - 1 and s["order_errors"] == 0
                streams.append(
                    {
                        "kind": kind.upper(),
                        "complete": complete,
                        "after_exit": (s["t_last"] - end) if s["t_last"] else math.inf,
                        "lines": s["lines"],
                        "skipped": s["skipped"],
                        "announced": s["announced"],
                    }
                )
    slowest = max((s["after_exit"] for s in streams), default=math.nan)
    return {
        "slowest": slowest,
        "complete": sum(s["complete"] for s in streams),
        "streams": len(streams),
        "all_ok": bool(streams) and all(s["complete"] for s in streams),
        "silent": sum(max(0, s["skipped"] - s["announced"]) for s in streams),
        "fewest_lines": min((s["lines"] for s in streams), default=0),
    }


def latency_figures(results: list[tuple[int, dict[str, Any]]], total: int, split: bool) -> dict[str, Any]:
    """Per kind (SSE, WS) over every stream; with `split`, also per replica (both kinds)."""
    groups: dict[str, list[dict[str, Any]]] = {"SSE": [], "WS": []}
    if split:
        groups |= {f"replica {at + 1}": [] for at in sorted({at for at, _ in results})}
    for at, res in results:
        for kind, data in res["kinds"].items():
            groups[kind.upper()].append(data)
            if split:
                groups[f"replica {at + 1}"].append(data)
    groups = {name: datas for name, datas in groups.items() if datas}
    rows = []
    for name, datas in groups.items():
        histogram = LatencyHistogram()
        streams = [s for data in datas for s in data["streams"]]
        for data in datas:
            histogram.merge(LatencyHistogram.from_json(data["hist"]))
        expected = len(streams) * total
        lines = sum(s["lines"] for s in streams)
        rows.append(
            {
                "name": name,
                "n": len(streams),
                "complete": sum(1 for s in streams if s["lines"] == total and s["last"] == total - 1),
                "delivered": lines / expected if expected else math.nan,
                "p50": histogram.percentile(50, expected),
                "p99": histogram.percentile(99, expected),
                "max": histogram.max_value() if lines == expected else math.inf,
                "skipped": sum(s["skipped"] for s in streams),
                "announced": sum(s["announced"] for s in streams),
                "errors": sorted({e for data in datas for e in data["errors"]})[:3],
            }
        )
    return {"rows": rows}


def seconds(x: float, timeout: float) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return f"not done (>{timeout:.0f} s)"
    return f"{x:.2f} s"


def print_cpu(r: dict[str, Any]) -> None:
    for label, f in r["cpu"].items():
        print(
            f"    {label:<13} CPU {f['cpu_s']:6.1f} s over {f['wall_s']:.1f} s = {f['cpu_pct']:4.0f}% of a core; "
            f"peak RSS {f['peak_rss_mb']:4.0f} MB; main thread waiting for a CPU {f['loop_wait_s']:.1f} s"
        )
    total = sum(f["cpu_s"] for f in r["cpu"].values())
    m = r["machine"]
    if m:
        ours = total + m["clients_s"] + m["child_s"]
        print(
            f"    {'together':<13} CPU {total:6.1f} s; the child {m['child_s']:.1f} s, the client processes "
            f"{m['clients_s']:.1f} s; the machine was busy {m['busy_s']:.1f} of {m['capacity_s']:.1f} CPU-s, "
            f"{m['busy_s'] - ours:.1f} s of it not this benchmark's"
        )
    if r["redis_memory"]:
        m = r["redis_memory"]
        print(
            f"    redis-server INFO memory: used_memory_peak_human {m['used_memory_peak_human']} (now {m['used_memory_human']})"
        )


def print_burst(r: dict[str, Any], timeout: float) -> None:
    print(
        f"\n{r['label']}: burst, {r['total']:,} lines, {r['n_sse']} SSE + {r['n_ws']} WS (load {r['load']:.1f})"
    )
    c = r["child"]
    if c:
        span = c["end"] - c["start"]
        print(
            f"  child: {c['lines']:,} lines in {span:.2f} s ({c['lines'] / span:,.0f} lines/s), then exited"
        )
    print(
        f"  last line at the slowest client, after the child's exit: {seconds(r['slowest'], timeout)}; "
        f"every line in order: {'yes' if r['all_ok'] else 'NO'} ({r['complete']} of {r['streams']} clients"
        + ("" if r["all_ok"] else f", the poorest got {r['fewest_lines']:,} lines")
        + ")"
    )
    if r["silent"]:
        print(f"  {r['silent']:,} LINES SKIPPED WITHOUT NOTICE (all clients together)")
    if r["hub"]:
        h = r["hub"]
        print(
            f"  stats at the end: last seq {h['last_seq']:,}, persisted {h['persisted_seq']:,}, "
            f"store_lost {h['store_lost']:,}, dropped {h['dropped']:,}"
        )
    print_cpu(r)
    for note in r["notes"]:
        print(f"  NOTE: {note}")


def print_latency(r: dict[str, Any], drain: float) -> None:
    print(
        f"\n{r['label']}: latency, {r['total']:,} lines per client, {r['n_sse']} SSE + {r['n_ws']} WS "
        f"(load {r['load']:.1f})"
    )
    missing = f">{drain:.0f}s/lost"
    print(f"  {'streams':<14}{'complete':>9}{'delivered':>11}{'p50':>10}{'p99':>10}{'max':>10}")
    for row in r["rows"]:
        print(
            f"  {row['name'] + ' (' + str(row['n']) + ')':<14}{row['complete']:>9}{100 * row['delivered']:>10.2f}%"
            f"{format_ms(row['p50'], missing):>10}{format_ms(row['p99'], missing):>10}{format_ms(row['max'], missing):>10}"
        )
        silent = row["skipped"] - row["announced"]
        if row["skipped"]:
            print(
                f"    {row['skipped']:,} lines skipped, {row['announced']:,} announced by gap notices"
                + (f"; {silent:,} LINES SKIPPED WITHOUT NOTICE" if silent > 0 else "")
            )
        if row["errors"]:
            print(f"    errors: {'; '.join(row['errors'])}")
    c = r["child"]
    if c:
        span = c["end"] - c["start"]
        print(
            f"  child: {c['lines']:,} lines in {span:.2f} s = {c['lines'] / span:,.0f} lines/s; "
            f"a batch was written up to {1000 * c['late_max']:.0f} ms after its due time"
        )
    print_cpu(r)
    for note in r["notes"]:
        print(f"  NOTE: {note}")


def med(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def print_summary(runs: list[dict[tuple[str, str], dict[str, Any]]], args: argparse.Namespace) -> None:
    print(f"\nmedian of {len(runs)} runs (load average at the start of each measurement in brackets)")
    missing = f">{args.drain:.0f}s/lost"
    for (kind, mode), first in runs[0].items():
        rs = [run[(kind, mode)] for run in runs]
        loads = ", ".join(f"{r['load']:.1f}" for r in rs)
        cpu = ", ".join(
            f"{label} {med([r['cpu'][label]['cpu_s'] for r in rs]):.1f} s" for label in first["cpu"]
        )
        if mode == "burst":
            print(
                f"  {first['label']}, burst of {first['total']:,} lines to {first['n_sse']} SSE + {first['n_ws']} WS "
                f"[{loads}]: last line {seconds(med([r['slowest'] for r in rs]), args.timeout)} after the "
                f"child's exit; every line in order in {sum(r['all_ok'] for r in rs)} of {len(rs)} runs"
            )
        else:
            named = [{row["name"]: row for row in r["rows"]} for r in rs]
            rows = ", ".join(
                f"{name} p50 {format_ms(med([n[name]['p50'] for n in named if name in n]), missing)} "
                f"p99 {format_ms(med([n[name]['p99'] for n in named if name in n]), missing)}"
                for name in named[0]
            )
            delivered = min(row["delivered"] for r in rs for row in r["rows"])
            print(
                f"  {first['label']}, {args.rate:,.0f} lines/s to {first['n_sse']} SSE + {first['n_ws']} WS "
                f"[{loads}]: {rows}; delivered at least {100 * delivered:.2f}%"
            )
        print(f"    CPU: {cpu}")
        peaks = [r["redis_memory"].get("used_memory_peak_human") for r in rs if r["redis_memory"]]
        if peaks:
            print(f"    redis used_memory_peak_human per run: {', '.join(str(p) for p in peaks)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lines", type=int, default=1_000_000, help="burst: lines the child writes (1,000,000)"
    )
    parser.add_argument("--burst-sse", type=int, default=10, help="burst: SSE clients (10)")
    parser.add_argument("--burst-ws", type=int, default=10, help="burst: WebSocket clients (10)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="burst: stop the clients this long after the child's exit (120)",
    )
    parser.add_argument("--sse", type=int, default=100, help="latency: SSE clients (100)")
    parser.add_argument("--ws", type=int, default=100, help="latency: WebSocket clients (100)")
    parser.add_argument("--rate", type=float, default=10_000, help="latency: child lines/s (10000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency: how long the child writes (10)")
    parser.add_argument(
        "--batch-ms", type=float, default=1.0, help="latency: the child writes every N ms (1)"
    )
    parser.add_argument(
        "--drain", type=float, default=20.0, help="latency: wait this long for late lines (20)"
    )
    parser.add_argument("--only", default="burst,latency", help="measurements: burst, latency or both (both)")
    parser.add_argument("--setups", default="serve,cluster", help="serve, cluster or both (both)")
    parser.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="replicas on the cluster; the clients go in max(2, N) processes, process i on replica i (2)",
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat everything K times; median summary (1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the smallest mode, to check that it works: 20,000 lines and 2,000 lines/s for 2 s to 2 SSE + 2 WS",
    )
    add_ws_client_options(parser)
    parser.set_defaults(ws_client="raw")  # as the README's figures: the websockets client falls behind
    for action in parser._actions:
        if action.dest == "ws_client":
            action.help = "WebSocket client: a minimal frame parser (raw, default) or the websockets library"
    args = parser.parse_args()
    check_ws_client_options(parser, args)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    modes = [m for m in ("burst", "latency") if m in args.only.split(",")]
    kinds = [k for k in SETUPS if k in args.setups.split(",")]
    if args.replicas < 1:
        parser.error("--replicas takes 1 or more")
    if not modes or not kinds:
        parser.error("--only takes burst,latency and --setups takes serve,cluster")

    print(
        f"cluster: {', then '.join(setup_label(k, args.replicas) for k in kinds)}; clients join with lines=0 before the child "
        f"starts, in two processes (one per replica if there are more), each with its share of the SSE "
        f"and WS streams, on the cluster each on its own replica; WebSocket format=text, {args.ws_client} client; CPU per process is its own (children "
        f"excluded), from the child's start to the last client done; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    runs: list[dict[tuple[str, str], dict[str, Any]]] = []
    for run in range(args.runs):
        if args.runs > 1:
            print(f"\n=== run {run + 1} of {args.runs} ===")
        results: dict[tuple[str, str], dict[str, Any]] = {}
        for mode in modes:
            for kind in kinds:
                r = measure(args, kind, mode)
                if mode == "burst":
                    print_burst(r, args.timeout)
                else:
                    print_latency(r, args.drain)
                sys.stdout.flush()
                results[(kind, mode)] = r
        runs.append(results)
    if args.runs > 1:
        print_summary(runs, args)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
