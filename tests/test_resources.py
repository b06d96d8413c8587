"""The resource sampler on real process trees (psutil, /proc); NVML faked, as no GPU exists here."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from logcast.supervise.resources import GpuProbe, Resources, ResourceSampler
from tests.util import stop_group, wait_for

MB = 1024 * 1024

# argv: a directory for the marker files. Two children: one burns 0.3 s of CPU on "go" and
# exits on "exit" (and is reaped only on "reap", so it is a zombie in between), one holds 50 MB.
PARENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    d = sys.argv[1]

    def wait_file(name):
        while not os.path.exists(os.path.join(d, name)):
            time.sleep(0.01)

    def touch(name):
        open(os.path.join(d, name), "w").close()

    BUSY = '''
    import os, sys, time
    d = sys.argv[1]
    def wait_file(name):
        while not os.path.exists(os.path.join(d, name)):
            time.sleep(0.01)
    open(os.path.join(d, "busy-ready"), "w").close()
    wait_file("go")
    t = time.thread_time()
    while time.thread_time() - t < 0.3:
        pass
    open(os.path.join(d, "burnt"), "w").close()
    wait_file("exit")
    '''
    MEM = '''
    import os, sys, time
    data = b"\\\\x01" * (50 * 1024 * 1024)  # written, so resident (a bytearray() would be calloc's untouched pages)
    open(os.path.join(sys.argv[1], "mem-ready"), "w").close()
    time.sleep(600)
    '''
    busy = subprocess.Popen([sys.executable, "-c", BUSY, d])
    mem = subprocess.Popen([sys.executable, "-c", MEM, d])
    touch("pids-%d-%d" % (busy.pid, mem.pid))
    wait_file("reap")
    busy.wait()
    touch("reaped")
    time.sleep(600)
    """
)


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class ProcessInfo:  # what pynvml's nvmlDeviceGet*RunningProcesses return, as far as we read it
    pid: int
    usedGpuMemory: int | None  # pynvml's name


@dataclass
class FakeNvml:
    """pynvml's functions over a dict: {GPU index: (compute processes, graphics processes)}."""

    devices: dict[int, tuple[list[ProcessInfo], list[ProcessInfo]]] = field(default_factory=dict)
    init_error: Exception | None = None
    broken: set[int] = field(default_factory=set)  # GPUs whose queries fail
    calls: list[str] = field(default_factory=list)

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[ProcessInfo]:
        if handle in self.broken:
            raise RuntimeError("GPU is lost")
        return self.devices[handle][0]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[ProcessInfo]:
        if handle in self.broken:
            raise RuntimeError("GPU is lost")
        return self.devices[handle][1]


class NoGpu(GpuProbe):
    def __init__(self) -> None:
        super().__init__(FakeNvml(init_error=RuntimeError("NVML Shared Library Not Found")))


def spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started with start_new_session=True; each group is stopped at the end, and
    the test waits until none of its members runs (init may take a while to reap them)."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        members = [proc.pid]
        try:
            members += [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
        stop_group(proc)
        wait_for(
            lambda members=members: not any(map(_running, members)), 10, f"process group {proc.pid} to stop"
        )


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _sleeper(groups: list[subprocess.Popen[bytes]], children: int = 1) -> subprocess.Popen[bytes]:
    """A parent that starts `children` sleeping children and sleeps; waits until they run."""
    source = (
        "import subprocess, sys, time\n"
        f"kids = [subprocess.Popen(['sleep', '600']) for _ in range({children})]\n"
        "time.sleep(600)\n"
    )
    proc = spawn([sys.executable, "-c", source])
    groups.append(proc)
    wait_for(lambda: len(psutil.Process(proc.pid).children()) == children, 10, "the sleeping children")
    return proc


def _is_zombie(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_a_real_tree_cpu_memory_threads_fds_and_a_descendant_that_exits(
    tmp_path: Path, groups: list[subprocess.Popen[bytes]]
) -> None:
    clock, wall = FakeClock(), FakeClock(1_700_000_000.0)
    sampler = ResourceSampler(clock=clock, wall=wall, gpu=NoGpu())
    parent = spawn([sys.executable, "-c", PARENT, str(tmp_path)])
    groups.append(parent)
    wait_for(
        lambda: (tmp_path / "busy-ready").exists() and (tmp_path / "mem-ready").exists(), 30, "the children"
    )
    busy_pid = int(next(tmp_path.glob("pids-*")).name.split("-")[1])

    first = sampler.sample({"tree": parent.pid})["tree"]
    assert first.processes == 3
    assert first.rss_bytes >= 50 * MB
    assert first.threads >= 3
    assert first.open_fds >= 9  # stdin, stdout and stderr of each
    assert first.cpu_percent == 0.0  # nothing to compare with yet
    assert first.gpu_memory_bytes is None
    assert first.sampled_at == 1_700_000_000.0
    assert first.as_dict() == {
        "cpu_percent": 0.0,
        "rss_bytes": first.rss_bytes,
        "threads": first.threads,
        "open_fds": first.open_fds,
        "gpu_memory_bytes": None,
        "sampled_at": 1_700_000_000.0,
    }

    (tmp_path / "go").touch()
    wait_for(lambda: (tmp_path / "burnt").exists(), 30, "the busy child to burn 0.3 s of CPU")
    clock.now += 2.0
    busy = sampler.sample({"tree": parent.pid})["tree"]
    # /proc counts user and system time apart, each truncated to a clock tick: the tree's sum may
    # read up to two ticks short of the 0.3 s the child measured on its thread clock.
    slack = 2 / os.sysconf("SC_CLK_TCK") + 1e-9
    assert busy.cpu_seconds_total - first.cpu_seconds_total >= 0.3 - slack
    assert busy.cpu_percent >= (0.3 - slack) / 2 * 100  # >= 0.3 s over the fake clock's 2 s
    assert busy.cpu_percent == pytest.approx(
        (busy.cpu_seconds_total - first.cpu_seconds_total) / 2 * 100, abs=0.1
    )

    (tmp_path / "exit").touch()
    wait_for(lambda: _is_zombie(busy_pid), 10, "the busy child to be a zombie")
    clock.now += 2.0
    zombie = sampler.sample({"tree": parent.pid})["tree"]
    assert zombie.cpu_seconds_total >= busy.cpu_seconds_total
    assert zombie.rss_bytes >= 50 * MB

    (tmp_path / "reap").touch()
    wait_for(lambda: (tmp_path / "reaped").exists(), 10, "the parent to reap it")
    clock.now += 2.0
    gone = sampler.sample({"tree": parent.pid})["tree"]
    assert gone.processes == 2
    assert gone.cpu_seconds_total >= zombie.cpu_seconds_total  # the exited child's CPU time stays counted
    assert gone.cpu_seconds_total >= busy.cpu_seconds_total
    assert gone.cpu_percent < (0.3 - slack) / 2 * 100  # the burn is not counted twice
    assert gone.rss_bytes >= 50 * MB


def test_a_pid_that_does_not_exist_has_no_entry(groups: list[subprocess.Popen[bytes]]) -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    live = _sleeper(groups)
    sampler = ResourceSampler(gpu=NoGpu())
    roots = {"reaped": done.pid, "too-big": pid_max + 1, "zero": 0, "negative": -5, "live": live.pid}
    for _ in range(2):
        assert set(sampler.sample(roots)) == {"live"}
    assert sampler.sample({}) == {}


def test_a_new_run_of_the_same_name_starts_a_new_counter(groups: list[subprocess.Popen[bytes]]) -> None:
    clock = FakeClock()
    sampler = ResourceSampler(clock=clock, gpu=NoGpu())
    burner = spawn(
        [
            sys.executable,
            "-c",
            "import time\nt = time.thread_time()\nwhile time.thread_time() - t < 0.3: pass\ntime.sleep(600)",
        ]
    )
    groups.append(burner)
    wait_for(lambda: sum(psutil.Process(burner.pid).cpu_times()[:2]) >= 0.3, 30, "the burner to burn")
    quiet = _sleeper(groups)
    first = sampler.sample({"p": burner.pid})["p"]
    assert first.cpu_seconds_total >= 0.3
    clock.now += 2.0
    second = sampler.sample({"p": quiet.pid})["p"]  # restarted: another pid
    assert second.cpu_seconds_total < first.cpu_seconds_total
    assert second.cpu_percent == 0.0  # a first sample again, not the new run's lifetime over 2 s


def test_the_psutil_table_finds_the_same_trees_as_proc(groups: list[subprocess.Popen[bytes]]) -> None:
    trees = {f"t{i}": _sleeper(groups, children=2).pid for i in range(2)}
    by_proc = ResourceSampler(gpu=NoGpu()).sample(trees)
    by_psutil = ResourceSampler(gpu=NoGpu(), proc=None).sample(trees)
    assert {name: r.processes for name, r in by_proc.items()} == {"t0": 3, "t1": 3}
    assert {name: r.processes for name, r in by_psutil.items()} == {"t0": 3, "t1": 3}
    missing = ResourceSampler(gpu=NoGpu(), proc="/nonexistent-proc").sample(trees)  # falls back to psutil
    assert {name: r.processes for name, r in missing.items()} == {"t0": 3, "t1": 3}


def test_gpu_memory_per_gpu_from_a_fake_nvml(groups: list[subprocess.Popen[bytes]]) -> None:
    tree = _sleeper(groups, children=2)
    kid, other_kid = (p.pid for p in psutil.Process(tree.pid).children())
    stranger = os.getpid()  # on a GPU, not in the tree (its parent)
    nvml = FakeNvml(
        devices={
            0: (
                [ProcessInfo(tree.pid, 1000), ProcessInfo(stranger, 7)],
                [ProcessInfo(tree.pid, 1000)],
            ),  # C+G: once
            1: ([ProcessInfo(kid, 300), ProcessInfo(other_kid, None)], [ProcessInfo(other_kid, 20)]),
            2: ([ProcessInfo(stranger, 5)], []),
            3: ([ProcessInfo(kid, 1)], []),
        },
        broken={3},
    )
    sampler = ResourceSampler(gpu=GpuProbe(nvml))
    for _ in range(2):
        result = sampler.sample({"tree": tree.pid, "me": stranger})
        assert result["tree"].gpu_memory_bytes == {"0": 1000, "1": 320}
        assert result["tree"].as_dict()["gpu_memory_bytes"] == {"0": 1000, "1": 320}
        assert result["me"].gpu_memory_bytes == {"0": 1007, "1": 320, "2": 5}  # the tree is its descendant
    assert nvml.calls == ["init"]  # once
    nvml.devices[0] = ([], [])
    assert sampler.sample({"tree": tree.pid})["tree"].gpu_memory_bytes == {"1": 320}
    nvml.devices[1] = ([], [])
    assert sampler.sample({"tree": tree.pid})["tree"].gpu_memory_bytes == {}  # a driver, no GPU memory held
    sampler.close()
    assert nvml.calls == ["init", "shutdown"]


def test_no_nvml_means_none_for_good(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml = FakeNvml(init_error=RuntimeError("Driver Not Loaded"))
    probe = GpuProbe(nvml)
    assert probe.enabled is None
    with caplog.at_level(logging.DEBUG, logger="logcast.supervise.resources"):
        assert probe.usage() is None
        assert probe.usage() is None
    assert nvml.calls == ["init"]  # not retried
    assert probe.enabled is False
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "Driver Not Loaded" in caplog.records[0].getMessage()

    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed: the import fails
    sampler = ResourceSampler()
    result = sampler.sample({"me": os.getpid()})
    assert result["me"].gpu_memory_bytes is None
    assert result["me"].as_dict()["gpu_memory_bytes"] is None
    sampler.close()


def test_cpu_percent_uses_the_injected_clock(groups: list[subprocess.Popen[bytes]]) -> None:
    clock = FakeClock()
    sampler = ResourceSampler(clock=clock, gpu=NoGpu())
    burner = spawn([sys.executable, "-c", "import time\nwhile True: pass"])
    groups.append(burner)
    wait_for(lambda: sum(psutil.Process(burner.pid).cpu_times()[:2]) > 0.05, 30, "the burner to run")
    first = sampler.sample({"b": burner.pid})["b"]
    wait_for(
        lambda: sum(psutil.Process(burner.pid).cpu_times()[:2]) - first.cpu_seconds_total >= 0.2,
        30,
        "CPU time",
    )
    clock.now += 100.0  # a long interval by this clock: the same CPU time is a small percentage
    second = sampler.sample({"b": burner.pid})["b"]
    delta = second.cpu_seconds_total - first.cpu_seconds_total
    assert delta >= 0.2
    assert second.cpu_percent == pytest.approx(delta / 100 * 100, abs=0.1)
    third = sampler.sample({"b": burner.pid})["b"]  # the clock did not move: no division by zero
    assert third.cpu_percent == 0.0
    assert third.cpu_seconds_total >= second.cpu_seconds_total


async def test_run_samples_in_a_thread_on_schedule_and_survives_errors(
    groups: list[subprocess.Popen[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    sampler = ResourceSampler(interval=2.0, clock=clock, gpu=NoGpu())
    live = _sleeper(groups)
    loop_thread = threading.get_ident()
    sample = sampler.sample
    threads: list[int] = []

    def sample_here(roots: Mapping[str, int]) -> dict[str, Resources]:
        threads.append(threading.get_ident())
        return sample(roots)

    sampler.sample = sample_here  # type: ignore[method-assign]
    calls = 0

    def roots() -> Mapping[str, int]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the supervisor is confused")
        return {"live": live.pid}

    results: list[dict[str, Resources]] = []
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        clock.now += delay + (0.5 if len(sleeps) == 1 else 0.0)  # the first sleep oversleeps by 0.5 s
        if len(sleeps) == 4:
            raise asyncio.CancelledError

    with (
        caplog.at_level(logging.ERROR, logger="logcast.supervise.resources"),
        pytest.raises(asyncio.CancelledError),
    ):
        await sampler.run(roots, results.append, sleep=sleep)
    assert [set(r) for r in results] == [{"live"}, {"live"}, {"live"}]
    assert loop_thread not in threads and len(threads) == 3
    assert sleeps == [2.0, 1.5, 2.0, 2.0]  # on schedule: the oversleep is taken off the next wait
    assert "the supervisor is confused" in caplog.text
    sampler.close()


def test_resources_is_frozen() -> None:
    r = Resources(cpu_percent=1.0, rss_bytes=2, threads=3, open_fds=4, gpu_memory_bytes=None, sampled_at=5.0)
    with pytest.raises(AttributeError):
        r.rss_bytes = 3  # type: ignore[misc]
    assert r.cpu_seconds_total == 0.0 and r.processes == 0
