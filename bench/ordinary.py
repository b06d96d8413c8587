"""Latency at ordinary rates: a child writing one line per `write(2)` at 1,000 and 10,000
lines/s, followed by one `logcast tail`, one SSE and one WebSocket client, beside a bare
Python reader on the child's own pipe (the floor), measured in the same run."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.lib, tests.util

from bench.lib.children import PACED_CHILD
from bench.lib.clients import ClientProcess, wait_clients
from bench.lib.histogram import LatencyHistogram, bucket_index, format_ms
from bench.lib.meters import SchedMeter, ServerMeter, sched_line
from bench.lib.servers import ROOT, start_logcast, subprocess_env, wait_subscribers
from tests.util import stop_group

PROCESS = "src"
LINE = re.compile(rb"(\d{9}) +(\d+\.\d{6}) x")  # a child's line: its number and write time
QUIET = 1.5  # s the child waits before its first line, so that every follower is in place
HOPS = ROOT / "bench" / "lib" / "hops"  # the server's hop tracer (--hops), a sitecustomize
RELAY = ROOT / "bench" / "lib" / "relay.py"  # the floor of a server in between (--relay)


class LineFollower:
    """Reads a byte stream in a thread: each child line found in it is timed (arrival -
    write) and checked in order. For the bare reader and for `logcast tail`'s stdout."""

    def __init__(self, fd: int, expect: int) -> None:
        self.fd = fd
        self.expect = expect
        self.histogram = LatencyHistogram()
        self.lines = 0
        self.order_errors = 0
        self.last = -1
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        counts = self.histogram.counts
        rest = b""
        while True:
            try:
                data = os.read(self.fd, 1 << 20)
            except OSError:
                break
            if not data:
                break
            now = time.time()
            data = rest + data
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            for match in LINE.finditer(data, 0, cut):
                number, written = int(match[1]), float(match[2])
                ms = (now - written) * 1000.0
                index = bucket_index(ms)
                counts[index] = counts.get(index, 0) + 1
                self.histogram.max_ms = max(self.histogram.max_ms, ms)
                if number != self.last + 1:
                    self.order_errors += 1
                self.last = number
                self.lines += 1
            if self.lines >= self.expect:
                self.done.set()
        self.done.set()

    def row(self, label: str) -> dict[str, Any]:
        return {
            "label": label,
            "lines": self.lines,
            "in_order": self.order_errors == 0,
            "p50": self.histogram.percentile(50, self.expect),
            "p99": self.histogram.percentile(99, self.expect),
            "max": self.histogram.max_value() if self.lines >= self.expect else math.inf,
        }


def child_command(tmp: Path, rate: float, seconds: float) -> list[str]:
    """The paced child, one line per write, after `QUIET` seconds of silence."""
    script = tmp / "child.py"
    script.write_text(f"import time\ntime.sleep({QUIET})\n" + PACED_CHILD)
    return [sys.executable, str(script), str(rate), str(seconds), str(1000.0 / rate), str(tmp / "child.json")]


def bare(rate: float, seconds: float, expect: int) -> dict[str, Any]:
    """The floor: the child's stdout read by a plain Python loop, nothing in between."""
    with tempfile.TemporaryDirectory(prefix="logcast-ordinary-") as d:
        child = subprocess.Popen(
            child_command(Path(d), rate, seconds), stdout=subprocess.PIPE, start_new_session=True
        )
        assert child.stdout is not None
        follower = LineFollower(child.stdout.fileno(), expect)
        try:
            follower.done.wait(QUIET + seconds + 30)
            child.wait(10)
        finally:
            stop_group(child, timeout=3.0)
        follower.thread.join(5)
        return follower.row("bare Python reader on the pipe")


