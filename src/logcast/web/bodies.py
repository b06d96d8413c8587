"""Request bodies bounded in size and in time, as heads are (`heads.py`).

The API reads one small body (`POST /api/login`, a token), parsed whole before the route
runs, and before any check of who sends it: without a bound, 200 MB sent there took the
server from 88 to 483 MB, and a body that came a byte at a time held its connection for
ever. The body of a POST, PUT or PATCH over `MAX_BODY` bytes is refused with 413 (at
once when its `Content-Length` says so), one not complete `BODY_TIMEOUT` s after the
route began to read it with 408. Once a body is complete, what the app receives next
(the client's disconnect) is not bounded; nor is a GET's, whose first receive is a
stream's watch for that disconnect.
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BODY_METHODS", "BODY_TIMEOUT", "MAX_BODY", "BodyLimit"]

MAX_BODY = 1 << 20  # bytes: a login's token is a few hundred; a mebibyte costs nothing much
BODY_TIMEOUT = 10.0  # s for a whole body, from the route's first read of it
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # the requests whose bodies a route reads


class BodyLimit:
    """ASGI middleware: see the module."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY, timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            # no route reads the body of a GET (uvicorn stops reading what nobody takes),
            # and a stream's first receive is its watch for the client's disconnect
            await self.app(scope, receive, send)
            return
        announced = _content_length(scope)
        if announced is not None and announced > self.max_bytes:
            await _refuse(send, 413, f"a request body is at most {self.max_bytes:,} bytes")
            return
        await self.app(scope, self._bounded(receive), send)

    def _bounded(self, receive: Receive) -> Receive:
        size = 0
        deadline: float | None = None
        complete = False

        async def bounded() -> Message:
            nonlocal size, deadline, complete
            if complete:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, f"the request body did not come within {self.timeout:g} s") from None
            if message["type"] != "http.request":
                complete = True  # a disconnect
                return message
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                raise HTTPException(413, f"a request body is at most {self.max_bytes:,} bytes")
            complete = not message.get("more_body", False)
            return message

        return bounded


def _content_length(scope: Scope) -> int | None:
    """What the head says the body holds; None if it does not say (a chunked body)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            digits = value.lstrip(b"0") or b"0"
            return int(digits) if len(digits) <= 18 else 1 << 62
    return None


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
