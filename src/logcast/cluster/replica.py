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

import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from logcast.cluster.keys import COMMAND_TIMEOUT, Keys
from logcast.cluster.redis import connect
from logcast.config import Settings
from logcast.engine import Engine
from logcast.errors import ControlRefused, ControlTimeout, StoreError, UnknownProcess
from logcast.hub import MirrorHub
from logcast.jsonobj import json_object
from logcast.loop import cancel_all, raise_if_cancelled
from logcast.rarely import Rarely
from logcast.schemas import Host, ProcessConfig, ProcessRun
from logcast.secrets import mask_text
from logcast.store.redis_streams import RedisStore
from logcast.types import ProcessState, whole_number

log = logging.getLogger(__name__)

REFRESH = 0.5  # s between two reads of what the agents published
FOLLOW_BLOCK_MS = 1_000  # the one XREAD BLOCK, for every process at once
FOREIGN_PAUSE = 1.0  # s a process whose stream has another writer's entries at its top is left out
REDIS_GRACE = 2.0  # s beyond a blocking call's own time before a silent Redis is unreachable
COMMANDS_AT_ONCE = 32  # control commands waiting for their agents' answers at most
FOLLOW_COUNT = 5_000  # entries per process per read at most
FOLLOW_COUNT_MIN = 16  # ...and at least
FOLLOW_BYTES = 8 << 20  # about this many bytes per process per read (lines of 64 KiB: 128 a read)


@dataclass(frozen=True)
class Stats:
    """The owner's counters of a process, as its agent published them."""

    warnings: int = 0
    errors: int = 0
    last_error: str | None = None
    store_lost: int = 0
    cleared_upto: int = 0


def _top(held: list[str | None]) -> int:
    """The highest of a meta's `last_seq` and `reserved` (what is not a number counts 0)."""
    return max((whole_number(value) or 0 for value in held if value is not None), default=0)


def _time(value: object) -> float | None:
    """A time another host published (Unix seconds), or None if it is not one."""
    if isinstance(value, float | int) and not isinstance(value, bool) and 0 <= value < 1e11:
        return float(value)
    return None


def _published(fields: dict[str, str]) -> tuple[dict[str, Any], ProcessConfig, Stats] | None:
    """A process as its agent published it (info, config, stats), or None if it is not
    what logcast publishes."""
    info, stats = json_object(fields.get("info")), json_object(fields.get("stats"))
    if info is None or stats is None or "config" not in fields:
        return None
    try:
        config = ProcessConfig.model_validate_json(fields["config"])
        ProcessRun.model_validate(info)  # what the API and /metrics read of it
    except ValueError:  # pydantic's ValidationError, malformed JSON too
        return None
    if not isinstance(info.get("host", fields.get("host", "")), str):
        return None
    counts = [whole_number(stats.get(key, 0)) for key in ("warnings", "errors", "store_lost")]
    cleared = whole_number(fields.get("cleared_upto", "0"))
    last_error = stats.get("last_error")
    if None in counts or cleared is None or not (last_error is None or isinstance(last_error, str)):
        return None
    warnings, errors, lost = cast(list[int], counts)
    return info, config, Stats(warnings, errors, last_error, lost, cleared)


@dataclass
class View:
    """What the agents published, as this replica last read it."""

    names: list[str] = field(default_factory=list)  # by host, then in each host's config order
    infos: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, ProcessConfig] = field(default_factory=dict)
    stats: dict[str, Stats] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> its description
    alive: set[str] = field(default_factory=set)


