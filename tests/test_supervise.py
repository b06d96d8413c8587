"""supervise: real child processes, spawned, read, stopped, restarted and reaped.

No test sleeps and hopes: each waits for a condition with a deadline. Every pid a
test creates is checked (and killed by pid if need be) at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from logcast.config import Condition, ProcessSettings, ReadySettings, RestartPolicy, Settings
from logcast.errors import UnknownProcess
from logcast.supervise.guard import Guard
from logcast.supervise.process import ManagedProcess
from logcast.supervise.spawn import Child, Spawner
from logcast.supervise.states import check_transition
from logcast.supervise.supervisor import Supervisor
from logcast.types import Level, Lines, ProcessState, Stream
from tests.conftest import free_port, stop_group

S = ProcessState
PYTHON = sys.executable
DEADLINE = 20.0


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class LineRec:
    process: str
    run: int
    stream: Stream
    text: str
    level: Level
    partial: bool


@dataclass(frozen=True)
class StatusRec:
    process: str
    run: int
    state: ProcessState
    message: str
    level: Level
    at: float = field(compare=False)


class RecordingSink:
    """A thread-safe LineSink that keeps everything, in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[LineRec | StatusRec] = []

    def lines(self, process: str, run: int, stream: Stream, timestamp: float, lines: Lines) -> None:
        assert isinstance(timestamp, float)
        with self._lock:
            self.events.extend(LineRec(process, run, stream, t, lv, p) for t, lv, p in lines.rows())

    def status(
        self, process: str, run: int, state: ProcessState, message: str, level: Level = Level.INFO
    ) -> None:
        with self._lock:
            self.events.append(StatusRec(process, run, state, message, level, time.monotonic()))

    def snapshot(self) -> list[LineRec | StatusRec]:
        with self._lock:
            return list(self.events)

    def line_recs(self, process: str | None = None) -> list[LineRec]:
        return [e for e in self.snapshot() if isinstance(e, LineRec) and process in (None, e.process)]

    def texts(self, process: str | None = None, stream: Stream | None = None) -> list[str]:
        return [e.text for e in self.line_recs(process) if stream in (None, e.stream)]

    def statuses(self, process: str | None = None) -> list[StatusRec]:
        return [e for e in self.snapshot() if isinstance(e, StatusRec) and process in (None, e.process)]

    def states(self, process: str | None = None) -> list[ProcessState]:
        return [s.state for s in self.statuses(process)]


