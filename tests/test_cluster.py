"""The cluster's pieces in one process, on a real redis-server: claiming names, an agent's
commands (each id acted on once, only its own processes, only known actions, never a
stale one) and a replica's view of them. The black-box runs are in tests/cluster/."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from logcast.cluster import replica as replica_module
from logcast.cluster.agent import GROUP, Agent
from logcast.cluster.keys import Keys
from logcast.cluster.redis import HostIdTaken, NameTaken, claim, connect
from logcast.cluster.replica import ClusterEngine
from logcast.config import Settings, parse
from logcast.errors import ControlRefused, StoreError
from logcast.hub import MirrorHub
from logcast.query import Query
from logcast.store.redis_streams import RedisStore
from logcast.types import EventType, Gap, GapReason, Level, LogRecord, ProcessState, Stream
from logcast.web.app import create_app
from tests.fakes import MemoryStore
from tests.util import free_port, stop_group, wait_port

pytestmark = pytest.mark.redis

_databases = itertools.count(1)


@pytest.fixture
async def url(redis_url: str) -> AsyncIterator[str]:
    """A database of the session's redis-server of its own (1..15), emptied first."""
    db = next(_databases) % 15 + 1
    url = redis_url.rsplit("/", 1)[0] + f"/{db}"
    client = connect(url)
    await client.flushdb()
    await client.aclose()
    yield url


@pytest.fixture(autouse=True)
def storage_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent keeps its reservations in `.logcast` beside its configuration, here the
    current folder: each test's own."""
    monkeypatch.chdir(tmp_path)


def config(*names: str) -> Settings:
    child = "import time\\nwhile True:\\n    print('tick', flush=True)\\n    time.sleep(0.05)"
    text = "".join(
        f'[process.{name}]\ncommand = ["{sys.executable}", "-u", "-c", "{child}"]\nstop_timeout = 2\n'
        for name in names
    )
    return parse(text)


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_name_held_by_a_live_agent_is_refused_with_its_holder(url: str) -> None:
    client, keys = connect(url), Keys()
    try:
        epoch_a = await claim(client, keys, "a", ["web", "worker"], "{}")
        with pytest.raises(NameTaken, match="'worker' is already run by host 'a'"):
            await claim(client, keys, "b", ["llm", "worker"], "{}")
        assert await client.get(keys.owner("llm")) is None  # nothing taken by a refused claim
        with pytest.raises(HostIdTaken, match="host id 'a' is used by another live agent"):
            await claim(client, keys, "a", ["web", "worker"], "{}")  # a second run of a, a alive
        await client.delete(keys.agent("a"))  # a's agent is gone
        epoch_b = await claim(client, keys, "b", ["llm", "worker"], "{}")
        assert await client.get(keys.owner("worker")) == "b"
        assert epoch_b > epoch_a
        assert await client.get(keys.epoch("worker")) == str(epoch_b)
        assert await client.get(keys.epoch("web")) == await client.get(keys.instance("a")) == str(epoch_a)
    finally:
        await client.aclose()


@pytest.fixture
async def cluster(url: str) -> AsyncIterator[tuple[Agent, ClusterEngine, aioredis.Redis]]:
    agent = await Agent.start(config("web"), url, "a")
    replica = await ClusterEngine.open(Settings(), url)
    client = connect(url)
    try:
        await until(lambda: "web" in replica.processes.names(), "the replica to see web")
        yield agent, replica, client
    finally:
        await client.aclose()
        await replica.stop()
        await agent.stop()


async def test_the_replica_lists_the_agents_processes_and_follows_their_lines(
    cluster: tuple[Agent, ClusterEngine, aioredis.Redis],
) -> None:
    agent, replica, _ = cluster
    assert replica.processes.info("web")["host"] == "a"
    assert [(h.host, h.alive, h.processes) for h in replica.hosts()] == [("a", True, ["web"])]
    assert replica.configs()["web"].command[0] == sys.executable
    await until(lambda: replica.hub.get("web").last_seq >= 20, "twenty lines mirrored")
    sub = await replica.hub.subscribe("web", after=0)
    entries = await sub.next(wait=False)
    sub.close()
    seqs = [p.seq for _, p in entries if isinstance(p, LogRecord)]
    assert seqs == list(range(1, len(seqs) + 1))  # the agent's own numbers, none missing
    assert agent.engine.hub.get("web").last_seq >= seqs[-1]


