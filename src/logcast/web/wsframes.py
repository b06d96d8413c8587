"""Batched WebSocket frames: a small ASGI extension that our uvicorn protocol offers.

ASGI sends one WebSocket message per `websocket.send`, and uvicorn turns each into
its own `transport.write`. For a log stream that is one system call and a few dozen
microseconds of Python per line and per client: 100 clients of a process writing
10,000 lines/s would need a million of them each second. The frames of a log line
read live are the same bytes for every client of a format, so the hub caches them
(`encode.WS_TEXT`, `encode.WS_JSON`); what was missing is a way to hand many whole
frames to the server at once.

`FramesWebSocketProtocol` is uvicorn's own websockets (sans-I/O) protocol plus one
message type, announced in the scope's `extensions` as `logcast.websocket.frames`:
`{"type": "logcast.websocket.frames", "bytes": <complete frames>}` writes the bytes
as they are, after the same checks and flow control as `websocket.send` (it waits
while the transport is over its high-water mark). Frames are unmasked text frames,
as a server sends them; they are never compressed, which permessage-deflate allows
(RFC 7692 §6: only a message with RSV1 set is compressed). Under another ASGI server
the extension is absent and the stream falls back to one `websocket.send` per line.

The protocol also announces `logcast.transport` (`conn`), so that a stream can abort
a client that stopped reading, and it never lets a close hang: uvicorn closes a
WebSocket with `transport.close()` (after the closing handshake times out, after a
keepalive ping goes unanswered, at shutdown), which waits to flush what is queued;
here a close whose bytes are still unsent after `linger` seconds becomes an abort.
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

FRAMES = "logcast.websocket.frames"

__all__ = ["FRAMES", "FramesWebSocketProtocol", "frames_sender"]


def frames_sender(ws: WebSocket) -> Callable[[bytes], Awaitable[None]] | None:
    """What writes whole frames on `ws`, or None where the server does not offer it."""
    if FRAMES not in ws.scope.get("extensions", {}):
        return None
    send = ws._send  # the ASGI send: Starlette's own refuses message types it does not know

    async def send_frames(data: bytes) -> None:
        await send({"type": FRAMES, "bytes": data})

    return send_frames


class FramesWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol that can also write pre-built frames."""

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
            scope["extensions"][FRAMES] = {}
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
