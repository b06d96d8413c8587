"""A replica and an agent against what they did not write in Redis: stream entries that are
not records, published descriptions and commands that are not what logcast writes. Each is
left out (a record's seq reaching readers as a lost line), said in the log, and everything
else goes on; no task of theirs ends. On a real redis-server, as tests/test_cluster.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis

from logcast.cluster.agent import Agent
from logcast.cluster.keys import Keys
from logcast.cluster.replica import ClusterEngine
from logcast.config import Settings
from logcast.errors import StoreError
from logcast.store.redis_streams import RedisStore
from logcast.types import Gap, GapReason, Level, LogRecord, Stream
from tests.test_cluster import cluster, storage_here, until, url

pytestmark = pytest.mark.redis

__all__ = ["cluster", "storage_here", "url"]  # fixtures of tests/test_cluster.py, used here

INFO = '{"name": "x", "state": "running", "host": "a"}'  # a process as an agent describes it
GOOD = {"timestamp": 1.5, "level": "info", "message": "m", "stream": "stdout", "run": 1, "partial": False}


def good(seq: int, process: str = "p") -> bytes:
    return orjson.dumps({"seq": seq, "process": process, **GOOD})


# Entries another writer may have put at id 0-3 of process p's stream.
BAD: dict[str, dict[bytes, bytes]] = {
    "no field r": {b"x": good(3)},
    "not UTF-8": {b"r": b'{"seq":3,"message":"\xff\xfe"}'},
    "not JSON": {b"r": b"{{{"},
    "a JSON list": {b"r": b"[1, 2, 3]"},
    "a seq as text": {b"r": good(3).replace(b'"seq":3', b'"seq":"3"')},
    "a seq behind its id": {b"r": good(1)},
    "a seq ahead of its id": {b"r": good(1000)},
    "a seq past 64 bits": {b"r": good(3).replace(b'"seq":3', b'"seq":18446744073709551616')},
    "another process": {b"r": good(3, "q")},
    "an unknown level": {b"r": good(3).replace(b'"info"', b'"loud"')},
    "a level nested deep": {b"r": good(3).replace(b'"info"', b"[" * 1000 + b"]" * 1000)},
    "a message that is a number": {b"r": good(3).replace(b'"m"', b"7")},
    "a run below zero": {b"r": good(3).replace(b'"run":1', b'"run":-1')},
}


@pytest.fixture
async def replica(url: str) -> AsyncIterator[tuple[ClusterEngine, RedisStore, aioredis.Redis]]:
    """A replica of processes p and q, whose two first lines are in Redis; the store that
    wrote them (as an agent's does) and a client that does not decode."""
    store = RedisStore(url)
    records = [
        LogRecord(seq, 1.5, Level.INFO, f"{name} {seq}", Stream.STDOUT, name, 1)
        for name in ("p", "q")
        for seq in (1, 2)
    ]
    await asyncio.to_thread(store.write, records)
    engine = await ClusterEngine.open(Settings(), url)
    raw = aioredis.Redis.from_url(url)
    try:
        await until(lambda: engine.hub.get("p").last_seq == 2 == engine.hub.get("q").last_seq, "p and q")
        yield engine, store, raw
    finally:
        await raw.aclose()
        await engine.stop()
        await store.close()


def line(name: str, seq: int) -> LogRecord:
    return LogRecord(seq, 1.5, Level.INFO, f"{name} {seq}", Stream.STDOUT, name, 1)


async def xread_calls(raw: aioredis.Redis) -> int:
    stats = await raw.info("commandstats")
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))


@pytest.mark.parametrize("fields", BAD.values(), ids=BAD.keys())
async def test_an_entry_that_is_not_a_record_is_a_lost_line_and_following_goes_on(
    replica: tuple[ClusterEngine, RedisStore, aioredis.Redis], fields: dict[bytes, bytes]
) -> None:
    engine, store, raw = replica
    await raw.xadd("logcast:log:p", fields, id="0-3")  # type: ignore[arg-type]
    # the replica reads past it, and does not read it again and again (it was a busy loop)
    await until(lambda: engine.hub.get("p").last_seq == 3, "p read past the entry")
    before = await xread_calls(raw)
    await asyncio.sleep(1.0)
    assert await xread_calls(raw) - before <= 4  # one XREAD BLOCK of 1 s at a time
    await asyncio.to_thread(store.write, [line("p", 4), line("q", 3)])
    await until(lambda: engine.hub.get("q").last_seq == 3, "q goes on")
    await until(lambda: engine.hub.get("p").last_seq == 4, "p goes on")
    sub = await engine.hub.subscribe("p", after=0)
    entries = await sub.next(wait=False)
    sub.close()
    assert [p.seq for _, p in entries if isinstance(p, LogRecord)] == [1, 2, 4]
    assert [p for _, p in entries if isinstance(p, Gap)] == [Gap("p", 3, 3, GapReason.LOST)]
    assert all(task.done() is False for task in engine._tasks)
    # and the store's pages skip it too: history read from Redis has the same hole
    assert [r.seq for r in await store.read("p", after=0)] == [1, 2, 4]
    assert [r.seq for r in await store.tail("p", 10)] == [1, 2, 4]
    assert store.skipped.count >= 2