async def test_a_command_sent_while_the_agents_group_is_gone_is_delivered(
    cluster: tuple[Agent, ClusterEngine, aioredis.Redis],
) -> None:
    """Redis came back empty: the command stream and its group are made again, and a
    command sent before the agent made the group is still acted on (a review: the group was
    made at "$", past it, and every such command timed out)."""
    agent, _, client = cluster
    keys = Keys()
    run = agent.engine.processes.info("web")["run"]
    pipe: Any = client.pipeline(transaction=True)
    pipe.xgroup_destroy(keys.commands("a"), GROUP)
    pipe.xadd(keys.commands("a"), {"id": "after-loss", "action": "restart", "process": "web"})
    await pipe.execute()
    reply = await client.blpop([keys.reply("after-loss")], timeout=10)
    assert reply is not None and orjson.loads(reply[1])["ok"] is True
    assert agent.engine.processes.info("web")["run"] == run + 1


async def test_control_acts_once_per_command_id_and_only_on_its_own_processes(
    cluster: tuple[Agent, ClusterEngine, aioredis.Redis],
) -> None:
    agent, replica, client = cluster
    keys = Keys()
    run = agent.engine.processes.info("web")["run"]
    assert await replica.processes.restart("web") is True
    assert agent.engine.processes.info("web")["run"] == run + 1
    assert replica.processes.info("web")["run"] == run + 1  # the answer carries the new state

    # the same command delivered twice (a retry) is acted on once, and answered twice
    command = {"id": "retry-1", "action": "restart", "process": "web"}
    for _ in range(2):
        await client.xadd(keys.commands("a"), command)  # type: ignore[arg-type]
    replies = [await client.blpop([keys.reply("retry-1")], timeout=10) for _ in range(2)]
    assert all(reply is not None for reply in replies)
    assert agent.engine.processes.info("web")["run"] == run + 2

    async def ask(fields: dict[str, str]) -> dict[str, Any]:
        await client.xadd(keys.commands("a"), fields)  # type: ignore[arg-type]
        reply = await client.blpop([keys.reply(fields["id"])], timeout=10)
        assert reply is not None
        return dict(orjson.loads(reply[1]))

    assert await ask({"id": "x1", "action": "rm -rf /", "process": "web"}) == {
        "ok": False,
        "error": "unknown action 'rm -rf /'",
    }
    assert await ask({"id": "x2", "action": "stop", "process": "other"}) == {
        "ok": False,
        "error": "'other' is not a process of host 'a'",
    }
    # a command its asker gave up on (sent more than the command timeout ago) is not acted on
    stale = await agent._outcome("1000-0", {"action": "stop", "process": "web"})  # sent in 1970
    assert stale == {"ok": False, "error": "the stop of web came after its asker gave up: not done"}
    assert agent.engine.processes.info("web")["state"] == "running"
    with pytest.raises(ControlRefused, match="not a process of host"):
        replica.view.infos["ghost"] = {"name": "ghost", "host": "a", "state": "running"}
        await replica.processes.stop("ghost")


async def test_clear_through_the_replica_reaches_the_agent(
    cluster: tuple[Agent, ClusterEngine, aioredis.Redis],
) -> None:
    agent, replica, _ = cluster
    await until(lambda: replica.hub.get("web").last_seq >= 10, "ten lines mirrored")
    upto = await replica.clear("web")
    assert upto >= 10
    assert agent.engine.hub.get("web").cleared_upto == upto
    page = await replica.hub.read_page("web", after=0, limit=10)
    assert all(r.seq > upto for r in page.records)


async def test_a_silent_agent_is_lost_and_its_processes_unknown(url: str) -> None:
    agent = await Agent.start(config("web"), url, "a")
    replica = await ClusterEngine.open(Settings(), url)
    try:
        await until(lambda: replica.processes.info("web")["state"] == "running", "web running")
        await agent.client.delete(agent.keys.agent("a"))  # as if its heartbeats had stopped for 10 s
        for task in agent._tasks:
            task.cancel()
        await until(lambda: not replica.hosts()[0].alive, "the host lost")
        assert replica.processes.info("web")["state"] == ProcessState.UNKNOWN
        assert replica.processes.info("web")["pid"] is None
    finally:
        await replica.stop()
        await agent.stop()


def record(
    seq: int, text: str = "x", *, stream: Stream = Stream.STDOUT, level: Level = Level.INFO
) -> LogRecord:
    return LogRecord(seq, 1.0, level, text, stream, "web", 1)


