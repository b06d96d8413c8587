"""How many log streams may be open at once, counted in one place.

Past `[server] max_streams`, a new stream (or download of a history) is refused before
its hub cursor, tasks and socket cost anything.
"""

from __future__ import annotations

import logging
import re

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

SSE_PATH = re.compile(r"^/api/(?:processes|models)/[^/]+/logs/(?:stream|download)/?$")
WS_PATH = re.compile(r"^/ws/logs/?$")
RETRY_AFTER = 2

__all__ = ["StreamGate", "StreamSlots", "is_stream"]


class StreamSlots:
    """A count of open streams against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            self.refused += 1
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open = max(0, self.open - 1)

    @property
    def reason(self) -> str:
        return f"too many log streams open (the limit is {self.limit}): try again later"


def is_stream(scope: Scope) -> bool:
    """Whether `scope` asks for a log stream (SSE or WebSocket) or a history download."""
    path = scope.get("path", "")
    if scope["type"] == "websocket":
        return WS_PATH.match(path) is not None
    return scope["type"] == "http" and scope.get("method") == "GET" and SSE_PATH.match(path) is not None


class StreamGate:
    """ASGI middleware: counts the open streams and refuses those past the limit.

    An SSE request gets 503 with `Retry-After`; a WebSocket is accepted and closed at
    once with 1013 ("try again later"). It sits inside the security middleware, so a
    request refused for its token never takes a slot, and the routes need not know of it.
    """

    def __init__(self, app: ASGIApp, slots: StreamSlots) -> None:
        self.app = app
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_stream(scope):
            await self.app(scope, receive, send)
            return
        if not self.slots.take():
            log.warning("log stream refused: %s", self.slots.reason)
            await (self._refuse_ws if scope["type"] == "websocket" else self._refuse_http)(receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.give_back()

    async def _refuse_http(self, receive: Receive, send: Send) -> None:
        body = orjson.dumps({"detail": self.slots.reason})
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(RETRY_AFTER).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _refuse_ws(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1013, "reason": self.slots.reason[:120]})