async def test_an_entry_id_logcast_never_writes_is_read_past_once(
    replica: tuple[ClusterEngine, RedisStore, aioredis.Redis],
) -> None:
    engine, _, raw = replica
    await raw.xadd("logcast:log:p", {b"r": good(3)}, id="5-0")  # a time id: not a seq
    await asyncio.sleep(0.5)
    before = await xread_calls(raw)
    await asyncio.sleep(1.0)
    assert await xread_calls(raw) - before <= 4
    assert engine.hub.get("p").last_seq == 2  # nothing taken from it
    await raw.xadd("logcast:log:q", {b"r": good(3, "q")}, id="0-3")
    await until(lambda: engine.hub.get("q").last_seq == 3, "q goes on")


async def test_an_entry_at_the_top_by_another_writer_is_removed_and_p_goes_on_everywhere(
    replica: tuple[ClusterEngine, RedisStore, aioredis.Redis],
) -> None:
    """`XADD logcast:log:p * …` by hand: the agent's next write fails, is mended and written;
    the replica, which had read the foreign id, still reads what comes after (a review saw
    both stop for good: the writer taking its lines for written, the replica reading on from
    an id above every seq)."""
    engine, store, raw = replica
    mirror_store = engine.store
    assert isinstance(mirror_store, RedisStore)
    before = mirror_store.skipped.count
    await raw.xadd("logcast:log:p", {b"r": b"hello"})
    # the replica reads it (and skips it) before the agent writes again
    await until(lambda: mirror_store.skipped.count > before, "the replica to read the entry")
    with pytest.raises(StoreError):
        await asyncio.to_thread(store.write, [line("p", 3)])
    assert await asyncio.to_thread(store.stored_upto, "p") == 2  # the hub's question, mending
    await asyncio.to_thread(store.write, [line("p", 3), line("p", 4)])
    await until(lambda: engine.hub.get("p").last_seq == 4, "p read on by the replica")
    sub = await engine.hub.subscribe("p", after=0)
    entries = await sub.next(wait=False)
    sub.close()
    assert [p.seq for _, p in entries if isinstance(p, LogRecord)] == [1, 2, 3, 4]


async def test_an_entry_that_is_no_record_raises_no_seq_floor(
    replica: tuple[ClusterEngine, RedisStore, aioredis.Redis],
) -> None:
    """Only records' seqs say what was handed out: an entry at `0-99999` by hand is not
    one (a review: the replica wrote it back as the process's reserved, every refresh)."""
    engine, _, raw = replica
    await raw.xadd("logcast:log:p", {b"r": b"not json"}, id="0-99999")
    await until(lambda: engine.hub.get("p").last_seq == 99999, "the entry read past")
    await engine._keep_floors()
    assert int(await raw.hget("logcast:meta:p", "reserved") or 0) < 99999


async def test_a_key_that_is_no_stream_stops_only_its_process(
    replica: tuple[ClusterEngine, RedisStore, aioredis.Redis],
) -> None:
    engine, store, raw = replica
    await raw.delete("logcast:log:q")
    await raw.set("logcast:log:q", "x")
    await asyncio.to_thread(store.write, [line("p", 3)])
    await until(lambda: engine.hub.get("p").last_seq == 3, "p goes on beside q")
    assert engine.problem is None  # Redis is not away: one key is wrong


