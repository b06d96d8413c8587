"""`logcast tail` under a flood: a child writes 1,000,000 lines as fast as it can, followed
from its start by `logcast tail NAME` (and `--bare`), and in the same run by `pm2 logs NAME`
under PM2 (when `pm2` is installed) and `tail -F` on a file (the floor), each printing into a
pipe read by bench/lib/tail_reader.py. Per follower: when the last line came out of the pipe,
after the child's first write and after its exit; the follower's own CPU (user + sys of its
process, from its start: before the child started, and in all); every line, in order?
`--runs N` rotates the followers' order per run and prints medians.

    python bench/tail.py --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.lib, tests.util

from bench.lib.children import BURST_CHILD
from bench.lib.pm2_peer import PM2, pm2_path
from bench.lib.servers import PollUntil, Server, start_logcast, subprocess_env

PROCESS = "flood"
READER = Path(__file__).resolve().parent / "lib" / "tail_reader.py"
LOGCAST = ("logcast tail", "logcast tail --bare")
PEERS = ("pm2 logs", "pm2 logs --raw", "tail -F")


@dataclass
class Measure:
    """One follower in one run."""

    follower: str
    load: float  # the 1-minute load average when it began
    lines: int = 0
    complete: bool = False
    after_first: float = math.nan  # last line out of the pipe, after the child's first write
    after_exit: float = math.nan  # … after the child's last write
    cpu: float = math.nan  # the follower's user + sys, from its start to its stop
    cpu_before: float = math.nan  # … of which before the child started (imports, connecting)
    child_s: float = math.nan  # the child's time from its first write to its last
    server_has: float = math.nan  # logcast: the server counted the last line, after the first write
    server_cpu: float = math.nan  # logcast: the server's CPU from the child's start to the last line
    notes: list[str] = field(default_factory=list)


class Pipe:
    """A follower printing into the reader's pipe."""

    def __init__(self, tmp: Path, lines: int, name: str) -> None:
        self.report = tmp / f"reader-{name}.json"
        self.errors = tmp / f"follower-{name}.err"
        self.reader = subprocess.Popen(
            [sys.executable, str(READER), str(lines), str(self.report)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.follower: subprocess.Popen[bytes] | None = None

    def start(self, run: Callable[[int, int], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        assert self.reader.stdin is not None
        with open(self.errors, "wb") as err:
            self.follower = run(self.reader.stdin.fileno(), err.fileno())
        self.reader.stdin.close()  # the follower holds the pipe now: EOF when it exits
        return self.follower

    def stderr(self) -> str:
        try:
            return self.errors.read_text(errors="replace")
        except OSError:
            return ""

    def last_line(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.report.read_text()))
        except (OSError, ValueError):
            return None

    def stop(self, sig: int = signal.SIGINT) -> float:
        """Stop the follower by its process group; its user + sys CPU seconds."""
        cpu = math.nan
        if self.follower is not None:
            cpu = stop_with_rusage(self.follower, sig)
        elif self.reader.stdin is not None:
            self.reader.stdin.close()
        try:
            self.reader.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.reader.pid, signal.SIGKILL)
            self.reader.wait(5)
        return cpu


def stop_with_rusage(proc: subprocess.Popen[bytes], sig: int) -> float:
    """Signal `proc`'s group, reap it with wait4: its CPU seconds (user + sys)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    deadline = time.monotonic() + 10
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            deadline = math.inf
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):  # whatever the group left behind
        os.killpg(proc.pid, signal.SIGKILL)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return math.nan
    return float(times.user + times.system)


def settle(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool] = lambda: True, timeout: float = 30
) -> None:
    """Wait until the follower is `ready` and idle (its CPU time still over 0.3 s)."""
    deadline = time.monotonic() + timeout
    time.sleep(0.5)
    last = -1.0
    while time.monotonic() < deadline and proc.poll() is None:
        cpu = process_cpu(proc.pid)
        if ready() and cpu == last:
            return
        last = cpu
        time.sleep(0.3)
    if proc.poll() is not None:
        raise RuntimeError(f"the follower exited with {proc.returncode} before the child started")


def wait_last_line(pipe: Pipe, child_report: Path, timeout: float) -> tuple[dict[str, Any] | None, str]:
    """The reader's report once the last line came; None (and why) when the child ended more
    than `timeout` s before without it, or the follower died."""
    exited_at: float | None = None
    give_up = time.monotonic() + 300 + timeout  # the child itself has 300 s
    while time.monotonic() < give_up:
        report = pipe.last_line()
        if report is not None:
            return report, ""
        if pipe.follower is not None and pipe.follower.poll() is not None:
            return None, f"the follower exited ({pipe.follower.returncode}): {pipe.stderr()[-300:]}"
        if exited_at is None and child_report.exists():
            exited_at = time.monotonic()
        if exited_at is not None and time.monotonic() - exited_at > timeout:
            return None, f"the last line had not come {timeout:.0f} s after the child's exit"
        time.sleep(0.01)
    return None, "the child did not finish"


def finish(m: Measure, pipe: Pipe, child_report: Path, report: dict[str, Any] | None, cpu: float) -> None:
    m.cpu = cpu
    final = pipe.last_line() or report or {}
    m.lines = int(final.get("lines", 0))
    m.complete = bool(final.get("complete"))
    if final.get("disorder"):
        m.notes.append(f"{final['disorder']} lines out of order (repeated, skipped or back)")
    if not m.complete:
        said = " | ".join(line for line in pipe.stderr().splitlines()[-6:] if line.strip())
        m.notes.append(f"the follower's last words on stderr: {said[-600:] or '(none)'}")
    try:
        child = json.loads(child_report.read_text())
    except (OSError, ValueError):
        m.notes.append("no report from the child")
        return
    m.child_s = child["end"] - child["start"]
    if report is not None and report.get("last_at"):
        m.after_first = report["last_at"] - child["start"]
        m.after_exit = report["last_at"] - child["end"]


def child_command(tmp: Path, lines: int, report: Path) -> list[str]:
    script = tmp / "child.py"
    if not script.exists():
        script.write_text(BURST_CHILD)
    return [sys.executable, str(script), str(lines), str(report)]


# -- the followers ------------------------------------------------------------------------


def measure_logcast(tmp: Path, lines: int, bare: bool, timeout: float, source: Path | None = None) -> Measure:
    """`logcast tail` (`--bare`) of this tree, or of the tree at `source` (another checkout:
    its `src` first on the tail's PYTHONPATH; the server is this tree's)."""
    name = "bare" if bare else "tail"
    m = Measure(f"logcast tail ({source.name})" if source else LOGCAST[bare], os.getloadavg()[0])
    env = subprocess_env()
    if source is not None:
        name = "other"
        env["PYTHONPATH"] = os.pathsep.join([str(source / "src"), env.get("PYTHONPATH", "")])
    child_report = tmp / f"child-{name}.json"
    (tmp / name).mkdir()
    server = start_logcast(tmp / name, {PROCESS: child_command(tmp, lines, child_report)})
    pipe = Pipe(tmp, lines, name)
    report = None
    cpu = math.nan
    poll: PollUntil | None = None
    try:
        command = [sys.executable, "-m", "logcast", "tail", PROCESS, "--url", server.url]
        if bare:
            command.append("--bare")
        follower = pipe.start(
            lambda out, err: subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        )
        # imported, asked the server, waiting for the process to run (every second)
        settle(follower, lambda: "not running" in pipe.stderr())
        m.cpu_before = process_cpu(follower.pid)
        server_cpu = process_cpu(server.pid)
        poll = counted(server, lines)
        server.start(PROCESS)
        report, why = wait_last_line(pipe, child_report, timeout)
        m.server_cpu = process_cpu(server.pid) - server_cpu
        if why:
            m.notes.append(why)
    finally:
        if poll is not None:
            poll.stop()
        cpu = pipe.stop(signal.SIGINT)
        server.stop()
    finish(m, pipe, child_report, report, cpu)
    with contextlib.suppress(OSError, ValueError, KeyError):
        if poll is not None and poll.at is not None:
            m.server_has = poll.at - json.loads(child_report.read_text())["start"]
    return m


def counted(server: Server, lines: int) -> PollUntil:
    """When the server had counted the child's last line (its `lines`)."""
    return PollUntil(lambda: int(server.http("GET", f"/api/processes/{PROCESS}")["lines"]) >= lines)


def measure_pm2(tmp: Path, lines: int, raw: bool, timeout: float) -> Measure:
    name = "pm2-raw" if raw else "pm2"
    m = Measure(PEERS[raw], os.getloadavg()[0])
    child_report = tmp / f"child-{name}.json"
    child = child_command(tmp, lines, child_report)
    pm2 = PM2(tmp / f"{name}-home")
    pipe = Pipe(tmp, lines, name)
    report = None
    cpu = math.nan
    try:
        pm2.start_daemon()
        args = ["logs", PROCESS, "--lines", "0"] + (["--raw"] if raw else [])
        follower = pipe.start(lambda out, err: pm2.follower(args, out, err))
        settle(follower)
        m.cpu_before = process_cpu(follower.pid)
        pm2.run(
            "start",
            child[1],
            "--name",
            PROCESS,
            "--interpreter",
            child[0],
            "--no-autorestart",
            "--",
            *child[2:],
        )
        report, why = wait_last_line(pipe, child_report, timeout)
        if why:
            m.notes.append(why)
    finally:
        cpu = pipe.stop(signal.SIGINT)
        pm2.kill()
    finish(m, pipe, child_report, report, cpu)
    return m


def measure_tail_f(tmp: Path, lines: int, timeout: float) -> Measure:
    m = Measure("tail -F", os.getloadavg()[0])
    child_report = tmp / "child-tail-F.json"
    log = tmp / "flood.log"
    log.write_bytes(b"")
    pipe = Pipe(tmp, lines, "tail-F")
    report = None
    cpu = math.nan
    child: subprocess.Popen[bytes] | None = None
    try:
        follower = pipe.start(
            lambda out, err: subprocess.Popen(
                ["tail", "-F", "-n", "0", "-s", "0.1", str(log)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        )
        settle(follower)
        m.cpu_before = process_cpu(follower.pid)
        with open(log, "ab") as f:
            child = subprocess.Popen(
                child_command(tmp, lines, child_report),
                stdout=f,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        report, why = wait_last_line(pipe, child_report, timeout)
        if why:
            m.notes.append(why)
    finally:
        cpu = pipe.stop(signal.SIGTERM)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(30)
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(5)
    finish(m, pipe, child_report, report, cpu)
    return m


# -- the report ---------------------------------------------------------------------------


def seconds(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f} s"


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def print_measure(m: Measure, lines: int) -> None:
    per_million = (m.cpu - m.cpu_before) / max(lines, 1) * 1e6
    print(
        f"  {m.follower:<20} last line {seconds(m.after_first)} after the child's first write, "
        f"{seconds(m.after_exit)} after its exit; CPU {seconds(m.cpu)} ({seconds(m.cpu_before)} before the "
        f"child, {per_million:.2f} s per million lines after); lines {m.lines:,}"
        f"{' all, in order' if m.complete else ' INCOMPLETE'}; child {seconds(m.child_s)}; load {m.load:.2f}"
    )
    if not math.isnan(m.server_has):
        print(
            f"    the server had counted the last line {seconds(m.server_has)} after the child's first "
            f"write (polled every 20 ms); its CPU from the child's start to the last line out: "
            f"{seconds(m.server_cpu)}"
        )
    for note in m.notes:
        print(f"    NOTE: {note}")


def print_summary(runs: list[list[Measure]], lines: int, followers: list[str]) -> None:
    print(f"\nMedians of {len(runs)} run(s), {lines:,} lines")
    head = (
        "| follower | last line after the child's first write | after its exit | follower CPU "
        "| of it before the child | CPU per million lines after | every line, in order | child's time |"
    )
    print(head)
    print("|" + "---|" * head.count(" | ") + "---|")
    for name in followers:
        ms = [m for run in runs for m in run if m.follower == name]
        if not ms:
            continue
        cpu = median([m.cpu for m in ms])
        before = median([m.cpu_before for m in ms])
        after = median([(m.cpu - m.cpu_before) / max(lines, 1) * 1e6 for m in ms])
        complete = sum(m.complete for m in ms)
        print(
            f"| {name} | {seconds(median([m.after_first for m in ms]))} "
            f"| {seconds(median([m.after_exit for m in ms]))} "
            f"| {seconds(cpu)} | {seconds(before)} | {seconds(after)} | {complete} of {len(ms)} runs "
            f"| {seconds(median([m.child_s for m in ms]))} |"
        )
    for name in followers:
        ms = [m for run in runs for m in run if m.follower == name and not math.isnan(m.server_has)]
        if ms:
            print(
                f"{name}: the server counted the last line {seconds(median([m.server_has for m in ms]))} "
                f"after the child's first write; server CPU {seconds(median([m.server_cpu for m in ms]))}"
            )
    loads = [m.load for run in runs for m in run]
    print(f"load average (1 min) at the start of the measurements: {min(loads):.2f}-{max(loads):.2f}")


def rotated(items: list[str], k: int) -> Iterator[str]:
    k %= len(items)
    yield from items[k:] + items[:k]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines the child writes (1,000,000)")
    parser.add_argument(
        "--runs", type=int, default=1, help="repeat N times, followers' order rotated; medians (1)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="give a follower up this long after the child's exit (60)"
    )
    parser.add_argument(
        "--only",
        default="",
        help="a comma-separated subset of: " + ", ".join(f"'{f}'" for f in LOGCAST + PEERS),
    )
    parser.add_argument(
        "--compare",
        type=Path,
        help="also `logcast tail` of another checkout of logcast (e.g. a git worktree of an older commit)",
    )
    args = parser.parse_args()
    followers = list(LOGCAST + PEERS)
    if args.only:
        wanted = [f.strip() for f in args.only.split(",") if f.strip()]
        unknown = [f for f in wanted if f not in followers]
        if unknown:
            parser.error(f"unknown follower(s): {', '.join(unknown)}")
        followers = wanted
    if args.compare is not None:
        if not (args.compare / "src" / "logcast").is_dir():
            parser.error(f"{args.compare} is not a checkout of logcast (no src/logcast)")
        followers.append(f"logcast tail ({args.compare.name})")
    if pm2_path() is None:
        skipped = [f for f in followers if f.startswith("pm2")]
        if skipped:
            print("pm2 is not installed (npm install -g pm2): skipping " + ", ".join(skipped))
        followers = [f for f in followers if not f.startswith("pm2")]
    print(f"{args.lines:,} lines, {args.runs} run(s); load average {os.getloadavg()[0]:.2f} at the start")
    runs: list[list[Measure]] = []
    for k in range(args.runs):
        print(f"\nrun {k + 1}")
        results: list[Measure] = []
        for follower in rotated(followers, k):
            with tempfile.TemporaryDirectory(prefix="logcast-tail-bench-") as d:
                tmp = Path(d)
                if follower in LOGCAST:
                    m = measure_logcast(tmp, args.lines, follower == LOGCAST[1], args.timeout)
                elif follower.startswith("logcast tail ("):
                    m = measure_logcast(tmp, args.lines, False, args.timeout, args.compare)
                elif follower.startswith("pm2"):
                    m = measure_pm2(tmp, args.lines, follower.endswith("--raw"), args.timeout)
                else:
                    m = measure_tail_f(tmp, args.lines, args.timeout)
            print_measure(m, args.lines)
            results.append(m)
        runs.append(results)
    print_summary(runs, args.lines, followers)


if __name__ == "__main__":
    main()
