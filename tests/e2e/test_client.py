"""The Python client against a real `logcast serve` with real children."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from logcast.client import AsyncClient, Client, ConnectionState, Event, Host
from logcast.errors import ClientError
from logcast.types import EventType, Level, ProcessState, Stream
from tests.conftest import free_port
from tests.e2e.conftest import Server, py_command
from tests.util import wait_for

pytestmark = pytest.mark.e2e

Make = Callable[..., Server]


async def await_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def lines_of(client: Client, name: str) -> list[str]:
    return [r.message for r in client.iter_logs(name, after=0) if r.stream is not Stream.SYSTEM]


PRINT_25 = py_command(
    """
    import time
    for i in range(25):
        level = "ERROR" if i % 5 == 0 else "INFO"
        print(f"{level}:root:line {i}", flush=True)
    time.sleep(3600)
    """
)

SLEEPER = py_command("import time; print('up', flush=True); time.sleep(3600)")


@pytest.fixture
def basic(make_server: Make) -> Server:
    return make_server(
        f"""
        [process.web]
        command = {PRINT_25}

        [process.idle]
        command = {SLEEPER}
        autostart = false
        """
    )


def test_list_and_control(basic: Server) -> None:
    with Client(basic.url) as client:
        assert client.healthz() is True
        processes = {p.name: p for p in client.processes()}
        assert list(processes) == ["web", "idle"]
        assert processes["idle"].state is ProcessState.STOPPED
        wait_for(lambda: client.process("web").state.is_alive, what="web running")

        started = client.start("idle")
        assert started.state.is_alive and started.pid
        with pytest.raises(ClientError) as conflict:
            client.start("idle")
        assert conflict.value.status == 409
        assert "already running" in str(conflict.value)

        restarted = client.restart("idle")
        assert restarted.state.is_alive and restarted.run == started.run + 1 and restarted.pid != started.pid

        stopped = client.stop("idle")
        assert not stopped.state.is_alive
        assert client.process("idle").state is stopped.state

        config = client.config()
        assert [p["name"] for p in config["processes"]] == ["web", "idle"]


async def test_hosts_on_one_machine(basic: Server) -> None:
    here = socket.gethostname()
    with Client(basic.url) as client:
        assert client.hosts() == [Host(host=here, alive=True, last_seen=None, processes=["web", "idle"])]
        assert [(p.name, p.host) for p in client.processes()] == [("web", here), ("idle", here)]
        assert client.process("idle").host == here
    async with AsyncClient(basic.url) as aclient:
        (host,) = await aclient.hosts()
        assert host.host == here and host.alive and host.processes == ["web", "idle"]


PROCESS = {
    "name": "train", "state": "running", "host": "gpu-1", "pid": 12, "run": 1, "restarts": 0, "lines": 3,
    "bytes": 30, "lines_per_s": 0.0, "warnings": 0, "errors": 0, "last_error": None, "subscribers": 0,
    "last_seq": 3,
}  # fmt: skip


def cluster_answers(request: httpx.Request) -> httpx.Response:
    """A replica of several hosts, as the client sees it: gpu-2 lost, its process unknown,
    a command its agent never acted on, and Redis away for every other route."""
    path = request.url.path
    if path == "/api/hosts":
        return httpx.Response(200, json={"hosts": [
            {"host": "gpu-1", "alive": True, "last_seen": 1733412345.2, "processes": ["train"]},
            {"host": "gpu-2", "alive": False, "last_seen": 1733412300.0, "processes": ["infer"]},
        ]})  # fmt: skip
    if path == "/api/processes/infer":
        return httpx.Response(200, json={**PROCESS, "name": "infer", "host": "gpu-2", "state": "unknown"})
    if path == "/api/processes/infer/stop":
        return httpx.Response(504, json={"detail": "host 'gpu-2' did not stop infer within 10 s: no answer"})
    return httpx.Response(
        503, json={"detail": "redis at redis://db:6379 is unreachable: refused"}, headers={"Retry-After": "2"}
    )


def test_several_hosts_a_lost_one_and_the_cluster_errors() -> None:
    with Client("http://replica.test") as client:
        client._http.close()
        client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(cluster_answers))
        hosts = client.hosts()
        assert [(h.host, h.alive) for h in hosts] == [("gpu-1", True), ("gpu-2", False)]
        infer = client.process("infer")
        assert infer.host == "gpu-2" and infer.state is ProcessState.UNKNOWN and not infer.state.is_alive
        with pytest.raises(ClientError) as timeout:
            client.stop("infer")
        assert timeout.value.status == 504 and "gpu-2" in str(timeout.value)
        with pytest.raises(ClientError) as unavailable:
            client.processes()
        assert unavailable.value.status == 503 and str(unavailable.value).startswith("redis at redis://db")


def test_unknown_process_and_unreachable_server(basic: Server) -> None:
    with Client(basic.url) as client:
        for call in (client.process, client.start, client.stop, client.restart, client.clear, client.logs):
            with pytest.raises(ClientError) as err:
                call("nope")
            assert err.value.status == 404
            assert "nope" in str(err.value)
    with Client(f"http://127.0.0.1:{free_port()}") as dead:
        with pytest.raises(ClientError) as err:
            dead.processes()
        assert err.value.status is None
        assert "cannot reach" in str(err.value)


def test_history_pages_filters_clear_and_stats(basic: Server) -> None:
    with Client(basic.url) as client:
        wait_for(lambda: len(lines_of(client, "web")) == 25, what="25 lines")
        pages = []
        after: int | None = 0
        while after is not None:
            page = client.logs("web", after=after, limit=10)
            pages.append(page)
            after = page.next if page.logs else None
        records = [r for page in pages for r in page.logs]
        assert [r.seq for r in records] == sorted({r.seq for r in records})
        assert [r.message for r in records if r.stream is not Stream.SYSTEM] == [
            f"{'ERROR' if i % 5 == 0 else 'INFO'}:root:line {i}" for i in range(25)
        ]
        assert all(len(page.logs) <= 10 for page in pages)

        errors = client.logs("web", after=0, level="error").logs
        assert [r.message for r in errors] == [f"ERROR:root:line {i}" for i in range(0, 25, 5)]
        assert all(r.level is Level.ERROR for r in errors)
        assert [r.message.split(":")[-1] for r in client.logs("web", after=0, q="LINE 2").logs] == [
            "line 2",
            "line 20",
            "line 21",
            "line 22",
            "line 23",
            "line 24",
        ]
        assert [r.message for r in client.logs("web", after=0, regex=r"line 1\d$").logs] == [
            f"{'ERROR' if i % 5 == 0 else 'INFO'}:root:line {i}" for i in range(10, 20)
        ]
        last = client.logs("web", tail=3).logs
        assert [r.message for r in last] == ["INFO:root:line 22", "INFO:root:line 23", "INFO:root:line 24"]

        stats = client.stats()
        assert stats["processes"]["web"]["lines"] >= 25
        assert stats["total_logs"] >= stats["processes"]["web"]["lines"]

        last_seq = records[-1].seq
        cleared = client.clear("web")
        assert cleared["cleared"] is True
        assert lines_of(client, "web") == []
        # Sequence numbers keep counting after a clear; `lines` still counts everything.
        client.restart("web")
        wait_for(lambda: len(lines_of(client, "web")) == 25, what="25 new lines")
        assert min(r.seq for r in client.iter_logs("web", after=0)) > last_seq
        assert client.process("web").lines >= 50


def test_token(make_server: Make) -> None:
    server = make_server(f"[process.web]\ncommand = {SLEEPER}\n", token="s3cret")
    with Client(server.url) as anonymous:
        assert anonymous.healthz() is True  # needs no token
        with pytest.raises(ClientError, match="token missing or wrong") as err:
            anonymous.processes()
        assert err.value.status == 401
    with Client(server.url, "wrong") as wrong, pytest.raises(ClientError, match="token missing or wrong"):
        wrong.processes()
    with Client(server.url, "s3cret") as client:
        assert [p.name for p in client.processes()] == ["web"]
        stream = client.stream("web", lines=0)
        assert next(stream).connection is ConnectionState.CONNECTING
        assert next(stream).connection is ConnectionState.CONNECTED
        stream.close()


# -- streams ---------------------------------------------------------------------------------------


WRITER = """
import os, sys, time
total = {total}
go = {go!r}
for i in range(total):
    print(f"n {{i}}")
    if i % 10 == 0:
        time.sleep(0.002)
    if i == {pause_at} and go:
        while not os.path.exists(go):
            time.sleep(0.01)