class ClusterProcesses:
    """Every agent's processes, controlled through Redis commands."""

    def __init__(self, client: aioredis.Redis, keys: Keys, view: Callable[[], View]) -> None:
        self._client = client
        self._keys = keys
        self._view = view
        # Each command waits for its answer on a connection of its own (BLPOP): a bound, so
        # that a burst of them cannot take every connection the replica has.
        self._at_once = asyncio.Semaphore(COMMANDS_AT_ONCE)

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
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await self._at_once.acquire()
        except TimeoutError:
            raise ControlTimeout(
                f"{COMMANDS_AT_ONCE} commands were waiting for their hosts for {COMMAND_TIMEOUT:.0f} s: "
                f"the {action} of {name} was not sent"
            ) from None
        try:
            # bounded here too: a Redis that stops answering (a partition) keeps a socket
            # waiting far longer than the command's time
            async with asyncio.timeout(COMMAND_TIMEOUT + REDIS_GRACE):
                await self._client.xadd(
                    self._keys.commands(host), cast(Any, fields), maxlen=10_000, approximate=True
                )
                raise_if_cancelled()  # the asker left: do not wait for the answer
                reply = await self._client.blpop([self._keys.reply(command_id)], timeout=COMMAND_TIMEOUT)
        except TimeoutError:
            raise StoreError(
                f"redis did not answer within {COMMAND_TIMEOUT + REDIS_GRACE:.0f} s: the {action} of {name}"
                " may not have reached its host"
            ) from None
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis unreachable: {exc}") from exc
        finally:
            self._at_once.release()
        if reply is None:
            lost = host not in self._view().alive
            why = (
                "it is lost (no heartbeat for 10 s)" if lost else "it is alive but busy or cannot reach redis"
            )
            raise ControlTimeout(
                f"host {host!r} did not {action} {name} within {COMMAND_TIMEOUT:.0f} s: {why}"
            )
        outcome = json_object(cast(list[str], reply)[1])
        if outcome is None:
            raise ControlRefused(f"host {host!r} answered what this replica does not understand")
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
    _malformed: Rarely = field(default_factory=Rarely)  # hosts and processes left out of views
    _recorded: dict[str, int] = field(default_factory=dict)  # process -> highest seq of a record read

    @classmethod
    async def open(cls, settings: Settings, url: str) -> ClusterEngine:
        """Read what the agents published, mirror their records, and keep both current."""
        storage = replace(settings.storage, engine="redis", redis_url=url)
        settings = replace(settings, storage=storage, processes={})
        store = RedisStore(url, retain_lines=storage.retain_lines)
        hub = MirrorHub(store, memory_lines=storage.memory_lines, memory_bytes=storage.memory_bytes)
        try:
            await store.open()
            await hub.open([])
        except StoreError as exc:  # Redis is away: 503 (the first `_refresh` says why) until it is back
            log.warning("%s; serving 503 until it answers", exc)
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
                last_seen=_time(view.hosts.get(host, {}).get("last_seen")),
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
        failed = Rarely()
        while True:
            raise_if_cancelled()
            await self.sleep(REFRESH)
            try:
                await self._refresh()
            except Exception:  # never the end of keeping current: the next round may do
                if failed():
                    log.exception(
                        "reading what the agents published failed (%d times); going on", failed.count
                    )

    async def _refresh(self) -> None:
        try:
            async with asyncio.timeout(REDIS_GRACE * 2):  # a Redis that stopped answering is away
                self.view = await self._read_view()
        except TimeoutError:
            self._unreachable(f"no answer within {REDIS_GRACE * 2:.0f} s")
            return
        except (RedisError, OSError, StoreError) as exc:
            self._unreachable(exc)
            return
        self._reachable()
        for name, stats in self.view.stats.items():
            try:
                journal = await self.mirror.follow_store(name)
            except StoreError as exc:  # its meta is not what logcast writes (or Redis just went)
                self._left_out(f"process {name!r} ({exc})")
                continue
            self.mirror.mirror_cleared(name, stats.cleared_upto)
            with journal.lock:  # the owner's counters, which a mirror cannot know all of
                journal.warnings = stats.warnings
                journal.errors = stats.errors
                journal.last_error = stats.last_error
                # beside what this mirror saw missing (the owner saw more if this replica came later)
                journal.owner_lost = stats.store_lost
        try:
            async with asyncio.timeout(REDIS_GRACE * 2):
                await self._keep_floors()
        except (TimeoutError, RedisError, OSError) as exc:
            log.debug("keeping the seq floors: %s", exc)

    async def _keep_floors(self) -> None:
        """Where Redis lost a process's history (restarted empty), write back the highest
        seq this replica saw of it as its `reserved`: an agent that takes the name then
        (another host, a fresh storage folder) numbers above it, and no seq names a second
        line. Only raised, never lowered; a replica that came after the loss cannot know."""
        assert self.client is not None
        store = cast(RedisStore, self.store)
        seen = {name: last for name, last in self._recorded.items() if last > 0}
        if not seen:
            return
        pipe = self.client.pipeline(transaction=False)
        for name in seen:
            pipe.hmget(store.meta_key(name), ["last_seq", "reserved"])
        answers = cast(list[list[str | None]], await pipe.execute())
        for (name, last), held in zip(seen.items(), answers, strict=True):
            if last > _top(held):
                await self._raise_floor(store.meta_key(name), name, last)

    async def _raise_floor(self, key: str, name: str, last: int) -> None:
        assert self.client is not None
        pipe: Any  # redis-py's WATCH and MULTI are untyped
        async with self.client.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            if last <= _top(await pipe.hmget(key, ["last_seq", "reserved"])):
                return  # the agent went past it meanwhile
            pipe.multi()
            pipe.hset(key, "reserved", last)
            try:
                await pipe.execute()
            except WatchError:
                return  # written meanwhile: looked at again at the next refresh
        log.warning(
            "redis has lost the history of %s: seqs up to %d were handed out; reserved again,"
            " so that the next agent of it numbers above them",
            name,
            last,
        )

    async def _read_view(self) -> View:
        """What the agents published. A host or a process whose description is not one
        logcast writes (a newer agent's, a peer gone wrong) is left out, and said in the log."""
        assert self.client is not None
        client, keys = self.client, self.keys
        names = sorted(cast(set[str], await client.smembers(keys.processes)))
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.process(name))
        pipe.hgetall(keys.agents)
        *described, agents = cast(list[dict[str, str]], await pipe.execute())
        hosts: dict[str, dict[str, Any]] = {}
        for host, text in agents.items():
            description = json_object(text)
            if description is None:
                self._left_out(f"host {host!r}")
            else:
                hosts[host] = description
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
            published = _published(fields)
            if published is None:
                self._left_out(f"process {name!r}")
                continue
            info, config, stats = published
            host = str(info.get("host", fields.get("host", "")))
            view.infos[name], view.configs[name], view.stats[name] = info, config, stats
            position = hosts.get(host, {}).get("processes")
            position = position if isinstance(position, list) else []
            rank[name] = (
                order.get(host, len(order)),
                position.index(name) if name in position else len(position),
            )
        view.names = sorted(view.infos, key=lambda name: rank[name])
        return view

    def _left_out(self, what: str) -> None:
        if self._malformed():
            log.warning(
                "redis: left out %s: what its agent published is not what logcast writes (%d so far)",
                what,
                self._malformed.count,
            )

    async def _follow(self) -> None:
        """Mirror every process's new records: one blocking read for all of them.

        Each process is read on from its last entry read, past entries that were not
        records (skipped: their seqs are announced as lost). As many entries a read as make
        about `FOLLOW_BYTES` for the largest of them, and the loop's other work has its turn
        between two processes' records."""
        store = cast(RedisStore, self.store)
        backoff = 0.0
        read: dict[str, tuple[str, int]] = {}  # process -> (the id read last, its last seq then)
        # Entries another writer put at a stream's top (ids above every `0-{seq}`) come back
        # with each read from the process's last seq, at once: such a process is read once a
        # FOREIGN_PAUSE, not in every read, until its agent's next write removes them.
        foreign: dict[str, float] = {}  # process -> loop time until which it is left out
        count = FOLLOW_COUNT
        failed = Rarely()
        loop = asyncio.get_running_loop()
        while True:
            raise_if_cancelled()
            positions = {}
            now = loop.time()
            for name in self.hub.names():
                if foreign.get(name, 0.0) > now:
                    continue
                last_seq = self.hub.get(name).last_seq
                last_id, seq_then = read.get(name, ("", -1))
                positions[name] = last_id if seq_then == last_seq else f"0-{last_seq}"
            if not positions:
                await self.sleep(REFRESH)
                continue
            try:
                try:
                    async with asyncio.timeout(FOLLOW_BLOCK_MS / 1000 + REDIS_GRACE * 2):
                        batches = await store.read_new(positions, block_ms=FOLLOW_BLOCK_MS, count=count)
                except TimeoutError:
                    raise StoreError(
                        f"no answer within {FOLLOW_BLOCK_MS / 1000 + REDIS_GRACE * 2:.0f} s"
                    ) from None
                for new in batches:
                    if new.records:  # the seqs of records, not of entries another writer put
                        last = new.records[-1].seq
                        if last > self._recorded.get(new.process, 0):
                            self._recorded[new.process] = last
                    try:
                        self.mirror.mirror(new.process, new.records, new.upto)
                    except Exception:  # this process's records this time; the others go on
                        if failed():
                            log.exception(
                                "mirroring %s failed (%d failures); going on", new.process, failed.count
                            )
                    if new.last_id.startswith("0-"):
                        read[new.process] = (new.last_id, self.hub.get(new.process).last_seq)
                    else:  # read on from its last seq: reading on from there would skip the agent's
                        read.pop(new.process, None)
                        foreign[new.process] = loop.time() + FOREIGN_PAUSE
                    await asyncio.sleep(0)
            except Exception as exc:  # never the end of mirroring: every process would stop there
                if isinstance(exc, StoreError):
                    self._unreachable(exc)
                elif failed():
                    log.exception("mirroring the agents' records failed (%d times); going on", failed.count)
                backoff = min(max(backoff * 2, 0.1), 2.0)
                await self.sleep(backoff)
                continue
            backoff = 0.0
            if batches:
                largest = max(new.entry_bytes for new in batches)
                count = max(FOLLOW_COUNT_MIN, min(FOLLOW_COUNT, FOLLOW_BYTES // max(largest, 1)))

    def _unreachable(self, exc: BaseException | str) -> None:
        problem = mask_text(f"redis at {self.url} is unreachable: {exc}")  # no password in answers
        if self._problem is None:
            log.warning("%s", problem)
        self._problem = problem

    def _reachable(self) -> None:
        if self._problem is not None:
            log.warning("%s is back", mask_text(f"redis at {self.url}"))
        self._problem = None
