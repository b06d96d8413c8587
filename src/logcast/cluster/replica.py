"""`logcast serve --redis`: the engine a replica serves. It supervises nothing and keeps
nothing another replica could not rebuild: it mirrors every agent's records from Redis
(one `XREAD BLOCK` for all of them) into a hub that its clients read, and sends control
commands to the agent that runs the process."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from logcast.cluster.keys import COMMAND_TIMEOUT, Keys
from logcast.cluster.redis import connect
from logcast.config import Settings
from logcast.engine import Engine
from logcast.errors import ControlRefused, ControlTimeout, StoreError, UnknownProcess
from logcast.hub import MirrorHub
from logcast.loop import cancel_all, raise_if_cancelled
from logcast.schemas import Host, ProcessConfig
from logcast.secrets import mask_text
from logcast.store.redis_streams import RedisStore
from logcast.types import ProcessState

log = logging.getLogger(__name__)

REFRESH = 0.5  # s between two reads of what the agents published
FOLLOW_BLOCK_MS = 1_000  # the one XREAD BLOCK, for every process at once
FOLLOW_COUNT = 5_000  # records per process per read


@dataclass
class View:
    """What the agents published, as this replica last read it."""

    names: list[str] = field(default_factory=list)  # by host, then in each host's config order
    infos: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, ProcessConfig] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> its description
    alive: set[str] = field(default_factory=set)


class ClusterProcesses:
    """Every agent's processes, controlled through Redis commands."""

    def __init__(self, client: aioredis.Redis, keys: Keys, view: Callable[[], View]) -> None:
        self._client = client
        self._keys = keys
        self._view = view

    def names(self) -> list[str]:
        return self._view().names

    def __contains__(self, name: object) -> bool:
        return name in self._view().infos

    def info(self, name: str) -> Mapping[str, Any]:
        view = self._view()
        try:
            info = view.infos[name]
        except KeyError:
            raise UnknownProcess(name) from None
        host = info.get("host")
        if host not in view.alive and not view.hosts.get(str(host), {}).get("stopped"):
            return {**info, "state": ProcessState.UNKNOWN.value, "pid": None}  # lost: who knows
        return info

    async def start(self, name: str) -> bool:
        return bool(await self.command(name, "start"))

    async def stop(self, name: str) -> bool:
        return bool(await self.command(name, "stop"))

    async def restart(self, name: str) -> bool:
        return bool(await self.command(name, "restart"))

    async def shutdown(self) -> None:
        """A replica stops no process: they belong to their agents."""

    async def command(self, name: str, action: str, **args: str) -> object:
        """Have the agent that runs `name` act, and wait for it (COMMAND_TIMEOUT s at most)."""
        host = str(self.info(name).get("host", ""))
        command_id = uuid.uuid4().hex
        fields = {"id": command_id, "action": action, "process": name, **args}
        try:
            await self._client.xadd(
                self._keys.commands(host), cast(Any, fields), maxlen=10_000, approximate=True
            )
            raise_if_cancelled()  # the asker left: do not wait for the answer
            reply = await self._client.blpop([self._keys.reply(command_id)], timeout=COMMAND_TIMEOUT)
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis unreachable: {exc}") from exc
        if reply is None:
            lost = host not in self._view().alive
            why = (
                "it is lost (no heartbeat for 10 s)" if lost else "it is alive but busy or cannot reach redis"
            )
            raise ControlTimeout(
                f"host {host!r} did not {action} {name} within {COMMAND_TIMEOUT:.0f} s: {why}"
            )
        outcome = orjson.loads(cast(list[str], reply)[1])
        if not outcome.get("ok"):
            raise ControlRefused(str(outcome.get("error", "failed")))
        info = outcome.get("info")
        if isinstance(info, dict):
            self._view().infos[name] = info  # what the agent says now, before the next refresh
        return outcome.get("result")


