"""`logcast agent`: one host's engine, with its records, states and heartbeats in Redis and
its control commands taken from there. A child never waits on Redis: the engine keeps
capturing while Redis is away and writes when it returns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from logcast.cluster.keys import COMMAND_TIMEOUT, DONE_TTL, HEARTBEAT, REPLY_TTL, Keys
from logcast.cluster.redis import alive_value, claim, connect, fence_of, renew
from logcast.config import Settings
from logcast.engine import Engine
from logcast.errors import FencedOff, LogcastError, StoreError
from logcast.jsonobj import json_object
from logcast.loop import cancel_all, raise_if_cancelled
from logcast.rarely import Rarely
from logcast.secrets import mask_text
from logcast.store.redis_streams import check_fence, fenced

log = logging.getLogger(__name__)

GROUP = "agents"
PUBLISH_INTERVAL = 0.25  # s between two looks for state changes to publish
PENDING_LOOK = 5.0  # s between two looks at the commands delivered but not acknowledged
ANSWERS_KEPT = 1024  # commands this run acted on, remembered so that none is acted on twice
ACTIONS = ("start", "stop", "restart", "clear")  # a command names one of these; nothing else is ever run


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


class Agent:
    """Runs an engine for this host and keeps Redis told of it."""

    def __init__(
        self,
        engine: Engine,
        client: aioredis.Redis,
        host: str,
        epoch: int,
        *,
        keys: Keys | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`epoch`: this run's, under which it claimed `host` and its names (`cluster.redis`)."""
        self.engine = engine
        self.client = client
        self.host = host
        self.epoch = epoch
        self.keys = keys or Keys()
        self.fence = fence_of(self.keys, host, epoch)
        # Set when another agent took this one's host id or a name while it was away: it
        # then writes nothing more and should stop (`logcast agent` does, with the reason).
        self.fenced = asyncio.Event()
        self.fenced_reason = ""
        self._sleep = sleep
        self._published: dict[str, str] = {}  # name -> the info last published
        self._acting: dict[str, asyncio.Future[str]] = {}  # command id -> its answer, while acting
        self._tasks: list[asyncio.Task[None]] = []
        self._actions: set[asyncio.Task[None]] = set()  # commands being acted on
        # command id -> its answer, for the last ANSWERS_KEPT this run acted on
        self._answered: OrderedDict[str, str] = OrderedDict()
        self._stopping = False  # no command is acted on from then on
        self._started_at = time.time()
        self._redis_ok = True
        self._failures = Rarely()  # unexpected failures of the loops, which go on

    @classmethod
    async def start(cls, settings: Settings, url: str, host: str, *, sole: bool = False) -> Agent:
        """Claim the process names, start the engine on Redis, then publish and listen.
        `sole`: as `Engine.start`'s (`logcast agent`)."""
        client = connect(url)
        keys = Keys()
        names = list(settings.processes)
        try:
            epoch = await claim(client, keys, host, names, _json(alive_value(time.time())))
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise StoreError(mask_text(f"redis at {url}: {exc}")) from exc
        except BaseException:
            await client.aclose()
            raise
        storage = replace(settings.storage, engine="redis", redis_url=url)
        try:
            engine = await Engine.start(
                replace(settings, storage=storage),
                host=host,
                shared=True,
                fence=fence_of(keys, host, epoch),
                sole=sole,
            )
        except BaseException:
            await client.aclose()
            raise
        agent = cls(engine, client, host, epoch, keys=keys)
        try:
            await agent._forget_old_names()
            await agent._publish_all()
        except BaseException:
            agent.fenced.set()  # another run took over at once (FencedOff), or Redis failed: touch nothing
            await agent._close()
            raise
        agent._tasks = [
            asyncio.create_task(agent._heartbeats(), name="logcast-heartbeats"),
            asyncio.create_task(agent._publish_changes(), name="logcast-publish"),
            asyncio.create_task(agent._commands(), name="logcast-commands"),
        ]
        return agent

    async def stop(self) -> None:
        """Stop the engine in order (children, the store's last writes), tell Redis, close."""
        self._stopping = True
        try:
            # the loops first, so that no new action starts; then the actions under way
            await cancel_all(self._tasks)
            await cancel_all(list(self._actions))
        finally:
            await self._close()

    async def _close(self) -> None:
        try:
            if self.fenced.is_set():
                self.engine.flush_timeout = 0.0  # what is left can never be written: no wait for it
            await self.engine.stop()
        finally:
            # Fenced off, the host id and the names are another agent's: nothing of theirs is
            # touched. (Found fenced off here, the one fenced transaction is refused whole.)
            if not self.fenced.is_set():
                description = _json(self._description(stopped=True))

                def gone(pipe: Any) -> None:
                    pipe.hset(self.keys.agents, self.host, description)
                    pipe.delete(self.keys.agent(self.host))

                with contextlib.suppress(RedisError, OSError, FencedOff):
                    await self._publish(self.engine.processes.names(), also=gone)  # every process stopped
            await self.client.aclose()

    def _description(self, *, stopped: bool = False) -> dict[str, Any]:
        """This agent, for the replicas' list of hosts (`stopped`: it ended in order)."""
        return {
            "pid": os.getpid(),
            "started_at": self._started_at,
            "last_seen": time.time(),
            "processes": self.engine.processes.names(),
            "stopped": stopped,
        }

    # -- what the replicas read --------------------------------------------------------------

    def _info(self, name: str) -> dict[str, Any]:
        return {
            **self.engine.processes.info(name),
            "host": self.host,
            "resources": self.engine.resources(name),
        }

    def _published_process(self, name: str) -> dict[str, str]:
        engine = self.engine
        journal = engine.hub.get(name)
        return {
            "host": self.host,
            "info": _json(self._info(name)),
            "config": engine.configs()[name].model_dump_json(),
            "stats": _json(engine.hub.stats(name)),
            "cleared_upto": str(journal.cleared_upto),
        }

    async def _publish(self, names: list[str], also: Callable[[Any], None] | None = None) -> None:
        """What the replicas read of `names` (and what `also` queues), only while this agent
        holds them and its host id (FencedOff)."""
        published = {name: self._published_process(name) for name in names}

        def queue(pipe: Any) -> None:
            for name, fields in published.items():
                pipe.hset(self.keys.process(name), mapping=cast(Any, fields))
            if names:
                pipe.sadd(self.keys.processes, *names)
            if also is not None:
                also(pipe)

        await fenced(self.client, self.fence(names), queue)
        for name, fields in published.items():
            self._published[name] = fields["info"]

    async def _publish_all(self) -> None:
        await self._publish(self.engine.processes.names())

    async def _forget_old_names(self) -> None:
        """Names this host published before but no longer runs (its configuration changed)."""
        names = set(self.engine.processes.names())
        described = json_object(await self.client.hget(self.keys.agents, self.host)) or {}
        before = described.get("processes")  # not what an agent writes: nothing to forget
        if not isinstance(before, list):
            before = []
        for name in {name for name in before if isinstance(name, str)} - names:
            owner = await self.client.get(self.keys.owner(name))
            if owner == self.host:
                await self.client.delete(self.keys.owner(name), self.keys.process(name))
                await self.client.srem(self.keys.processes, name)

    async def _heartbeats(self) -> None:
        """Every HEARTBEAT s, `beat`, until this agent is fenced off."""
        while not self.fenced.is_set():
            raise_if_cancelled()
            await self.beat()
            await self._sleep(HEARTBEAT)

    async def beat(self) -> None:
        """This agent is alive (for LOST_AFTER s), still holds its host id and names (else
        it is fenced off: `fenced`), and its figures."""
        try:
            names = self.engine.processes.names()
            await renew(self.client, self.keys, self.host, names, _json(alive_value(time.time())), self.epoch)
            description = _json(self._description())
            await self._publish(names, also=lambda pipe: pipe.hset(self.keys.agents, self.host, description))
            self._redis_back()
        except FencedOff as exc:
            self._fence_off(exc)
        except (RedisError, OSError) as exc:
            self._redis_away(exc)
        except Exception:  # never the end of the heartbeats: the host would be taken for lost
            self._failed("the heartbeat")

    def _fence_off(self, exc: FencedOff) -> None:
        """Another agent took what this one held: from now on it writes nothing, takes no
        command (those it has are left to the holder) and publishes nothing; it should stop."""
        if self.fenced.is_set():
            return
        self.fenced_reason = str(exc)
        log.error("fenced off: %s; nothing more is written, this agent stops", exc)
        self.fenced.set()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    async def _publish_changes(self) -> None:
        """State changes reach Redis within PUBLISH_INTERVAL s, not at the next heartbeat."""
        while True:
            raise_if_cancelled()
            await self._sleep(PUBLISH_INTERVAL)
            changed = [
                name
                for name in self.engine.processes.names()
                if self._published.get(name) != _json(self._info(name))
            ]
            if not changed:
                continue
            try:
                await self._publish(changed)
            except FencedOff:
                pass  # not published; the heartbeat tells whether this agent was fenced off
            except (RedisError, OSError) as exc:
                self._redis_away(exc)
            except Exception:
                self._failed("publishing a state")

    def _redis_away(self, exc: BaseException) -> None:
        if self._redis_ok:
            log.warning(
                "redis unreachable (%s); capture goes on, what is kept is written when it is back", exc
            )
        self._redis_ok = False

    def _failed(self, what: str) -> None:
        """A loop's unexpected failure: said (with its traceback, now and then), and the loop goes on."""
        if self._failures():
            log.exception("%s failed (%d failures so far); going on", what, self._failures.count)

    def _redis_back(self) -> None:
        if not self._redis_ok:
            log.warning("redis is back")
        self._redis_ok = True

    # -- commands ------------------------------------------------------------------------------

    async def _commands(self) -> None:
        """Act on the commands for this host: a consumer group, so that each is delivered
        once; command ids, so that a command delivered again is never acted on twice. The
        commands delivered but not acknowledged (before a restart, while Redis was away, or
        to a run of this host id that was fenced off) are looked at first, and again every
        PENDING_LOOK s."""
        key = self.keys.commands(self.host)
        loop = asyncio.get_running_loop()
        backoff = 0.0
        pending: str | None = "0"  # where the look at the pending ones goes on, while it does
        looked_at = loop.time()
        grouped = False
        while True:
            raise_if_cancelled()
            try:
                if not grouped:
                    # From the start of the stream, not "$": a Redis that came back empty gets
                    # commands before the group is made again, and they must be delivered. Old
                    # ones are refused by age and done once only (`_outcome`, `_act`).
                    with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
                        await self.client.xgroup_create(key, GROUP, id="0", mkstream=True)
                    grouped = True
                if pending is None and loop.time() - looked_at >= PENDING_LOOK:
                    pending, looked_at = "0", loop.time()
                response = cast(
                    list[tuple[str, list[tuple[str, dict[str, str]]]]],
                    await self.client.xreadgroup(
                        GROUP, self.host, {key: pending or ">"}, count=16, block=None if pending else 1000
                    ),
                )
                raise_if_cancelled()  # a cancel lost in the read: act on nothing it brought
                entries = [entry for _, stream in response or () for entry in stream]
                if pending is not None:
                    pending = entries[-1][0] if entries else None
                for entry_id, fields in entries:
                    if fields.get("id", entry_id) in self._acting:
                        continue  # being acted on (a look at the pending ones brought it again)
                    action = asyncio.create_task(
                        self._act(key, entry_id, fields), name=f"logcast-command-{entry_id}"
                    )
                    self._actions.add(action)
                    action.add_done_callback(self._actions.discard)
                backoff = 0.0
                self._redis_back()
            except Exception as exc:  # never the end of taking commands: every one would time out
                if isinstance(exc, RedisError | OSError):
                    self._redis_away(exc)
                    grouped = False  # a restarted Redis may have lost it
                    pending = "0"  # and what was delivered meanwhile is looked at again
                else:
                    self._failed("taking commands")
                backoff = min(max(backoff * 2, 0.1), 2.0)
                await self._sleep(backoff)

    async def _act(self, key: str, entry_id: str, fields: dict[str, str]) -> None:
        """Act on a command at most once in this run (`_answered`, then the `done` key that
        a run before may have left), answer it and acknowledge it; an answer Redis could
        not take is written when the command comes again (the pending look)."""
        command_id = fields.get("id", entry_id)
        try:
            done = self._answered.get(command_id)
            acting = self._acting.get(command_id)
            if done is not None:
                pass  # acted on already: only its answer is left to write
            elif acting is not None:  # delivered again while being acted on: the same answer
                done = await asyncio.shield(acting)
            else:
                acting = self._acting[command_id] = asyncio.get_running_loop().create_future()
                try:
                    earlier = cast(str | None, await self.client.get(self.keys.done(command_id)))
                    done = earlier if earlier is not None else _json(await self._answer(entry_id, fields))
                    self._remember(command_id, done)
                    acting.set_result(done)
                except BaseException as exc:
                    if isinstance(exc, asyncio.CancelledError):
                        acting.cancel()
                    else:
                        acting.set_exception(exc)
                        acting.exception()  # for whoever waits on it; nobody waiting is no error to log
                    raise
                finally:
                    del self._acting[command_id]
            if self.fenced.is_set():
                return  # not this run's to answer: left pending, for the run that holds the host id
            pipe = self.client.pipeline(transaction=True)
            pipe.set(self.keys.done(command_id), done, ex=DONE_TTL)
            pipe.rpush(self.keys.reply(command_id), done)
            pipe.expire(self.keys.reply(command_id), REPLY_TTL)
            pipe.xack(key, GROUP, entry_id)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self._redis_away(exc)  # left pending: answered (and acted on once) when Redis is back

    def _remember(self, command_id: str, done: str) -> None:
        answered = self._answered
        answered[command_id] = done
        while len(answered) > ANSWERS_KEPT:
            answered.popitem(last=False)

    async def _answer(self, entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
        """`_outcome`, or a refusal that says why if acting on the command failed otherwise
        (a command no replica of this version sends): it is answered and acknowledged all
        the same, and not delivered again."""
        try:
            return await self._outcome(entry_id, fields)
        except (RedisError, OSError):
            raise  # left pending: answered when Redis is back
        except Exception as exc:
            self._failed(f"acting on command {entry_id[:40]!r}")
            return {"ok": False, "error": f"host {self.host!r} could not act on it: {type(exc).__name__}"}

    async def _outcome(self, entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
        action, name = fields.get("action", ""), fields.get("process", "")
        if action not in ACTIONS:
            return {"ok": False, "error": f"unknown action {action!r}"}
        if name not in self.engine.processes:
            return {"ok": False, "error": f"{name!r} is not a process of host {self.host!r}"}
        sent_ms = int(entry_id.split("-")[0])
        seconds, micros = await self.client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        if now_ms - sent_ms > COMMAND_TIMEOUT * 1000:
            return {"ok": False, "error": f"the {action} of {name} came after its asker gave up: not done"}
        if self._stopping:  # set before any cancel: a cancel lost in a read above cannot act
            return {
                "ok": False,
                "error": f"host {self.host!r} is stopping: the {action} of {name} was not done",
            }
        try:  # another agent may have taken the name while this one was away
            fence = self.fence([name])
            check_fence(fence, await self.client.mget(list(fence)))
        except FencedOff as exc:
            self._fence_off(exc)  # and the answer is left to the holder (`_act`)
            return {"ok": False, "error": f"host {self.host!r} did not do the {action} of {name}: {exc}"}
        try:
            if action == "clear":
                upto = fields.get("upto")
                result: object = await self.engine.clear(name, int(upto) if upto else None)
            else:
                result = await getattr(self.engine.processes, action)(name)
        except LogcastError as exc:
            return {"ok": False, "error": str(exc)}
        # It was done, whatever publishing it does: the answer says so, and the heartbeat
        # publishes it (or tells that this agent was fenced off).
        try:
            await self._publish([name])
        except (RedisError, OSError) as exc:
            self._redis_away(exc)
        except FencedOff:
            pass
        except Exception:
            self._failed(f"publishing {name} after its {action}")
        return {"ok": True, "result": result, "info": self._info(name)}
