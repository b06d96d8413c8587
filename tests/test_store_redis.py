"""The Redis Streams engine: the shared contract against a real redis-server, plus the
layout other hosts read, following new records, and an unreachable or failing server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from logcast.errors import FencedOff, StoreError
from logcast.store import RedisStore, open_store
from logcast.store.base import Store
from logcast.types import LogRecord, ProcessState
from tests.conftest import free_port
from tests.store_contract import Factory, StoreContract, opened, rec, status, write

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def factory(redis_url: str, prefix: str) -> Factory:
    def make(**kwargs: Any) -> Store:
        return RedisStore(redis_url, prefix=prefix, **kwargs)

    return make


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


class TestRedisContract(StoreContract):
    pass


async def test_layout_other_hosts_rely_on(factory: Factory, prefix: str, raw: redis.Redis) -> None:
    async with opened(factory) as store:
        records = [status(1, ProcessState.RUNNING), rec(2, "hello"), rec(3, "wörld", partial=True)]
        await write(store, records)
    entries = raw.xrange(f"{prefix}:log:p")
    assert [entry_id for entry_id, _ in entries] == [b"0-1", b"0-2", b"0-3"]
    assert [LogRecord.from_dict(orjson.loads(fields[b"r"])) for _, fields in entries] == records
    assert raw.hgetall(f"{prefix}:meta:p") == {
        b"last_seq": b"3",
        b"lines": b"2",
        b"bytes": str(len("hello\n") + len("wörld".encode())).encode(),
        b"last_run": b"1",
    }
    assert raw.smembers(f"{prefix}:processes") == {b"p"}


async def test_follow_yields_new_records(factory: Factory) -> None:
    async with opened(factory) as writer, opened(factory) as reader:
        assert isinstance(reader, RedisStore)
        await write(writer, [rec(1), rec(2)])
        follower = reader.follow("p", after=1, block_ms=200)
        try:
            first = await asyncio.wait_for(anext(follower), 30)
            assert [r.seq for r in first] == [2]
            pending = asyncio.ensure_future(anext(follower))
            await asyncio.sleep(0.05)  # the follower is blocked in XREAD (or about to be)
            await write(writer, [rec(3), rec(4, "é")])
            got = list(await asyncio.wait_for(pending, 30))
            while got[-1].seq < 4:
                got += await asyncio.wait_for(anext(follower), 30)
            assert got == [rec(3), rec(4, "é")]
        finally:
            await follower.aclose()


async def test_follow_from_zero_sees_everything(factory: Factory) -> None:
    async with opened(factory) as store:
        assert isinstance(store, RedisStore)
        await write(store, [rec(seq) for seq in range(1, 6)])
        follower = store.follow("p", block_ms=200, count=2)
        try:
            got: list[LogRecord] = []
            while len(got) < 5:
                got += await asyncio.wait_for(anext(follower), 30)
            assert [r.seq for r in got] == [1, 2, 3, 4, 5]
        finally:
            await follower.aclose()


async def test_unreachable_server_raises_store_error() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", prefix="nowhere")
    try:
        with pytest.raises(StoreError):
            await store.open()
        with pytest.raises(StoreError):
            await asyncio.to_thread(store.write, [rec(1)])
        assert store.stats.errors == 1
        assert store.stats.last_error is not None
        with pytest.raises(StoreError):
            await store.read("p")
        with pytest.raises(StoreError):
            await store.meta("p")
        follower = store.follow("p", block_ms=100)
        with pytest.raises(StoreError):
            await anext(follower)
        await follower.aclose()
    finally:
        await store.close()


async def test_failed_write_is_retried_without_duplicates(
    factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opened(factory) as store:
        await write(store, [rec(1), rec(2)])
        real_execute = redis.client.Pipeline.execute
        calls = {"n": 0}

        def flaky_execute(self: Any, raise_on_error: bool = True) -> Any:
            # the connection drops after Redis ran the transaction: the writer cannot know
            result = real_execute(self, raise_on_error)
            if self.transaction:
                calls["n"] += 1
                if calls["n"] == 1:
                    raise redis.ConnectionError("connection reset by peer")
            return result

        monkeypatch.setattr(redis.client.Pipeline, "execute", flaky_execute)
        batch = [rec(seq) for seq in range(1, 8)]
        with pytest.raises(StoreError, match="connection reset"):
            await write(store, batch)
        assert store.stats.errors == 1
        await write(store, batch)  # the hub's retry of the same batch
        monkeypatch.undo()
        assert [r.seq for r in await store.read("p")] == list(range(1, 8))
        meta = await store.meta("p")
        assert (meta.last_seq, meta.lines) == (7, 7)


async def test_entries_of_another_writer_at_the_top_are_removed_and_nothing_is_taken_for_written(
    factory: Factory, prefix: str, raw: redis.Redis
) -> None:
    """`XADD key * …` by hand puts an id above every `0-{seq}`: each XADD of logcast's is
    refused from then on, while Redis applies the rest of the transaction (the meta says
    written). A review saw every later line of the process lost without a gap."""
    key, meta = f"{prefix}:log:p", f"{prefix}:meta:p"
    async with opened(factory) as store:
        assert isinstance(store, RedisStore)
        await write(store, [rec(1), rec(2), rec(3)])
        raw.xadd(key, {"r": b"hello"})
        raw.xadd(key, {"x": b"y"})
        with pytest.raises(StoreError, match="equal or smaller"):
            await write(store, [rec(4), rec(5)])
        # Redis does not roll back: the rest of the batch was applied, and put right at once
        assert raw.hget(meta, "last_seq") == b"3" and raw.hget(meta, "lines") == b"3"
        # what the hub asks after a failed write: the stream is mended on the way
        assert await asyncio.to_thread(store.stored_upto, "p") == 3
        assert raw.xrange(key, "1-0", "+") == []
        await write(store, [rec(4), rec(5)])  # the hub's retry
        assert [r.seq for r in await store.read("p")] == [1, 2, 3, 4, 5]
        assert (await store.meta("p")).last_seq == 5
        # a record-shaped id that is no record (a hand again) is another writer's too
        raw.xadd(key, {"r": b"not json"}, id="0-9")
        with pytest.raises(StoreError):
            await write(store, [rec(6)])
        assert await asyncio.to_thread(store.stored_upto, "p") == 5
        await write(store, [rec(6)])
        assert [r.seq for r in await store.read("p")] == [1, 2, 3, 4, 5, 6]


async def test_a_batch_applied_in_part_is_unsure_even_when_its_meta_cannot_be_put_right(
    factory: Factory, prefix: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fence moved between the EXEC and the putting right (a review: FencedOff came
    out, which the hub takes for "nothing applied")."""
    async with opened(factory) as store:
        assert isinstance(store, RedisStore)
        await write(store, [rec(1), rec(2), rec(3)])
        raw.xadd(f"{prefix}:log:p", {"r": b"x"}, id="0-5")

        def fenced(*args: object) -> None:
            raise FencedOff("another agent took it")

        monkeypatch.setattr(store, "_applied", fenced)
        with pytest.raises(StoreError, match="equal or smaller") as failure:
            await write(store, [rec(4), rec(5), rec(6)])
        assert failure.value.unsure and not isinstance(failure.value, FencedOff)


