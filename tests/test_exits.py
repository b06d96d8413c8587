"""Why it died: `last_exit` and the status record of a failed run, on real children.

An exit code with that run's last error lines only; a SIGKILL logcast did not send; an
OOM kill (the kernel's OOM killer cannot be triggered safely here: the child is SIGKILLed
from outside while an injected cgroup counter goes up, and the real counter reader is
tested on fake cgroup files); a readiness probe that timed out; a spawn failure. The
seqs of a run are checked against a real hub.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from logcast.config import ProcessSettings, ReadySettings, RestartPolicy, Settings
from logcast.hub import Hub
from logcast.supervise.exits import (
    cgroup_oom_counter,
    duration,
    how_it_ended,
    oom_counter_file,
    read_oom_kills,
)
from logcast.supervise.process import ManagedProcess
from logcast.supervise.supervisor import Supervisor
from logcast.types import Level, ProcessState, Stream
from tests.fakes import MemoryStore
from tests.test_supervise import (
    DEADLINE,
    PYTHON,
    Harness,
    py,
    until,
)

S = ProcessState


class Counter:
    """An injected cgroup OOM-kill counter that the test moves."""

    def __init__(self, value: int | None = 7) -> None:
        self.value = value
        self.pids: list[int] = []

    def __call__(self, pid: int) -> Callable[[], int | None]:
        self.pids.append(pid)
        return lambda: self.value


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    await harness.close()


def proc(
    h: Harness, command: list[str], name: str = "t", *, counter: Counter | None = None, **kw: Any
) -> ManagedProcess:
    p = ManagedProcess(
        h.settings(command, name, **kw), h.sink, spawner=h.spawner, oom_counter=counter or Counter()
    )
    h.processes.append(p)
    return p


def wait_for_file(flag: Path, then: str) -> str:
    return f"import os, sys, time\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.01)\n{then}\n"


# --------------------------------------------------------------------------- exit codes


async def test_a_non_zero_exit_keeps_the_last_errors_of_that_run_only(h: Harness) -> None:
    second = h.tmp_path / "second"
    source = (
        "import os, sys\n"
        f"if not os.path.exists({str(second)!r}):\n"
        "    print('error: first run failure', flush=True)\n"
        "    sys.exit(1)\n"
        "for i in range(7):\n"
        "    print(f'error: second run failure {i}', flush=True)\n"
        "print('warning: low disk', flush=True)\n"
        "print('shutting down', flush=True)\n"
        "sys.exit(3)\n"
    )
    p = proc(h, py(source))
    assert p.info()["last_exit"] is None
    await p.start()
    await until(lambda: p.state is S.CRASHED, "first crash")
    first = p.info()["last_exit"]
    assert first["run"] == 1 and first["exit_code"] == 1
    assert first["last_errors"] == ["error: first run failure"]
    second.touch()
    before = time.time()
    await p.start()
    await until(lambda: p.state is S.CRASHED and p.run == 2, "second crash")
    last = p.info()["last_exit"]
    assert before <= last.pop("at") <= time.time()
    assert last == {
        "run": 2,
        "exit_code": 3,
        "signal": None,
        "oom_killed": False,
        "reason": "exited with code 3",
        # the last five error lines of run 2: not the warning, not the info line, not run 1's
        "last_errors": [f"error: second run failure {i}" for i in range(2, 7)],
        "first_seq": None,  # no history given
        "last_seq": None,
    }
    end = h.sink.statuses()[-1]
    assert end.state is S.CRASHED and end.level is Level.ERROR
    assert re.fullmatch(
        r"exited with code 3 after \d+\.\ds; last error: error: second run failure 6", end.message
    ), end.message


async def test_a_clean_exit_or_a_stop_is_no_failure(h: Harness) -> None:
    p = proc(h, py("raise SystemExit(0)"))
    await p.start()
    await until(lambda: p.state is S.EXITED, "exit")
    assert p.info()["last_exit"] is None
    q = proc(h, py("import time\nprint('error: noisy but fine', flush=True)\ntime.sleep(300)"), "q")
    await q.start()
    await until(lambda: "error: noisy but fine" in h.sink.texts("q"), "output")
    await q.stop()
    assert q.state is S.STOPPED and q.info()["last_exit"] is None


async def test_the_last_failure_stays_after_a_clean_run(h: Harness) -> None:
    ok = h.tmp_path / "ok"
    p = proc(h, py(f"import os, sys\nsys.exit(0 if os.path.exists({str(ok)!r}) else 2)"))
    await p.start()
    await until(lambda: p.state is S.CRASHED, "crash")
    ok.touch()
    await p.start()
    await until(lambda: p.state is S.EXITED, "clean exit")
    assert p.info()["last_exit"]["run"] == 1 and p.info()["last_exit"]["exit_code"] == 2


# --------------------------------------------------------------------------- signals and the OOM killer


async def test_a_sigkill_not_sent_by_logcast(h: Harness) -> None:
    counter = Counter(7)
    p = proc(h, py("import time\nprint('up', flush=True)\ntime.sleep(300)"), counter=counter)
    await p.start()
    await until(lambda: "up" in h.sink.texts(), "child up")
    assert p.pid is not None and counter.pids == [p.pid]
    os.kill(p.pid, signal.SIGKILL)
    await until(lambda: p.state is S.CRASHED, "crash")
    last = p.info()["last_exit"]
    assert (last["exit_code"], last["signal"], last["oom_killed"]) == (-signal.SIGKILL, "SIGKILL", False)
    assert last["reason"] == "killed by SIGKILL (not by logcast)"
    assert last["last_errors"] == []
    assert re.fullmatch(r"killed by SIGKILL \(not by logcast\) after \d+\.\ds", h.sink.statuses()[-1].message)


async def test_an_oom_kill_is_told_by_the_cgroup_counter(h: Harness) -> None:
    counter = Counter(7)
    source = (
        "import sys, time\n"
        "print('loading weights', flush=True)\n"
        "print('RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB', file=sys.stderr, flush=True)\n"
        "time.sleep(300)\n"
    )
    p = proc(h, py(source), counter=counter)
    await p.start()
    await until(lambda: len(h.sink.texts()) == 2, "child output")
    assert p.pid is not None
    counter.value = 8  # what the kernel's OOM killer does to the cgroup's memory.events
    os.kill(p.pid, signal.SIGKILL)
    await until(lambda: p.state is S.CRASHED, "crash")
    last = p.info()["last_exit"]
    assert (last["exit_code"], last["signal"], last["oom_killed"]) == (-signal.SIGKILL, "SIGKILL", True)
    assert last["reason"] == "killed by the kernel's OOM killer (SIGKILL)"
    assert last["last_errors"] == ["RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"]
    end = h.sink.statuses()[-1]
    assert end.level is Level.ERROR
    assert re.fullmatch(
        r"killed by the kernel's OOM killer \(SIGKILL\) after \d+\.\ds; "
        r"last error: RuntimeError: CUDA out of memory\. Tried to allocate 2\.00 GiB",
        end.message,
    ), end.message


async def test_an_oom_kill_elsewhere_in_the_cgroup_is_mentioned_not_blamed(h: Harness) -> None:
    counter = Counter(0)
    flag = h.tmp_path / "go"
    p = proc(h, py(wait_for_file(flag, "sys.exit(1)")), counter=counter)
    await p.start()
    counter.value = 1  # a worker was OOM-killed; the leader then exited 1
    flag.touch()
    await until(lambda: p.state is S.CRASHED, "crash")
    last = p.info()["last_exit"]
    assert (last["exit_code"], last["signal"], last["oom_killed"]) == (1, None, False)
    assert last["reason"] == (
        "exited with code 1 (the kernel's OOM killer killed a process of its memory cgroup during this run)"
    )


async def test_an_unknown_counter_blames_nobody(h: Harness) -> None:
    p = proc(h, py("import time\nprint('up', flush=True)\ntime.sleep(300)"), counter=Counter(None))
    await p.start()
    await until(lambda: "up" in h.sink.texts(), "child up")
    assert p.pid is not None
    os.kill(p.pid, signal.SIGKILL)
    await until(lambda: p.state is S.CRASHED, "crash")
    assert p.info()["last_exit"]["reason"] == "killed by SIGKILL (not by logcast)"


def test_how_it_ended() -> None:
    assert how_it_ended(1, killed_by_logcast=False, oom_kills=0) == ("exited with code 1", None, False)
    assert how_it_ended(-signal.SIGSEGV, killed_by_logcast=False, oom_kills=0) == (
        "killed by SIGSEGV",
        "SIGSEGV",
        False,
    )
    assert how_it_ended(-signal.SIGKILL, killed_by_logcast=True, oom_kills=0) == (
        "killed by SIGKILL",
        "SIGKILL",
        False,
    )
    assert how_it_ended(-signal.SIGKILL, killed_by_logcast=False, oom_kills=2)[2] is True
    assert how_it_ended(-signal.SIGKILL, killed_by_logcast=True, oom_kills=1)[2] is False


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.04, "0.0s"),
        (0.4, "0.4s"),
        (9.94, "9.9s"),
        (12.4, "12s"),
        (133, "2m13s"),
        (3600 + 5 * 60 + 9, "1h05m"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


# --------------------------------------------------------------------------- the real counter, on fake files


def fake_cgroups(tmp_path: Path, pid: int, proc_cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc_root, cgroup_root = tmp_path / "proc", tmp_path / "cgroup"
    (proc_root / str(pid)).mkdir(parents=True)
    (proc_root / str(pid) / "cgroup").write_text(proc_cgroup)
    for relative, text in files.items():
        path = cgroup_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return proc_root, cgroup_root


V2_EVENTS = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n"
V1_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"


@pytest.mark.parametrize(
    ("proc_cgroup", "files", "expected", "count"),
    [
        # cgroup v2
        ("0::/system.slice/logcast.service\n",
         {"system.slice/logcast.service/memory.events": V2_EVENTS},
         "system.slice/logcast.service/memory.events", 2),
        # hybrid: v2 mounted under unified/ without the memory controller, v1 memory holds it
        ("4:memory:/process_api/abc\n1:cpu:/\n0::/\n",
         {"unified/cgroup.procs": "", "memory/process_api/abc/memory.oom_control": V1_CONTROL},
         "memory/process_api/abc/memory.oom_control", 5),
        # v1 with joined controllers
        ("7:memory,hugetlb:/docker/x\n", {"memory/docker/x/memory.oom_control": V1_CONTROL},
         "memory/docker/x/memory.oom_control", 5),
        # no memory cgroup file anywhere: unknown
        ("0::/\n", {}, None, None),
        # a path that tries to climb out is ignored
        ("0::/../../etc\n", {"memory.events": V2_EVENTS}, None, None),
    ],
)  # fmt: skip
def test_the_real_counter_reader_on_fake_cgroup_files(
    tmp_path: Path, proc_cgroup: str, files: dict[str, str], expected: str | None, count: int | None
) -> None:
    proc_root, cgroup_root = fake_cgroups(tmp_path, 4242, proc_cgroup, files)
    path = oom_counter_file(4242, proc=proc_root, cgroup=cgroup_root)
    assert path == (cgroup_root / expected if expected else None)
    assert (read_oom_kills(path) if path else None) == count


def test_read_oom_kills_counts_up_and_tolerates_garbage(tmp_path: Path) -> None:
    events = tmp_path / "memory.events"
    events.write_text(V2_EVENTS)
    assert read_oom_kills(events) == 2
    events.write_text(V2_EVENTS.replace("oom_kill 2", "oom_kill 3"))
    assert read_oom_kills(events) == 3
    events.write_text("oom_kill many\n")
    assert read_oom_kills(events) is None
    assert read_oom_kills(tmp_path / "missing") is None
    assert oom_counter_file(999_999_999, proc=tmp_path) is None  # no such process


def test_the_real_counter_on_this_machine_reads_or_says_unknown() -> None:
    value = cgroup_oom_counter(os.getpid())()
    assert value is None or value >= 0


# --------------------------------------------------------------------------- readiness and spawn failures


async def test_a_run_that_never_became_ready_says_so(h: Harness) -> None:
    flag = h.tmp_path / "die"
    source = wait_for_file(flag, "print('error: model file truncated', flush=True)\nsys.exit(1)")
    p = proc(h, py(source), ready=ReadySettings(log=re.compile("listening"), timeout=0.2))
    await p.start()
    await until(lambda: p.not_ready, "the probe to time out")
    warning = h.sink.statuses()[-1]  # the timeout itself is a warning; the process runs on
    assert warning.state is S.RUNNING and warning.level is Level.WARNING
    assert warning.message.startswith("not ready after 0.2s")
    flag.touch()
    await until(lambda: p.state is S.CRASHED, "crash")
    last = p.info()["last_exit"]
    assert last["reason"] == (
        "exited with code 1; it never became ready (no log line matching 'listening' within 0.2s)"
    )
    assert last["last_errors"] == ["error: model file truncated"]
    assert re.fullmatch(
        r"exited with code 1 after \d+\.\ds; it never became ready \(no log line matching 'listening' "
        r"within 0\.2s\); last error: error: model file truncated",
        h.sink.statuses()[-1].message,
    )


async def test_a_spawn_failure(h: Harness) -> None:
    p = proc(h, ["/nonexistent/llama-server"])
    await p.start()
    assert p.state is S.CRASHED
    last = p.info()["last_exit"]
    assert last["exit_code"] is None and last["signal"] is None and not last["oom_killed"]
    assert last["reason"] == "failed to start: command not found: /nonexistent/llama-server"
    assert h.sink.statuses()[-1].message == last["reason"]


# --------------------------------------------------------------------------- through the supervisor, on a real hub


async def test_first_and_last_seq_of_the_failed_run_on_a_real_hub(tmp_path: Path) -> None:
    hub = Hub(MemoryStore())
    await hub.open(["app"])
    counter = Counter(0)
    flag = tmp_path / "second"
    source = (
        "import os, sys\n"
        f"if os.path.exists({str(flag)!r}):\n"
        "    print('error: run two failed', flush=True)\n"
        "    sys.exit(4)\n"
        "print('run one is fine')\n"
    )
    settings = ProcessSettings(
        name="app", command=(PYTHON, "-c", source), cwd=tmp_path, restart=RestartPolicy.NEVER
    )
    sup = Supervisor(Settings(processes={"app": settings}), hub, history=hub, oom_counter=counter)
    try:
        await sup.start("app")
        await until(lambda: sup.info("app")["state"] == "exited", "run 1 exits cleanly")
        assert sup.info("app")["last_exit"] is None
        flag.touch()
        await sup.start("app")
        await until(lambda: sup.info("app")["state"] == "crashed", "run 2 crashes")
        last = sup.info("app")["last_exit"]
        assert last["run"] == 2 and last["exit_code"] == 4
        assert last["last_errors"] == ["error: run two failed"]
        await until(lambda: hub.get("app").visible_seq >= last["last_seq"], "the records to be visible")
        records = await asyncio.wait_for(hub.page("app", after=last["first_seq"] - 1, limit=100), DEADLINE)
        run = [r for r in records if r.seq <= last["last_seq"]]
        # exactly run 2: from its "starting" record to the one that says it crashed
        assert {r.run for r in run} == {2}
        assert run[0].state is S.STARTING and run[0].message.startswith("starting ")
        assert run[-1].state is S.CRASHED and run[-1].message.startswith("exited with code 4 after ")
        assert [r.message for r in run if r.stream is not Stream.SYSTEM] == ["error: run two failed"]
        before = await hub.page("app", after=last["first_seq"] - 2, limit=1)
        assert before[0].run == 1
    finally:
        await sup.shutdown()
        await hub.close()
