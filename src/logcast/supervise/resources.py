"""CPU, memory, threads, open fds and GPU memory per process tree, sampled in a worker thread.

Reading /proc for 50 trees is milliseconds of blocking I/O: it runs off the event loop, with
one process-table scan per round (not one per tree, as `children(recursive=True)` would do).
NVML is imported only when first asked; without it the answer is `None`, never an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import psutil

__all__ = ["GpuProbe", "ResourceSampler", "Resources"]

logger = logging.getLogger(__name__)

# (pid, start time): a pid the kernel reuses is a new process. The start time is the raw
# `starttime` field of /proc/PID/stat (clock ticks since boot) on Linux, psutil's
# create_time() elsewhere; one sampler only ever uses one of the two.
Ident = tuple[int, float]

_PSUTIL_ERRORS = (psutil.Error, OSError)  # NoSuchProcess, ZombieProcess, AccessDenied, /proc races


@dataclass(frozen=True, slots=True)
class Resources:
    """One process tree (a root process and all its descendants) at one moment.

    `rss_bytes` sums each member's resident set, so pages the members share (a forked
    worker's copy-on-write memory, shared libraries) count once per member: an
    overestimate, never an underestimate. `cpu_percent` is relative to one core (a tree
    busy on 4 cores shows 400.0; rounded to 0.1) and is 0.0 on the first sample of a run
    (there is no earlier one to compare with). `gpu_memory_bytes` maps NVML's GPU index (as
    nvidia-smi numbers them) to the bytes the tree holds there, only GPUs it holds memory
    on (`{}`: none); `None` means no NVIDIA driver or no `nvidia-ml-py`. `sampled_at` is
    Unix time. `cpu_seconds_total` (user + system, for a Prometheus counter) never
    decreases during one run of the root: descendants that exited keep the CPU time they
    had when last seen. `processes` counts the members seen (the root included).
    """

    cpu_percent: float
    rss_bytes: int
    threads: int
    open_fds: int
    gpu_memory_bytes: Mapping[str, int] | None
    sampled_at: float
    cpu_seconds_total: float = 0.0
    processes: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The API's `resources` object (the contract's six keys; the counter and the
        member count are attributes for metrics and tests)."""
        gpu = self.gpu_memory_bytes
        return {
            "cpu_percent": self.cpu_percent,
            "rss_bytes": self.rss_bytes,
            "threads": self.threads,
            "open_fds": self.open_fds,
            "gpu_memory_bytes": None if gpu is None else dict(gpu),
            "sampled_at": self.sampled_at,
        }


class GpuProbe:
    """GPU memory per pid and GPU through NVML, or `None` when there is no NVML.

    On first use it imports `pynvml` (the `nvidia-ml-py` package) and calls `nvmlInit()`,
    once; if either fails the probe is off for good (one debug log line) and `usage()`
    returns `None`. Pass `nvml` (anything with pynvml's functions) to use it instead of
    the import. Per round, each GPU's compute and graphics processes are asked for; a pid
    listed in both (a "C+G" process in nvidia-smi) counts its memory once, the larger of
    the two. NVML reports host pids: under a PID namespace of its own (a container
    without `--pid=host`) no pid matches and trees show `{}`. Not thread-safe; the
    sampler calls it under its lock.
    """

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml = nvml
        self._state = "new"  # -> "on" | "off"
        self._devices: list[tuple[str, Any]] = []  # (NVML index as a string, handle)
        self._failed_devices: set[str] = set()  # logged once each

    @property
    def enabled(self) -> bool | None:
        """True once NVML answered, False once it could not, None before the first try."""
        return None if self._state == "new" else self._state == "on"

    def _start(self) -> bool:
        if self._state != "new":
            return self._state == "on"
        self._state = "off"
        try:
            nvml = self._nvml
            if nvml is None:
                import pynvml  # type: ignore[import-not-found,unused-ignore]  # optional: nvidia-ml-py

                nvml = pynvml
            nvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            logger.debug("GPU memory is not sampled: NVML is not available (%s: %s)", type(exc).__name__, exc)
            return False
        self._nvml = nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            logger.debug("GPU memory is not sampled: nvmlDeviceGetCount failed (%s)", exc)
            self._shutdown(nvml)
            return False
        for index in range(count):
            try:
                self._devices.append((str(index), nvml.nvmlDeviceGetHandleByIndex(index)))
            except Exception as exc:  # a GPU that fell off the bus: the others still count
                logger.debug("GPU %d is not sampled: %s", index, exc)
        self._state = "on"
        return True

    def usage(self) -> dict[int, dict[str, int]] | None:
        """{pid: {GPU index: bytes}} for every process NVML lists, or None without NVML."""
        if not self._start():
            return None
        nvml = self._nvml
        by_pid: dict[int, dict[str, int]] = {}
        for index, handle in self._devices:
            on_device: dict[int, int] = {}
            for query in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                try:
                    infos = getattr(nvml, query)(handle)
                except Exception as exc:  # GPU lost, a driver without this call, ...
                    if f"{index}:{query}" not in self._failed_devices:
                        self._failed_devices.add(f"{index}:{query}")
                        logger.debug("GPU %s: %s failed (%s)", index, query, exc)
                    continue
                for info in infos:
                    used = getattr(info, "usedGpuMemory", None)  # None: NVML_VALUE_NOT_AVAILABLE
                    pid = getattr(info, "pid", None)
                    if isinstance(pid, int) and isinstance(used, int) and used >= 0:
                        on_device[pid] = max(on_device.get(pid, 0), used)
            for pid, used in on_device.items():
                by_pid.setdefault(pid, {})[index] = used
        return by_pid

    def close(self) -> None:
        """nvmlShutdown() if NVML was started; the probe is off afterwards."""
        if self._state == "on":
            self._shutdown(self._nvml)
        self._state = "off"
        self._devices = []

    @staticmethod
    def _shutdown(nvml: Any) -> None:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


