"""Fencing on several hosts: an agent that was away past its heartbeat (paused, cut off)
while another agent took its names or its host id writes nothing over theirs, learns it
at its next heartbeat and stops without touching what is theirs; a second live agent under
one host id is refused; Redis losing its data under a live agent costs no line and no
number. On a real redis-server, as tests/test_cluster.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from logcast.cluster.agent import Agent
from logcast.cluster.keys import Keys
from logcast.cluster.redis import HostIdTaken, alive_value, claim, connect, machine
from logcast.config import Settings, parse
from logcast.errors import FencedOff, StoreError
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
        # a command for web that reaches a before it knows is not acted on, and fences it off
        now_ms = int((await raw.time())[0]) * 1000
        answer = await a._outcome(f"{now_ms}-0", {"action": "restart", "process": "web"})
        assert answer["ok"] is False and "another agent took it" in answer["error"], answer
        assert a.fenced.is_set()
        a.fenced.clear()

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
        epoch = await raw.get(KEYS.instance("a"))
        with pytest.raises(
            HostIdTaken, match=rf"host id 'a' is used by another live agent \(pid {os.getpid()}"
        ):
            await Agent.start(saying("second", "api"), url, "a")
        assert await raw.get(KEYS.owner("api")) is None
        assert await raw.get(KEYS.instance("a")) == epoch
        assert not first.fenced.is_set()
        await first.beat()
        assert not first.fenced.is_set()
    finally:
        await first.stop()
    second = await Agent.start(saying("second", "api"), url, "a")  # stopped in order: free
    await second.stop()


@pytest.mark.parametrize("case", ["crashed here", "its pid another process now", "on another machine"])
async def test_a_host_id_whose_agent_crashed_here_is_taken_at_once(
    url: str, raw: aioredis.Redis, case: str
) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    crashed = {**alive_value(time.time()), "pid": ended.pid}
    if case == "its pid another process now":  # a container's agent is pid 1 again
        crashed = {**alive_value(time.time()), "started": alive_value(0)["started"] - 100}
    elif case == "on another machine":
        crashed["machine"] = "elsewhere/" + machine().split("/")[-1]
    await raw.set(KEYS.agent("a"), orjson.dumps(crashed), px=10_000)  # its liveness not yet expired
    await raw.set(KEYS.instance("a"), "1")  # the crashed run's epoch
    if case == "on another machine":
        with pytest.raises(HostIdTaken, match=rf"pid {ended.pid} on elsewhere\)"):
            await Agent.start(saying("new", "web"), url, "a")
        return
    agent = await Agent.start(saying("new", "web"), url, "a")
    try:
        assert await raw.get(KEYS.instance("a")) == str(agent.epoch).encode()
    finally:
        await agent.stop()


async def test_two_agents_taking_over_a_crashed_host_id_at_once_one_is_refused(
    url: str, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both read the crashed agent's liveness before either claims: the claim takes over
    only while the liveness is still what its caller read, so the second is refused."""
    from logcast.cluster import redis as cluster_redis

    ended = subprocess.Popen(["true"])
    ended.wait()
    await raw.set(KEYS.agent("a"), orjson.dumps({**alive_value(time.time()), "pid": ended.pid}), px=10_000)
    script, arrived, both = cluster_redis._script, [], asyncio.Event()

    async def after_both_read(*args):  # type: ignore[no-untyped-def]
        arrived.append(1)
        if len(arrived) == 2:
            both.set()
        await both.wait()
        return await script(*args)

    monkeypatch.setattr(cluster_redis, "_script", after_both_read)
    clients = [connect(url), connect(url)]
    try:
        results = await asyncio.gather(
            *(
                claim(client, KEYS, "a", ["web"], orjson.dumps(alive_value(time.time())).decode())
                for client in clients
            ),
            return_exceptions=True,
        )
    finally:
        for client in clients:
            await client.aclose()
    assert sorted(type(result).__name__ for result in results) == ["HostIdTaken", "int"], results
    [epoch] = [result for result in results if isinstance(result, int)]
    assert await raw.get(KEYS.instance("a")) == str(epoch).encode()