print("done", flush=True)
time.sleep(3600)
"""


async def collect(
    events: AsyncIterator[Event], until: Callable[[Event], bool], timeout: float = 30.0
) -> list[Event]:
    got: list[Event] = []

    async def run() -> None:
        async for event in events:
            got.append(event)
            if until(event):
                return

    await asyncio.wait_for(run(), timeout)
    return got


def assert_contiguous(events: list[Event]) -> list[int]:
    seqs = [e.log.seq for e in events if e.log is not None]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a line was lost or repeated"
    return seqs


async def test_stream_history_then_realtime_without_gap_or_duplicate(
    make_server: Make, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    writer = py_command(WRITER.format(total=3000, go=str(go), pause_at=1500))
    server = make_server(f"[process.writer]\ncommand = {writer}\n")
    async with AsyncClient(server.url) as client:
        deadline = time.monotonic() + 15
        while (await client.process("writer")).lines < 500 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        events = client.stream("writer", after=0, reconnect=False)
        async with contextlib.aclosing(events):
            started = asyncio.get_running_loop().time()
            got: list[Event] = []
            async for event in events:
                got.append(event)
                if event.type is EventType.HISTORICAL_COMPLETE:
                    go.touch()  # the child writes its second half while we stream live
                if event.log is not None and event.log.message == "done":
                    break
                assert asyncio.get_running_loop().time() - started < 60
    kinds = [e.type for e in got if e.type != "connection"]
    complete = kinds.index(EventType.HISTORICAL_COMPLETE)
    assert kinds.count(EventType.HISTORICAL_COMPLETE) == 1
    assert EventType.REALTIME not in kinds[:complete]
    assert EventType.HISTORICAL not in kinds[complete:]
    assert EventType.GAP not in kinds
    assert_contiguous(got)
    messages = [e.log.message for e in got if e.log is not None and e.log.stream is not Stream.SYSTEM]
    assert messages == [f"n {i}" for i in range(3000)] + ["done"]
    assert any(e.type is EventType.REALTIME for e in got)


async def test_stream_resumes_across_server_restart(make_server: Make) -> None:
    ticker = py_command(
        """
        import itertools, time
        for i in itertools.count():
            print(f"tick {i}", flush=True)
            time.sleep(0.01)
        """
    )
    server = make_server(f"[process.ticker]\ncommand = {ticker}\n")
    async with AsyncClient(server.url) as client:
        got: list[Event] = []
        states: list[ConnectionState] = []
        restarted = asyncio.Event()
        events = client.stream("ticker", after=0, interval=0.1)

        async def follow() -> None:
            async for event in events:
                got.append(event)
                if event.connection is not None:
                    states.append(event.connection)
                if (
                    restarted.is_set()
                    and event.log is not None
                    and event.log.run >= 2
                    and (event.log.message.startswith("tick 50"))
                ):
                    return

        task = asyncio.create_task(follow())
        await await_for(lambda: sum(1 for e in got if e.log is not None) > 50, what="first lines")
        await asyncio.to_thread(server.restart)
        restarted.set()
        await asyncio.wait_for(task, 60)
        await events.aclose()
        assert ConnectionState.DISCONNECTED in states
        assert states.count(ConnectionState.CONNECTED) >= 2
        assert not any(e.type is EventType.GAP for e in got)
        seqs = assert_contiguous(got)
        # Exactly what the server kept, in the same order.
        history = [
            r.seq for r in (await client.logs("ticker", after=0, limit=10000)).logs if r.seq <= seqs[-1]
        ]
        assert seqs == history
        assert {e.log.run for e in got if e.log is not None} >= {1, 2}


async def test_gap_when_early_lines_left_retention(make_server: Make) -> None:
    burst = py_command(
        """
        import time
        for i in range(200):
            print(f"b {i}")
        print("end", flush=True)
        time.sleep(3600)
        """
    )
    server = make_server(
        f"""
        [storage]
        memory_lines = 50
        retain_lines = 50

        [process.burst]
        command = {burst}
        """
    )
    async with AsyncClient(server.url) as client:

        async def first_retained() -> int:
            page = await client.logs("burst", after=0, limit=1)
            return page.logs[0].seq if page.logs else 0

        deadline = time.monotonic() + 20
        while ((await client.process("burst")).lines < 201 or await first_retained() <= 10) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.05)
        events = client.stream("burst", after=1, reconnect=False)
        async with contextlib.aclosing(events):
            got = await collect(events, lambda e: e.type is EventType.HISTORICAL_COMPLETE)
    gaps = [e for e in got if e.type is EventType.GAP]
    assert len(gaps) == 1
    gap = gaps[0]
    assert gap.gap_from == 2
    assert gap.gap_to is not None and gap.missed == gap.gap_to - 1 >= 100
    lines = [e for e in got if e.log is not None]
    assert lines and lines[0].log is not None and lines[0].log.seq == gap.gap_to + 1
    assert_contiguous(lines)
    assert lines[-1].log is not None and lines[-1].log.message == "end"


async def test_model_route_waits_for_the_process(basic: Server) -> None:
    async with AsyncClient(basic.url) as client:
        got: list[Event] = []
        events = client.stream("idle", model_route=True, interval=0.05)

        async def follow() -> None:
            async for event in events:
                got.append(event)

        task = asyncio.create_task(follow())
        try:
            await await_for(
                lambda: any(e.connection is ConnectionState.NOT_RUNNING for e in got), what="not running"
            )
            await client.start("idle")
            await await_for(lambda: any(e.log is not None and e.log.message == "up" for e in got), what="up")
            n = len(got)
            await client.stop("idle")
            await await_for(lambda: any(e.type is EventType.STREAM_END for e in got[n:]), what="stream_end")
            await await_for(
                lambda: any(e.connection is ConnectionState.NOT_RUNNING for e in got[n:]),
                what="waiting again",
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await events.aclose()
        not_running = next(e for e in got if e.connection is ConnectionState.NOT_RUNNING)
        assert not_running.retry_in == 0.05 and "not running" in (not_running.reason or "")


async def test_wait_running_and_giving_up(basic: Server) -> None:
    async with AsyncClient(basic.url) as client:
        events = client.stream("idle", wait_running=True, max_attempts=3, interval=0.01)
        got: list[Event] = []
        with pytest.raises(ClientError, match="gave up after 3 attempts"):
            async for event in events:
                got.append(event)
        waits = [e for e in got if e.connection is ConnectionState.NOT_RUNNING]
        assert [e.attempt for e in waits] == [1, 2, 3]
        assert waits[-1].retry_in is None

        with pytest.raises(ClientError) as err:
            async for _ in client.stream("nope"):
                pass
        assert err.value.status == 404

    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as dead:
        got = []
        with pytest.raises(ClientError, match="gave up after 4 attempts"):
            async for event in dead.stream("web", max_attempts=4, interval=0.01):
                got.append(event)
        delays = [e.retry_in for e in got if e.connection is ConnectionState.DISCONNECTED]
        assert delays == [0.01, 0.02, 0.04, None]
        with pytest.raises(ClientError, match="cannot reach"):
            async for _ in dead.stream("web", reconnect=False):
                pass


async def test_waiting_for_a_run_ends_when_it_starts_not_at_the_next_attempt(basic: Server) -> None:
    """With a minute between attempts, the stream still opens as soon as the process
    starts: between attempts the client watches the process's status events."""
    async with AsyncClient(basic.url) as client:
        events = client.stream("idle", after=0, wait_running=True, interval=60)
        got: list[Event] = []

        async def follow() -> None:
            async for event in events:
                got.append(event)
                if event.is_line:
                    return

        task = asyncio.create_task(follow())
        try:
            await await_for(lambda: any(e.connection is ConnectionState.NOT_RUNNING for e in got))
            await client.start("idle")
            await asyncio.wait_for(task, 20)
        finally:
            task.cancel()
            await events.aclose()
    states = [e.connection for e in got if e.connection is not None]
    assert states == [
        ConnectionState.CONNECTING,
        ConnectionState.NOT_RUNNING,
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
    ]


