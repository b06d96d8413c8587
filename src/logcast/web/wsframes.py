"""Batched WebSocket frames: an ASGI extension that our uvicorn protocol offers.

ASGI writes one WebSocket message per `websocket.send`; a live line's frame is the same
bytes for every client of a format, so the hub caches it and this writes many at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from logcast.web.conn import LingeringClose, announce, send_timeout_setting
from logcast.web.direct import Direct
from logcast.web.extensions import offered

FRAMES = "logcast.websocket.frames"

__all__ = ["FRAMES", "FramesWebSocketProtocol", "frames_direct", "frames_sender"]


def frames_sender(ws: WebSocket) -> Callable[[bytes], Awaitable[None]] | None:
    """What writes whole frames on `ws`, or None where the server does not offer it."""
    if FRAMES not in ws.scope.get("extensions", {}):
        return None
    send = ws._send  # the ASGI send: Starlette's own refuses message types it does not know

    async def send_frames(data: bytes) -> None:
        await send({"type": FRAMES, "bytes": data})

    return send_frames


def frames_direct(ws: WebSocket) -> Direct | None:
    """What writes whole frames on `ws` synchronously (`direct`), or None where the server
    does not offer it."""
    return offered(ws.scope, FRAMES, "direct", _DirectFrames)


class _DirectFrames:
    """Whole frames written on the loop, with the checks of the extension's `send` and
    without its wait: `writable()` is False while the transport is over its high-water
    mark."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: FramesWebSocketProtocol) -> None:
        self._protocol = protocol

    def writable(self) -> bool:
        p = self._protocol
        return (
            p.writable.is_set()
            and not p.disconnected
            and p.conn.state is State.OPEN
            and p.handshake_complete
            and not p.close_sent
            and p.initial_response is None
            and not p.transport.is_closing()
        )

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)


class FramesWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol that can also write pre-built frames.

    `{"type": "logcast.websocket.frames", "bytes": <complete frames>}` writes the bytes
    as they are, after the same checks and flow control as `websocket.send`. The frames
    are unmasked text frames and never compressed, which permessage-deflate allows
    (RFC 7692 §6: only a message with RSV1 set is compressed). Under another ASGI server
    the extension is absent and streams send one message per line. The extension also
    offers `direct` (`frames_direct`): the same writes made synchronously, for a stream's
    new lines written from the hub's wake (`logcast.web.direct`).

    It also announces `logcast.transport` (`conn`), and a close whose bytes are still
    unsent after `linger` seconds becomes an abort: uvicorn closes a WebSocket with
    `transport.close()`, which waits to flush to a client that may never read.
    """

    linger = send_timeout_setting()  # seconds a close may wait for unsent bytes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._raw_transport = transport
        self._closing = LingeringClose(transport, self.linger)
        self.transport = self._closing  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._closing.cancel()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the handshake was accepted and the app is starting
            scope["extensions"][FRAMES] = {"direct": _DirectFrames(self)}
            announce(scope, self._raw_transport)

    async def send(self, message: Any) -> None:
        if message["type"] != FRAMES:
            await super().send(message)
            return
        await self.writable.wait()
        if self.disconnected or self.conn.state is not State.OPEN:
            raise ClientDisconnected()
        if not self.handshake_complete or self.close_sent or self.initial_response is not None:
            raise RuntimeError(f"{FRAMES!r} before the WebSocket was accepted, or after it was closed")
        self.transport.write(message["bytes"])