async def test_a_stream_whose_records_were_all_cleared_is_mended_to_its_last_seq(
    factory: Factory, prefix: str, raw: redis.Redis
) -> None:
    """No record of logcast's left to say where it was: the meta says, kept true when a
    batch is applied in part (a review: 3..10 were taken for written, none stored)."""
    key = f"{prefix}:log:p"
    async with opened(factory) as store:
        assert isinstance(store, RedisStore)
        await write(store, [rec(1), rec(2)])
        await store.clear("p", 2)
        for _ in range(600):  # more than one look at the top holds
            raw.xadd(key, {"r": b"hello"})
        with pytest.raises(StoreError):
            await write(store, [rec(seq) for seq in range(3, 11)])
        assert await asyncio.to_thread(store.stored_upto, "p") == 2
        assert raw.xlen(key) == 0
        await write(store, [rec(seq) for seq in range(3, 11)])
        assert [r.seq for r in await store.read("p")] == list(range(3, 11))
        meta = await store.meta("p")
        assert (meta.last_seq, meta.lines) == (10, 10)


async def test_open_store_builds_redis(redis_url: str, tmp_path: Path) -> None:
    store = open_store("redis", dir=tmp_path, redis_url=redis_url, retain_lines=50)
    assert isinstance(store, RedisStore)
    assert store.retain_lines == 50
    await store.open()
    await store.close()
    with pytest.raises(ValueError, match="redis URL"):
        open_store("redis", dir=tmp_path, redis_url=None, retain_lines=50)
