"""Fencing on several hosts: an agent that was away past its heartbeat (paused, cut off)
while another agent took its names or its host id writes nothing over theirs, learns it
at its next heartbeat and stops without touching what is theirs; a second live agent under
one host id is refused; Redis losing its data under a live agent costs no line and no
number. On a real redis-server, as tests/test_cluster.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis

from logcast.cluster.agent import Agent
from logcast.cluster.keys import Keys
from logcast.cluster.redis import HostIdTaken, alive_value, machine
from logcast.config import Settings, parse
from logcast.errors import FencedOff
from logcast.store.redis_streams import RedisStore
from logcast.types import Level, LogRecord, Stream
from tests.test_cluster import storage_here, until, url

pytestmark = pytest.mark.redis

__all__ = ["storage_here", "url"]  # fixtures of tests/test_cluster.py, used here

KEYS = Keys()


def saying(word: str, *names: str) -> Settings:
    """Processes `names`, each printing `word <n>` twenty times a second."""
    child = f"import itertools,time\\nfor n in itertools.count():\\n    print('{word}', n, flush=True)\\n    time.sleep(0.05)"
    return parse(
        "".join(
            f'[process.{name}]\ncommand = ["{sys.executable}", "-u", "-c", "{child}"]\nstop_timeout = 2\n'
            for name in names
        )
    )


async def stream(raw: aioredis.Redis, name: str) -> list[tuple[int, str]]:
    """(seq, message) of every record in Redis for process `name`."""
    return [
        (int(entry_id.split(b"-")[1]), orjson.loads(fields[b"r"])["message"])
        for entry_id, fields in await raw.xrange(f"logcast:log:{name}")
    ]


async def stored_upto(raw: aioredis.Redis, name: str) -> int:
    return int(await raw.hget(f"logcast:meta:{name}", "last_seq") or 0)


@pytest.fixture
async def raw(url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


async def away(agent: Agent, raw: aioredis.Redis) -> None:
    """As if `agent` had been paused past LOST_AFTER: its heartbeats, publishing and
    commands stop and its liveness expires; its engine (capture, the store's writer) goes on,
    as a paused process's does once it runs again."""
    for task in agent._tasks:
        task.cancel()
    await asyncio.gather(*agent._tasks, return_exceptions=True)
    await raw.delete(KEYS.agent(agent.host))


async def test_an_agent_away_while_another_took_its_name_writes_nothing_over_it_and_stops(
    url: str, raw: aioredis.Redis
) -> None:
    a = await Agent.start(saying("from-a", "web"), url, "a")
    b: Agent | None = None
    try:
        await until(lambda: a.engine.hub.get("web").persisted >= 5, "a's first lines stored")
        await away(a, raw)
        b = await Agent.start(saying("from-b", "web"), url, "b")
        taken_at = b.engine.hub.get("web").opened_at_seq  # b numbers above every seq a reserved
        a_hub = a.engine.hub.get("web")
        lines_then = a_hub.last_seq
        await until(lambda: a_hub.last_seq >= lines_then + 20, "a to capture twenty more lines")
        await until(lambda: b.engine.hub.get("web").persisted >= taken_at + 20, "b's lines stored")

        records = await stream(raw, "web")
        after = [message for seq, message in records if seq > taken_at]
        assert any(m.startswith("from-b") for m in after) and not any(m.startswith("from-a") for m in after)
        assert not any(message.startswith("from-b") for seq, message in records if seq <= taken_at)
        assert "FencedOff" in a.engine.store.stats.last_error, a.engine.store.stats.last_error
        assert await raw.get(KEYS.owner("web")) == b"b"

        # what a would publish of web is refused, and b's description stays
        with pytest.raises(FencedOff):
            await a._publish(["web"])
        assert await raw.hget(KEYS.process("web"), "host") == b"b"
        # a command that reaches a for web (sent before it knew) is refused with the reason
        now_ms = int((await raw.time())[0]) * 1000
        answer = await a._outcome(f"{now_ms}-0", {"action": "restart", "process": "web"})
        assert answer["ok"] is False and "'b'" in answer["error"], answer

        # its next heartbeat fences it off, without taking anything back
        await a.beat()
        assert a.fenced.is_set()
        assert "host 'b' took process 'web'" in a.fenced_reason, a.fenced_reason
        assert await raw.get(KEYS.owner("web")) == b"b"
        assert await raw.exists(KEYS.agent("a")) == 0  # not marked alive again

        await a.stop()
        assert a.engine.flush_timeout == 0.0  # nothing it holds can be written: no wait
        assert await raw.exists(KEYS.agent("b")) == 1
        assert await raw.hget(KEYS.process("web"), "host") == b"b"
        assert b"running" in await raw.hget(KEYS.process("web"), "info")
        upto = await stored_upto(raw, "web")
        await until(lambda: b.engine.hub.get("web").persisted > upto, "b to go on writing")
        assert not any(m.startswith("from-a") for s, m in await stream(raw, "web") if s > taken_at)
    finally:
        if b is not None:
            await b.stop()
        await a.stop()


async def test_a_second_live_agent_under_one_host_id_is_refused_and_takes_nothing(
    url: str, raw: aioredis.Redis
) -> None:
    first = await Agent.start(saying("first", "web"), url, "a")
    try:
        token = await raw.get(KEYS.instance("a"))
        with pytest.raises(
            HostIdTaken, match=rf"host id 'a' is used by another live agent \(pid {os.getpid()}"
        ):
            await Agent.start(saying("second", "api"), url, "a")
        assert await raw.get(KEYS.owner("api")) is None
        assert await raw.get(KEYS.instance("a")) == token
        assert not first.fenced.is_set()
        await first.beat()
        assert not first.fenced.is_set()
    finally:
        await first.stop()
    second = await Agent.start(saying("second", "api"), url, "a")  # stopped in order: free
    await second.stop()


@pytest.mark.parametrize("here", [True, False], ids=["crashed here", "on another machine"])
async def test_a_host_id_whose_agent_crashed_here_is_taken_at_once(
    url: str, raw: aioredis.Redis, here: bool
) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    crashed = {**alive_value(time.time()), "pid": ended.pid}
    if not here:
        crashed["machine"] = "elsewhere/" + machine().split("/")[-1]
    await raw.set(KEYS.agent("a"), orjson.dumps(crashed), px=10_000)  # its liveness not yet expired
    await raw.set(KEYS.instance("a"), "the crashed run")
    if not here:
        with pytest.raises(HostIdTaken, match=rf"pid {ended.pid} on elsewhere\)"):
            await Agent.start(saying("new", "web"), url, "a")
        return
    agent = await Agent.start(saying("new", "web"), url, "a")
    try:
        assert await raw.get(KEYS.instance("a")) == agent.token.encode()
    finally:
        await agent.stop()


async def test_redis_losing_its_data_under_a_live_agent_costs_no_line_and_no_number(
    url: str, raw: aioredis.Redis
) -> None:
    agent = await Agent.start(saying("tick", "web"), url, "a")
    try:
        journal = agent.engine.hub.get("web")
        await until(lambda: journal.persisted >= 5, "the first lines stored")
        heartbeats = next(task for task in agent._tasks if task.get_name() == "logcast-heartbeats")
        heartbeats.cancel()  # its beats are taken by hand below
        await asyncio.gather(heartbeats, return_exceptions=True)
        pipe = raw.pipeline(transaction=True)
        pipe.hget("logcast:meta:web", "last_seq")
        pipe.flushdb()
        upto = int((await pipe.execute())[0])
        seen = journal.last_seq
        await until(lambda: journal.last_seq >= seen + 10, "ten lines while Redis has lost everything")
        assert await raw.get(KEYS.owner("web")) is None  # nothing written without the fence
        await agent.beat()  # takes its host id and names back: nobody else holds them
        assert not agent.fenced.is_set()
        assert await raw.get(KEYS.owner("web")) == b"a"
        await until(lambda: journal.persisted >= seen + 10, "the lines kept meanwhile stored")
        seqs = [seq for seq, _ in await stream(raw, "web")]
        assert seqs[0] == upto + 1, seqs[:3]  # none lost from the moment Redis lost the rest
        assert seqs == list(range(upto + 1, seqs[-1] + 1))
        assert journal.lost == [] or all(end <= upto for _, end in journal.lost), journal.lost
    finally:
        await agent.stop()


async def test_an_agent_restarted_after_redis_lost_its_data_numbers_above_what_it_handed_out(
    url: str, raw: aioredis.Redis
) -> None:
    agent = await Agent.start(saying("tick", "web"), url, "a")
    try:
        await until(lambda: agent.engine.hub.get("web").persisted >= 5, "the first lines stored")
    finally:
        await agent.stop()
    handed = max(seq for seq, _ in await stream(raw, "web"))
    await raw.flushdb()  # Redis came back with nothing (no snapshot, or an old one)

    agent = await Agent.start(saying("tick", "web"), url, "a")
    try:
        journal = agent.engine.hub.get("web")
        assert journal.opened_at_seq >= handed
        await until(lambda: journal.persisted >= journal.opened_at_seq + 3, "new lines stored")
        seqs = [seq for seq, _ in await stream(raw, "web")]
        assert seqs and min(seqs) > handed, (handed, seqs[:3])
    finally:
        await agent.stop()


def line(seq: int) -> LogRecord:
    return LogRecord(seq, 1.5, Level.INFO, f"line {seq}", Stream.STDOUT, "web", 1)


async def test_a_fenced_store_writes_and_reserves_only_while_its_fence_holds(
    url: str, raw: aioredis.Redis
) -> None:
    await raw.set("holder", "me")
    store = RedisStore(url, fence=lambda names: {"holder": "me"})
    try:
        await asyncio.to_thread(store.write, [line(1), line(2)])
        await raw.set("holder", "another")
        with pytest.raises(FencedOff, match="holder is 'another', not 'me'"):
            await asyncio.to_thread(store.write, [line(3)])
        with pytest.raises(FencedOff):  # a batch "written before" by someone else is not taken as written
            await asyncio.to_thread(store.write, [line(1), line(2)])
        with pytest.raises(FencedOff):
            await asyncio.to_thread(store.reserve, {"web": 100})
        with pytest.raises(FencedOff):
            await store.clear("web", 2)
        await raw.delete("holder")
        with pytest.raises(FencedOff, match="holder is gone"):
            await asyncio.to_thread(store.write, [line(3)])
        assert [seq for seq, _ in await stream(raw, "web")] == [1, 2]
        assert await raw.hget("logcast:meta:web", "reserved") is None
        await raw.set("holder", "me")
        await asyncio.to_thread(store.write, [line(3)])
        assert [seq for seq, _ in await stream(raw, "web")] == [1, 2, 3]
    finally:
        await store.close()


async def test_a_fence_taken_between_the_look_and_the_write_refuses_the_write_whole(
    url: str, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WATCH: another agent takes the fence key after the store looked at it and before its
    EXEC; the EXEC is refused, the look again says why, and nothing of the batch is in Redis."""
    import redis

    from logcast.store import redis_streams

    await raw.set("holder", "me")
    store = RedisStore(url, fence=lambda names: {"holder": "me"})
    other = redis.Redis.from_url(url)
    looked = redis_streams.check_fence

    def look_then_taken(fence, held):  # type: ignore[no-untyped-def]
        looked(fence, held)
        other.set("holder", "another")  # in the writer's thread, between its look and EXEC

    monkeypatch.setattr(redis_streams, "check_fence", look_then_taken)
    try:
        with pytest.raises(FencedOff, match="holder is 'another'"):
            await asyncio.to_thread(store.write, [line(1), line(2)])
        assert await raw.exists("logcast:log:web") == 0
        assert await raw.exists("logcast:meta:web") == 0
    finally:
        other.close()
        await store.close()
