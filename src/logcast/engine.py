"""The engine room: store, hub and supervised processes, started and stopped in order.

`serve` and `run` start an `Engine`; the web serves one through the few things it
needs (`Processes`, the hub, the settings) and never imports `supervise` itself, so
that another kind of engine (a view of several hosts) can stand in its place.
Shutdown is owned here, in one order: end the streams, stop the children, flush the
store, close it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from logcast.config import ProcessSettings, Settings
from logcast.hub import Hub
from logcast.libc import fix_mmap_threshold, fix_trim_threshold
from logcast.loop import cancel_all
from logcast.samples import INTERVAL as SAMPLE_INTERVAL
from logcast.samples import SampleLog
from logcast.schemas import Host, HttpReady, LogReady, ProcessConfig
from logcast.secrets import mask_argv, mask_env, mask_text
from logcast.store import open_store
from logcast.store.base import Store
from logcast.supervise.adopt import every_child_is_ours
from logcast.supervise.resources import Resources, ResourceSampler
from logcast.supervise.supervisor import Supervisor
from logcast.types import Entry

if TYPE_CHECKING:
    from logcast.store.redis_streams import Fence

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.001  # the GIL's, in seconds
# glibc's malloc serves a block from mmap only above a threshold that it raises each time
# such a block is freed (up to 32 MiB); past that, large blocks come from the heap too and
# a flood leaves it fragmented. A fixed threshold keeps the blocks above it mapped apart
# and given back when freed. It stands above a pipe read (`READ_SIZE`, 1 MiB) and the text
# framed from it, which a flood makes and frees several times a read: at 128 KiB each was
# a fresh mapping, faulted in page by page (bench/tail.py's flood: ~390,000 page faults,
# 0.4 s of the framer's system time; 85,000-150,000 at 2 MiB, the server's CPU 0.3-0.6 s
# lower). Blocks below it (those, 256 KiB packs, SSE batches) come from the heap, which
# keeps what lies freed between blocks still in use: the store writer gives that back
# once output is calm again after a flood (`StoreWriter._trim_when_calm`).
MMAP_THRESHOLD = 2 << 20
# Fixing the mmap threshold also fixes the trim threshold at glibc's 128 KiB: a free()
# that leaves more than that free at the top of the heap gives it back, and the next
# pipe read grows the heap again, faulted in page by page. A flood did that read after
# read: in bench/ingest.py's flood (run in-process) 100,000-225,000 minor faults and
# 0.11-0.35 s of the framer's system time, against 28,000-42,000 and 0.03-0.07 s with
# 4 MiB (16 and 64 MiB: ~28,000). bench/ingest.py, medians of 3 runs, alternating:
# 600,000-676,000 lines/s into SQLite against 526,000-563,000 (4 and 16 MiB alike). At
# most this much free memory stays at the top of each of malloc's heaps (one a thread,
# about): bench/burst.py's peak RSS rose by ~10 MB at 16 MiB, ~5 at 4. The writer's trim
# after a flood gives it back.
TRIM_THRESHOLD = 4 << 20
FOLLOW_BATCH = 2000  # entries `follow` takes at a time


def tune_runtime() -> None:
    """Tune the interpreter for a process that keeps a large memory tail and many threads.

    Records are tuples that live a while in the ring and form no cycles: the cyclic
    collector runs rarely, and what exists after start-up is frozen out of it. A short
    GIL switch interval lets the store writer and the readers back in sooner beside a
    busy framer (bench/ingest.py measures both). For the fixed mmap and trim
    thresholds see `MMAP_THRESHOLD` and `TRIM_THRESHOLD`.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(500_000, 50, 100)
    sys.setswitchinterval(SWITCH_INTERVAL)
    fix_mmap_threshold(MMAP_THRESHOLD)
    fix_trim_threshold(TRIM_THRESHOLD)


class Processes(Protocol):
    """The configured processes, as the web controls and describes them."""

    def names(self) -> list[str]: ...

    def __contains__(self, name: object) -> bool: ...

    def info(self, name: str) -> Mapping[str, Any]: ...

    async def start(self, name: str) -> bool: ...

    async def stop(self, name: str) -> bool: ...

    async def restart(self, name: str) -> bool: ...

    async def shutdown(self) -> None:
        """Stop every process (the engine's shutdown)."""
        ...


def describe(name: str, process: ProcessSettings) -> ProcessConfig:
    """How a process is configured, as the API shows it: credentials masked."""
    ready: LogReady | HttpReady | None = None
    if process.ready is not None:
        if process.ready.log is not None:
            ready = LogReady(log=process.ready.log.pattern, timeout=process.ready.timeout)
        else:
            ready = HttpReady(http=mask_text(process.ready.http or ""), timeout=process.ready.timeout)
    return ProcessConfig(
        name=name,
        aliases=list(process.aliases),
        command=mask_argv(process.command),
        cwd=str(process.cwd),
        env=mask_env(process.env),
        autostart=process.autostart,
        restart=str(process.restart),
        pty=process.pty,
        ready=ready,
        stop_signal=process.stop_signal.name.removeprefix("SIG"),
        stop_timeout=process.stop_timeout,
        depends_on={name: str(condition) for name, condition in process.depends_on.items()},
        restart_with=process.restart_with,
    )