async def test_a_mirror_keeps_the_owners_numbers_and_tells_lost_and_cleared_ranges() -> None:
    store = MemoryStore()
    hub = MirrorHub(store, memory_lines=100)
    await hub.open([])

    def owner_wrote(records: list[LogRecord]) -> None:
        store.write(records)  # it skips what it has
        hub.mirror("web", records)

    try:
        owner_wrote([record(1), record(2, "bad", level=Level.ERROR), record(3)])
        owner_wrote([record(2), record(3), record(4)])  # seen before: kept once
        owner_wrote([record(8), record(9, "stopped", stream=Stream.SYSTEM)])  # 5..7 never stored
        journal = hub.get("web")
        assert journal.last_seq == 9 and journal.errors == 1 and journal.last_error == "bad"
        sub = await hub.subscribe("web", after=0)
        entries = await sub.next(wait=False)
        gaps = [p for _, p in entries if isinstance(p, Gap)]
        assert gaps == [Gap("web", 5, 7, GapReason.LOST)]
        assert [p.seq for _, p in entries if isinstance(p, LogRecord)] == [1, 2, 3, 4, 8, 9]
        assert entries[-1][0] is EventType.HISTORICAL_COMPLETE
        hub.mirror_cleared("web", 8)
        assert journal.cleared_upto == 8
        tail = await hub.tail("web", 10, query=Query())
        assert [r.seq for r in tail] == [9]
        sub.close()
    finally:
        await hub.close()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server that speaks only TLS and wants a password: the URL a host would use."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            *subject,
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    tls = ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert)]
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            *tls,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret-pw",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port(port)
        yield f"rediss://:s3cret-pw@127.0.0.1:{port}/0?ssl_ca_certs={cert}", server
    finally:
        stop_group(server)


