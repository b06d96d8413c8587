"""What a supervisor costs while nothing happens: `--processes` children that print one line
and then sleep, under one `logcast serve` (nobody connected) and, in the same run, under a
PM2 daemon of our own (when `pm2` is installed). Per run: the manager's CPU (user + sys of
its process, children excluded) over `--seconds`, as % of one core, after a settling time;
medians of `--runs`.

    python bench/idle.py [--processes 10] [--seconds 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.lib, tests.util

from bench.lib.pm2_peer import PM2, pm2_path
from bench.lib.servers import serve

CHILD = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(3600)"]
SETTLE = 5.0  # s after the start before measuring: imports, first samples, first lines


def cpu_percent(pid: int, seconds: float) -> float:
    """% of one core that `pid` itself used over the next `seconds`."""
    process = psutil.Process(pid)
    before, t0 = sum(process.cpu_times()[:2]), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (sum(process.cpu_times()[:2]) - before) / (time.monotonic() - t0)


def logcast_idle(processes: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory(prefix="logcast-idle-") as d:
        tmp = Path(d)
        parts = [f"[storage]\ndir = {json.dumps(str(tmp / 'data'))}\n"]
        parts += [f"[process.p{i}]\ncommand = {json.dumps(CHILD)}\n" for i in range(processes)]
        config = tmp / "logcast.toml"
        config.write_text("\n".join(parts))
        server = serve(tmp, config)
        try:
            time.sleep(SETTLE)
            return cpu_percent(server.pid, seconds)
        finally:
            server.stop()


def pm2_idle(processes: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory(prefix="logcast-idle-pm2-") as d:
        pm2 = PM2(Path(d) / "home")
        try:
            pm2.start_daemon()
            for i in range(processes):
                pm2.run("start", CHILD[0], "--name", f"p{i}", "--no-autorestart", "--", *CHILD[1:])
            assert pm2.daemon_pid is not None
            time.sleep(SETTLE)
            return cpu_percent(pm2.daemon_pid, seconds)
        finally:
            pm2.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=10, help="children, each silent after one line (10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the CPU is measured (20)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians (3)")
    args = parser.parse_args()
    managers = {"logcast serve": logcast_idle}
    if pm2_path() is not None:
        managers["PM2 daemon"] = pm2_idle
    figures: dict[str, list[float]] = {name: [] for name in managers}
    print(f"{args.processes} silent children, CPU of the manager's own process over {args.seconds:g} s")
    for run in range(args.runs):
        for name, idle in managers.items():
            figures[name].append(idle(args.processes, args.seconds))
            print(f"  run {run + 1}: {name:<14} {figures[name][-1]:.2f}% of a core")
    print(f"median of {args.runs} runs:")
    for name, values in figures.items():
        print(f"  {name:<14} {statistics.median(values):.2f}% of a core")


if __name__ == "__main__":
    main()
