"""The running engine as the web layer sees it: settings, store, hub, supervisor.

`Runtime.start()` brings them up in order (store, hub, supervisor, autostart) and
`Runtime.stop()` takes them down in the reverse order the brief asks for: end the
streams, stop the children, flush the store.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from logcast.config import Settings
from logcast.hub import Hub
from logcast.store import open_store
from logcast.store.base import Store
from logcast.supervise.supervisor import Supervisor

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    hub: Hub
    supervisor: Supervisor
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(cls, settings: Settings, *, autostart: bool = True) -> Runtime:
        storage = settings.storage
        # In a worker thread: it creates the directory, and the Redis engine imports redis-py.
        store = await asyncio.to_thread(
            open_store,
            storage.engine,
            dir=storage.dir,
            redis_url=storage.redis_url,
            retain_lines=storage.retain_lines,
        )
        await store.open()
        hub = Hub(store, memory_lines=storage.memory_lines, memory_bytes=storage.memory_bytes)
        await hub.open(settings.processes)
        supervisor = Supervisor(settings, hub, runs={name: hub.last_run(name) for name in settings.processes})
        rt = cls(settings, store, hub, supervisor)
        if autostart:
            await supervisor.start_autostart()
        return rt

    def end_streams(self) -> None:
        self.shutdown.set()
        self.hub.end_subscriptions()

    async def stop(self) -> None:
        self.end_streams()
        try:
            await self.supervisor.shutdown()
        finally:
            await self.hub.flush(timeout=10.0)
            await self.hub.close()
            await self.store.close()
