"""Bounded request heads (`logcast.web.heads`), on a fake transport and fake timers.

The protocols are uvicorn's own with a loop whose `call_later` is scripted: time
moves only when a test says so, and the ASGI app runs on the real loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from logcast.web.heads import HeadLimits, LimitedH11Protocol, LimitedHttpToolsProtocol

LIMITS = HeadLimits(max_bytes=1024, max_fields=10, timeout=10.0, drain=2.0)


class Timers:
    """A loop for the protocol: tasks on the real loop, timers on a fake clock."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.real = loop
        self.now = 0.0
        self.pending: list[tuple[float, Callable[[], Any], asyncio.TimerHandle]] = []

    def create_task(self, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        return self.real.create_task(coro, **kw)

    def call_later(self, delay: float, callback: Callable[[], Any]) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(self.now + delay, callback, (), self.real)
        self.pending.append((self.now + delay, callback, handle))
        return handle

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [p for p in self.pending if p[0] <= self.now]
        self.pending = [p for p in self.pending if p[0] > self.now]
        for _when, callback, handle in sorted(due, key=lambda p: p[0]):
            if not handle.cancelled():
                callback()

    def armed(self) -> int:
        return sum(not h.cancelled() for _w, _c, h in self.pending)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.eof = False
        self.aborted = False
        self.protocol: asyncio.BaseProtocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed and not self.eof, "write after close"
        self.written += bytes(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    if scope["path"] == "/stream":  # a response that goes on (a log stream)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.Event().wait()
    while (await receive()).get("more_body"):
        pass
    body = b"fields=%d" % len(scope["headers"])
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


class SmallHttpTools(LimitedHttpToolsProtocol):
    limits: ClassVar[HeadLimits] = LIMITS


class SmallH11(LimitedH11Protocol):
    limits: ClassVar[HeadLimits] = LIMITS


PROTOCOLS = [SmallHttpTools, SmallH11]


class Connection:
    def __init__(self, protocol_class: type[asyncio.Protocol], timers: Timers) -> None:
        config = Config(app=hello, lifespan="off", log_level="critical", ws="none")
        self.timers = timers
        self.transport = Transport()
        self.protocol: Any = protocol_class(  # type: ignore[call-arg]
            config=config, server_state=ServerState(), app_state={}, _loop=timers
        )
        self.transport.set_protocol(self.protocol)
        self.protocol.connection_made(self.transport)

    def send(self, data: bytes) -> None:
        if not self.transport.closed:
            self.protocol.data_received(data)

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    def status(self) -> int:
        assert self.transport.written.startswith(b"HTTP/1.1 "), self.transport.written[:200]
        return int(self.transport.written.split(b" ", 2)[1])


@pytest.fixture
async def timers() -> Timers:
    return Timers(asyncio.get_running_loop())


def head(*fields: bytes, path: bytes = b"/") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_ordinary_request_is_served_and_its_timer_disarmed(protocol: type, timers: Timers) -> None:
    c = Connection(protocol, timers)
    assert timers.armed() == 1  # armed at connection_made
    c.send(head(b"a: b"))
    await c.settle()
    assert c.status() == 200 and c.transport.written.endswith(b"fields=2")
    assert timers.armed() == 1  # uvicorn's keep-alive timer, not ours
    timers.advance(LIMITS.timeout + 1)  # keep-alive (5 s) closes the idle connection
    assert c.transport.closed


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_too_many_fields_get_431(protocol: type, timers: Timers) -> None:
    ok = Connection(protocol, timers)
    ok.send(head(*[b"h: v"] * (LIMITS.max_fields - 1)))  # Host makes ten
    await ok.settle()
    assert ok.status() == 200
    c = Connection(protocol, timers)
    c.send(head(*[b"h: v"] * LIMITS.max_fields))
    await c.settle()
    assert c.status() == 431
    assert b'{"detail":"more than 10 header fields"}' in c.transport.written
    assert b"connection: close" in c.transport.written.lower()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_large_head_gets_431_and_the_rest_is_drained(protocol: type, timers: Timers) -> None:
    c = Connection(protocol, timers)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
    for _ in range(5):
        c.send(b"a" * 300)
    await c.settle()
    assert c.status() == 431
    assert b"request head larger than 1024 bytes" in c.transport.written
    # the answer stays readable: the write side is shut, what still comes is dropped...
    assert c.transport.eof and not c.transport.closed
    answered = c.transport.written
    c.send(b"a" * 100_000)
    assert c.transport.written == answered
    # ...for a bounded time
    timers.advance(LIMITS.drain)
    assert c.transport.closed


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_body_is_not_held_against_the_head(protocol: type, timers: Timers) -> None:
    c = Connection(protocol, timers)
    body = b"x" * 10_000
    c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    await c.settle()
    assert c.status() == 200


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_slow_head_gets_408_at_its_deadline(protocol: type, timers: Timers) -> None:
    c = Connection(protocol, timers)
    c.send(b"GET / HTTP/1.1\r\n")
    for _ in range(9):
        timers.advance(1.0)
        c.send(b"X")  # a byte a second: uvicorn alone would wait for ever
    assert not c.transport.closed
    timers.advance(1.0)
    assert c.transport.closed
    assert c.status() == 408 and b"not complete within 10 s" in c.transport.written


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_silent_connection_is_closed_without_an_answer(protocol: type, timers: Timers) -> None:
    c = Connection(protocol, timers)
    timers.advance(LIMITS.timeout - 0.1)
    assert not c.transport.closed
    timers.advance(0.1)
    assert c.transport.closed and c.transport.written == b""


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_next_head_on_a_connection_has_its_own_deadline(protocol: type, timers: Timers) -> None:
    c = Connection(protocol, timers)
    timers.advance(9.0)
    c.send(head())
    await c.settle()
    assert c.status() == 200
    first = len(c.transport.written)
    timers.advance(3.0)  # past the first head's deadline, within keep-alive
    c.send(b"GET / HTTP/1.1\r\n")  # the second head begins...
    timers.advance(9.0)
    assert not c.transport.closed
    timers.advance(1.0)  # ...and gets its own 10 s
    assert c.transport.closed
    assert c.transport.written[first:].startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_long_response_is_not_cut(protocol: type, timers: Timers) -> None:
    c = Connection(protocol, timers)
    c.send(head(path=b"/stream"))
    await c.settle()
    assert c.status() == 200 and c.transport.written.endswith(b"first\r\n")
    timers.advance(3600)
    assert not c.transport.closed
    c.transport.close()
    await c.settle()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("too_big", ["fields", "bytes"])
async def test_a_refused_head_behind_an_unfinished_response_drops_the_connection(
    protocol: type, too_big: str, timers: Timers
) -> None:
    """A 431 written now would land inside the log stream's body: no answer, no bytes.
    (h11 does not parse the next request before the response ends: it waits unread.)"""
    c = Connection(protocol, timers)
    c.send(head(path=b"/stream"))
    await c.settle()
    assert c.status() == 200 and c.transport.written.endswith(b"first\r\n")
    before = c.transport.written
    if too_big == "fields":
        c.send(head(*(b"f%d: x" % i for i in range(LIMITS.max_fields + 5))))
    else:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nbig: " + b"y" * (LIMITS.max_bytes + 10))
    await c.settle()
    assert c.transport.written == before  # nothing after the stream's own bytes
    if protocol is SmallH11:
        assert not c.transport.closed
        c.transport.close()
        await c.settle()
        return
    assert c.transport.aborted and c.transport.closed
    c.send(head())  # what still comes goes nowhere
    await c.settle()
    assert c.transport.written == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_pipelined_requests_are_each_within_the_limits(protocol: type, timers: Timers) -> None:
    c = Connection(protocol, timers)
    c.send(head(b"a: 1") + head(b"b: 2") + head(b"c: 3"))
    for _ in range(5):
        await c.settle()
    assert c.transport.written.count(b"HTTP/1.1 200 ") == 3


async def test_a_malformed_request_still_gets_uvicorns_400(timers: Timers) -> None:
    for protocol in PROTOCOLS:
        c = Connection(protocol, timers)
        c.send(b"NOT HTTP AT ALL\r\n\r\n")
        await c.settle()
        assert c.status() == 400