def latency_client(port: int, sse_path: str, ws_url: str, expect: int, seconds: float) -> ClientProcess:
    """One SSE and one raw WebSocket client, timing every line, in a process of their own."""
    return ClientProcess(
        {
            "mode": "latency",
            "port": port,
            "sse_path": sse_path,
            "ws_url": ws_url,
            "expect": expect,
            "max_seconds": 60 + QUIET + seconds,
            "ws_compression": False,
            "ws_client": "raw",
            "sse": 1,
            "ws": 1,
        }
    )


def tail_command(port: int) -> list[str]:
    command = [sys.executable, "-m", "logcast", "tail", PROCESS, "--url", f"http://127.0.0.1:{port}"]
    helped = subprocess.run([*command[:4], "--help"], capture_output=True, text=True, env=subprocess_env())
    extra = ["--interval", "0.2", "--max-attempts", "0"]
    if "--bare" in helped.stdout:
        extra.append("--bare")
    return command + extra


def through_logcast(rate: float, seconds: float, expect: int, *, hops: bool = False) -> dict[str, Any]:
    """One `logcast serve`, its child, one `logcast tail`, one SSE and one WebSocket client;
    with `hops`, the server traced hop by hop (bench/lib/hops)."""
    with tempfile.TemporaryDirectory(prefix="logcast-ordinary-") as d:
        tmp = Path(d)
        env = None
        if hops:
            path = os.pathsep.join([str(HOPS), subprocess_env()["PYTHONPATH"]])
            env = {"PYTHONPATH": path, "LOGCAST_BENCH_HOPS": str(tmp / "hops.json")}
        server = start_logcast(tmp, {PROCESS: child_command(tmp, rate, seconds)}, env=env)
        client: ClientProcess | None = None
        tail: subprocess.Popen[bytes] | None = None
        try:
            client = latency_client(
                server.port, server.sse_path(PROCESS), server.ws_url(PROCESS), expect, seconds
            )
            client.wait_ready(60)
            wait_subscribers(server, PROCESS, 2, 30)
            command = tail_command(server.port)
            tail = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=subprocess_env(),
            )
            assert tail.stdout is not None
            follower = LineFollower(tail.stdout.fileno(), expect)
            meter = ServerMeter(server.pid)
            meter.start()
            server.start(PROCESS)
            wait_subscribers(server, PROCESS, 3, QUIET)  # the tail connects while the child is quiet
            tail_cpu0 = _cpu(tail.pid)
            sched = SchedMeter(
                {"server": server.pid, **_children(server.pid), "tail": tail.pid, "clients": client.proc.pid}
            )
            finished = wait_clients([client], time.monotonic() + QUIET + seconds + 30)
            follower.done.wait(max(1.0, 10.0 if finished else 1.0))
            tail_cpu = _cpu(tail.pid) - tail_cpu0
            shares = sched.stop(over=seconds)
            figures = meter.stop()
            result = client.finish()
        finally:
            if tail is not None:
                stop_group(tail, timeout=3.0)
            if client is not None:
                client.kill()
            server.stop()
        traced = _read_hops(tmp / "hops.json") if hops else None
    rows = [
        follower.row("logcast tail" + (" --bare" if "--bare" in command else "")),
        *_client_rows(result, expect),
    ]
    sse = (result or {}).get("kinds", {}).get("sse", {})
    capture = (sse.get("capture_ms_p50"), sse.get("capture_ms_p99"))
    return {
        "rows": rows,
        "server_cpu_pct": figures["cpu_pct"],
        "tail_cpu_s": tail_cpu,
        "sched": shares,
        "capture": capture,
        "hops": traced,
    }


def _client_rows(result: dict[str, Any] | None, expect: int, prefix: str = "") -> list[dict[str, Any]]:
    """A row per stream kind of a client process's result."""
    rows = []
    for kind, data in (result or {}).get("kinds", {}).items():
        histogram = LatencyHistogram.from_json(data["hist"])
        streams = data["streams"]
        got = sum(s["lines"] for s in streams)
        rows.append(
            {
                "label": f"{prefix}{kind.upper()} client",
                "lines": got,
                "in_order": all(s["order_errors"] == 0 for s in streams),
                "p50": histogram.percentile(50, expect),
                "p99": histogram.percentile(99, expect),
                "max": histogram.max_value() if got >= expect else math.inf,
            }
        )
    return rows