@dataclass
class ClusterEngine(Engine):
    """A replica's engine: a mirror hub over Redis and the agents' processes."""

    client: aioredis.Redis | None = None
    keys: Keys = field(default_factory=Keys)
    url: str = ""
    view: View = field(default_factory=View)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _problem: str | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(cls, settings: Settings, url: str) -> ClusterEngine:
        """Read what the agents published, mirror their records, and keep both current."""
        storage = replace(settings.storage, engine="redis", redis_url=url)
        settings = replace(settings, storage=storage, processes={})
        store = RedisStore(url, retain_lines=storage.retain_lines)
        await store.open()
        hub = MirrorHub(store, memory_lines=storage.memory_lines, memory_bytes=storage.memory_bytes)
        await hub.open([])
        client = connect(url)
        engine = cls(settings, store, hub, ClusterProcesses(client, Keys(), lambda: View()), host="")
        engine.client, engine.url = client, url
        engine.processes = ClusterProcesses(client, engine.keys, lambda: engine.view)
        await engine._refresh()
        engine._tasks = [
            asyncio.create_task(engine._keep_current(), name="logcast-refresh"),
            asyncio.create_task(engine._follow(), name="logcast-follow"),
        ]
        engine.keep_samples()
        return engine

    @property
    def mirror(self) -> MirrorHub:
        return cast(MirrorHub, self.hub)

    @property
    def problem(self) -> str | None:
        return self._problem

    def configs(self) -> dict[str, ProcessConfig]:
        return {name: self.view.configs[name] for name in self.view.names if name in self.view.configs}

    def resources(self, name: str) -> dict[str, Any] | None:
        resources = self.processes.info(name).get("resources")
        return dict(resources) if isinstance(resources, dict) else None

    def hosts(self) -> list[Host]:
        view = self.view
        by_host: dict[str, list[str]] = {host: [] for host in view.hosts}
        for name in view.names:
            by_host.setdefault(str(view.infos[name].get("host", "")), []).append(name)
        return [
            Host(
                host=host,
                alive=host in view.alive,
                last_seen=view.hosts.get(host, {}).get("last_seen"),
                processes=names,
            )
            for host, names in sorted(by_host.items())
        ]

    async def clear(self, name: str, upto: int | None = None) -> int:
        processes = cast(ClusterProcesses, self.processes)
        args = {"upto": str(upto)} if upto is not None else {}
        cleared = int(cast(int, await processes.command(name, "clear", **args)))
        await self.mirror.follow_store(name)
        self.mirror.mirror_cleared(name, cleared)
        return cleared

    async def stop(self) -> None:
        try:
            await cancel_all(self._tasks)
        finally:
            await self._close()

    async def _close(self) -> None:
        try:
            await super().stop()
        finally:
            if self.client is not None:
                await self.client.aclose()

    # -- keeping current ---------------------------------------------------------------------

    async def _keep_current(self) -> None:
        while True:
            raise_if_cancelled()
            await self.sleep(REFRESH)
            await self._refresh()

    async def _refresh(self) -> None:
        try:
            self.view = await self._read_view()
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
            return
        self._reachable()
        for name, stats in self.view.stats.items():
            journal = await self.mirror.follow_store(name)
            self.mirror.mirror_cleared(name, int(stats.get("cleared_upto", 0) or 0))
            with journal.lock:  # the owner's counters, which a mirror cannot know all of
                journal.warnings = int(stats.get("warnings", journal.warnings))
                journal.errors = int(stats.get("errors", journal.errors))
                journal.last_error = stats.get("last_error", journal.last_error)
                # beside what this mirror saw missing (the owner saw more if this replica came later)
                journal.owner_lost = int(stats.get("store_lost", 0))

    async def _read_view(self) -> View:
        assert self.client is not None
        client, keys = self.client, self.keys
        names = sorted(cast(set[str], await client.smembers(keys.processes)))
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.process(name))
        pipe.hgetall(keys.agents)
        *described, agents = cast(list[dict[str, str]], await pipe.execute())
        hosts = {host: orjson.loads(text) for host, text in agents.items()}
        pipe = client.pipeline(transaction=False)
        for host in hosts:
            pipe.exists(keys.agent(host))
        alive = {host for host, exists in zip(hosts, await pipe.execute(), strict=True) if exists}
        view = View(hosts=hosts, alive=alive)
        order = {host: i for i, host in enumerate(sorted(hosts))}
        rank: dict[str, tuple[int, int]] = {}
        for name, fields in zip(names, described, strict=True):
            if "info" not in fields:
                continue  # its agent forgot it
            info = orjson.loads(fields["info"])
            host = str(info.get("host", fields.get("host", "")))
            view.infos[name] = info
            view.configs[name] = ProcessConfig.model_validate_json(fields["config"])
            view.stats[name] = {
                **orjson.loads(fields["stats"]),
                "cleared_upto": fields.get("cleared_upto", 0),
            }
            position = hosts.get(host, {}).get("processes", [])
            rank[name] = (
                order.get(host, len(order)),
                position.index(name) if name in position else len(position),
            )
        view.names = sorted(view.infos, key=lambda name: rank[name])
        return view

    async def _follow(self) -> None:
        """Mirror every process's new records: one blocking read for all of them."""
        store = cast(RedisStore, self.store)
        backoff = 0.0
        while True:
            raise_if_cancelled()
            positions = {name: self.hub.get(name).last_seq for name in self.hub.names()}
            if not positions:
                await self.sleep(REFRESH)
                continue
            try:
                batches = await store.read_new(positions, block_ms=FOLLOW_BLOCK_MS, count=FOLLOW_COUNT)
            except StoreError as exc:
                self._unreachable(exc)
                backoff = min(max(backoff * 2, 0.1), 2.0)
                await self.sleep(backoff)
                continue
            backoff = 0.0
            for name, records in batches:
                self.mirror.mirror(name, records)

    def _unreachable(self, exc: BaseException) -> None:
        problem = mask_text(f"redis at {self.url} is unreachable: {exc}")  # no password in answers
        if self._problem is None:
            log.warning("%s", problem)
        self._problem = problem

    def _reachable(self) -> None:
        if self._problem is not None:
            log.warning("%s is back", mask_text(f"redis at {self.url}"))
        self._problem = None