async def test_rediss_with_a_password_works_and_the_password_is_never_shown(
    tls_redis: tuple[str, subprocess.Popen[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    url, server = tls_redis
    with pytest.raises(StoreError) as refused:
        await Agent.start(config("web"), url.replace("s3cret-pw", "wrong-pw"), "a")
    assert "wrong-pw" not in str(refused.value)
    agent = await Agent.start(config("web"), url, "a")
    replica = await ClusterEngine.open(Settings(), url)
    try:
        await until(
            lambda: replica.hub.get("web").last_seq >= 5 if "web" in replica.hub.names() else False, "lines"
        )
        stop_group(server)  # Redis goes away: the replica says so, without the password
        await until(lambda: replica.problem is not None, "the replica to notice")
        assert "redis" in str(replica.problem) and "s3cret-pw" not in str(replica.problem)
    finally:
        await replica.stop()
        await agent.stop()
    assert "s3cret-pw" not in caplog.text


async def test_an_agent_stopped_in_order_leaves_its_processes_stopped_not_unknown(url: str) -> None:
    agent = await Agent.start(config("web"), url, "a")
    replica = await ClusterEngine.open(Settings(), url)
    try:
        await until(lambda: replica.processes.info("web")["state"] == "running", "web running")
        await agent.stop()
        await until(lambda: not replica.hosts()[0].alive, "the host gone")
        assert replica.processes.info("web")["state"] == ProcessState.STOPPED
    finally:
        await replica.stop()


async def test_a_command_read_as_the_agent_stops_is_not_acted_on(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel lost in the command read (Python 3.11's wait_for returns the answer that came
    in the same turn, see logcast.loop) must not start an action after the agent's stop:
    the child it started would outlive the agent."""
    agent = await Agent.start(config("web"), url, "a")
    reading = asyncio.Event()
    acted: list[str] = []
    key = agent.keys.commands("a")

    async def read_that_loses_the_cancel(*args: Any, **kwargs: Any) -> Any:
        reading.set()
        with contextlib.suppress(asyncio.CancelledError):  # the answer came with the cancel
            await asyncio.sleep(3600)
        late = {"id": "late", "action": "restart", "process": "web"}
        return [[key, [(f"{int(time.time() * 1000)}-0", late)]]]

    async def restart(name: str) -> bool:
        acted.append(name)
        return True

    try:
        await until(lambda: agent.engine.processes.info("web")["state"] == "running", "web running")
        monkeypatch.setattr(agent.client, "xreadgroup", read_that_loses_the_cancel)
        monkeypatch.setattr(agent.engine.processes, "restart", restart)
        await asyncio.wait_for(reading.wait(), 5)  # the next read is the one that loses it
    finally:
        await agent.stop()
    await asyncio.sleep(0.5)  # an action started by the stop would have run by now
    assert acted == []
    assert all(task.done() for task in agent._tasks)


async def test_a_stopping_agent_refuses_a_command_with_the_reason(
    cluster: tuple[Agent, ClusterEngine, aioredis.Redis],
) -> None:
    agent, _, client = cluster
    now_ms = int((await client.time())[0]) * 1000
    await until(lambda: agent.engine.processes.info("web")["pid"] is not None, "web running")
    pid = agent.engine.processes.info("web")["pid"]
    agent._stopping = True  # as from the first step of its stop
    outcome = await agent._outcome(f"{now_ms}-0", {"action": "restart", "process": "web"})
    assert outcome == {"ok": False, "error": "host 'a' is stopping: the restart of web was not done"}
    await asyncio.sleep(0.2)
    assert agent.engine.processes.info("web")["pid"] == pid  # not restarted


async def test_a_reader_resuming_on_a_mirror_behind_it_gets_no_line_twice() -> None:
    """A failover: the client had lines up to 50 from another replica; this one has 20 so
    far. It resumes at 50, and gets 51 on as they come; before, 21..50 came again."""
    store = MemoryStore()
    hub = MirrorHub(store, memory_lines=100)
    await hub.open([])
    try:
        hub.mirror("web", [record(seq) for seq in range(1, 21)])
        sub = await hub.subscribe("web", after=50)
        assert await sub.next(wait=False) == [(EventType.HISTORICAL_COMPLETE, 50)]
        hub.mirror("web", [record(seq) for seq in range(21, 61)])
        entries = await sub.next(wait=False)
        assert [p.seq for _, p in entries if isinstance(p, LogRecord)] == list(range(51, 61))
        sub.close()
        # behind it, as before: from where the reader was
        sub = await hub.subscribe("web", after=55)
        entries = await sub.next(wait=False)
        assert [p.seq for _, p in entries if isinstance(p, LogRecord)] == list(range(56, 61))
        sub.close()
    finally:
        await hub.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own, to be stopped (SIGSTOP) as a partition would."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port(port)
        proc.args = f"redis://127.0.0.1:{port}/0"  # type: ignore[misc]
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        stop_group(proc)


async def test_a_redis_that_stops_answering_is_unreachable_in_seconds_not_minutes(
    own_redis: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition (Redis stopped, no connection refused): a control call and the view gave
    no answer for about 90 s (a review), the sockets' timeouts and their retries. Both are
    bounded by the command's own time now, and the API answers 503."""
    monkeypatch.setattr(replica_module, "COMMAND_TIMEOUT", 1.0)
    monkeypatch.setattr(replica_module, "REDIS_GRACE", 0.5)
    url = str(own_redis.args)
    agent = await Agent.start(config("web"), url, "a")
    replica = await ClusterEngine.open(Settings(), url)
    app = create_app(Settings())
    app.state.engine = replica
    try:
        await until(lambda: "web" in replica.processes.names(), "the replica to see web")
        os.kill(own_redis.pid, signal.SIGSTOP)
        started = time.monotonic()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            answer = await client.post("/api/processes/web/restart")
        assert answer.status_code == 503 and "redis" in answer.json()["detail"], answer.text
        assert answer.headers["retry-after"] == "2"
        assert time.monotonic() - started < 5.0  # the command's 1 s and the grace, not 90 s
        await until(lambda: replica.problem is not None, "the view to say Redis is away", timeout=5.0)
    finally:
        os.kill(own_redis.pid, signal.SIGCONT)
        await replica.stop()
        await agent.stop()


async def test_after_redis_lost_its_data_an_agent_elsewhere_numbers_above_what_replicas_saw(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis restarted empty, and the process moved to a host with a fresh storage folder:
    it numbered from 1 again, so seq 5 named two lines, and the replica dropped the new
    ones without a word (a review). The replica now writes back the highest seq it saw."""
    agent = await Agent.start(config("web"), url, "a")
    replica = await ClusterEngine.open(Settings(), url)
    client = connect(url)
    store = replica.store
    assert isinstance(store, RedisStore)
    agent_b: Agent | None = None
    try:
        await until(
            lambda: replica.hub.get("web").last_seq >= 10 if "web" in replica.hub.names() else False, "web"
        )
        await agent.stop()
        await until(
            lambda: replica.hub.get("web").last_seq == agent.engine.hub.get("web").last_seq, "all mirrored"
        )
        seen = replica.hub.get("web").last_seq
        await client.flushdb()  # Redis came back empty
        floor = 0
        deadline = time.monotonic() + 10
        while floor < seen:
            assert time.monotonic() < deadline, "the replica did not write back what it saw"
            await asyncio.sleep(0.05)
            floor = int(await client.hget(store.meta_key("web"), "reserved") or 0)
        (tmp_path / "b").mkdir()
        monkeypatch.chdir(tmp_path / "b")  # another host: a storage folder of its own, empty
        agent_b = await Agent.start(config("web"), url, "b")
        await until(lambda: replica.hub.get("web").last_seq > seen + 5, "b's lines mirrored")
        first = int((await client.xrange(store.stream_key("web"), count=1))[0][0].split("-")[1])
        assert first > seen  # numbered above every seq handed out before
        sub = await replica.hub.subscribe("web", after=0)
        entries = await sub.next(wait=False)
        sub.close()
        seqs = [p.seq for _, p in entries if isinstance(p, LogRecord)]
        assert seqs == sorted(set(seqs)) and seqs[-1] > seen
    finally:
        if agent_b is not None:
            await agent_b.stop()
        await client.aclose()
        await replica.stop()
