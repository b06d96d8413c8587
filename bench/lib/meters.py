"""CPU and memory of what is measured, taken from outside (psutil, /proc, DevTools) so that
the measuring costs the measured process nothing."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.lib.devtools import Chromium


class ServerMeter:
    """Server CPU (its own process, children excluded) and RSS, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.cpu0 = self.cpu1 = 0.0
        self.t0 = self.t1 = 0.0
        self.sched0 = (math.nan, math.nan)

    def rss(self) -> int:
        try:
            return int(self.proc.memory_info().rss)
        except Exception:
            return 0

    def cpu(self) -> float:
        try:
            t = self.proc.cpu_times()
            return float(t.user + t.system)
        except Exception:
            return math.nan

    def schedstat(self) -> tuple[float, float]:
        """(seconds on a CPU, seconds runnable but waiting for a CPU) of the main thread,
        which runs the event loop; (nan, nan) where /proc has no schedstat."""
        pid = self.proc.pid
        return _sched_threads(pid).get(str(pid), (math.nan, math.nan))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, self.rss())

    def start(self) -> None:
        self.sched0 = self.schedstat()
        self.cpu0, self.t0 = self.cpu(), time.monotonic()
        self.peak_rss = self.rss()
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self.cpu1, self.t1 = self.cpu(), time.monotonic()
        sched1 = self.schedstat()
        rss = self.rss()
        self.peak_rss = max(self.peak_rss, rss)
        self._stop.set()
        self._thread.join(2)
        wall = max(self.t1 - self.t0, 1e-9)
        return {
            "cpu_s": self.cpu1 - self.cpu0,
            "wall_s": wall,
            "cpu_pct": 100.0 * (self.cpu1 - self.cpu0) / wall,
            "rss_mb": rss / 2**20,
            "peak_rss_mb": self.peak_rss / 2**20,
            "loop_cpu_s": sched1[0] - self.sched0[0],
            "loop_wait_s": sched1[1] - self.sched0[1],
        }


def _sched_threads(pid: int) -> dict[str, tuple[float, float]]:
    """Each thread of `pid`: (seconds on a CPU, seconds runnable but waiting for one),
    from /proc's schedstat; {} where it cannot be read (the process has ended)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
            out[tid] = (int(fields[0]) / 1e9, int(fields[1]) / 1e9)
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile: its last reading stands
    return out


class SchedMeter:
    """Each process of a run (the server, its child, the followers) over the same window:
    the share of the time it was on a CPU, and the share it was runnable but waited for
    one. On two shared cores the waits are what the processes cost each other: a line
    waits as long as the process it is in. Read every `interval` s on a thread, thread
    by thread, so that a thread or a process that ends in the window (a reader thread,
    the child) counts until its last reading."""

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.start = {label: _sched_threads(pid) for label, pid in pids.items()}
        self.last = {label: dict(threads) for label, threads in self.start.items()}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for label, pid in self.pids.items():
            self.last[label].update(_sched_threads(pid))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._read()

    def stop(self, over: float | None = None) -> dict[str, tuple[float, float]]:
        """label -> (% of a core on a CPU, % of the time waiting for one), of `over`
        seconds (the time the work took, when the window holds idle time too) or of the
        window."""
        self._stop.set()
        self._thread.join(2)
        self._read()
        wall = max(over if over is not None else time.monotonic() - self.t0, 1e-9)
        shares = {}
        for label in self.pids:
            start, last = self.start[label], self.last[label]
            if not last:
                shares[label] = (math.nan, math.nan)
                continue
            run = sum(r - start.get(tid, (0.0, 0.0))[0] for tid, (r, _) in last.items())
            wait = sum(w - start.get(tid, (0.0, 0.0))[1] for tid, (_, w) in last.items())
            shares[label] = (100.0 * run / wall, 100.0 * wait / wall)
        return shares


def sched_line(shares: dict[str, tuple[float, float]]) -> str:
    """`SchedMeter.stop()` as one line of a benchmark's output."""
    parts = [
        f"{label} {run:.0f}% / {wait:.0f}%"
        for label, (run, wait) in shares.items()
        if not (math.isnan(run) or math.isnan(wait))
    ]
    return "  on a CPU / waiting for one: " + ", ".join(parts) if parts else ""


def event_loop_line(figures: dict[str, float]) -> str:
    """How busy the server's event-loop thread was (from `ServerMeter.stop()`): on a CPU, and
    runnable but waiting for one (the machine is shared: that is time other processes took)."""
    if math.isnan(figures.get("loop_cpu_s", math.nan)):
        return ""
    busy = 100.0 * (figures["loop_cpu_s"] + figures["loop_wait_s"]) / figures["wall_s"]
    return (
        f"  event-loop thread: on a CPU {figures['loop_cpu_s']:.1f} s, runnable but waiting for a CPU "
        f"{figures['loop_wait_s']:.1f} s, of {figures['wall_s']:.1f} s ({busy:.0f}% busy or queued)"
    )


class BrowserCpuMeter:
    """CPU seconds per Chromium process kind (DevTools SystemInfo.getProcessInfo) and of the
    logcast server process (its threads, not its children)."""

    def __init__(self) -> None:
        self.chrome: Chromium | None = None
        self.server_pid: int | None = None

    def snapshot(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.chrome is not None:
            with contextlib.suppress(Exception):
                for p in self.chrome.send("SystemInfo.getProcessInfo", timeout=10)["processInfo"]:
                    kind = str(p.get("type", "other"))
                    kind = "network" if "Network" in kind else kind.lower()
                    out[kind] = out.get(kind, 0.0) + float(p["cpuTime"])
        if self.server_pid:
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{self.server_pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out["logcast server"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return out

    @staticmethod
    def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: b[k] - a.get(k, 0.0) for k in b if b[k] - a.get(k, 0.0) > 0.005}

    @staticmethod
    def line(d: dict[str, float], wall: float) -> str:
        order = ["renderer", "network", "browser", "gpu", "logcast server"]
        keys = [k for k in order if k in d] + sorted(k for k in d if k not in order)
        parts = ", ".join(f"{k} {d[k]:.1f} s" for k in keys)
        total = sum(d.values())
        return f"CPU while loading: {parts}; {total:.1f} s of {wall:.1f} s wall on {os.cpu_count()} CPUs"