async def until(cond: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """Wait for `cond()` to be true, checking often, failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def until_gone(pids: list[int], timeout: float = DEADLINE) -> None:
    await until(lambda: not any(alive(p) for p in pids), f"pids {pids} to be gone", timeout)


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class RecordingSpawner(Spawner):
    def __init__(self, *, adopt: bool = False) -> None:
        super().__init__(Guard(), adopt=adopt)
        self.children: list[Child] = []

    def spawn(self, settings: ProcessSettings) -> Child:
        child = super().spawn(settings)
        self.children.append(child)
        return child


class Harness:
    def __init__(self, tmp_path: Path, *, adopt: bool = False) -> None:
        self.tmp_path = tmp_path
        self.sink = RecordingSink()
        self.spawner = RecordingSpawner(adopt=adopt)
        self.processes: list[ManagedProcess] = []
        self.extra_pids: list[int] = []  # grandchildren reported by children

    def settings(self, command: list[str], name: str = "t", **kw: Any) -> ProcessSettings:
        kw.setdefault("restart", RestartPolicy.NEVER)
        return ProcessSettings(name=name, command=tuple(command), cwd=self.tmp_path, **kw)

    def process(self, command: list[str], name: str = "t", *, run: int = 0, **kw: Any) -> ManagedProcess:
        extra = {k: kw.pop(k) for k in ("reader_grace", "reader_factory", "sleep") if k in kw}
        p = ManagedProcess(
            self.settings(command, name, **kw), self.sink, spawner=self.spawner, run=run, **extra
        )
        self.processes.append(p)
        return p

    async def close(self) -> None:
        try:
            for p in self.processes:
                await asyncio.wait_for(p.stop(), DEADLINE)
        finally:
            await self.spawner.aclose()
            pids = [c.pid for c in self.spawner.children] + self.extra_pids
            leftovers = [pid for pid in pids if alive(pid)]
            kill_pids(leftovers)
            assert not leftovers, f"processes left behind: {leftovers}"
            for c in self.spawner.children:
                assert c.reaped, f"pid {c.pid} was not reaped"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    await harness.close()


def py(source: str) -> list[str]:
    return [PYTHON, "-c", source]


SLEEP = py("import time\nprint('up', flush=True)\ntime.sleep(300)")
IGNORE_TERM = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"


def pids_from(h: Harness, prefix: str) -> list[int]:
    for text in h.sink.texts():
        if text.startswith(prefix + " "):
            return [int(x) for x in text.split()[1:]]
    raise AssertionError(f"no line starting with {prefix!r}")


# --------------------------------------------------------------------------- capture


async def test_flood_arrives_complete_and_in_order(h: Harness) -> None:
    n = 200_000
    p = h.process(
        py(
            f"with open(1, 'wb', buffering=1 << 16, closefd=False) as out:\n"
            f"    for i in range({n}):\n"
            f"        out.write(b'line %d\\n' % i)\n"
        )
    )
    assert await p.start()
    await until(lambda: p.state is S.EXITED, "exit")
    texts = h.sink.texts(stream=Stream.STDOUT)
    assert len(texts) == n
    assert texts == [f"line {i}" for i in range(n)]
    # the exit status comes after the run's last line
    events = h.sink.snapshot()
    assert isinstance(events[-1], StatusRec) and events[-1].message == "exited with code 0"
    assert events[-1].level is Level.INFO


async def test_stdout_and_stderr_are_separate_streams(h: Harness) -> None:
    p = h.process(py("import sys\nprint('out')\nprint('err', file=sys.stderr)"))
    await p.start()
    await until(lambda: p.state is S.EXITED, "exit")
    assert h.sink.texts(stream=Stream.STDOUT) == ["out"]
    assert h.sink.texts(stream=Stream.STDERR) == ["err"]
    assert {r.run for r in h.sink.line_recs()} == {1}


async def test_partial_last_line_is_kept(h: Harness) -> None:
    p = h.process(
        py("import os, sys\nsys.stdout.write('first\\nno newline at exit')\nsys.stdout.flush()\nos._exit(0)")
    )
    await p.start()
    await until(lambda: p.state is S.EXITED, "exit")
    assert [(r.text, r.partial) for r in h.sink.line_recs()] == [
        ("first", False),
        ("no newline at exit", True),
    ]


async def test_environment(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # logcast's own credentials (its API token, the agent's Redis URL with its password)
    # are not handed to children, unless a process's config sets them
    monkeypatch.setenv("LOGCAST_TOKEN", "secret")
    monkeypatch.setenv("LOGCAST_REDIS_URL", "redis://:pw@127.0.0.1:6379/0")
    monkeypatch.setenv("FROM_PARENT", "yes")
    show = py(
        "import os\n"
        "for k in ('PYTHONUNBUFFERED', 'FROM_PARENT', 'FOO', 'LOGCAST_TOKEN', 'LOGCAST_REDIS_URL'):\n"
        "    print(k, os.environ.get(k))\n"
    )
    a = h.process(show, "a")
    b = h.process(show, "b", env={"PYTHONUNBUFFERED": "0", "FOO": "bar", "LOGCAST_REDIS_URL": "mine"})
    await a.start()
    await b.start()
    await until(lambda: a.state is S.EXITED and b.state is S.EXITED, "exits")
    assert h.sink.texts("a") == [
        "PYTHONUNBUFFERED 1",
        "FROM_PARENT yes",
        "FOO None",
        "LOGCAST_TOKEN None",
        "LOGCAST_REDIS_URL None",
    ]
    assert h.sink.texts("b") == [
        "PYTHONUNBUFFERED 0",
        "FROM_PARENT yes",
        "FOO bar",
        "LOGCAST_TOKEN None",
        "LOGCAST_REDIS_URL mine",
    ]


async def test_pty_mode(h: Harness) -> None:
    source = (
        "import os, sys\n"
        "print('tty', sys.stdin.isatty(), sys.stdout.isatty(), sys.stderr.isatty())\n"
        "fd = os.open('/dev/tty', os.O_RDWR)\n"  # fails without a controlling terminal
        "print('ctty', os.tcgetpgrp(fd) == os.getpgrp(), os.getsid(0) == os.getpid())\n"
        "print('to stderr', file=sys.stderr)\n"
        "print('term', os.environ.get('TERM') is not None)\n"
    )
    p = h.process(py(source), pty=True)
    await p.start()
    await until(lambda: p.state is S.EXITED, "exit")
    assert h.sink.texts() == ["tty True True True", "ctty True True", "to stderr", "term True"]
    assert {r.stream for r in h.sink.line_recs()} == {Stream.STDOUT}


# --------------------------------------------------------------------------- states and messages


async def test_lifecycle_and_info(h: Harness) -> None:
    p = h.process(SLEEP, run=41)
    assert p.info() == {
        "name": "t", "state": "stopped", "pid": None, "started_at": None,
        "exit_code": None, "run": 41, "restarts": 0, "waiting_for": None, "last_exit": None, "model": None,
        "adopted": [],
    }  # fmt: skip
    before = time.time()
    assert await p.start()
    assert p.state is S.RUNNING and p.pid is not None and p.run == 42
    assert p.started_at is not None and before <= p.started_at <= time.time()
    pid = p.pid
    await until(lambda: h.sink.texts() == ["up"], "output")
    assert await p.stop()
    assert p.info() | {"started_at": None} == {
        "name": "t", "state": "stopped", "pid": None, "started_at": None,
        "exit_code": -signal.SIGTERM, "run": 42, "restarts": 0, "waiting_for": None, "last_exit": None, "model": None,
        "adopted": [],
    }  # fmt: skip
    assert not alive(pid)
    statuses = h.sink.statuses()
    assert [s.state for s in statuses] == [S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED]
    assert statuses[0].message.startswith("starting ") and statuses[0].message.endswith("(run 42)")
    assert statuses[1].message == f"started pid {pid} (run 42)"
    assert statuses[2].message == "stopping (SIGTERM, SIGKILL after 10s)"
    assert statuses[3].message == "stopped (killed by SIGTERM)"
    assert {s.run for s in statuses} == {42}
    assert await p.stop() is False  # nothing to stop


async def test_double_start_is_a_no_op(h: Harness) -> None:
    p = h.process(SLEEP)
    assert await asyncio.gather(p.start(), p.start()) == [True, False]
    assert await p.start() is False
    assert p.run == 1
    assert h.sink.states() == [S.STARTING, S.RUNNING]


async def test_start_during_stopping_waits_for_the_stop(h: Harness) -> None:
    p = h.process(py(IGNORE_TERM + "import time\nprint('up', flush=True)\ntime.sleep(300)"), stop_timeout=0.3)
    await p.start()
    await until(lambda: "up" in h.sink.texts(), "child ready")
    first = p.pid
    assert first is not None
    stopping = asyncio.create_task(p.stop())
    await until(lambda: p.state is S.STOPPING, "stopping")
    assert await p.start() is True
    assert stopping.done() and stopping.result() is True
    assert p.state is S.RUNNING and p.run == 2 and p.pid != first
    assert not alive(first)
    assert h.sink.states() == [S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED, S.STARTING, S.RUNNING]
    assert h.sink.statuses()[3].message == "stopped (killed by SIGKILL after 0.3s)"


async def test_restart(h: Harness) -> None:
    p = h.process(SLEEP)
    await p.start()
    first = p.pid
    assert first is not None
    assert await p.restart()
    assert p.state is S.RUNNING and p.run == 2 and p.restarts == 1 and p.pid != first
    assert not alive(first)
    assert await h.process(SLEEP, "other").restart()  # restart of a stopped process starts it


async def test_concurrent_control_is_serialised(h: Harness) -> None:
    """Many overlapping start/stop/restart calls: every state change is a legal move."""
    rng = random.Random(7)
    p = h.process(py(IGNORE_TERM + "import time\ntime.sleep(300)"), stop_timeout=0.05)
    ops = [rng.choice([p.start, p.stop, p.restart]) for _ in range(30)]
    results = await asyncio.gather(*(op() for op in ops))
    assert all(isinstance(r, bool) for r in results)
    states = h.sink.states()
    for old, new in zip([S.STOPPED, *states], states, strict=False):
        check_transition(old, new)
    assert p.state in (S.RUNNING, S.STOPPED)
    assert (p.pid is not None) == (p.state is S.RUNNING)
    assert sum(1 for c in h.spawner.children if not c.reaped) == (1 if p.state is S.RUNNING else 0)


async def test_a_stopped_child_is_continued_to_hear_its_stop_signal(h: Harness) -> None:
    """SIGSTOPped (a debugger, a terminal's Ctrl-Z): SIGTERM stays pending on it, so the
    stop also sends SIGCONT, and the child ends as it chooses, not by SIGKILL."""
    source = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('terminated', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('up', flush=True)\n"
        "time.sleep(300)\n"
    )
    p = h.process(py(source), stop_timeout=20)
    await p.start()
    await until(lambda: "up" in h.sink.texts(), "up")
    assert p.pid is not None
    os.kill(p.pid, signal.SIGSTOP)
    await until(lambda: psutil.Process(p.pid).status() == psutil.STATUS_STOPPED, "stopped by SIGSTOP")
    assert await p.stop()
    assert h.sink.texts()[-1] == "terminated"  # not SIGKILLed after stop_timeout
    assert h.sink.statuses()[-1].message == "stopped (exited with code 0)"


async def test_stop_kills_the_whole_group_after_stop_timeout(h: Harness) -> None:
    # one write per line: two writers share the pipe (print() writes "gc" and "\n" apart)
    grandchild = IGNORE_TERM + "import os, time\nos.write(1, b'gc\\n')\ntime.sleep(300)"
    source = (
        IGNORE_TERM + "import os, subprocess, sys, time\n"
        f"kids = [subprocess.Popen([sys.executable, '-c', {grandchild!r}]) for _ in range(2)]\n"
        "print('pids', os.getpid(), *[k.pid for k in kids], flush=True)\n"
        "time.sleep(300)\n"
    )
    p = h.process(py(source), stop_timeout=0.3)
    await p.start()
    await until(lambda: h.sink.texts().count("gc") == 2, "grandchildren up")
    pids = pids_from(h, "pids")
    h.extra_pids += pids
    assert all(alive(pid) for pid in pids)
    assert await p.stop()
    assert p.state is S.STOPPED
    last = h.sink.statuses()[-1]
    assert last.message == "stopped (killed by SIGKILL after 0.3s)" and last.level is Level.WARNING
    await until_gone(pids)


async def test_leftovers_of_an_exited_leader_are_stopped(h: Harness) -> None:
    """A leader that dies leaves no workers holding its port (systemd control-group mode)."""
    source = (
        "import os, subprocess, sys\n"
        "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "print('pids', kid.pid, flush=True)\n"
        "os._exit(1)\n"
    )
    p = h.process(py(source))
    await p.start()
    await until(lambda: p.state is S.CRASHED, "crash")
    pids = pids_from(h, "pids")
    h.extra_pids += pids
    await until_gone(pids)
    assert re.fullmatch(r"exited with code 1 after \d+\.\ds", h.sink.statuses()[-1].message)
    # what logcast did meanwhile is in the history, not only in its own log
    assert re.fullmatch(
        r"pid \d+ exited with code 1; stopping what is left of its group \(SIGTERM, SIGKILL after \d+s\)",
        h.sink.statuses()[-2].message,
    )
    # meanwhile it was stopping, not running with a dead pid
    assert h.sink.states()[-3:] == [S.RUNNING, S.STOPPING, S.CRASHED]


# A leader that exits at once, leaving a child that ignores SIGTERM ("pids <its pid>").
LEAVES_A_STUBBORN_CHILD = (
    "import os, subprocess, sys\n"
    "stubborn = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'\n"
    "kid = subprocess.Popen([sys.executable, '-c', stubborn])\n"
    "print('pids', kid.pid, flush=True)\n"
    "os._exit(1)\n"
)


async def test_told_not_to_wait_while_the_leftovers_of_an_exited_leader_are_stopped(h: Harness) -> None:
    """A second Ctrl-C comes before the shutdown's stop reaches the process (a review: it
    still waited the whole stop_timeout)."""
    p = h.process(py(LEAVES_A_STUBBORN_CHILD), stop_timeout=60.0)
    await p.start()
    await until(lambda: p.state is S.STOPPING, "the leftovers being stopped")
    h.extra_pids += pids_from(h, "pids")
    p.hurry()
    assert await asyncio.wait_for(p.stop(), 10.0) is True
    assert p.state is S.STOPPED


async def test_a_stop_while_the_leftovers_of_an_exited_leader_are_stopped_is_not_restarted(
    h: Harness,
) -> None:
    p = h.process(py(LEAVES_A_STUBBORN_CHILD), restart=RestartPolicy.ALWAYS, stop_timeout=2.0)
    await p.start()
    await until(lambda: p.state is S.STOPPING, "the leftovers being stopped")
    h.extra_pids += pids_from(h, "pids")
    assert await asyncio.wait_for(p.stop(), DEADLINE) is True
    assert p.state is S.STOPPED  # and no backoff, no new run
    assert p.run == 1 and S.BACKOFF not in h.sink.states()


async def test_a_process_escaping_the_group_does_not_hang_stop(h: Harness) -> None:
    """A grandchild in its own session keeps the pipe open; stop moves on after a grace."""
    source = (
        "import subprocess, sys, time\n"
        "sleep = [sys.executable, '-c', 'import time; time.sleep(300)']\n"
        "kid = subprocess.Popen(sleep, start_new_session=True)\n"
        "print('pids', kid.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    p = h.process(py(source), stop_timeout=1.0, reader_grace=0.2)
    await p.start()
    await until(lambda: any(t.startswith("pids ") for t in h.sink.texts()), "grandchild up")
    (escaped,) = pids_from(h, "pids")
    h.extra_pids.append(escaped)
    try:
        assert await asyncio.wait_for(p.stop(), DEADLINE)
        assert p.state is S.STOPPED
        assert alive(escaped)  # out of reach of killpg, as documented
    finally:
        kill_pids([escaped])
    await until_gone([escaped])


async def test_killed_by_a_signal_we_did_not_send_is_a_crash(h: Harness) -> None:
    p = h.process(SLEEP)
    await p.start()
    assert p.pid is not None
    os.kill(p.pid, signal.SIGKILL)
    await until(lambda: p.state is S.CRASHED, "crash")
    assert p.exit_code == -signal.SIGKILL
    last = h.sink.statuses()[-1]
    assert re.fullmatch(r"killed by SIGKILL \(not by logcast\) after \d+\.\ds", last.message)
    assert last.level is Level.ERROR


@pytest.mark.parametrize(
    ("policy", "code", "expected"),
    [
        (RestartPolicy.NEVER, 1, [S.CRASHED]),
        (RestartPolicy.NEVER, 0, [S.EXITED]),
        (RestartPolicy.ON_FAILURE, 0, [S.EXITED]),
        (RestartPolicy.ON_FAILURE, 2, [S.CRASHED, S.BACKOFF]),
        (RestartPolicy.ALWAYS, 0, [S.EXITED, S.BACKOFF]),
    ],
)
async def test_restart_policy(
    h: Harness, policy: RestartPolicy, code: int, expected: list[ProcessState]
) -> None:
    p = h.process(py(f"raise SystemExit({code})"), restart=policy, backoff_initial=60)
    await p.start()
    await until(lambda: p.state is expected[-1], str(expected[-1]))
    assert h.sink.states() == [S.STARTING, S.RUNNING, *expected]
    end = h.sink.statuses()[2]
    if code == 0:
        assert end.message == "exited with code 0"
    else:
        assert re.fullmatch(rf"exited with code {code} after \d+\.\ds", end.message), end.message
    assert end.level is (Level.ERROR if code else Level.INFO)
    if expected[-1] is S.BACKOFF:
        assert h.sink.statuses()[-1].message == "restarting in 60s (backoff)"


async def test_crash_loop_backs_off_exponentially(h: Harness) -> None:
    slept: list[tuple[float, int]] = []  # (delay, statuses recorded when the wait ended)

    async def sleep(delay: float) -> None:
        await asyncio.sleep(0)
        slept.append((delay, len(h.sink.statuses())))

    p = h.process(
        py("raise SystemExit(3)"),
        restart=RestartPolicy.ON_FAILURE,
        backoff_initial=0.05,
        backoff_max=0.2,
        min_uptime=60,
        sleep=sleep,
    )
    await p.start()
    await until(lambda: h.sink.states().count(S.BACKOFF) >= 5, "five backoffs")
    assert await p.stop()
    assert p.state is S.STOPPED
    statuses = h.sink.statuses()
    backoffs = [s for s in statuses if s.state is S.BACKOFF][:5]
    assert [s.message for s in backoffs] == [
        f"restarting in {d} (backoff)" for d in ("0.05s", "0.1s", "0.2s", "0.2s", "0.2s")
    ]
    assert all(s.level is Level.WARNING for s in backoffs)
    # each restart waited its announced delay, after announcing it and before starting
    for b, delay, (waited, seen) in zip(backoffs, (0.05, 0.1, 0.2, 0.2), slept, strict=False):
        nxt = next(s for s in statuses if s.state is S.STARTING and s.run == b.run + 1)
        assert waited == delay
        assert statuses.index(b) < seen <= statuses.index(nxt)
    crashes = [s for s in statuses if s.state is S.CRASHED]
    assert all(s.message.startswith("exited with code 3 after ") and s.level is Level.ERROR for s in crashes)
    assert p.restarts >= 4 and p.run >= 5


async def test_backoff_delays_on_a_fake_sleeper(h: Harness) -> None:
    # The backoff's waits come through the `sleep` given to the process: no wall clock.
    waited: list[float] = []
    restarts = asyncio.Event()

    async def sleep(delay: float) -> None:
        waited.append(delay)
        if len(waited) >= 5:
            restarts.set()
            await asyncio.Event().wait()  # the fifth restart never comes: the test stops here
        await asyncio.sleep(0)

    p = h.process(
        py("raise SystemExit(3)"),
        restart=RestartPolicy.ON_FAILURE,
        backoff_initial=1,
        backoff_max=8,
        min_uptime=3600,
        sleep=sleep,
    )
    await p.start()
    await asyncio.wait_for(restarts.wait(), DEADLINE)
    assert waited == [1, 2, 4, 8, 8]
    assert p.state is S.BACKOFF and p.restarts == 4
    assert await p.stop()
    assert p.state is S.STOPPED


async def test_backoff_resets_after_min_uptime(h: Harness) -> None:
    p = h.process(
        py("raise SystemExit(1)"),
        restart=RestartPolicy.ALWAYS,
        backoff_initial=0.05,
        backoff_max=1,
        min_uptime=0,
    )
    await p.start()
    await until(lambda: h.sink.states().count(S.BACKOFF) >= 3, "three backoffs")
    await p.stop()
    messages = [s.message for s in h.sink.statuses() if s.state is S.BACKOFF]
    assert set(messages) == {"restarting in 0.05s (backoff)"}


async def test_the_time_its_leftovers_take_to_stop_is_no_uptime(h: Harness) -> None:
    """A leader that crashes at once, leaving a child that ignores SIGTERM: the run ends
    `stop_timeout` later, but it was up for a moment, so the backoff grows (it was reset
    after every run, which counted the wait for its leftovers as uptime)."""
    p = h.process(
        py(LEAVES_A_STUBBORN_CHILD),
        restart=RestartPolicy.ON_FAILURE,
        backoff_initial=0.05,
        backoff_max=1,
        min_uptime=0.8,
        stop_timeout=1,
    )
    await p.start()
    await until(lambda: h.sink.states().count(S.BACKOFF) >= 2, "two backoffs")
    await p.stop()
    h.extra_pids += [int(t.split()[1]) for t in h.sink.texts() if t.startswith("pids ")]
    statuses = h.sink.statuses()
    assert [s.message for s in statuses if s.state is S.BACKOFF][:2] == [
        "restarting in 0.05s (backoff)",
        "restarting in 0.1s (backoff)",
    ]
    crashes = [s.message for s in statuses if s.state is S.CRASHED]
    assert crashes and all(re.fullmatch(r"exited with code 1 after 0\.[0-7]s", m) for m in crashes), crashes


async def test_stop_during_backoff_cancels_the_restart(h: Harness) -> None:
    p = h.process(py("raise SystemExit(1)"), restart=RestartPolicy.ON_FAILURE, backoff_initial=60)
    await p.start()
    await until(lambda: p.state is S.BACKOFF, "backoff")
    assert await p.stop()
    assert p.state is S.STOPPED
    assert h.sink.statuses()[-1].message == "stopped (restart cancelled)"
    assert p.run == 1
    assert await p.stop() is False


async def test_start_during_backoff_starts_now(h: Harness) -> None:
    p = h.process(py("raise SystemExit(1)"), restart=RestartPolicy.ON_FAILURE, backoff_initial=60)
    await p.start()
    await until(lambda: p.state is S.BACKOFF, "backoff")
    assert await p.start()
    assert p.run == 2 and p.restarts == 1
    await until(lambda: p.state is S.BACKOFF, "second backoff")
    assert h.sink.statuses()[-1].message == "restarting in 60s (backoff)"  # manual start reset the delay


@pytest.mark.parametrize("cause", ["missing", "cwd", "permission"])
async def test_spawn_failure(h: Harness, cause: str) -> None:
    script = h.tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    command, cwd, message = {
        "missing": (
            ["/nonexistent/llama-server"],
            h.tmp_path,
            "command not found: /nonexistent/llama-server",
        ),
        "cwd": ([PYTHON], h.tmp_path / "nope", f"working directory not found: {h.tmp_path / 'nope'}"),
        "permission": ([str(script)], h.tmp_path, f"permission denied: {script}"),
    }[cause]
    p = ManagedProcess(
        ProcessSettings(name="t", command=tuple(command), cwd=cwd, backoff_initial=0.05, backoff_max=0.1),
        h.sink,
        spawner=h.spawner,
    )
    h.processes.append(p)
    assert await p.start()  # it was attempted; the failure is a state
    await until(lambda: h.sink.states().count(S.BACKOFF) >= 2, "retries")
    assert await p.stop()
    statuses = h.sink.statuses()
    assert [s.state for s in statuses[:3]] == [S.STARTING, S.CRASHED, S.BACKOFF]
    assert statuses[1].message == f"failed to start: {message}"
    assert statuses[1].level is Level.ERROR
    assert p.pid is None and not h.spawner.children


class OutOfDescriptors:
    """This process at its limit of open files (`EMFILE`) while inside: the soft limit
    lowered to what is open plus a few, and those few taken by pipes."""

    def __enter__(self) -> None:
        self._limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        open_now = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 16, self._limits[1]))
        self._held: list[int] = []
        try:
            while True:
                self._held.extend(os.pipe())
        except OSError:
            pass

    def __exit__(self, *exc: object) -> None:
        for fd in self._held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, self._limits)


@pytest.mark.parametrize("guard_started", [True, False])
async def test_a_spawn_out_of_file_descriptors_crashes_and_the_next_start_works(
    h: Harness, guard_started: bool
) -> None:
    """No descriptor for its pipes (or for the orphan guard's) is a failed start that says
    why, as a missing command is; it left the process `starting` for good, and a stop then
    failed on an assertion."""
    p = h.process(SLEEP, restart=RestartPolicy.NEVER)
    if guard_started:
        assert h.spawner.guard is not None
        h.spawner.guard.start()
    with OutOfDescriptors():
        assert await p.start()
    assert p.state is S.CRASHED and p.pid is None
    message = h.sink.statuses()[-1].message
    what = "pipes for its output" if guard_started else "the orphan guard"
    assert message.startswith("failed to start: cannot ") and what in message, message
    assert "Too many open files" in message, message
    assert await p.start()
    await until(lambda: "up" in h.sink.texts(), "the next start")
    assert p.state is S.RUNNING
    assert await p.stop()
    assert p.state is S.STOPPED


# --------------------------------------------------------------------------- readiness


async def test_ready_by_log_line(h: Harness) -> None:
    p = h.process(
        py(
            "import time\nprint('loading model')\n"
            "print('main: server is listening on :8081')\ntime.sleep(300)"
        ),
        ready=ReadySettings(log=re.compile(r"server is listening"), timeout=30),
    )
    await p.start()
    await until(lambda: p.state is S.READY, "ready")
    events = h.sink.snapshot()
    line_at = next(i for i, e in enumerate(events) if isinstance(e, LineRec) and "listening" in e.text)
    ready_at = next(i for i, e in enumerate(events) if isinstance(e, StatusRec) and e.state is S.READY)
    assert line_at < ready_at
    ready = events[ready_at]
    assert (
        isinstance(ready, StatusRec)
        and ready.message.startswith("ready after ")
        and ready.level is Level.SUCCESS
    )
    assert not p.not_ready


async def test_the_log_pattern_looks_at_the_line_as_shown(h: Harness) -> None:
    """uvicorn colours its INFO: a pattern anchored on it never matched (a review)."""
    p = h.process(
        py("import time\nprint('\\x1b[32mINFO\\x1b[0m:     Application startup complete.')\ntime.sleep(300)"),
        ready=ReadySettings(log=re.compile(r"^INFO:\s+Application startup complete"), timeout=30),
    )
    await p.start()
    await until(lambda: p.state is S.READY, "ready")


async def test_a_model_killed_while_it_loads_failed_to_load(h: Harness) -> None:
    """The OOM killer's SIGKILL prints no error line: the model stayed `loading` for good,
    and /metrics kept its load progress (a review)."""
    source = (
        "import os, signal\nprint('main: loading model', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    p = h.process(py(source), parse="llamacpp")
    await p.start()
    await until(lambda: p.state is S.CRASHED, "the crash")
    assert p.info()["model"]["phase"] == "failed"
    messages = [r.message for r in h.sink.statuses()]
    assert messages.index("model failed (see the error lines above)") < len(messages) - 1


async def test_not_ready_in_time_keeps_running_and_can_become_ready_late(h: Harness) -> None:
    flag = h.tmp_path / "go"
    source = (
        "import os, time\n"
        f"while not os.path.exists({str(flag)!r}):\n"
        "    time.sleep(0.02)\n"
        "print('listening', flush=True)\n"
        "time.sleep(300)\n"
    )
    p = h.process(py(source), ready=ReadySettings(log=re.compile("listening"), timeout=0.2))
    await p.start()
    await until(lambda: any(s.level is Level.WARNING for s in h.sink.statuses()), "not-ready warning")
    warning = h.sink.statuses()[-1]
    assert warning.state is S.RUNNING
    assert warning.message.startswith("not ready after 0.2s")
    assert p.state is S.RUNNING and p.not_ready and p.pid is not None and alive(p.pid)
    flag.touch()
    await until(lambda: p.state is S.READY, "late ready")
    assert h.sink.statuses()[-1].message.endswith("(later than the 0.2s timeout)")
    assert not p.not_ready


async def test_ready_by_http(h: Harness) -> None:
    port = free_port()
    server = [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(h.tmp_path)]
    bad = h.process(
        server, "bad", ready=ReadySettings(http=f"http://127.0.0.1:{port}/nothing-here", timeout=0.5)
    )
    await bad.start()
    await until(lambda: bad.not_ready, "not ready: 404 is not 2xx")
    assert bad.state is S.RUNNING
    await bad.stop()
    good = h.process(server, "good", ready=ReadySettings(http=f"http://127.0.0.1:{port}/", timeout=30))
    await good.start()
    await until(lambda: good.state is S.READY, "ready over HTTP")
    assert await good.stop()
    assert good.state is S.STOPPED


async def test_readiness_probe_stops_with_the_process(h: Harness) -> None:
    p = h.process(SLEEP, ready=ReadySettings(http=f"http://127.0.0.1:{free_port()}/", timeout=30))
    await p.start()
    await p.stop()
    assert p.state is S.STOPPED and not p.not_ready


# --------------------------------------------------------------------------- supervisor


async def test_supervisor(tmp_path: Path) -> None:
    sink = RecordingSink()

    def ps(name: str, **kw: Any) -> ProcessSettings:
        return ProcessSettings(name=name, command=tuple(SLEEP), cwd=tmp_path, **kw)

    settings = Settings(
        processes={"a": ps("a"), "b": ps("b", autostart=False), "c": ps("c", stop_timeout=0.2)}
    )
    async with Supervisor(settings, sink, runs={"a": 5}) as sup:
        assert sup.names() == ["a", "b", "c"]
        assert "a" in sup and "zzz" not in sup
        with pytest.raises(UnknownProcess, match="unknown process 'zzz'"):
            sup.get("zzz")
        with pytest.raises(UnknownProcess):
            await sup.start("zzz")
        await sup.start_autostart()
        assert [i["state"] for i in sup.infos()] == ["running", "stopped", "running"]
        assert sup.info("a")["run"] == 6 and sup.info("c")["run"] == 1
        assert await sup.start("a") is False
        assert await sup.start("b") is True
        assert await sup.restart("b") is True
        assert sup.info("b")["restarts"] == 1
        assert await sup.stop("b") is True
        assert await sup.stop("b") is False
        guard = sup.guard_pid
        assert guard is not None and alive(guard)
        pids = [i["pid"] for i in sup.infos() if i["pid"]]
        assert len(pids) == 2
    assert [i["state"] for i in sup.infos()] == ["stopped", "stopped", "stopped"]
    await until_gone([*pids, guard])


async def test_no_restart_once_the_shutdown_began(tmp_path: Path) -> None:
    """`db` crashes while the shutdown waits for `web`, which depends on it, to stop: its
    policy must not start it again (it did, twice, each new run stopped at once)."""
    sink = RecordingSink()
    crashes_soon = py("import time\nprint('up', flush=True)\ntime.sleep(0.3)\nraise SystemExit(1)")
    settings = Settings(
        processes={
            "db": ProcessSettings(
                name="db",
                command=tuple(crashes_soon),
                cwd=tmp_path,
                restart=RestartPolicy.ON_FAILURE,
                backoff_initial=0.05,
            ),
            "web": ProcessSettings(
                name="web",
                command=tuple(py(IGNORE_TERM + "import time\nprint('up', flush=True)\ntime.sleep(300)")),
                cwd=tmp_path,
                stop_timeout=1.5,
                depends_on={"db": Condition.STARTED},
            ),
        }
    )
    async with Supervisor(settings, sink) as sup:
        await sup.start_autostart()
        await until(lambda: sink.texts("db") == ["up"] and sink.texts("web") == ["up"], "both up")
    db = [s for s in sink.statuses() if s.process == "db"]
    assert [s.run for s in db if s.state is S.STARTING] == [1], [(s.state, s.message) for s in db]
    assert sup.info("db")["state"] in ("crashed", "stopped")
    assert sup.info("web")["state"] == "stopped"


def test_guard_kills_registered_groups_when_its_pipe_closes() -> None:
    proc = subprocess.Popen(
        [PYTHON, "-c", "import time; time.sleep(300)"], start_new_session=True, stdout=subprocess.DEVNULL
    )
    guard = Guard()
    try:
        guard.start()
        guard.register(proc.pid)
        guard.register(999_999_999)  # a group that does not exist is harmless
        guard.close()
        assert proc.wait(DEADLINE) == -signal.SIGKILL
    finally:
        guard.close()
        stop_group(proc)


def test_guard_forgets_unregistered_groups() -> None:
    proc = subprocess.Popen(
        [PYTHON, "-c", "import time; time.sleep(300)"], start_new_session=True, stdout=subprocess.DEVNULL
    )
    guard = Guard()
    try:
        guard.start()
        guard.register(proc.pid)
        guard.unregister(proc.pid)
        guard.close()
        assert proc.poll() is None
    finally:
        stop_group(proc)


MANAGER = """
import asyncio, sys
from pathlib import Path
from logcast.config import ProcessSettings, Settings
from logcast.supervise.supervisor import Supervisor

CHILD = '''
import os, subprocess, sys, time
kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
target = sys.argv[1]
with open(target + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {kid.pid}")
os.rename(target + ".tmp", target)
time.sleep(300)
'''

class Sink:
    def lines(self, *args):
        pass
    def status(self, *args, **kwargs):
        pass

async def main():
    command = (sys.executable, "-c", CHILD, sys.argv[1])
    process = ProcessSettings(name="child", command=command, cwd=Path.cwd())
    supervisor = Supervisor(Settings(processes={"child": process}), Sink())
    await supervisor.start_autostart()
    print(supervisor.guard_pid, flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""


async def test_sigkilled_manager_leaves_no_orphans(tmp_path: Path) -> None:
    script = tmp_path / "manager.py"
    script.write_text(MANAGER)
    pidfile = tmp_path / "pids"
    manager = subprocess.Popen(
        [PYTHON, str(script), str(pidfile)], stdout=subprocess.PIPE, start_new_session=True, cwd=tmp_path
    )
    pids: list[int] = []
    try:
        assert manager.stdout is not None
        guard = int(manager.stdout.readline())
        pids.append(guard)
        await until(pidfile.exists, "the child to write its pids")
        child, grandchild = (int(x) for x in pidfile.read_text().split())
        pids += [child, grandchild]
        assert all(alive(pid) for pid in pids)
        manager.kill()  # SIGKILL: the manager cannot clean up anything itself
        assert manager.wait(DEADLINE) == -signal.SIGKILL
        await until_gone(pids)
    finally:
        kill_pids(pids)
        if manager.stdout is not None:
            manager.stdout.close()
        stop_group(manager)


class SlowSink(RecordingSink):
    """A sink that takes its time over every chunk, as a hub holding capture for its writer does."""

    def lines(self, process: str, run: int, stream: Stream, timestamp: float, lines: Lines) -> None:
        time.sleep(0.05)
        super().lines(process, run, stream, timestamp, lines)


async def test_the_exit_is_recorded_after_every_line_even_when_framing_lags(h: Harness) -> None:
    """The pipes are at EOF at once, but handing the spooled lines on takes seconds: the
    run's end waits for them (before, the drain deadlines cut them off, and the exit
    came before the run's last lines)."""
    h.sink = SlowSink()
    n = 60
    # one write(2) per line, a few ms apart, so each is its own chunk: about 60 x 50 ms
    # of handing on, far beyond the drain deadlines (0.5 s, stop_timeout 0.5 s, grace 0.2 s)
    source = (
        f"import os, time\nfor i in range({n}):\n    os.write(1, b'line %d\\n' % i)\n    time.sleep(0.003)\n"
    )
    p = h.process(py(source), reader_grace=0.2, stop_timeout=0.5)
    await p.start()
    await until(lambda: p.state is S.EXITED, "exit", timeout=60)
    events = h.sink.snapshot()
    texts = [e.text for e in events if isinstance(e, LineRec)]
    assert texts == [f"line {i}" for i in range(n)]
    exited = next(i for i, e in enumerate(events) if isinstance(e, StatusRec) and e.state is S.EXITED)
    assert all(isinstance(e, StatusRec) for e in events[exited:])  # no line after the exit


class HoldingRecordingSink(RecordingSink):
    """A sink that says when it would hold capture (as the hub)."""

    def lines(  # type: ignore[override]
        self, process: str, run: int, stream: Stream, timestamp: float, lines: Lines, *, hold: bool = True
    ) -> None:
        super().lines(process, run, stream, timestamp, lines)

    def would_hold(self, process: str) -> bool:
        return False


class BusyHoldingSink(HoldingRecordingSink):
    """...that also says whether its event loop is busy (as the hub)."""

    def loop_busy(self) -> bool:
        return False


@pytest.mark.parametrize("with_loop_busy", [True, False])
async def test_readers_read_on_the_loop_and_ask_the_sink_whether_it_is_busy(
    h: Harness, with_loop_busy: bool
) -> None:
    """A holding sink's readers are made on the loop, with its `loop_busy` when it has one
    (a sink without it still starts its processes)."""
    from logcast.capture.reader import PipeReader
    from logcast.supervise.process import pipe_readers

    sink = BusyHoldingSink() if with_loop_busy else HoldingRecordingSink()
    made: list[tuple[PipeReader, dict[str, Any]]] = []
    make = pipe_readers()

    def factory(fd: int, on_lines: Any, name: str, **kw: Any) -> PipeReader:
        reader = make(fd, on_lines, name, **kw)
        assert isinstance(reader, PipeReader)
        made.append((reader, kw))
        return reader

    h.sink = sink
    p = h.process(py("print('hello', flush=True)"), reader_factory=factory)
    await p.start()
    await until(lambda: p.state is S.EXITED, "exit")
    assert "hello" in sink.texts()
    assert made and all(kw["on_lines_now"] is not None for _, kw in made)
    assert all(kw["loop_busy"] == getattr(sink, "loop_busy", None) for _, kw in made)
    assert all(reader._loop is asyncio.get_running_loop() for reader, _ in made)


class FailingSink(RecordingSink):
    """A sink whose `lines` fails for a line saying "boom"."""

    def lines(self, process: str, run: int, stream: Stream, timestamp: float, lines: Lines) -> None:
        if "boom" in lines.texts:
            raise RuntimeError("sink broke")
        super().lines(process, run, stream, timestamp, lines)


async def test_output_a_reader_could_not_hand_on_is_told_in_an_error_status(h: Harness) -> None:
    """Lines lost before they had seqs leave no gap for a reader to see: the process's
    history says so in a status record of its run (it was only in logcast's own log)."""
    h.sink = sink = FailingSink()
    p = h.process(py("import time\nprint('boom', flush=True)\ntime.sleep(0.3)\nprint('after', flush=True)"))
    await p.start()
    await until(lambda: p.state is S.EXITED, "exit")
    assert sink.texts() == ["after"]
    lost = [s for s in sink.statuses() if s.level is Level.ERROR]
    assert len(lost) == 1 and lost[0].run == p.run
    assert lost[0].message == "stdout: 1 line lost: handing them on failed (RuntimeError('sink broke'))"


async def test_a_leader_that_obeys_while_its_group_does_not_is_told_apart(h: Harness) -> None:
    """A review: the leader exited on SIGTERM at once, a worker of its group ignored it;
    the record said `killed by SIGTERM after 0.3s`, as if the leader had needed the kill."""
    worker = IGNORE_TERM + "import os, time\nos.write(1, b'worker\\n')\ntime.sleep(300)"
    source = (
        "import os, subprocess, sys, time\n"
        f"kid = subprocess.Popen([sys.executable, '-c', {worker!r}])\n"
        "print('pids', os.getpid(), kid.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    p = h.process(py(source), stop_timeout=0.3)
    await p.start()
    await until(lambda: "worker" in h.sink.texts(), "the worker up")
    pids = pids_from(h, "pids")
    h.extra_pids += pids
    assert await p.stop()
    last = h.sink.statuses()[-1]
    assert last.message == "stopped (killed by SIGTERM; the rest of its group was SIGKILLed after 0.3s)"
    assert last.level is Level.WARNING
    await until_gone(pids)


async def test_a_hurried_stop_kills_at_once_and_says_so(h: Harness) -> None:
    p = h.process(py(IGNORE_TERM + "import time\nprint('up', flush=True)\ntime.sleep(300)"), stop_timeout=60)
    await p.start()
    await until(lambda: "up" in h.sink.texts(), "child ready")
    stopping = asyncio.create_task(p.stop())
    await until(lambda: p.state is S.STOPPING, "stopping")
    p.hurry()  # a second Ctrl-C
    assert await asyncio.wait_for(stopping, 10) is True
    assert h.sink.statuses()[-1].message == "stopped (killed by SIGKILL: told not to wait)"