async def test_a_restore_of_an_older_snapshot_does_not_fence_off_the_live_agent(
    url: str, raw: aioredis.Redis
) -> None:
    """Redis restarted from a snapshot taken before this run: its keys hold an older run's
    epoch. That is no other agent: the heartbeat puts this run's back and lines go on."""
    older = await Agent.start(saying("old", "web"), url, "a")
    names = [KEYS.instance("a"), KEYS.epoch("web"), KEYS.owner("web")]
    snapshot = dict(zip(names, await raw.mget(names), strict=True))
    await older.stop()
    agent = await Agent.start(saying("new", "web"), url, "a")
    try:
        assert agent.epoch > int(snapshot[KEYS.instance("a")])
        journal = agent.engine.hub.get("web")
        await raw.mset(snapshot)
        upto = journal.persisted
        await agent.beat()
        assert not agent.fenced.is_set(), agent.fenced_reason
        assert await raw.mget(names[:2]) == [str(agent.epoch).encode()] * 2
        await until(lambda: journal.persisted >= upto + 5, "lines stored after the restore")
    finally:
        await agent.stop()


async def test_a_command_a_fenced_off_run_took_is_left_to_the_run_that_holds_the_host_id(
    url: str, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of host a read one consumer's commands. The run that was away takes one
    before it knows: it does not act, answers nothing, acknowledges nothing, and the run that
    holds the host id acts on it at its next look at what is pending."""
    from logcast.cluster import agent as agent_module

    monkeypatch.setattr(agent_module, "PENDING_LOOK", 0.2)
    first = await Agent.start(saying("first", "web"), url, "a")
    second: Agent | None = None
    try:
        await away(first, raw)
        second = await Agent.start(saying("second", "web"), url, "a")
        run = second.engine.processes.info("web")["run"]
        key = KEYS.commands("a")
        with contextlib.suppress(ResponseError):  # BUSYGROUP: the second run made it already
            await raw.xgroup_create(key, "agents", id="$", mkstream=True)
        # delivered to the first run's read: an XREADGROUP in the same MULTI as the XADD,
        # before the second run's blocked read is served
        pipe = raw.pipeline(transaction=True)
        pipe.xadd(key, {"id": "c1", "action": "restart", "process": "web"})
        pipe.xreadgroup("agents", "a", {key: ">"}, count=1)
        _, delivered = await pipe.execute()
        [[_, [(entry_id, fields)]]] = delivered
        await first._act(key, entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
        assert first.fenced.is_set()
        assert await raw.exists(KEYS.reply("c1"), KEYS.done("c1")) == 0

        reply = await raw.blpop([KEYS.reply("c1")], timeout=5)
        assert reply is not None, "the second run did not act on the command left pending"
        assert orjson.loads(reply[1])["ok"] is True
        assert second.engine.processes.info("web")["run"] == run + 1
    finally:
        if second is not None:
            await second.stop()
        await first.stop()


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


async def test_an_agent_whose_storage_folder_cannot_be_written_starts_and_says_so(
    url: str, raw: aioredis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reservations file is a guard for after Redis lost its data, not a reason to
    stop: a deployment whose [storage] dir the agent cannot write (it needed none before)
    runs on, and the log says what is missing."""
    (tmp_path / "blocked").write_text("a file where the folder would be")
    settings = saying("tick", "web")
    settings = replace(settings, storage=replace(settings.storage, dir=tmp_path / "blocked" / "state"))
    agent = await Agent.start(settings, url, "a")
    try:
        await until(lambda: agent.engine.hub.get("web").persisted >= 3, "lines stored")
        assert "cannot keep the reserved sequence numbers in" in caplog.text
    finally:
        await agent.stop()


async def test_a_command_is_acted_on_once_when_redis_fails_after_the_action(
    url: str, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis fails after the restart was done (publishing it, then answering): the
    command stays pending and comes again at the next look; it is answered then, and the
    process is not restarted a second time."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from logcast.cluster import agent as agent_module

    monkeypatch.setattr(agent_module, "PENDING_LOOK", 0.2)
    agent = await Agent.start(saying("tick", "web"), url, "a")
    try:
        run = agent.engine.processes.info("web")["run"]
        publish, failures = agent._publish, []

        async def failing_once(names, also=None):  # type: ignore[no-untyped-def]
            if not failures:
                failures.append(names)
                raise RedisConnectionError("Redis went away after the action")
            await publish(names, also)

        monkeypatch.setattr(agent, "_publish", failing_once)
        real_pipeline, cut = agent.client.pipeline, []

        def answer_lost_once(transaction=True):  # type: ignore[no-untyped-def]
            pipe = real_pipeline(transaction=transaction)
            execute = pipe.execute

            async def lost_if_the_answer(*args, **kwargs):  # type: ignore[no-untyped-def]
                if not cut and any(command[0][0] == "RPUSH" for command in pipe.command_stack):
                    cut.append(1)
                    raise RedisConnectionError("the answer could not be written")
                return await execute(*args, **kwargs)

            pipe.execute = lost_if_the_answer
            return pipe

        monkeypatch.setattr(agent.client, "pipeline", answer_lost_once)
        key = KEYS.commands("a")
        with contextlib.suppress(ResponseError):  # BUSYGROUP: the agent made it already
            await raw.xgroup_create(key, "agents", id="$", mkstream=True)
        await raw.xadd(key, {"id": "once", "action": "restart", "process": "web"})
        reply = await raw.blpop([KEYS.reply("once")], timeout=10)
        assert reply is not None and orjson.loads(reply[1])["ok"] is True
        assert failures and cut
        await asyncio.sleep(0.5)  # two more looks at what is pending
        assert agent.engine.processes.info("web")["run"] == run + 1
    finally:
        await agent.stop()


async def test_an_agent_with_no_processes_stopping_after_another_run_took_its_host_id_leaves_it(
    url: str, raw: aioredis.Redis
) -> None:
    first = await Agent.start(parse(""), url, "a")
    await away(first, raw)
    second = await Agent.start(parse(""), url, "a")
    try:
        await first.stop()  # never told: its last writes are fenced all the same
        assert await raw.exists(KEYS.agent("a")) == 1
        assert orjson.loads(await raw.hget(KEYS.agents, "a"))["stopped"] is False
    finally:
        await second.stop()


async def test_a_claim_over_keys_that_hold_no_epoch_gets_one_of_its_own(
    url: str, raw: aioredis.Redis
) -> None:
    await raw.set(KEYS.epoch("web"), "1e300")
    await raw.set(KEYS.instance("a"), "9" * 40)
    agent = await Agent.start(saying("tick", "web"), url, "a")
    try:
        assert len(str(agent.epoch)) == 16  # Redis's clock in microseconds
        await until(lambda: agent.engine.hub.get("web").persisted >= 3, "lines stored")
        await agent.beat()
        assert not agent.fenced.is_set()
    finally:
        await agent.stop()


def test_a_live_process_here_is_not_taken_for_a_crashed_one() -> None:
    from logcast.cluster.redis import _gone, _start_ticks

    child = subprocess.Popen(["sleep", "30"])
    try:
        alive = {**alive_value(time.time()), "pid": child.pid, "started": _start_ticks(child.pid)}
        assert not _gone(alive)
        assert _gone({**alive, "started": alive["started"] + 1})  # its pid, another process
    finally:
        child.kill()
        child.wait()
    assert _gone(alive)


async def test_more_names_than_the_reservations_file_holds_is_redis_alone(
    url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore(url, local_seq=tmp_path / "redis-a.seq")
    await store.open()
    try:
        marks = {f"process-with-a-long-name-{i:04d}-" + "x" * 30: 100 for i in range(1000)}
        await asyncio.to_thread(store.reserve, marks)
        assert "too many processes" in caplog.text
        assert (await store.meta(next(iter(marks)))).reserved == 100
    finally:
        await store.close()


def line(seq: int) -> LogRecord:
    return LogRecord(seq, 1.5, Level.INFO, f"line {seq}", Stream.STDOUT, "web", 1)


async def test_a_fenced_store_writes_only_while_no_higher_epoch_holds_its_keys(
    url: str, raw: aioredis.Redis
) -> None:
    store = RedisStore(url, fence=lambda names: {"fence": 5})
    try:
        await raw.set("fence", 5)
        await asyncio.to_thread(store.write, [line(1), line(2)])
        await raw.set("fence", 9)  # another run took it
        with pytest.raises(FencedOff, match="fence holds '9', above this agent's epoch 5"):
            await asyncio.to_thread(store.write, [line(3)])
        with pytest.raises(FencedOff):  # a batch "written before" by someone else is not taken as written
            await asyncio.to_thread(store.write, [line(1), line(2)])
        with pytest.raises(FencedOff):
            await asyncio.to_thread(store.reserve, {"web": 100})
        with pytest.raises(FencedOff):
            await store.clear("web", 2)
        with pytest.raises(FencedOff):  # what Redis holds may be the other's: not taken as this one's
            await asyncio.to_thread(store.stored_upto, "web")
        assert [seq for seq, _ in await stream(raw, "web")] == [1, 2]
        assert await raw.hget("logcast:meta:web", "reserved") is None

        await raw.delete("fence")  # Redis lost it: nobody else holds it
        await asyncio.to_thread(store.write, [line(3)])
        await raw.set("fence", 3)  # an older snapshot's, from before this run
        await asyncio.to_thread(store.write, [line(4)])
        for junk in ("²", "1e300", "9" * 19, "9" * 16, " 9"):  # no agent's epoch: missing, as for the scripts
            await raw.set("fence", junk)
            await asyncio.to_thread(store.write, [line(5)])
        assert await asyncio.to_thread(store.stored_upto, "web") == 5
        assert [seq for seq, _ in await stream(raw, "web")] == [1, 2, 3, 4, 5]
    finally:
        await store.close()


async def test_a_fence_taken_between_the_look_and_the_write_refuses_the_write_whole(
    url: str, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WATCH: another agent takes the fence key after the store looked at it and before its
    EXEC; the EXEC is refused and nothing of the batch is in Redis. It is an unsure write
    (a dropped connection while watching looks the same to redis-py), and the look that
    settles it says why."""
    import redis

    from logcast.store import redis_streams

    await raw.set("fence", 5)
    store = RedisStore(url, fence=lambda names: {"fence": 5})
    other = redis.Redis.from_url(url)
    looked = redis_streams.check_fence

    def look_then_taken(fence, held):  # type: ignore[no-untyped-def]
        looked(fence, held)
        other.set("fence", 9)  # in the writer's thread, between its look and EXEC

    monkeypatch.setattr(redis_streams, "check_fence", look_then_taken)
    try:
        with pytest.raises(StoreError) as refused:
            await asyncio.to_thread(store.write, [line(1), line(2)])
        assert refused.value.unsure
        assert await raw.exists("logcast:log:web") == 0
        assert await raw.exists("logcast:meta:web") == 0
        monkeypatch.setattr(redis_streams, "check_fence", looked)
        with pytest.raises(FencedOff, match="'9', above"):
            await asyncio.to_thread(store.stored_upto, "web")
    finally:
        other.close()
        await store.close()


async def test_an_answer_lost_while_watching_is_an_unsure_write_applied_once(
    url: str, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py turns a connection lost while watching into WatchError; the EXEC may have
    been applied. Sent again, its HINCRBYs would count the lines twice."""
    import redis.client
    from redis.exceptions import WatchError

    executed = redis.client.Pipeline.execute

    def applied_then_lost(self, raise_on_error=True):  # type: ignore[no-untyped-def]
        watching = self.watching
        answer = executed(self, raise_on_error)
        if watching:  # the fenced transaction, not the look at what is known before it
            raise WatchError("A ConnectionError occurred on while watching one or more keys")
        return answer

    store = RedisStore(url, fence=lambda names: {"fence": 5})
    try:
        monkeypatch.setattr(redis.client.Pipeline, "execute", applied_then_lost)
        with pytest.raises(StoreError) as lost:
            await asyncio.to_thread(store.write, [line(1), line(2), line(3)])
        assert lost.value.unsure
        monkeypatch.setattr(redis.client.Pipeline, "execute", executed)
        assert await asyncio.to_thread(store.stored_upto, "web") == 3
        await asyncio.to_thread(store.write, [line(1), line(2), line(3)])  # the hub's retry
        assert await raw.hmget("logcast:meta:web", ["lines", "last_seq"]) == [b"3", b"3"]
        assert await raw.xlen("logcast:log:web") == 3
    finally:
        await store.close()