def test_sync_waiting_for_a_run_ends_when_it_starts_not_at_the_next_attempt(basic: Server) -> None:
    with Client(basic.url) as client:
        events = client.stream("idle", after=0, wait_running=True, interval=60)
        first = next(events)
        assert first.connection is ConnectionState.CONNECTING
        assert next(events).connection is ConnectionState.NOT_RUNNING
        starter = threading.Timer(0.5, client.start, args=("idle",))
        started = time.monotonic()
        starter.start()
        try:
            line = next(e for e in events if e.is_line)
        finally:
            starter.join()
            events.close()
        assert line.log is not None and line.log.process == "idle"
        assert time.monotonic() - started < 20  # not the minute until the next attempt


def test_sync_stream_follows_live_lines(basic: Server) -> None:
    with Client(basic.url) as client:
        client.start("idle")
        seen: list[Event] = []
        stream = client.stream("idle", after=0, reconnect=False)
        for event in stream:
            seen.append(event)
            if event.log is not None and event.log.message == "up":
                break
        stream.close()
        assert [e.connection for e in seen[:2]] == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
        assert any(e.type is EventType.STATUS or (e.log and e.log.stream is Stream.SYSTEM) for e in seen)
        client.stop("idle")


FLOOD = py_command(
    """
    import sys, time
    for start in range(0, 40000, 1000):
        sys.stdout.write("".join(f"f {i}\\n" for i in range(start, start + 1000)))
        sys.stdout.flush()
    time.sleep(3600)
    """
)


