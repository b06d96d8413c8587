"""Resource sampler benchmark: what sampling 50 idle process trees every 2 s costs.

Starts `--trees` idle Python processes, each with an idle Python child (so trees have depth),
each tree in its own process group, and runs, in threads of their own and on the same
schedule (staggered by a fraction of the interval):

- `ResourceSampler.sample()` over the trees, as logcast runs it (one process-table scan per round);
- for comparison, the textbook way: per root `psutil.Process(pid).children(recursive=True)`
  and the same four reads per member (each `children()` call scans the whole process table);
- the baseline: the same loop doing nothing.

It prints each thread's CPU time (time.thread_time) per round, inside the call and over the
whole thread (wake-ups included), and as % of one core at a 2 s interval; the median of
`--runs` runs. Target: the sampler < 2% of one core. The cost grows with the number of
processes on the host (the scan) plus the trees' members; the script prints both. All
children are stopped by process group at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench, tests

from tests.util import stop_group, wait_for

from logcast.supervise.resources import ResourceSampler

TREE = "import subprocess, sys, time\nkid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\ntime.sleep(3600)\n"
TARGET_PERCENT = 2.0


def start_trees(n: int) -> list[subprocess.Popen[bytes]]:
    trees: list[subprocess.Popen[bytes]] = []
    for _ in range(n):
        trees.append(
            subprocess.Popen(
                [sys.executable, "-c", TREE],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
    for proc in trees:
        wait_for(lambda proc=proc: psutil.Process(proc.pid).children(), 60, f"the child of tree {proc.pid}")
    return trees


def naive_round(roots: Mapping[str, int]) -> None:
    """Per root: Process(pid) + children(recursive=True), and the sampler's four reads per member."""
    for pid in roots.values():
        try:
            root = psutil.Process(pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in members:
            try:
                with proc.oneshot():
                    proc.cpu_times()
                    proc.memory_info()
                    proc.num_threads()
                    proc.num_fds()
            except psutil.Error:
                pass


class Meter(threading.Thread):
    """Calls `work()` every `interval` s from `start + offset` until `end`; thread CPU time per round."""

    def __init__(
        self, work: Callable[[], object], start: float, offset: float, end: float, interval: float
    ) -> None:
        super().__init__(daemon=True)
        self.work, self.start_at, self.end, self.interval = work, start + offset, end, interval
        self.rounds: list[float] = []  # thread CPU seconds inside work(), per round
        self.whole = 0.0  # thread CPU seconds of the whole thread

    def run(self) -> None:
        t_all = time.thread_time()
        due = self.start_at
        while due < self.end:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t0 = time.thread_time()
            self.work()
            self.rounds.append(time.thread_time() - t0)
            due += self.interval
        self.whole = time.thread_time() - t_all


def one_run(roots: Mapping[str, int], seconds: float, interval: float) -> dict[str, dict[str, float]]:
    sampler = ResourceSampler(interval=interval)
    checked = sampler.sample(roots)
    assert len(checked) == len(roots) and all(r.processes == 2 for r in checked.values()), checked
    sampler = ResourceSampler(interval=interval)  # a fresh one: its first round is measured too
    start = time.monotonic() + 0.2
    end = start + seconds
    meters = {
        "sampler": Meter(lambda: sampler.sample(roots), start, 0.0, end, interval),
        "children() per root": Meter(lambda: naive_round(roots), start, interval / 3, end, interval),
        "baseline (empty)": Meter(lambda: None, start, 2 * interval / 3, end, interval),
    }
    for meter in meters.values():
        meter.start()
    for meter in meters.values():
        meter.join()
    sampler.close()
    out = {}
    for name, meter in meters.items():
        steady = meter.rounds[1:] or meter.rounds
        out[name] = {
            "rounds": len(meter.rounds),
            "first_ms": meter.rounds[0] * 1000,
            "per_round_ms": statistics.median(steady) * 1000,
            "whole_per_round_ms": meter.whole / len(meter.rounds) * 1000,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="per run")
    parser.add_argument(
        "--interval", type=float, default=2.0, help="between rounds (the %% is always at 2 s)"
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    trees: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        t0 = time.monotonic()
        trees = start_trees(args.trees)
        roots = {f"tree-{i}": proc.pid for i, proc in enumerate(trees)}
        print(f"{args.trees} trees of 2 idle Python processes started in {time.monotonic() - t0:.1f}s")
        runs = []
        for run in range(args.runs):
            load = os.getloadavg()[0]
            host = sum(1 for name in os.listdir("/proc") if name.isdigit())
            result = one_run(roots, args.seconds, args.interval)
            runs.append(result)
            print(f"run {run + 1}: {host} processes on the host, load {load:.2f}")
            for name, row in result.items():
                print(
                    f"  {name:22s} {row['rounds']:3.0f} rounds: {row['per_round_ms']:7.2f} ms/round in the call"
                    f" (first {row['first_ms']:6.2f} ms), {row['whole_per_round_ms']:7.2f} ms/round whole thread"
                )
        print(f"\nmedian of {args.runs} runs, {args.trees} trees, % of one core at a 2 s interval:")
        for name in runs[0]:
            call = statistics.median(r[name]["per_round_ms"] for r in runs)
            whole = statistics.median(r[name]["whole_per_round_ms"] for r in runs)
            first = statistics.median(r[name]["first_ms"] for r in runs)
            print(
                f"  {name:22s} {call:7.2f} ms/round = {call / 2000 * 100:5.2f}% in the call, "
                f"{whole:7.2f} ms/round = {whole / 2000 * 100:5.2f}% whole thread (first round {first:.2f} ms)"
            )
        sampler_whole = statistics.median(r["sampler"]["whole_per_round_ms"] for r in runs) / 2000 * 100
        verdict = "meets" if sampler_whole < TARGET_PERCENT else "MISSES"
        print(f"sampler {verdict} the target: {sampler_whole:.2f}% < {TARGET_PERCENT}% of one core")
    finally:
        for proc in trees:
            stop_group(proc)


if __name__ == "__main__":
    main()
