"""All configured processes, under one orphan guard, started and stopped in dependency order.

It knows nothing of HTTP or storage: the web layer and the CLI drive it, and the hub
receives what it produces through the `LineSink`.

`depends_on`: a process starts only once each dependency reached its condition, whoever
asks (autostart, the API, an automatic restart); until then it waits, visibly. A failed
dependency leaves its dependents waiting, never crashed. Shutdown stops dependents
before their dependencies; stopping one process stops only that one. With
`restart_with`, a process that runs is restarted once a dependency that started a new
run since reached its condition again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

from logcast.config import Settings, start_order
from logcast.errors import ControlRefused, UnknownProcess
from logcast.supervise.depends import Changes, Dependencies, met
from logcast.supervise.exits import OomCounter, RunHistory, cgroup_oom_counter
from logcast.supervise.guard import Guard
from logcast.supervise.process import ManagedProcess, pipe_readers
from logcast.supervise.spawn import Spawner
from logcast.types import LineSink, ProcessState

SPILL_DIR = "spill"  # under the storage dir: where a flood far ahead of framing waits

__all__ = ["Supervisor"]

logger = logging.getLogger(__name__)


class Supervisor:
    """One `ManagedProcess` per configured process, in config order, sharing one `Spawner`
    and so one orphan guard. Use it as `async with Supervisor(...) as supervisor:`.

    `history` (the hub) lets `last_exit` name the seqs of a failed run; `oom_counter`
    reads a child's cgroup OOM-kill counter (tests inject one).
    """

    def __init__(
        self,
        settings: Settings,
        sink: LineSink,
        *,
        runs: Mapping[str, int] | None = None,
        spawner: Spawner | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        history: RunHistory | None = None,
        oom_counter: OomCounter = cgroup_oom_counter,
    ) -> None:
        self.settings = settings
        self._spawner = spawner if spawner is not None else Spawner(Guard(), adopt=True)
        runs = runs or {}
        self._changes = Changes()
        self._closing = False
        self._tasks: set[asyncio.Task[bool]] = set()  # restarts with a dependency (`restart_with`)
        self._processes: dict[str, ManagedProcess] = {}
        for name, process_settings in settings.processes.items():
            gate = (
                Dependencies(process_settings.depends_on, self._processes, self._changes)
                if process_settings.depends_on
                else None
            )
            self._processes[name] = ManagedProcess(
                process_settings,
                sink,
                clock=clock,
                sleep=sleep,
                spawner=self._spawner,
                run=runs.get(name, 0),
                gate=gate,
                on_change=self._changed,
                history=history,
                oom_counter=oom_counter,
                reader_factory=pipe_readers(settings.storage.dir / SPILL_DIR),
            )
        self._order = start_order(settings.processes)  # dependencies first
        self._dependents: dict[str, list[str]] = {name: [] for name in self._processes}
        for name, process_settings in settings.processes.items():
            for dep in process_settings.depends_on:
                self._dependents[dep].append(name)

    @property
    def guard_pid(self) -> int | None:
        """The orphan guard's pid, once started (for diagnostics and tests)."""
        guard = self._spawner.guard
        return guard.pid if guard is not None else None

    def names(self) -> list[str]:
        return list(self._processes)

    def get(self, name: str) -> ManagedProcess:
        try:
            return self._processes[name]
        except KeyError:
            raise UnknownProcess(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._processes

    def info(self, name: str) -> dict[str, Any]:
        return self.get(name).info()

    def infos(self) -> list[dict[str, Any]]:
        return [process.info() for process in self._processes.values()]

    async def start(self, name: str) -> bool:
        """Start `name`; False if it was already running or waiting to start. It returns once
        the child is spawned, or at once when it waits for its dependencies
        (`info(name)["waiting_for"]` says for what): it never waits for them itself.
        Refused (ControlRefused) once shutdown began: the child would outlive it."""
        process = self.get(name)
        self._refuse_while_closing(name, "start")
        return await process.start()

    async def stop(self, name: str) -> bool:
        """Stop `name` (or cancel its pending start); False if it was not running. Its
        dependents keep running."""
        return await self.get(name).stop()

    async def restart(self, name: str) -> bool:
        process = self.get(name)
        self._refuse_while_closing(name, "restart")
        return await process.restart()

    def _refuse_while_closing(self, name: str, action: str) -> None:
        if self._closing:
            raise ControlRefused(f"logcast is stopping: the {action} of {name} was not done")

    async def start_autostart(self) -> None:
        """Start every process with `autostart = true`, each after its dependencies (in
        config order otherwise); one whose dependencies are not there yet waits for them."""
        for name in self._order:
            process = self._processes[name]
            if process.settings.autostart:
                await process.start()

    def _changed(self, process: ManagedProcess) -> None:
        """After every change of a process (on the loop): wake the waiting starts, and restart
        the dependents with `restart_with` when it is back at their condition in a new run."""
        self._changes.notify()
        if self._closing:
            return
        for name in self._dependents[process.name]:
            dependent = self._processes[name]
            if not dependent.settings.restart_with:
                continue
            if dependent.state not in (ProcessState.RUNNING, ProcessState.READY):
                continue
            condition = dependent.settings.depends_on[process.name]
            seen = dependent.dependency_runs.get(process.name)
            if seen is None or seen == process.run or not met(condition, process):
                continue
            dependent.dependency_runs[process.name] = process.run  # once per new run
            because = f"restarting: {process.name} restarted (run {process.run}, {condition}; restart_with)"
            task = asyncio.create_task(dependent.restart(because), name=f"restart {name} with {process.name}")
            self._tasks.add(task)
            task.add_done_callback(self._restart_done)

    def _restart_done(self, task: asyncio.Task[bool]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("restart with a dependency failed", exc_info=task.exception())

    def hurry(self) -> None:
        """A shutdown that must not wait for the processes' `stop_timeout`s (a second
        Ctrl-C): those stopping are SIGKILLed now, the others as their stop comes."""
        for process in self._processes.values():
            process.hurry()

    async def shutdown(self) -> None:
        """Stop every process, each within its `stop_timeout` (then SIGKILL of its group):
        pending starts and restarts first, then the running processes, each after every
        process that depends on it (unrelated ones at the same time). Only then the orphan
        guard, which would otherwise kill the groups."""
        self._closing = True
        for process in self._processes.values():
            process.closing()  # a run that ends meanwhile is not restarted
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # No child, nothing to order: cancel waits and backoffs now, so that none starts meanwhile.
        idle = [p for p in self._processes.values() if not p.state.is_alive]
        results: list[tuple[ManagedProcess, object]] = list(
            zip(idle, await asyncio.gather(*(p.stop() for p in idle), return_exceptions=True), strict=True)
        )
        stops: dict[str, asyncio.Task[bool]] = {}

        async def stop_after_dependents(process: ManagedProcess) -> bool:
            dependents = [stops[name] for name in self._dependents[process.name]]
            if dependents:
                await asyncio.wait(dependents)
            return await process.stop()

        for name in reversed(self._order):  # dependents come after their dependencies
            stops[name] = asyncio.create_task(
                stop_after_dependents(self._processes[name]), name=f"stop {name}"
            )
        done = await asyncio.gather(*stops.values(), return_exceptions=True)
        results += zip((self._processes[name] for name in stops), done, strict=True)
        for process, result in results:
            if isinstance(result, BaseException):
                logger.error("%s: stop failed during shutdown", process.name, exc_info=result)
        await self._spawner.aclose()

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