async def test_stream_batches_a_flood_every_line_once(make_server: Make) -> None:
    server = make_server(f"[process.flood]\ncommand = {FLOOD}\nautostart = false\n")
    async with AsyncClient(server.url) as client:
        batches: list[list[Event]] = []
        stream = client.stream_batches("flood", after=0, wait_running=True, interval=0.05)

        async def follow() -> None:
            async for batch in stream:
                batches.append(batch)
                if any(e.log is not None and e.log.message == "f 39999" for e in batch):
                    return

        task = asyncio.create_task(follow())
        await await_for(lambda: any(e.connection is ConnectionState.NOT_RUNNING for b in batches for e in b))
        await client.start("flood")
        await asyncio.wait_for(task, 60)
        await stream.aclose()
    assert all(batches), "an empty list"
    # a connection event comes alone
    assert all(len(b) == 1 for b in batches if any(e.type == "connection" for e in b))
    events = [e for b in batches for e in b]
    assert_contiguous(events)
    lines = [e.log.message for e in events if e.log is not None and e.log.stream is not Stream.SYSTEM]
    assert lines == [f"f {i}" for i in range(40000)]
    assert max(len(b) for b in batches) > 1  # many events per read


def test_sync_stream_batches_and_per_event_messages(basic: Server) -> None:
    with Client(basic.url) as client:
        batches = client.stream_batches("web", after=0, reconnect=False)
        lines: list[str] = []
        for batch in batches:
            lines += [e.log.message for e in batch if e.log is not None and e.log.stream is not Stream.SYSTEM]
            if len(lines) >= 25:
                break
        batches.close()
        assert lines == [f"{'ERROR' if i % 5 == 0 else 'INFO'}:root:line {i}" for i in range(25)]
        # the LLM manager's route sends one event per message: read alike
        single = client.stream("web", after=0, model_route=True, reconnect=False)
        seen = []
        for event in single:
            if event.log is not None and event.log.stream is not Stream.SYSTEM:
                seen.append(event.log.message)
                if len(seen) == 25:
                    break
        single.close()
        assert seen == lines


