"""The connection under a stream: how much it holds unsent, and how to drop it.

ASGI gives an app no handle on its connection, and ending a response makes uvicorn
`close()` it, which first flushes to a client that may never read. Only
`transport.abort()` lets it go, so streams reach the transport through an ASGI extension,
`scope["extensions"]["logcast.transport"] = {"conn": Conn}`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import MutableMapping
from typing import Any, Protocol

from logcast.libc import CAN_TRIM, malloc_trim
from logcast.web.direct import announce_body
from logcast.web.extensions import offer, offered

log = logging.getLogger(__name__)

TRANSPORT = "logcast.transport"
DEFAULT_SEND_TIMEOUT = 30.0
SEND_TIMEOUT_ENV = "LOGCAST_SEND_TIMEOUT"
UNSENT_LIMIT = 128 * 1024  # bytes the kernel may hold unsent for one stream
TRIM_DELAY = 1.0  # seconds between an abort and giving freed memory back; at most one per this
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux's number where Python lacks the name

__all__ = ["TRANSPORT", "Conn", "LingeringClose", "attach", "conn_of", "send_timeout_setting", "trim_soon"]


class _Transport(Protocol):
    def abort(self) -> None: ...
    def close(self) -> None: ...
    def is_closing(self) -> bool: ...
    def get_write_buffer_size(self) -> int: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


def send_timeout_setting(environ: MutableMapping[str, str] | None = None) -> float:
    """`LOGCAST_SEND_TIMEOUT` in seconds (a positive number), else the default."""
    raw = (os.environ if environ is None else environ).get(SEND_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_SEND_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:
        log.warning(
            "%s=%r is not a positive number of seconds: using %.0f",
            SEND_TIMEOUT_ENV,
            raw,
            DEFAULT_SEND_TIMEOUT,
        )
        return DEFAULT_SEND_TIMEOUT
    return value


class Conn:
    """One client connection, as much of it as a stream needs."""

    __slots__ = ("_transport", "aborted")

    def __init__(self, transport: _Transport) -> None:
        self._transport = transport
        self.aborted = False

    @property
    def buffered(self) -> int:
        """Bytes written but not yet handed to the kernel."""
        try:
            return int(self._transport.get_write_buffer_size())
        except Exception:  # a transport already torn down
            return 0

    def abort(self) -> None:
        """Drop the connection and everything queued for it, now."""
        if self.aborted:
            return
        self.aborted = True
        _abort(self._transport)

    def limit_unsent(self, nbytes: int = UNSENT_LIMIT) -> None:
        """Have the kernel take no more than about `nbytes` unsent bytes (TCP only).

        Otherwise Linux grows the send buffer of a client that stopped reading up to
        `tcp_wmem`'s maximum, all of it history encoded for nobody. Bytes sent but not
        acknowledged stay bounded by the peer's receive window, so a reading client
        loses nothing."""
        sock = self._transport.get_extra_info("socket")
        if sock is None or getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, nbytes)
        except (OSError, AttributeError, ValueError) as exc:  # not Linux, not a real socket, or closed
            log.debug("TCP_NOTSENT_LOWAT not set: %r", exc)

    def abort_unless_drained(self, after: float) -> None:
        """Abort in `after` seconds if the bytes queued by then are still not sent."""
        if self.buffered == 0:
            return

        def check() -> None:
            if self.buffered:
                self.abort()

        asyncio.get_running_loop().call_later(after, check)


_trim_due: set[asyncio.AbstractEventLoop] = set()


def trim_soon(delay: float = TRIM_DELAY) -> None:
    """Give the memory freed by aborted connections back to the system, in `delay`
    seconds (one trim for a whole wave of aborts): the buffers of many cut clients leave
    holes in the C heap that glibc's allocator would otherwise keep."""
    if not CAN_TRIM:
        return
    loop = asyncio.get_running_loop()
    if loop in _trim_due:
        return
    _trim_due.add(loop)

    def trim() -> None:
        _trim_due.discard(loop)
        if not loop.is_closed():
            loop.run_in_executor(None, malloc_trim)

    loop.call_later(delay, trim)


_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 seconds: close() resets


def _abort(transport: _Transport) -> None:
    """Drop `transport` and all it holds, ours and the kernel's: `abort()` alone frees the
    transport's buffer and closes the socket, but the kernel would go on trying to
    deliver what it had taken (up to `UNSENT_LIMIT`) to a peer that reads nothing;
    with a zero linger the close resets the connection at once."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        except (OSError, AttributeError) as exc:
            log.debug("SO_LINGER not set: %r", exc)
    try:
        transport.abort()
    except Exception as exc:  # already closed: nothing left to drop
        log.debug("abort of a closed transport: %r", exc)
    trim_soon()


def _looks_like_transport(obj: object) -> bool:
    return all(
        callable(getattr(obj, name, None)) for name in ("abort", "get_write_buffer_size", "is_closing")
    )


def conn_of(scope: MutableMapping[str, Any]) -> Conn | None:
    """The connection announced in `scope`, if the server let us reach it."""
    return offered(scope, TRANSPORT, "conn", Conn)


def announce(scope: MutableMapping[str, Any], transport: object) -> None:
    """Put `transport` in `scope`'s extensions (if it is one)."""
    if _looks_like_transport(transport):
        offer(scope, TRANSPORT, "conn", Conn(transport))  # type: ignore[arg-type]


def attach(scope: MutableMapping[str, Any], send: object) -> None:
    """Announce the connection of a request whose `send` is the server's own bound method
    (and, under uvicorn's httptools protocol, its body as a `direct.ChunkedBody`).

    uvicorn's `send` is a method of the object that owns the connection (its request
    cycle or WebSocket protocol), which keeps it as `.transport`. Under another server,
    or with a `send` wrapped outside the app, nothing is announced: a stalled stream then
    just ends and the server's own close applies. Our WebSocket protocol (`wsframes`)
    announces itself.
    """
    if conn_of(scope) is not None:
        return
    owner = getattr(send, "__self__", None)
    if owner is not None:
        announce(scope, getattr(owner, "transport", None))
        announce_body(scope, owner)


class LingeringClose:
    """A transport whose `close()` becomes `abort()` if its buffer has not drained in time.

    `close()` flushes before it closes; towards a peer that stopped reading the flush
    never ends. This wrapper starts a timer at the first `close()` with bytes still
    queued and aborts when it fires; `connection_lost` (the close completed) must call
    `cancel()`. Everything else goes to the wrapped transport unchanged.
    """

    def __init__(self, transport: Any, linger: float) -> None:
        self._transport = transport
        self._linger = linger
        self._timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        self._transport.close()
        if self._timer is None and self._transport.get_write_buffer_size():
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._expire)

    def _expire(self) -> None:
        self._timer = None
        log.info("connection still had unsent bytes %.0fs after its close: aborted", self._linger)
        _abort(self._transport)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