@dataclass
class Engine:
    settings: Settings
    store: Store
    hub: Hub
    processes: Processes
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    host: str = field(default_factory=socket.gethostname)  # where the processes run
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> its resources, last sample
    samples: SampleLog = field(default_factory=SampleLog)
    flush_timeout: float = 10.0  # s `stop` waits for the store to take what is left
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def problem(self) -> str | None:
        """Why the engine cannot answer now (the API says 503 with it), or None."""
        return None

    def resources(self, name: str) -> dict[str, Any] | None:
        """What the process tree of `name` uses (`schemas.Resources`), or None."""
        return self.usage.get(name)

    def _sample_resources(self) -> None:
        sampler = ResourceSampler()

        def roots() -> dict[str, int]:
            infos = ((name, self.processes.info(name)) for name in self.processes.names())
            return {name: int(info["pid"]) for name, info in infos if info.get("pid")}

        def keep(sample: Mapping[str, Resources]) -> None:
            self.usage = {
                name: {**resources.as_dict(), "cpu_seconds_total": round(resources.cpu_seconds_total, 3)}
                for name, resources in sample.items()
            }

        self._background.append(asyncio.create_task(sampler.run(roots, keep), name="logcast-resources"))

    def keep_samples(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Every INTERVAL s, a sample of each process for the sparklines (`samples`)."""

        async def run() -> None:
            while True:
                self.record_samples(time.time())
                await sleep(SAMPLE_INTERVAL)

        self._background.append(asyncio.create_task(run(), name="logcast-samples"))

    def record_samples(self, at: float) -> None:
        names = self.processes.names()
        for name in names:
            if name in self.hub.names():
                self.samples.add(
                    name, at, self.hub.stats(name), self.processes.info(name), self.resources(name)
                )
        self.samples.forget(set(names))

    def configs(self) -> dict[str, ProcessConfig]:
        """Each configured process as the API describes its configuration, in config order."""
        return {name: describe(name, p) for name, p in self.settings.processes.items()}

    def hosts(self) -> list[Host]:
        """The hosts that run the processes: here, this one."""
        return [Host(host=self.host, alive=True, processes=self.processes.names())]

    async def clear(self, name: str, upto: int | None = None) -> int:
        """Forget the history of `name` up to `upto` (all of it when None); the last seq cleared."""
        return await self.hub.clear(name, upto)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        autostart: bool = True,
        host: str | None = None,
        shared: bool = False,
        fence: Fence | None = None,
        sole: bool = False,
    ) -> Engine:
        """Open the store, load the hub, start the supervisor and the autostart processes.
        `shared`: other hosts write to the same store; only this host's processes are ours.
        `fence`: what the store's writes need to hold (an agent's, `RedisStore`).
        `sole`: this process has no children but the engine's (`logcast serve`, `logcast
        agent`), so that every orphan that comes to it is reaped (`adopt.every_child_is_ours`)."""
        tune_runtime()
        if sole:
            every_child_is_ours()
        storage = settings.storage
        host = host or socket.gethostname()
        # In a worker thread: it creates the directory, and the Redis engine imports redis-py.
        store = await asyncio.to_thread(
            open_store,
            storage.engine,
            dir=storage.dir,
            redis_url=storage.redis_url,
            retain_lines=storage.retain_lines,
            host=host,
            fence=fence,
        )
        await store.open()
        hub = Hub(store, memory_lines=storage.memory_lines, memory_bytes=storage.memory_bytes)
        await hub.open(settings.processes, stored=not shared)
        supervisor = Supervisor(
            settings, hub, runs={name: hub.last_run(name) for name in settings.processes}, history=hub
        )
        engine = cls(settings, store, hub, supervisor, host=host)
        if autostart:
            await supervisor.start_autostart()
        engine._sample_resources()
        engine.keep_samples()
        return engine

    async def follow(self, name: str) -> AsyncIterator[Entry]:
        """Every entry of process `name` from this start on, until the engine stops."""
        hub = self.hub
        with await hub.subscribe(name, after=hub.get(name).opened_at_seq) as sub:
            while not sub.closed and not self.shutdown.is_set():
                for entry in await sub.next(FOLLOW_BATCH):
                    yield entry

    def end_streams(self) -> None:
        """Tell every stream to end (the first step of a shutdown; safe to call again)."""
        self.shutdown.set()
        self.hub.end_subscriptions()

    def hurry(self) -> None:
        """Asked again to stop while stopping: the children are SIGKILLed instead of waited
        for (their `stop_timeout`); the store's last writes are still waited for. A replica
        supervises nothing here, and has nothing to hurry."""
        hurry = getattr(self.processes, "hurry", None)
        if hurry is not None:
            hurry()

    async def stop(self) -> None:
        """The ordered shutdown: streams, children, the store's last writes (waited for at
        most `flush_timeout` s), the store."""
        self.end_streams()
        try:
            await cancel_all(self._background)
        finally:
            await self._shut_down()

    async def _shut_down(self) -> None:
        try:
            await self.processes.shutdown()
        finally:
            await self.hub.flush(timeout=self.flush_timeout)
            await self.hub.close()
            await self.store.close()