STUBBORN = py_command(
    """
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring TERM", flush=True)
    time.sleep(600)
    """
)


def test_a_stop_that_takes_longer_than_the_client_timeout_is_waited_for(make_server) -> None:  # type: ignore[no-untyped-def]
    """The server answers a stop once the process has stopped: its `stop_timeout`, then
    SIGKILL. A client whose timeout is shorter waits for that answer; before, it said it
    could not reach logcast while the stop went on (a review: `logcast restart` of a
    process that ignores SIGTERM, under the default 10 s, printed "cannot reach")."""
    server = make_server(f"[process.stubborn]\ncommand = {STUBBORN}\nstop_timeout = 3\n")
    with Client(server.url, timeout=1.0) as client:
        wait_for(lambda: client.process("stubborn").lines >= 1, what="the child")
        started = time.monotonic()
        stopped = client.stop("stubborn")
        assert time.monotonic() - started >= 2.5  # it did wait for the stop_timeout
        assert stopped.state is ProcessState.STOPPED

    async def restart() -> ProcessState:
        async with AsyncClient(server.url, timeout=1.0) as aclient:
            await aclient.start("stubborn")
            await asyncio.sleep(0.5)
            return (await aclient.restart("stubborn")).state

    assert asyncio.run(restart()) in (ProcessState.STARTING, ProcessState.RUNNING)
