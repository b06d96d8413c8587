"""Request bodies bounded in size and time (`web/bodies.py`): a login route under the
middleware, driven through ASGI with bodies that come whole, too big, in too many pieces
or too slowly. tests/e2e/test_security.py has the real server refusing a big one."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import BaseModel

from logcast.web.bodies import BodyLimit


class Login(BaseModel):
    token: str


def app(**limits: Any) -> BodyLimit:
    inner = FastAPI()

    @inner.post("/api/login")
    async def login(body: Login) -> dict[str, int]:
        return {"length": len(body.token)}

    @inner.get("/api/login")
    async def page() -> dict[str, int]:
        return {"length": 0}

    return BodyLimit(inner, **limits)


async def call(
    asgi: BodyLimit,
    chunks: list[bytes],
    *,
    every: float = 0.0,
    length: int | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, Any]]:
    """`chunks` as a body (a piece every `every` s); the status and JSON answered."""
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/api/login",
        "raw_path": b"/api/login",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    pieces = list(chunks)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not pieces:
            await asyncio.sleep(3600)  # the client's disconnect, which never comes here
        await asyncio.sleep(every)
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(asgi(scope, receive, send), 10)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, orjson.loads(body)


async def test_a_small_body_passes_whole_or_in_pieces() -> None:
    body = orjson.dumps({"token": "t" * 50})
    assert await call(app(), [body]) == (200, {"length": 50})
    assert await call(app(), [body[:10], body[10:30], body[30:]], length=len(body)) == (200, {"length": 50})


async def test_a_body_over_the_bound_is_refused_said_or_counted() -> None:
    limited = app(max_bytes=100)
    status, answer = await call(limited, [b"x"], length=10**12)  # refused before a byte is read
    assert status == 413 and answer == {"detail": "a request body is at most 100 bytes"}
    status, answer = await call(limited, [b"x" * 60] * 5)  # no length said: counted as it comes
    assert status == 413 and "at most 100 bytes" in answer["detail"]
    status, _ = await call(limited, [b"x"], length=int("9" * 30))  # a length past 64 bits
    assert status == 413


async def test_a_body_that_trickles_in_is_refused_at_its_deadline() -> None:
    body = orjson.dumps({"token": "abc"})
    started = asyncio.get_running_loop().time()
    status, answer = await call(app(timeout=0.3), [bytes([b]) for b in body], every=0.05)
    assert status == 408 and answer == {"detail": "the request body did not come within 0.3 s"}
    assert asyncio.get_running_loop().time() - started < 2
    # the same pieces sooner: whole within the deadline
    assert await call(app(timeout=2.0), [bytes([b]) for b in body], every=0.01) == (200, {"length": 3})


async def test_a_get_is_not_bounded_since_no_route_reads_its_body() -> None:
    """A stream's first receive is its watch for the client's disconnect: a GET that
    announced a body it never sent had its stream ended at the deadline."""
    status, answer = await call(
        app(timeout=0.2, max_bytes=10), [b"x" * 100], length=100, method="GET", every=0.5
    )
    assert (status, answer) == (200, {"length": 0})
