"""depends_on at run time, on real short-lived children: start order, the three conditions,
waiting with a reason, failed dependencies, the API's start, shutdown order, restart_with.

No test sleeps and hopes: each waits for a condition (a status record, a state) with a
deadline; children wait for flag files the test creates. Every child is checked gone
and reaped at the end.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from logcast.config import Condition, ProcessSettings, ReadySettings, RestartPolicy, Settings, parse
from logcast.errors import ControlRefused, UnknownProcess
from logcast.supervise.supervisor import Supervisor
from logcast.types import Level, ProcessState
from tests.test_supervise import (
    DEADLINE,
    IGNORE_TERM,
    PYTHON,
    SLEEP,
    RecordingSink,
    RecordingSpawner,
    StatusRec,
    alive,
    kill_pids,
    until,
)

S = ProcessState
C = Condition


def wait_for_file(flag: Path, then: str) -> str:
    """A child's source: wait (polling) until `flag` exists, then run `then`."""
    return f"import os, sys, time\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.01)\n{then}\n"


class World:
    """A supervisor of real children, a recording sink, and a check that nothing is left."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.sink = RecordingSink()
        self.spawner = RecordingSpawner()
        self.sup: Supervisor | None = None

    def ps(
        self,
        name: str,
        source: str | list[str] = SLEEP,
        *,
        depends_on: Mapping[str, Condition] | None = None,
        **kw: Any,
    ) -> ProcessSettings:
        kw.setdefault("restart", RestartPolicy.NEVER)
        command = tuple(source) if isinstance(source, list) else (PYTHON, "-c", source)
        return ProcessSettings(
            name=name, command=command, cwd=self.tmp_path, depends_on=depends_on or {}, **kw
        )

    def supervisor(self, *processes: ProcessSettings, settings: Settings | None = None) -> Supervisor:
        if settings is None:
            settings = Settings(processes={p.name: p for p in processes})
        self.sup = Supervisor(settings, self.sink, spawner=self.spawner)
        return self.sup

    def flag(self, name: str) -> Path:
        return self.tmp_path / name

    def statuses(self, name: str | None = None) -> list[StatusRec]:
        return self.sink.statuses(name)

    def index(self, name: str, state: ProcessState, run: int = 1) -> int:
        """Where, among every status record, `name` entered `state` in `run`."""
        for i, s in enumerate(self.statuses()):
            if s.process == name and s.state is state and s.run == run:
                return i
        raise AssertionError(f"{name} never entered {state} in run {run}: {self.statuses(name)}")

    def messages(self, name: str) -> list[str]:
        return [s.message for s in self.statuses(name)]

    async def close(self) -> None:
        try:
            if self.sup is not None:
                await asyncio.wait_for(self.sup.shutdown(), DEADLINE)
        finally:
            self.spawner.close()
            pids = [c.pid for c in self.spawner.children]
            leftovers = [pid for pid in pids if alive(pid)]
            kill_pids(leftovers)
            assert not leftovers, f"processes left behind: {leftovers}"
            for c in self.spawner.children:
                assert c.reaped, f"pid {c.pid} was not reaped"


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    world = World(tmp_path)
    yield world
    await world.close()


def spawned(w: World) -> list[str]:
    """The processes in the order their children were spawned (their `running` records)."""
    return [s.process for s in w.statuses() if s.state is S.RUNNING]


# --------------------------------------------------------------------------- start order


async def test_autostart_starts_dependencies_first(w: World) -> None:
    text = (
        f'[process.web]\ncommand = ["{PYTHON}", "-c", "import time; time.sleep(300)"]\n'
        'depends_on = { api = "started" }\n'
        f'[process.other]\ncommand = ["{PYTHON}", "-c", "import time; time.sleep(300)"]\n'
        f'[process.api]\ncommand = ["{PYTHON}", "-c", "import time; time.sleep(300)"]\n'
        'depends_on = { db = "started" }\n'
        f'[process.db]\ncommand = ["{PYTHON}", "-c", "import time; time.sleep(300)"]\n'
    )
    sup = w.supervisor(settings=parse(text))
    assert sup.names() == ["web", "other", "api", "db"]  # still listed in config order
    await sup.start_autostart()
    # "started" is met once the child is spawned: nobody waited, each came after its dependency
    assert spawned(w) == ["db", "api", "web", "other"]
    assert [i["state"] for i in sup.infos()] == ["running"] * 4
    assert all(i["waiting_for"] is None for i in sup.infos())
    assert not any(m.startswith("waiting") for s in w.statuses() for m in [s.message])


async def test_ready_waits_for_the_readiness_log_line(w: World) -> None:
    go = w.flag("db-go")
    db = w.ps(
        "db",
        wait_for_file(go, "print('listening', flush=True)\ntime.sleep(300)"),
        ready=ReadySettings(log=re.compile("listening"), timeout=30),
    )
    web = w.ps("web", depends_on={"db": C.READY})
    sup = w.supervisor(web, db)
    await sup.start_autostart()
    # db is spawned, not ready: web waits, visibly, without a child
    assert sup.info("db")["state"] == "running"
    info = sup.info("web")
    assert (info["state"], info["pid"], info["waiting_for"]) == ("stopped", None, "db (ready)")
    waiting = w.statuses("web")[-1]
    assert (waiting.message, waiting.state, waiting.level) == (
        "waiting for db to be ready",
        S.STOPPED,
        Level.INFO,
    )
    go.touch()
    await until(lambda: sup.info("web")["state"] == "running", "web to start once db is ready")
    assert w.index("db", S.READY) < w.index("web", S.STARTING)
    assert sup.info("web")["waiting_for"] is None
    assert spawned(w) == ["db", "web"]


async def test_exited_ok_starts_the_dependent_after_the_migration_exits_0(w: World) -> None:
    go = w.flag("migrate-go")
    migrate = w.ps("migrate", wait_for_file(go, "print('migrated')\nsys.exit(0)"))
    web = w.ps("web", depends_on={"migrate": C.EXITED_OK})
    sup = w.supervisor(migrate, web)
    await sup.start_autostart()
    assert sup.info("migrate")["state"] == "running"
    assert sup.info("web")["waiting_for"] == "migrate (exited_ok)"
    assert w.messages("web") == ["waiting for migrate to exit with code 0"]
    go.touch()
    await until(lambda: sup.info("web")["state"] == "running", "web to start after the migration")
    assert w.index("migrate", S.EXITED) < w.index("web", S.STARTING)
    assert sup.info("migrate")["state"] == "exited"


async def test_exited_ok_with_a_failed_migration_waits_with_the_reason(w: World) -> None:
    fixed = w.flag("fixed")
    source = f"import os, sys\nprint('error: relation missing', flush=True)\nsys.exit(0 if os.path.exists({str(fixed)!r}) else 1)"
    migrate = w.ps("migrate", source)
    web = w.ps("web", depends_on={"migrate": C.EXITED_OK})
    sup = w.supervisor(migrate, web)
    await sup.start_autostart()
    expected = "waiting for migrate to exit with code 0: migrate crashed (exit code 1)"
    await until(lambda: w.messages("web")[-1:] == [expected], "web to say why it waits")
    assert w.statuses("web")[-1].level is Level.WARNING
    info = sup.info("web")
    assert (info["state"], info["pid"], info["waiting_for"]) == ("stopped", None, "migrate (exited_ok)")
    assert sup.info("migrate")["state"] == "crashed"
    # the migration is fixed and run again: the dependent starts
    fixed.touch()
    assert await sup.start("migrate")
    await until(lambda: sup.info("web")["state"] == "running", "web to start")
    assert w.index("migrate", S.EXITED, run=2) < w.index("web", S.STARTING)


# --------------------------------------------------------------------------- failed dependencies


async def test_a_crashed_dependency_leaves_dependents_waiting_until_it_is_back(w: World) -> None:
    healthy = w.flag("healthy")
    db_source = (
        "import os, sys, time\n"
        f"if not os.path.exists({str(healthy)!r}):\n"
        "    print('error: cannot open data dir', flush=True)\n"
        "    sys.exit(1)\n"
        "print('listening', flush=True)\n"
        "time.sleep(300)\n"
    )
    db = w.ps("db", db_source, ready=ReadySettings(log=re.compile("listening"), timeout=30))
    web = w.ps("web", depends_on={"db": C.READY})
    api = w.ps("api", depends_on={"db": C.STARTED})
    sup = w.supervisor(db, web, api)
    await sup.start_autostart()
    await until(lambda: sup.info("db")["state"] == "crashed", "db to crash")
    expected = "waiting for db to be ready: db crashed (exit code 1)"
    await until(lambda: w.messages("web")[-1:] == [expected], "web's reason")
    # api's condition (started) was met before the crash: it started and stays up
    assert sup.info("api")["state"] == "running"
    # web is not crashed, it waits
    assert (sup.info("web")["state"], sup.info("web")["waiting_for"]) == ("stopped", "db (ready)")
    assert S.CRASHED not in w.sink.states("web")
    assert w.messages("web") == ["waiting for db to be ready", expected]
    # db comes back: web starts
    healthy.touch()
    assert await sup.start("db")
    await until(lambda: sup.info("web")["state"] == "running", "web to start once db is back")
    assert w.index("db", S.READY, run=2) < w.index("web", S.STARTING)
    assert sup.info("web")["run"] == 1


async def test_a_stopped_dependency_is_named_and_a_later_start_releases_the_dependent(w: World) -> None:
    db = w.ps("db", autostart=False)
    web = w.ps("web", depends_on={"db": C.STARTED})
    sup = w.supervisor(db, web)
    await sup.start_autostart()
    assert sup.info("db")["state"] == "stopped"
    assert w.messages("web") == ["waiting for db to start: db is stopped"]
    assert w.statuses("web")[-1].level is Level.WARNING
    assert await sup.start("db")
    await until(lambda: sup.info("web")["state"] == "running", "web to start")
    assert spawned(w) == ["db", "web"]


async def test_a_waiting_dependency_is_named_by_its_dependents(w: World) -> None:
    db = w.ps("db", autostart=False)
    api = w.ps("api", depends_on={"db": C.STARTED})
    web = w.ps("web", depends_on={"api": C.STARTED, "db": C.STARTED})
    sup = w.supervisor(db, api, web)
    await sup.start_autostart()
    assert sup.info("web")["waiting_for"] == "api (started), db (started)"
    assert w.messages("web")[-1] == (
        "waiting for api to start: api is waiting for db (started); waiting for db to start: db is stopped"
    )
    assert await sup.start("db")
    await until(lambda: sup.info("web")["state"] == "running", "the chain to come up")
    assert spawned(w) == ["db", "api", "web"]


# --------------------------------------------------------------------------- the API's start and stop


async def test_start_from_the_api_returns_at_once_with_the_reason_and_stop_cancels_it(w: World) -> None:
    db = w.ps("db", autostart=False, ready=ReadySettings(log=re.compile("never printed"), timeout=30))
    web = w.ps("web", autostart=False, depends_on={"db": C.READY})
    sup = w.supervisor(db, web)
    began = time.monotonic()
    assert await asyncio.wait_for(sup.start("web"), DEADLINE) is True
    assert time.monotonic() - began < 2.0  # it did not wait for db
    assert sup.info("web")["waiting_for"] == "db (ready)"
    assert await sup.start("web") is False  # already waiting: nothing more done
    assert w.messages("web") == ["waiting for db to be ready: db is stopped"]
    # a stop cancels the pending start
    assert await sup.stop("web") is True
    assert sup.info("web")["waiting_for"] is None
    last = w.statuses("web")[-1]
    assert (last.message, last.state) == ("stopped (no longer waiting for db (ready))", S.STOPPED)
    assert await sup.stop("web") is False
    assert await sup.start("db")
    assert sup.info("db")["state"] == "running"
    assert spawned(w) == ["db"]  # web stays stopped
    assert sup.info("web")["state"] == "stopped"


async def test_stopping_a_dependency_does_not_stop_its_dependents(w: World) -> None:
    db = w.ps("db")
    web = w.ps("web", depends_on={"db": C.STARTED})
    sup = w.supervisor(db, web)
    await sup.start_autostart()
    assert await sup.stop("db")
    assert sup.info("db")["state"] == "stopped"
    assert sup.info("web")["state"] == "running"


# --------------------------------------------------------------------------- shutdown


async def test_shutdown_stops_dependents_before_their_dependencies(w: World) -> None:
    # each takes a while to stop (SIGTERM ignored, then SIGKILL after stop_timeout), so an
    # unordered shutdown would interleave them
    slow = IGNORE_TERM + "import time\nprint('up', flush=True)\ntime.sleep(300)"
    db = w.ps("db", slow, stop_timeout=0.3)
    api = w.ps("api", slow, depends_on={"db": C.STARTED}, stop_timeout=0.3)
    web = w.ps("web", slow, depends_on={"api": C.STARTED}, stop_timeout=0.3)
    other = w.ps("other", slow, stop_timeout=0.3)
    sup = w.supervisor(db, other, api, web)
    await sup.start_autostart()
    await until(lambda: w.sink.texts().count("up") == 4, "every child to ignore SIGTERM")
    assert [i["state"] for i in sup.infos()] == ["running"] * 4
    await sup.shutdown()
    assert [i["state"] for i in sup.infos()] == ["stopped"] * 4
    assert w.index("web", S.STOPPED) < w.index("api", S.STOPPING)
    assert w.index("api", S.STOPPED) < w.index("db", S.STOPPING)
    assert w.index("other", S.STOPPING) < w.index("api", S.STOPPING)  # unrelated: at once


async def test_shutdown_cancels_pending_starts(w: World) -> None:
    db = w.ps("db", autostart=False)
    web = w.ps("web", depends_on={"db": C.STARTED})
    sup = w.supervisor(db, web)
    await sup.start_autostart()
    assert sup.info("web")["waiting_for"] == "db (started)"
    await sup.shutdown()
    assert sup.info("web")["waiting_for"] is None
    assert w.messages("web")[-1] == "stopped (no longer waiting for db (started))"
    assert spawned(w) == []


async def test_no_start_or_restart_once_shutdown_began(w: World) -> None:
    """A command that comes in while logcast stops (an HTTP request, an agent's command)
    would spawn a child that outlives it: refused with a reason instead."""
    db = w.ps("db", autostart=False)
    sup = w.supervisor(db)
    await sup.shutdown()
    for action in (sup.start, sup.restart):
        with pytest.raises(ControlRefused, match="logcast is stopping"):
            await action("db")
    with pytest.raises(UnknownProcess):
        await sup.start("nope")  # an unknown name is still that
    assert spawned(w) == []


# --------------------------------------------------------------------------- restart_with


async def test_restart_with_restarts_dependents_once_the_dependency_is_back(w: World) -> None:
    ready = ReadySettings(log=re.compile("listening"), timeout=30)
    db = w.ps("db", "import time\nprint('listening', flush=True)\ntime.sleep(300)", ready=ready)
    web = w.ps("web", depends_on={"db": C.READY}, restart_with=True)
    other = w.ps("other", depends_on={"db": C.READY})  # restart_with = false
    sup = w.supervisor(db, web, other)
    await sup.start_autostart()
    await until(lambda: sup.info("web")["state"] == sup.info("other")["state"] == "running", "all up")
    first_web = sup.info("web")["pid"]
    assert await sup.restart("db")
    await until(
        lambda: sup.info("web")["run"] == 2 and sup.info("web")["state"] == "running", "web restarted"
    )
    assert sup.info("web")["pid"] != first_web and not alive(first_web)
    # after db was back at web's condition (ready) in its new run, and said why
    assert w.index("db", S.READY, run=2) < w.index("web", S.STOPPING)
    assert "restarting: db restarted (run 2, ready; restart_with)" in w.messages("web")
    # not restarted: `other` has no restart_with
    assert sup.info("other")["run"] == 1 and sup.info("other")["state"] == "running"
    assert sup.info("web")["restarts"] == 1


async def test_restart_with_follows_automatic_restarts_of_a_crashed_dependency(w: World) -> None:
    crash, once = w.flag("crash"), w.flag("crashed-once")
    source = (  # the first run crashes when told to; the next ones stay up
        "import os, sys, time\n"
        f"if not os.path.exists({str(once)!r}):\n"
        f"    while not os.path.exists({str(crash)!r}):\n"
        "        time.sleep(0.01)\n"
        f"    open({str(once)!r}, 'w').close()\n"
        "    sys.exit(1)\n"
        "time.sleep(300)\n"
    )
    db = w.ps("db", source, restart=RestartPolicy.ON_FAILURE, backoff_initial=0.05, min_uptime=0)
    web = w.ps("web", depends_on={"db": C.STARTED}, restart_with=True)
    sup = w.supervisor(db, web)
    await sup.start_autostart()
    assert sup.info("web")["state"] == "running"
    crash.touch()
    await until(
        lambda: sup.info("web")["run"] == 2 and sup.info("web")["state"] == "running", "web restarted"
    )
    assert sup.info("db")["run"] == 2 and sup.info("db")["state"] == "running"
    # web ran on through db's crash and backoff, and was restarted once db's new run had started
    assert w.index("db", S.CRASHED) < w.index("db", S.RUNNING, run=2) < w.index("web", S.STOPPING)
    assert "restarting: db restarted (run 2, started; restart_with)" in w.messages("web")


async def test_a_restart_with_queued_behind_a_stop_does_not_bring_the_process_back(w: World) -> None:
    db = w.ps("db")
    slow = IGNORE_TERM + "import time\nprint('up', flush=True)\ntime.sleep(300)"
    web = w.ps("web", slow, depends_on={"db": C.STARTED}, restart_with=True, stop_timeout=0.5)
    sup = w.supervisor(db, web)
    await sup.start_autostart()
    await until(lambda: "up" in w.sink.texts("web"), "web to ignore SIGTERM")
    stopping = asyncio.create_task(sup.stop("web"))  # takes web's lock first
    await until(lambda: sup.info("web")["state"] == "stopping", "web stopping")
    assert await sup.restart("db")  # db's new run triggers a restart of web, queued behind the stop
    assert await stopping
    await until(lambda: not sup._tasks, "the queued restart to be done")
    assert sup.info("web")["state"] == "stopped" and sup.info("web")["run"] == 1
    assert not any(m.startswith("restarting:") for m in w.messages("web"))
