"""How busy the whole machine was during a measurement (/proc/stat), so that a run that
shared its cores with someone else's work can be told apart from one that did not."""

from __future__ import annotations

import math
import os
import time


def _busy_total() -> tuple[float, float]:
    """(busy, busy + idle) CPU seconds of all CPUs since boot; (nan, nan) without /proc."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return math.nan, math.nan
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq + steal
    return busy / tick, (busy + idle + iowait) / tick


def process_cpu(pid: int, *, children: bool = False) -> float:
    """A process's CPU seconds (with `children`: only those of its children it has reaped)."""
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except Exception:
        return math.nan
    return float(t.children_user + t.children_system) if children else float(t.user + t.system)


class MachineMeter:
    """CPU seconds the machine spent busy between `start()` and `stop()`, of all it had."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.busy0 = self.total0 = math.nan

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.busy0, self.total0 = _busy_total()

    def stop(self) -> dict[str, float]:
        busy1, total1 = _busy_total()
        return {
            "busy_s": busy1 - self.busy0,
            "capacity_s": total1 - self.total0,
            "wall_s": time.monotonic() - self.t0,
            "cpus": float(os.cpu_count() or 1),
        }