@dataclass(slots=True)
class _Tree:
    """What one root's run remembers between samples."""

    root: Ident
    cpu: dict[Ident, float] = field(default_factory=dict)  # last CPU seconds of each live member
    exited_cpu: float = 0.0  # of members no longer in the tree
    total: float = 0.0  # cpu_seconds_total at the last sample
    at: float | None = None  # clock() at the last sample


def _proc_table(proc: str = "/proc") -> dict[int, tuple[int, Ident]] | None:
    """{pid: (ppid, ident)} from one pass over /proc/*/stat, or None without /proc."""
    try:
        names = os.listdir(proc)
    except OSError:
        return None
    table: dict[int, tuple[int, Ident]] = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"{proc}/{name}/stat", os.O_RDONLY)
        except OSError:  # exited since the listdir
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        # "pid (comm) state ppid pgrp ... starttime(22nd) ...": comm may hold spaces and ')'
        fields = data[data.rfind(b")") + 2 :].split(b" ", 20)
        try:
            pid = int(name)
            table[pid] = (int(fields[1]), (pid, float(fields[19])))
        except (IndexError, ValueError):
            continue
    return table


def _psutil_table() -> dict[int, tuple[int, Ident]]:
    """The same table through psutil, where there is no /proc to read."""
    table: dict[int, tuple[int, Ident]] = {}
    for proc in psutil.process_iter(["ppid", "create_time"]):
        ppid, created = proc.info.get("ppid"), proc.info.get("create_time")
        if isinstance(ppid, int) and isinstance(created, float):
            table[proc.pid] = (ppid, (proc.pid, created))
    return table


