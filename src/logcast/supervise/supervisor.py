"""All configured processes, under one orphan guard.

It knows nothing of HTTP or storage: the web layer and the CLI drive it, and the hub
receives what it produces through the `LineSink`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

from logcast.config import Settings
from logcast.errors import UnknownProcess
from logcast.supervise.guard import Guard
from logcast.supervise.process import ManagedProcess
from logcast.supervise.spawn import Spawner
from logcast.types import LineSink

__all__ = ["Supervisor"]

logger = logging.getLogger(__name__)


class Supervisor:
    """One `ManagedProcess` per configured process, in config order, sharing one `Spawner`
    and so one orphan guard. Use it as `async with Supervisor(...) as supervisor:`."""

    def __init__(
        self,
        settings: Settings,
        sink: LineSink,
        *,
        runs: Mapping[str, int] | None = None,
        spawner: Spawner | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._spawner = spawner if spawner is not None else Spawner(Guard())
        runs = runs or {}
        self._processes: dict[str, ManagedProcess] = {
            name: ManagedProcess(
                process_settings, sink, clock=clock, sleep=sleep, spawner=self._spawner, run=runs.get(name, 0)
            )
            for name, process_settings in settings.processes.items()
        }

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
        """Start `name`; False if it was already running."""
        return await self.get(name).start()

    async def stop(self, name: str) -> bool:
        """Stop `name`; False if it was not running."""
        return await self.get(name).stop()

    async def restart(self, name: str) -> bool:
        return await self.get(name).restart()

    async def start_autostart(self) -> None:
        """Start, in config order, every process with `autostart = true`."""
        for process in self._processes.values():
            if process.settings.autostart:
                await process.start()

    async def shutdown(self) -> None:
        """Stop every process concurrently (each within its `stop_timeout`, then SIGKILL of
        its group), and only then the orphan guard, which would otherwise kill the groups."""
        results = await asyncio.gather(
            *(process.stop() for process in self._processes.values()), return_exceptions=True
        )
        for process, result in zip(self._processes.values(), results, strict=True):
            if isinstance(result, BaseException):
                logger.error("%s: stop failed during shutdown", process.name, exc_info=result)
        self._spawner.close()

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
