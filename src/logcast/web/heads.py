"""Request heads bounded in size, in number of fields and in time.

uvicorn's httptools protocol bounds none of these and its h11 protocol only the size, so
one client could send an endless head, ten thousand fields, or a byte every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import h11
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADER_FIELDS = 100
HEAD_TIMEOUT = 10.0
DRAIN_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """What a head may cost, per connection. Over `max_bytes` before it is complete, or
    over `max_fields` header fields: 431. Not complete `timeout` seconds after it began
    (the connection was made, or the first byte after the previous request came): 408
    and the connection closed (without an answer when not a byte of that head came).
    Idle keep-alive connections are uvicorn's business (`timeout_keep_alive`)."""

    max_bytes: int = MAX_HEAD_BYTES
    max_fields: int = MAX_HEADER_FIELDS
    timeout: float = HEAD_TIMEOUT
    drain: float = DRAIN_SECONDS


class HeadRefused(Exception):
    """Raised inside a parser to stop it; the protocol answers `status`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def refusal(status: int, detail: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A complete `Connection: close` answer with a JSON body, as the API's errors."""
    body = orjson.dumps({"detail": detail})
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    head += [name + b": " + value for name, value in default_headers]
    head += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class HeadWatch:
    """One connection's current head: its bytes, its deadline, and its refusal."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        limits: HeadLimits,
        default_headers: list[tuple[bytes, bytes]],
        peer: object = None,
    ) -> None:
        self.loop = loop
        self.transport = transport
        self.limits = limits
        self.default_headers = default_headers
        self.peer = peer
        self.open = True  # a head is being read
        self.bytes = 0  # bytes of reads that began while this head was open
        self.fields = 0
        self.refused: HeadRefused | None = None
        self.draining = False
        self._timer: asyncio.TimerHandle | None = None

    def begin(self, *, arm: bool = False) -> None:
        """A new head starts (its deadline is armed by its first byte, or now)."""
        self.cancel()
        self.open, self.bytes, self.fields = True, 0, 0
        if arm:
            self.arm()

    def arm(self) -> None:
        if self._timer is None and self.open:
            self._timer = self.loop.call_later(self.limits.timeout, self._expired)

    def done(self) -> None:
        """The head is complete."""
        self.cancel()
        self.open = False

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def field(self) -> None:
        self.fields += 1
        if self.fields > self.limits.max_fields:
            raise self._refusal(431, f"more than {self.limits.max_fields} header fields")

    def over_size(self) -> bool:
        return self.open and self.bytes > self.limits.max_bytes

    def size_refusal(self) -> HeadRefused:
        return self._refusal(431, f"request head larger than {self.limits.max_bytes} bytes")

    def _refusal(self, status: int, detail: str) -> HeadRefused:
        self.refused = HeadRefused(status, detail)
        return self.refused

    def refuse(self, refused: HeadRefused, *, behind_response: bool = False) -> None:
        """Answer, shut the write side, and drop what still comes for a bounded time:
        closing a socket with unread bytes makes the kernel send a reset, and the client
        would lose the answer before reading it.

        A head pipelined `behind_response` (the previous request's response is still
        going, a log stream that may never end) gets no answer: it would land inside that
        response's body. The connection is dropped instead."""
        self.cancel()
        self.open = False
        transport = self.transport
        if transport.is_closing():
            return
        if behind_response:
            log.info(
                "refused a request head from %s pipelined behind an unfinished response (%s %s):"
                " connection dropped",
                self.peer,
                refused.status,
                refused.detail,
            )
            self.draining = True
            transport.abort()
            return
        log.info("refused a request head from %s: %s %s", self.peer, refused.status, refused.detail)
        transport.write(refusal(refused.status, refused.detail, self.default_headers))
        self.draining = True
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = self.loop.call_later(self.limits.drain, transport.close)

    def _expired(self) -> None:
        self._timer = None
        transport = self.transport
        if transport.is_closing() or not self.open:
            return
        if self.bytes:
            log.info("closed a connection from %s: request head not complete in time", self.peer)
            detail = f"request head not complete within {self.limits.timeout:g} s"
            transport.write(refusal(408, detail, self.default_headers))
        transport.close()


class _WatchesHeads:
    """What both protocols do alike: a `HeadWatch` per connection, armed at once."""

    limits: ClassVar[HeadLimits] = HeadLimits()
    head: HeadWatch
    flow: FlowControl
    loop: asyncio.AbstractEventLoop
    server_state: ServerState
    client: tuple[str, int] | None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.head = HeadWatch(
            self.loop, transport, self.limits, self.server_state.default_headers, self.client
        )
        self.head.begin(arm=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.head.cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def _refuse(self, refused: HeadRefused) -> None:
        cycle = getattr(self, "cycle", None)  # uvicorn's: the last request's
        self.head.refuse(refused, behind_response=cycle is not None and not cycle.response_complete)
        self.flow.resume_reading()  # keep draining even if a pipelined request paused reads


class LimitedHttpToolsProtocol(_WatchesHeads, HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's httptools protocol with `HeadLimits` (what `logcast serve` runs).

    The parser's callbacks say where a head begins and ends; bytes are counted per read
    while a head is open (a read that completes it is not held against it), fields in
    `on_header`, where too many stop the parser at once. Reads are at most 256 KiB, so a
    refused head costs at most about `max_bytes` + 256 KiB.
    """

    def data_received(self, data: bytes) -> None:
        head = self.head
        if head.draining:
            return
        if head.open:
            head.bytes += len(data)
        super().data_received(data)
        if head.over_size() and not (self.transport.is_closing() or head.draining):
            self._refuse(head.size_refusal())

    def on_message_begin(self) -> None:
        self.head.arm()  # the first byte of a request: its head's deadline runs
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head.field()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.head.done()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.head.begin()

    def send_400_response(self, msg: str) -> None:
        # the parser stopped: on an error of its own, or on our HeadRefused
        if self.head.refused is not None:
            self._refuse(self.head.refused)
        else:
            super().send_400_response(msg)


class _LimitedH11Connection(h11.Connection):
    """h11's connection with its head bound and a limit on the number of fields."""

    def __init__(self, limits: HeadLimits) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=limits.max_bytes)
        self.limits = limits
        self.refused: HeadRefused | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:
                self.refused = HeadRefused(431, f"request head larger than {self.limits.max_bytes} bytes")
            raise
        if isinstance(event, h11.Request) and len(event.headers) > self.limits.max_fields:
            self.refused = HeadRefused(431, f"more than {self.limits.max_fields} header fields")
            raise h11.RemoteProtocolError(self.refused.detail, error_status_hint=431)
        return event


class LimitedH11Protocol(_WatchesHeads, H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol with `HeadLimits` (the fallback without httptools). A head
    is open while h11 waits for a request (`their_state` IDLE)."""

    conn: _LimitedH11Connection

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = _LimitedH11Connection(self.limits)

    def data_received(self, data: bytes) -> None:
        head = self.head
        if head.draining:
            return
        was_open = self.conn.their_state is h11.IDLE
        if was_open:
            if not head.open:
                head.begin()
            head.bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing() or head.draining:
            return
        if self.conn.their_state is h11.IDLE:
            head.arm()
        else:
            head.done()

    def send_400_response(self, msg: str) -> None:
        if self.conn.refused is not None:
            self._refuse(self.conn.refused)
        else:
            super().send_400_response(msg)