async def test_a_process_whose_records_cannot_be_mirrored_does_not_stop_the_others(
    replica: tuple[ClusterEngine, RedisStore, aioredis.Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, store, _ = replica
    mirror = engine.mirror.mirror

    def failing(process: str, records: list[LogRecord], upto: int | None = None) -> None:
        if process == "p":
            raise RuntimeError("p cannot be mirrored")
        mirror(process, records, upto)

    monkeypatch.setattr(engine.mirror, "mirror", failing)
    await asyncio.to_thread(store.write, [line("p", 3), line("q", 3)])
    await until(lambda: engine.hub.get("q").last_seq == 3, "q mirrored beside p")


@pytest.fixture
async def raw(url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the cluster's Redis that does not decode: another writer's."""
    client = aioredis.Redis.from_url(url)
    yield client
    await client.aclose()


async def test_published_garbage_is_left_out_and_the_view_goes_on(
    cluster: tuple[Agent, ClusterEngine, aioredis.Redis], url: str, raw: aioredis.Redis
) -> None:
    _, replica, _ = cluster
    keys = Keys()
    await raw.hset(keys.agents, mapping={"evil": "not json", "listed": "[1, 2]"})
    await raw.hset(keys.agents, b"odd\xff", b'{"last_seen": "yesterday", "processes": 7}')
    for name, fields in {
        "bad-info": {"info": "[1]", "config": "{}", "stats": "{}"},
        "no-config": {"info": '{"host": "a"}', "stats": "{}"},
        "bad-stats": {"info": INFO, "config": '{"command": ["x"]}', "stats": '{"warnings": "many"}'},
        "bad-clear": {
            "info": INFO,
            "config": '{"command": ["x"]}',
            "stats": "{}",
            "cleared_upto": "soon",
        },
        "no-state": {
            "info": '{"name": "no-state", "host": "a"}',
            "config": '{"command": ["x"]}',
            "stats": "{}",
        },
        "odd-state": {
            "info": INFO.replace("running", "dancing"),
            "config": '{"command": ["x"]}',
            "stats": "{}",
        },
        "host-list": {
            "info": INFO.replace('"a"', '["a"]'),
            "config": '{"command": ["x"]}',
            "stats": "{}",
        },
    }.items():
        await raw.hset(keys.process(name), mapping=fields)  # type: ignore[arg-type]
        await raw.sadd(keys.processes, name)
    await raw.sadd(keys.processes, b"\xff\xfe")
    await raw.hset("logcast:meta:ghost", "lines", "many")  # a store's counters, garbled
    await raw.sadd("logcast:processes", "ghost", b"\xff\xfe")
    await asyncio.sleep(1.5)  # three refreshes
    assert replica.processes.names() == ["web"]
    assert [h.host for h in replica.hosts() if h.alive] == ["a"]
    assert [info["name"] for info in map(replica.processes.info, replica.processes.names())] == ["web"]
    assert all(not task.done() for task in replica._tasks)
    # states still reach it
    await replica.processes.stop("web")
    await until(lambda: replica.processes.info("web")["state"] == "stopped", "web stopped")
    # and a replica started now starts
    second = await ClusterEngine.open(Settings(), url)
    try:
        await until(lambda: second.processes.names() == ["web"], "the second replica's view")
    finally:
        await second.stop()


async def test_a_command_that_is_not_logcasts_is_refused_and_the_next_one_acted_on(
    cluster: tuple[Agent, ClusterEngine, aioredis.Redis], raw: aioredis.Redis
) -> None:
    agent, replica, _ = cluster
    keys = Keys()
    await raw.xadd(keys.commands("a"), {b"id": b"c1", b"action": b"st\xffart", b"process": b"web"})
    await raw.xadd(
        keys.commands("a"), {b"id": b"c2", b"action": b"clear", b"process": b"web", b"upto": b"soon"}
    )
    answers = []
    for command_id in ("c1", "c2"):
        reply = await raw.blpop([keys.reply(command_id)], timeout=10)
        assert reply is not None, f"no answer to {command_id}"
        answers.append(orjson.loads(reply[1]))
    assert answers[0]["ok"] is False and "unknown action" in answers[0]["error"]
    assert answers[1] == {"ok": False, "error": "host 'a' could not act on it: ValueError"}
    pending = await raw.xpending(keys.commands("a"), "agents")
    assert pending["pending"] == 0  # acknowledged: not delivered again at the next start
    assert all(not task.done() for task in agent._tasks)
    run = agent.engine.processes.info("web")["run"]
    assert await replica.processes.restart("web") is True
    assert agent.engine.processes.info("web")["run"] == run + 1