def through_relay(rate: float, seconds: float, expect: int) -> dict[str, Any]:
    """The floor of a server in between (bench/lib/relay.py): the same child, an SSE and a
    WebSocket client in the same kind of client process, and a process copying raw lines
    to a pipe in place of the tail, all through a relay that does nothing else."""
    with tempfile.TemporaryDirectory(prefix="logcast-ordinary-") as d:
        tmp = Path(d)
        port_file = tmp / "relay.port"
        relay = subprocess.Popen(
            [
                sys.executable,
                str(RELAY),
                "--port-file",
                str(port_file),
                "--followers",
                "3",
                "--",
                *child_command(tmp, rate, seconds),
            ],
            start_new_session=True,
            env=subprocess_env(),
        )
        client: ClientProcess | None = None
        copy: subprocess.Popen[bytes] | None = None
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists():
                if relay.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the relay did not start")
                time.sleep(0.01)
            port = int(port_file.read_text())
            client = latency_client(port, "/sse", f"ws://127.0.0.1:{port}/ws", expect, seconds)
            client.wait_ready(60)
            copy = subprocess.Popen(
                [sys.executable, str(RELAY), "--copy", str(port)],
                stdout=subprocess.PIPE,
                start_new_session=True,
                env=subprocess_env(),
            )
            assert copy.stdout is not None
            follower = LineFollower(copy.stdout.fileno(), expect)
            sched = SchedMeter(
                {"relay": relay.pid, **_children(relay.pid), "copier": copy.pid, "clients": client.proc.pid}
            )
            finished = wait_clients([client], time.monotonic() + QUIET + seconds + 30)
            follower.done.wait(10.0 if finished else 1.0)
            shares = sched.stop(over=seconds)
            result = client.finish()
        finally:
            for proc in (copy, relay):
                if proc is not None:
                    stop_group(proc, timeout=3.0)
            if client is not None:
                client.kill()
    rows = [follower.row("relay: raw lines, a copying process"), *_client_rows(result, expect, "relay: ")]
    return {"rows": rows, "sched": shares}


def _children(pid: int, wait: float = QUIET) -> dict[str, int]:
    """The benchmark's child of a server (or of the relay, which starts it once its
    followers are in), within `wait` s: {"child": pid}, or {} if none came."""
    import psutil

    deadline = time.monotonic() + wait
    while True:
        try:
            for proc in psutil.Process(pid).children():
                if any(part.endswith("child.py") for part in proc.cmdline()):
                    return {"child": proc.pid}
        except psutil.Error:
            return {}
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.01)