class ResourceSampler:
    """Samples process trees: `sample(roots)` in a worker thread, or `run()` every `interval` s.

    Per round it reads the process table once (ppid and start time of every process),
    walks each root's descendants in it, and reads each member through a `psutil.Process`
    kept between rounds by (pid, start time). CPU percent comes from each member's CPU
    time delta since the last round over the `clock` delta; a member new to the tree
    counts its whole CPU time (it started within the interval). A member psutil cannot
    read (gone mid-read, a zombie, another user's) is skipped for that round, its last CPU
    time kept — `sample()` never raises for what the processes do. Not seen: a descendant
    that lived and died between two rounds, and one orphaned out of the tree (reparented
    to init when its parent died; what it had used stays counted). Thread-safe: one round
    at a time. `close()` shuts NVML down.
    """

    def __init__(
        self,
        *,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        gpu: GpuProbe | None = None,
        proc: str | None = "/proc",
    ) -> None:
        """`gpu=None` makes a `GpuProbe()` (NVML if installed and a driver answers);
        `proc=None` reads the process table through psutil even where /proc exists."""
        self.interval = interval
        self._clock = clock
        self._wall = wall
        self._gpu = gpu if gpu is not None else GpuProbe()
        self._proc = proc
        self._lock = threading.Lock()
        self._trees: dict[str, _Tree] = {}
        self._processes: dict[Ident, psutil.Process] = {}

    def sample(self, roots: Mapping[str, int]) -> dict[str, Resources]:
        """{name: Resources} for each root pid that is alive (a name whose pid is gone, or
        not a valid pid, has no entry). Blocking: run it in a worker thread."""
        with self._lock:
            table = _proc_table(self._proc) if self._proc is not None else None
            if table is None:
                table = _psutil_table()
            children: dict[int, list[int]] = {}
            for pid, (ppid, _) in table.items():
                if ppid != pid:
                    children.setdefault(ppid, []).append(pid)
            gpu = self._gpu.usage() if roots else None
            now, wall = self._clock(), self._wall()
            out: dict[str, Resources] = {}
            used: set[Ident] = set()
            for name, root in roots.items():
                if root <= 0 or root not in table:
                    continue
                members = self._members(root, table, children)
                used.update(members)
                out[name] = self._measure(name, members, gpu, now, wall)
            for name in [name for name in self._trees if name not in out]:
                del self._trees[name]  # stopped, or no longer asked about: its run is over
            for ident in [ident for ident in self._processes if ident not in used]:
                del self._processes[ident]
            return out

    @staticmethod
    def _members(
        root: int, table: dict[int, tuple[int, Ident]], children: dict[int, list[int]]
    ) -> list[Ident]:
        members: list[Ident] = []
        seen: set[int] = set()
        stack = [root]
        while stack:  # the table is read while processes come and go: guard against a cycle
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            members.append(table[pid][1])
            stack.extend(children.get(pid, ()))
        return members

    def _process(self, ident: Ident) -> psutil.Process | None:
        proc = self._processes.get(ident)
        if proc is None:
            try:
                proc = psutil.Process(ident[0])
            except _PSUTIL_ERRORS:
                return None
            self._processes[ident] = proc
        return proc

    def _measure(
        self,
        name: str,
        members: Iterable[Ident],
        gpu: dict[int, dict[str, int]] | None,
        now: float,
        wall: float,
    ) -> Resources:
        members = list(members)
        tree = self._trees.get(name)
        if tree is None or tree.root != members[0]:  # a new run (or a reused pid): a new counter
            tree = self._trees[name] = _Tree(members[0])
        rss = threads = fds = seen = 0
        cpu: dict[Ident, float] = {}
        gpu_bytes: dict[str, int] | None = None if gpu is None else {}
        for ident in members:
            if gpu is not None and gpu_bytes is not None:  # whether or not psutil may read it
                for index, used in gpu.get(ident[0], {}).items():
                    gpu_bytes[index] = gpu_bytes.get(index, 0) + used
            last = tree.cpu.get(ident)
            if last is not None:
                cpu[ident] = last  # kept if this round cannot read it
            proc = self._process(ident)
            if proc is None:
                continue
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    member_rss = int(proc.memory_info().rss)
                    member_threads = int(proc.num_threads())
            except _PSUTIL_ERRORS:
                continue
            cpu[ident] = max(last or 0.0, float(times.user) + float(times.system))
            rss += member_rss
            threads += member_threads
            seen += 1
            with contextlib.suppress(*_PSUTIL_ERRORS):  # another user's child: AccessDenied on fd/
                fds += int(proc.num_fds())
        for ident, last in tree.cpu.items():
            if ident not in cpu:  # exited (or left the tree): its CPU time stays counted
                tree.exited_cpu += last
        tree.cpu = cpu
        total = max(tree.total, tree.exited_cpu + sum(cpu.values()))
        percent = 0.0
        if tree.at is not None and now > tree.at:
            percent = round(max(0.0, total - tree.total) / (now - tree.at) * 100.0, 1)
        tree.total, tree.at = total, now
        return Resources(
            cpu_percent=percent,
            rss_bytes=rss,
            threads=threads,
            open_fds=fds,
            gpu_memory_bytes=None if gpu_bytes is None else MappingProxyType(gpu_bytes),
            sampled_at=wall,
            cpu_seconds_total=total,
            processes=seen,
        )

    async def run(
        self,
        roots: Callable[[], Mapping[str, int]],
        on_sample: Callable[[dict[str, Resources]], None],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Every `interval` s: `roots()` and `on_sample(result)` on the loop, `sample()` in a
        worker thread. Runs until cancelled; an error in a round is logged and the next
        round comes on schedule (a round that overruns starts the next one at once)."""
        due = self._clock()
        while True:
            try:
                snapshot = dict(roots())
                result = await asyncio.to_thread(self.sample, snapshot)
                on_sample(result)
            except Exception:
                logger.exception("resource sampling failed; retrying in %.1fs", self.interval)
            due += self.interval
            now = self._clock()
            if due < now:
                due = now
            await sleep(due - now)

    def close(self) -> None:
        """Shut NVML down (if it was started) and forget every tree."""
        with self._lock:
            self._gpu.close()
            self._trees.clear()
            self._processes.clear()
