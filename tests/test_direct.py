"""New lines written from the hub's wake (`logcast.web.direct`): `Subscription.take_ready`,
`Hub._wake` calling a waiting reader's `on_wake`, the streams' `_direct`, and the body
writer under uvicorn's own request cycle."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from websockets.protocol import State

from logcast.hub import Hub, LiveBatch, Subscription
from logcast.query import Query
from logcast.types import EventType, Level, Lines, ProcessState, Stream
from logcast.web import streams
from logcast.web.direct import BODY, ChunkedBody, announce_body, body_of
from logcast.web.encode import SSE
from logcast.web.wsframes import _DirectFrames
from tests.fakes import MemoryStore, MessageEncoder


def lines(*texts: str, level: Level = Level.INFO) -> Lines:
    return Lines(list(texts), [level] * len(texts), [False] * len(texts))


def write(hub: Hub, *texts: str, level: Level = Level.INFO) -> None:
    hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*texts, level=level))


async def make_hub(**kw: int) -> Hub:
    hub = Hub(MemoryStore(), **kw)
    await hub.open(["app"])
    return hub


async def live(hub: Hub, query: Query | None = None) -> Subscription:
    """A reader at the live end, its historical_complete taken."""
    sub = await hub.subscribe("app", after=hub.get("app").last_seq, query=query)
    assert (await sub.next(wait=False))[-1][0] is EventType.HISTORICAL_COMPLETE
    return sub


def messages(batch: LiveBatch | list[Any] | None) -> list[str]:
    assert batch is not None
    if isinstance(batch, LiveBatch):
        return [b.decode() for b in batch.encoded]
    return [payload.message for _, payload in batch]


# -- Subscription.take_ready ----------------------------------------------------------


async def test_take_ready_hands_over_new_lines_once_in_order_and_moves_the_cursor() -> None:
    hub = await make_hub()
    try:
        enc = MessageEncoder()
        sub = await live(hub)
        assert sub.take_ready(10, "m", enc) == LiveBatch([], [], sub.cursor)
        write(hub, "a", "b")
        batch = sub.take_ready(10, "m", enc)
        assert isinstance(batch, LiveBatch) and messages(batch) == ["a", "b"]
        assert batch.last_seq == sub.cursor == hub.get("app").last_seq
        assert batch.statuses == []
        assert sub.take_ready(10, "m", enc) == LiveBatch([], [], sub.cursor)
        write(hub, "c")
        entries = sub.take_ready(10)  # records, for a reader that encodes them itself
        assert isinstance(entries, list) and [k for k, _ in entries] == [EventType.REALTIME]
        assert messages(entries) == ["c"] and sub.cursor == hub.get("app").last_seq
        assert sub.take_ready(10) == []
    finally:
        await hub.close()


async def test_take_ready_declines_what_the_task_must_take_and_leaves_the_cursor() -> None:
    hub = await make_hub()
    try:
        enc = MessageEncoder()
        write(hub, "old")
        history = await hub.subscribe("app", after=0)
        assert history.take_ready(10, "m", enc) is None  # its history first
        assert history.take_ready(10) is None

        sub = await live(hub)
        at = sub.cursor
        write(hub, *(f"l{i}" for i in range(11)))
        assert sub.take_ready(10, "m", enc) is None  # more than the limit
        assert sub.take_ready(10) is None
        assert sub.cursor == at
        assert messages(sub.take_ready(11, "m", enc)) == [f"l{i}" for i in range(11)]

        at = sub.cursor
        write(hub, "before")
        hub.status("app", 1, ProcessState.RUNNING, "started")  # a status record: the task's
        assert sub.take_ready(10, "m", enc) is None
        assert sub.take_ready(10) is None
        assert sub.cursor == at
        kinds = [k for k, _ in await sub.next(wait=False)]
        assert kinds == [EventType.REALTIME, EventType.STATUS]

        filtered = await live(hub, Query(text="keep"))
        assert filtered.take_ready(10, "m", enc) is None  # cached encodings are unfiltered readers'
        write(hub, "keep 1", "drop", "keep 2")
        assert messages(filtered.take_ready(10)) == ["keep 1", "keep 2"]
        write(hub, "drop again")
        assert filtered.take_ready(10) == [] and filtered.cursor == hub.get("app").last_seq

        sub.close()
        write(hub, "after close")
        assert sub.take_ready(10, "m", enc) is None
    finally:
        await hub.close()


async def test_take_ready_declines_lines_only_the_store_still_has() -> None:
    hub = await make_hub(memory_lines=10)
    try:
        enc = MessageEncoder()
        sub = await live(hub)
        at = sub.cursor
        for i in range(5):
            write(hub, *(f"{i}-{j}" for j in range(10)))
            assert await hub.flush()
        assert sub.take_ready(100, "m", enc) is None  # behind the ring
        assert sub.cursor == at
        got = await sub.take_live(100, "m", enc)  # the task reads the store
        assert got is not None and got.encoded
        while got is not None and got.encoded:
            got = await sub.take_live(100, "m", enc)
        write(hub, "caught up")
        assert messages(sub.take_ready(100, "m", enc)) == ["caught up"]
    finally:
        await hub.close()


# -- Hub._wake ------------------------------------------------------------------------


async def test_the_wake_calls_a_waiting_readers_writer_instead_of_waking_its_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = await make_hub()
    try:
        sub = await live(hub)
        other = await live(hub)
        calls: list[str] = []
        answer: list[object] = [True]

        def on_wake() -> bool:
            calls.append("called")
            result = answer[0]
            if isinstance(result, Exception):
                raise result
            return bool(result)

        sub.on_wake = on_wake
        write(hub, "a")
        await asyncio.sleep(0.05)
        assert calls == ["called"]
        assert not sub.event.is_set() and sub.on_wake is on_wake  # its task sleeps on
        assert other.event.is_set()  # a reader without a writer is woken as before

        answer[0] = False  # declined: the task takes over from its cursor
        write(hub, "b")
        await asyncio.sleep(0.05)
        assert calls == ["called"] * 2 and sub.event.is_set() and sub.on_wake is None

        sub.event.clear()
        sub.on_wake = on_wake
        answer[0] = RuntimeError("broken writer")
        with caplog.at_level(logging.ERROR, logger="logcast.hub.hub"):
            write(hub, "c")
            await asyncio.sleep(0.05)
        assert sub.event.is_set() and sub.on_wake is None
        assert "direct write of process app failed" in caplog.text
        assert "broken writer" in caplog.text
    finally:
        await hub.close()


async def test_a_writer_that_closes_readers_does_not_upset_the_wake(caplog: pytest.LogCaptureFixture) -> None:
    hub = await make_hub()
    try:
        for _ in range(5):  # the set's order is the hub's: every position of the closer
            subs = [await live(hub) for _ in range(4)]

            def closer(subs: list[Subscription] = subs) -> bool:
                subs[0].close()
                subs[1].close()
                return True

            subs[0].on_wake = subs[1].on_wake = closer
            with caplog.at_level(logging.ERROR):
                write(hub, "a")
                await asyncio.sleep(0.05)
            assert not caplog.records, caplog.text
            assert subs[0].closed and subs[1].closed
            assert subs[2].event.is_set() and subs[3].event.is_set()  # the others still woken
            for sub in subs:
                sub.close()
    finally:
        await hub.close()


async def test_each_wake_begins_with_the_next_reader() -> None:
    """No reader is always written to last: over as many wakes as there are readers, each
    goes first once, and the order stays a rotation of one cycle."""
    hub = await make_hub()
    try:
        subs = [await live(hub) for _ in range(3)]
        order: list[int] = []
        for i, sub in enumerate(subs):
            sub.on_wake = lambda i=i: order.append(i) is None
        rounds: list[list[int]] = []
        for n in range(6):
            write(hub, f"line {n}")
            await asyncio.sleep(0.05)
            rounds.append(order[:])
            order.clear()
        assert all(sorted(r) == [0, 1, 2] for r in rounds)  # every reader, once a wake
        firsts = [r[0] for r in rounds]
        assert sorted(firsts[:3]) == [0, 1, 2] and firsts[3:] == firsts[:3]
        cycle = rounds[0] * 2
        assert all(any(cycle[k : k + 3] == r for k in range(3)) for r in rounds)
    finally:
        await hub.close()


# -- the streams' direct writer ---------------------------------------------------------


class Out:
    """A direct writer that keeps what it was given."""

    def __init__(self) -> None:
        self.open = True
        self.data: list[bytes] = []

    def writable(self) -> bool:
        return self.open

    def write(self, data: bytes) -> None:
        assert self.open
        self.data.append(data)


def sse_writer(hub: Hub, sub: Subscription, out: Out, quiet: Any = None) -> Any:
    def take() -> Any:
        return sub.take_ready(streams.DIRECT_LINES, SSE.name, SSE.encode)

    quiet = quiet or streams.Quiet(sub.event, 60.0)
    write = streams._direct(sub, out, take, lambda batch: streams._sse_pieces(hub, sub, batch), quiet)
    assert write is not None
    return write


async def test_direct_writes_the_bytes_the_task_would_send() -> None:
    hub = await make_hub()
    try:
        sub = await live(hub)
        out = Out()
        write_now = sse_writer(hub, sub, out)
        assert write_now() is True and out.data == []  # nothing new
        write(hub, "one", "two")
        assert write_now() is True
        first = hub.get("app").last_seq - 1
        records = await hub.page("app", after=first - 1, limit=2)
        assert out.data == [b"".join(SSE.encode(records))]
        assert b"id: %d\n" % first in out.data[0] and b'"message":"two"' in out.data[0]
        quiet = streams.Quiet(sub.event, 60.0)
        assert streams._direct(sub, None, lambda: None, lambda b: [], quiet) is None  # no writer: no on_wake
    finally:
        await hub.close()


async def test_direct_declines_without_taking_when_it_cannot_write() -> None:
    hub = await make_hub()
    try:
        sub = await live(hub)
        out = Out()
        write_now = sse_writer(hub, sub, out)
        write(hub, "x")
        at = sub.cursor
        out.open = False
        assert write_now() is False and sub.cursor == at  # over its high-water mark
        out.open = True
        assert write_now() is True and sub.cursor == hub.get("app").last_seq
        assert len(out.data) == 1
    finally:
        await hub.close()


async def test_direct_gives_back_what_is_more_than_one_write_or_fails_to_encode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = await make_hub()
    try:
        sub = await live(hub)
        out = Out()
        write_now = sse_writer(hub, sub, out)
        at = sub.cursor
        write(hub, "y" * (streams.WRITE_SLICE + 1))
        assert write_now() is False and sub.cursor == at and out.data == []
        entries = await sub.next(wait=False)  # the task sends it, in slices
        assert [len(p.message) for _, p in entries] == [streams.WRITE_SLICE + 1]

        def broken(hub_: Hub, sub_: Subscription, batch: Any) -> Any:
            raise ValueError("cannot encode")

        quiet = streams.Quiet(sub.event, 60.0)
        failing = streams._direct(sub, out, lambda: sub.take_ready(10), lambda b: broken(hub, sub, b), quiet)
        assert failing is not None
        at = sub.cursor
        write(hub, "z")
        with pytest.raises(ValueError, match="cannot encode"):
            failing()
        assert sub.cursor == at and out.data == []  # the task tries again from here

        class Refusing(Out):
            def write(self, data: bytes) -> None:
                raise RuntimeError("Cannot call write() after write_eof()")

        assert failing() is False and sub.cursor == at  # and only the task, from now on
        refusing = sse_writer(hub, sub, Refusing())
        with pytest.raises(RuntimeError, match="write_eof"):
            refusing()
        assert sub.cursor == at  # nothing was handed over: the task's own send meets the error
        assert refusing() is False and sub.cursor == at  # no traceback per wake
        quiet.close()
    finally:
        await hub.close()


async def test_direct_writes_keep_a_stream_from_pinging_and_its_task_asleep() -> None:
    hub = await make_hub()
    try:
        sub = await live(hub)
        quiet = streams.Quiet(sub.event, 0.3)
        out = Out()
        on_wake = sse_writer(hub, sub, out, quiet=quiet)
        task = asyncio.ensure_future(streams._next(sub, asyncio.Event(), quiet, 100, SSE, on_wake=on_wake))
        await asyncio.sleep(0.01)
        assert sub.on_wake is on_wake
        for i in range(12):  # 0.6 s of lines, 0.05 s apart: twice the quiet spell
            write(hub, f"line {i}")
            await asyncio.sleep(0.05)
            assert not task.done()
        assert len(out.data) == 12
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(task, 5) == []  # quiet now: time to ping
        assert asyncio.get_running_loop().time() - started >= 0.2
        quiet.close()
    finally:
        await hub.close()


async def test_a_waiting_stream_offers_its_writer_only_while_it_waits() -> None:
    hub = await make_hub()
    try:
        sub = await live(hub)
        shutdown = asyncio.Event()
        quiet = streams.Quiet(sub.event, 60.0)
        out = Out()
        on_wake = sse_writer(hub, sub, out)
        task = asyncio.ensure_future(streams._next(sub, shutdown, quiet, 100, SSE, on_wake=on_wake))
        await asyncio.sleep(0.01)
        assert sub.on_wake is on_wake
        write(hub, "pushed")
        await asyncio.sleep(0.05)
        assert not task.done() and len(out.data) == 1  # written by the wake; the task sleeps on
        hub.status("app", 1, ProcessState.RUNNING, "started")  # declined: the task takes it
        batch = await asyncio.wait_for(task, 5)
        assert isinstance(batch, LiveBatch) and len(batch.encoded) == 1 and batch.statuses
        assert sub.on_wake is None

        task = asyncio.ensure_future(streams._next(sub, shutdown, quiet, 100, SSE, on_wake=on_wake))
        await asyncio.sleep(0.01)
        assert sub.on_wake is on_wake
        shutdown.set()
        sub.event.set()  # woken by another than the hub: the writer goes with the wait
        assert await asyncio.wait_for(task, 5) is None
        assert sub.on_wake is None
        quiet.close()
    finally:
        await hub.close()


# -- ChunkedBody under uvicorn's own request cycle ---------------------------------------


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def cycle(method: str = "GET", keep_alive: bool = True) -> tuple[RequestResponseCycle, Transport]:
    transport = Transport()
    scope: dict[str, Any] = {"type": "http", "method": method, "http_version": "1.1", "extensions": {}}
    owner = RequestResponseCycle(
        scope=scope,  # type: ignore[arg-type]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    return owner, transport


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}


async def test_chunked_body_writes_exactly_what_uvicorns_send_writes() -> None:
    owner, transport = cycle()
    announce_body(owner.scope, owner)
    body = body_of(owner.scope)
    assert isinstance(body, ChunkedBody)
    assert not body.writable()  # no response yet
    await owner.send(START)
    assert body.writable()
    transport.written.clear()
    for data in (b"x", b"id: 1\ndata: {}\n\n", bytes(range(256)) * 300):
        await owner.send({"type": "http.response.body", "body": data, "more_body": True})
        body.write(data)
        sent, direct = transport.written
        assert direct == sent
        transport.written.clear()
    body.write(b"")
    assert transport.written == []  # an empty chunk would end the body


async def test_chunked_body_is_not_writable_whenever_send_would_not_write_now() -> None:
    owner, transport = cycle()
    body = ChunkedBody(owner)
    await owner.send(START)
    assert body.writable()
    owner.flow.pause_writing()
    assert not body.writable()  # send would wait for the transport to drain
    owner.flow.resume_writing()
    transport.closing = True
    assert not body.writable()
    transport.closing = False
    owner.disconnected = True
    assert not body.writable()
    owner.disconnected = False
    await owner.send({"type": "http.response.body", "body": b"", "more_body": False})
    assert not body.writable()  # the response is complete

    head, _ = cycle("HEAD")
    await head.send(START)
    assert not ChunkedBody(head).writable()  # uvicorn sends no body for HEAD

    sized, _ = cycle()
    await sized.send({**START, "headers": [(b"content-length", b"10")]})
    assert not ChunkedBody(sized).writable()  # not chunked: the task counts the length


def test_only_uvicorns_httptools_cycle_is_offered_a_body_writer() -> None:
    scope: dict[str, Any] = {"type": "http", "method": "GET"}
    announce_body(scope, object())
    assert BODY not in scope.get("extensions", {}) and body_of(scope) is None
    scope["extensions"] = {BODY: {"writer": "not a writer"}}
    assert body_of(scope) is None


# -- whole WebSocket frames under our protocol ------------------------------------------


class Protocol:
    """The state of uvicorn's WebSocket protocol that `_DirectFrames` reads (the names
    `test_uvicorn_contract` checks), an open connection to begin with."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.disconnected = False
        self.conn = type("Conn", (), {"state": State.OPEN})()
        self.handshake_complete = True
        self.close_sent = False
        self.initial_response: object = None
        self.transport = Transport()


async def test_direct_frames_are_written_only_where_the_extensions_send_would_write_now() -> None:
    protocol = Protocol()
    frames = _DirectFrames(protocol)  # type: ignore[arg-type]
    assert frames.writable()
    frames.write(b"\x81\x01a")
    assert protocol.transport.written == [b"\x81\x01a"]

    def refused(change: Any) -> bool:
        p = Protocol()
        change(p)
        return not _DirectFrames(p).writable()  # type: ignore[arg-type]

    assert refused(lambda p: p.writable.clear())  # over the high-water mark
    assert refused(lambda p: setattr(p, "disconnected", True))
    assert refused(lambda p: setattr(p.conn, "state", State.CLOSING))
    assert refused(lambda p: setattr(p, "handshake_complete", False))
    assert refused(lambda p: setattr(p, "close_sent", True))
    assert refused(lambda p: setattr(p, "initial_response", (403, [], b"")))
    assert refused(lambda p: setattr(p.transport, "closing", True))
