"""`depends_on` at run time: whether a process may start, and if not, the reason shown.

A process whose dependencies have not reached their condition does not start: it keeps
its state (stopped, exited, crashed, or backoff for an automatic restart), shows what it
waits for in `info()["waiting_for"]` and says so in a status record, and starts once
they have. No state of its own: no child exists, and the state table stays as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from logcast.config import Condition
from logcast.types import ProcessState

if TYPE_CHECKING:
    from logcast.supervise.process import ManagedProcess

__all__ = ["Changes", "Dependencies", "Gate", "Waiting", "met", "phrase"]

S = ProcessState

_PHRASES = {
    Condition.STARTED: "to start",
    Condition.READY: "to be ready",
    Condition.EXITED_OK: "to exit with code 0",
}


def phrase(condition: Condition) -> str:
    return _PHRASES[condition]


@dataclass(frozen=True)
class Waiting:
    """What a process waits for: `short` for `info()` ("db (ready)"), `message` for its
    status record, `failed` when a dependency will not get there by itself."""

    short: str
    message: str
    failed: bool


class Gate(Protocol):
    """What a `ManagedProcess` asks before it starts a run."""

    def unmet(self) -> Waiting | None:
        """None when every dependency reached its condition."""
        ...

    def runs(self) -> dict[str, int]:
        """The run number of each dependency now (noted at each start, for `restart_with`)."""
        ...

    async def changed(self) -> None:
        """Return after the next change of any process's state."""
        ...


def met(condition: Condition, process: ManagedProcess) -> bool:
    """`started`: its child was spawned (running or ready); `ready`: its probe passed;
    `exited_ok`: its last run exited with code 0 (and no other run has started since)."""
    state = process.state
    if condition is Condition.STARTED:
        return state is S.RUNNING or state is S.READY
    if condition is Condition.READY:
        return state is S.READY
    return state is S.EXITED or (state is S.BACKOFF and process.exit_code == 0)


def _why(condition: Condition, process: ManagedProcess) -> str | None:
    """Why `process` will not reach `condition` by itself, or None while it is on its way."""
    state, name = process.state, process.name
    if process.waiting_for is not None:
        return f"{name} is waiting for {process.waiting_for}"
    if state is S.STOPPED:
        return f"{name} is stopped"
    if state is S.CRASHED or (state is S.BACKOFF and process.exit_code != 0):
        how = process.last_exit.short if process.last_exit is not None else "failed"
        restarting = ", restarting" if state is S.BACKOFF else ""
        return f"{name} crashed ({how}){restarting}"
    if state is S.EXITED or state is S.BACKOFF:  # exited with code 0, which is not what is awaited
        return f"{name} exited (exit code 0)"
    if condition is Condition.READY and state is S.RUNNING and process.not_ready:
        return f"{name} is not ready in time"
    return None


class Changes:
    """Wakes every waiter at each change of any process (on the event loop)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)


class Dependencies:
    """The `Gate` of one process, reading the other processes of its supervisor."""

    def __init__(
        self, needs: Mapping[str, Condition], processes: Mapping[str, ManagedProcess], changes: Changes
    ) -> None:
        self.needs = needs
        self._processes = processes
        self._changes = changes

    def unmet(self) -> Waiting | None:
        shorts: list[str] = []
        phrases: list[str] = []
        failed = False
        for name, condition in self.needs.items():
            process = self._processes[name]
            if met(condition, process):
                continue
            why = _why(condition, process)
            failed = failed or why is not None
            shorts.append(f"{name} ({condition})")
            phrases.append(f"waiting for {name} {phrase(condition)}" + (f": {why}" if why else ""))
        if not shorts:
            return None
        return Waiting(", ".join(shorts), "; ".join(phrases), failed)

    def runs(self) -> dict[str, int]:
        return {name: self._processes[name].run for name in self.needs}

    async def changed(self) -> None:
        await self._changes.wait()