def _read_hops(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        return {"error": f"no hops written ({exc})"}


def hops_lines(hops: dict[str, Any] | None) -> list[str]:
    """The server's hops (bench/lib/hops), p50 / p90 / p99 in ms, one line each."""
    if not hops:
        return []
    if "error" in hops:
        return [f"  hops: {hops['error']}"]
    out = [f"  where a line's time went in the server (p50 / p90 / p99 ms, {hops.get('lines', 0):,} chunks):"]
    for name, value in hops.items():
        if isinstance(value, list):
            out.append(f"    {name:<36}" + " / ".join(f"{v:.3f}" for v in value))
    return out


def capture_line(capture: tuple[float | None, float | None]) -> str | None:
    """Where a line's time goes: from the child's write to logcast's read of it (the record's
    timestamp, taken once the reader thread has the GIL back), the rest being logcast's way
    to the client; sampled per SSE read."""
    p50, p99 = capture
    if p50 is None or p99 is None:
        return None
    return f"  child write -> logcast's read stamp (SSE lines, per read): p50 {p50:.2f} ms, p99 {p99:.2f} ms"


def _cpu(pid: int) -> float:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except psutil.Error:
        return math.nan


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="1000,10000", help="lines/s, comma-separated (1000,10000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the child writes (5)")
    parser.add_argument("--runs", type=int, default=3, help="runs per rate; medians (3)")
    parser.add_argument(
        "--hops",
        action="store_true",
        help="trace the server hop by hop (bench/lib/hops: monkeypatched, so it costs a little itself)",
    )
    parser.add_argument(
        "--relay",
        action="store_true",
        help="also run the same followers through a minimal relay (bench/lib/relay.py): "
        "the floor of any server between the pipe and three sockets on this machine",
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    print(
        f"ordinary rates: a child writes one ~100-byte line per write(2) for {args.seconds:g} s; "
        f"latency = arrival - write time (0.01 ms buckets, upper edges); load {os.getloadavg()[0]:.2f}"
    )
    print("targets through logcast: p50 <= 0.3 ms, p99 <= 2 ms, every line")
    for rate in rates:
        expect = int(rate * args.seconds)
        runs: list[list[dict[str, Any]]] = []
        extras: list[dict[str, Any]] = []
        for run in range(args.runs):
            floor = bare(rate, args.seconds, expect)
            result = through_logcast(rate, args.seconds, expect, hops=args.hops)
            relayed = through_relay(rate, args.seconds, expect) if args.relay else {"rows": []}
            runs.append([floor, *relayed["rows"], *result["rows"]])
            extras.append(result)
            print(f"\n{rate:,.0f} lines/s, run {run + 1} of {args.runs} (load {os.getloadavg()[0]:.2f})")
            print_rows(runs[-1], expect)
            print(
                f"  server CPU {result['server_cpu_pct']:.0f}% of a core; the tail's CPU {result['tail_cpu_s']:.2f} s"
            )
            if relayed.get("sched") and (line := sched_line(relayed["sched"])):
                print(line.replace("  on a CPU", "  through the relay, on a CPU", 1))
            if line := sched_line(result["sched"]):
                print(line.replace("  on a CPU", "  through logcast, on a CPU", 1))
            if (line := capture_line(result["capture"])) is not None:
                print(line)
            for line in hops_lines(result["hops"]):
                print(line)
        if args.runs > 1:
            print(f"\n{rate:,.0f} lines/s, median of {args.runs} runs")
            medians = [
                {
                    "label": rows[0]["label"],
                    "lines": statistics.median(r["lines"] for r in rows),
                    "in_order": all(r["in_order"] for r in rows),
                    "p50": statistics.median(r["p50"] for r in rows),
                    "p99": statistics.median(r["p99"] for r in rows),
                    "max": statistics.median(r["max"] for r in rows),
                }
                for rows in zip(*runs, strict=True)
            ]
            print_rows(medians, expect)
            print(
                f"  server CPU {statistics.median(e['server_cpu_pct'] for e in extras):.0f}% of a core; "
                f"the tail's CPU {statistics.median(e['tail_cpu_s'] for e in extras):.2f} s"
            )


def print_rows(rows: list[dict[str, Any]], expect: int) -> None:
    print(f"  {'follower':<34}{'lines':>9}{'in order':>10}{'p50':>10}{'p99':>10}{'max':>10}")
    for row in rows:
        print(
            f"  {row['label']:<34}{row['lines']:>9,.0f}{'yes' if row['in_order'] else 'NO':>10}"
            f"{format_ms(row['p50'], 'lost'):>10}{format_ms(row['p99'], 'lost'):>10}{format_ms(row['max'], 'lost'):>10}"
        )
    short = [row["label"] for row in rows if row["lines"] < expect]
    if short:
        print(f"  NOTE: fewer than {expect:,} lines reached: {', '.join(short)}")


if __name__ == "__main__":
    main()
