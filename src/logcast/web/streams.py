"""Log streams over SSE and WebSocket.

Each stream is a hub `Subscription` (a cursor): history first, then realtime, with
gaps announced. The SSE body iterator pulls batches from the cursor and turns each
batch into one chunk of many SSE messages; when nothing comes for `PING_INTERVAL` it
sends a `: ping` comment. `BoundedSSEResponse` is FastAPI's `EventSourceResponse`
with every send bounded by `SEND_TIMEOUT`: a client that stops reading is cut loose
after that long (its cursor is dropped; when it reconnects with `Last-Event-ID` it is
served from the history again, or told of a `gap`), so it never holds anyone up. A
client that reads slowly but steadily is never cut: its cursor just moves slower.

FastAPI's generator mode for SSE (`yield` from the endpoint) builds a pydantic model
and serialises every event per subscriber; we hand it pre-encoded batches instead
(invariant: one encoding per line), so the endpoint returns the response object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.sse import EventSourceResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from uvicorn.protocols.utils import ClientDisconnected

from logcast.hub import Entry, Hub, LiveBatch, Subscription
from logcast.types import EventType, LogRecord, ProcessState
from logcast.web.encode import (
    SSE,
    WS_JSON,
    WS_TEXT,
    Wire,
    json_frames,
    message_json,
    sse_chunk,
    text_frame,
    text_line,
)
from logcast.web.wsframes import FRAMES

log = logging.getLogger(__name__)

PING_INTERVAL = 15.0
SEND_TIMEOUT = 30.0
BATCH = 2000  # events per chunk (SSE) or per write of whole frames (WebSocket)
WS_BATCH = 256  # WebSocket without batched frames: sends between two turns of the other streams
END_STATES = frozenset({ProcessState.STOPPED, ProcessState.EXITED, ProcessState.CRASHED})


class BoundedSSEResponse(EventSourceResponse):
    """`text/event-stream` whose every send is bounded in time."""

    send_timeout = SEND_TIMEOUT

    def __init__(self, content: AsyncIterator[bytes], **kw: Any) -> None:
        super().__init__(content, **kw)
        self.headers["Cache-Control"] = "no-cache"
        self.headers["X-Accel-Buffering"] = "no"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the stream while watching for the client leaving; the first to end wins."""

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        streaming = asyncio.ensure_future(self.stream_response(send))
        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            await asyncio.wait({streaming, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, watcher):
                task.cancel()
            results = await asyncio.gather(streaming, watcher, return_exceptions=True)
        error = results[0]
        if isinstance(error, Exception) and not isinstance(error, (OSError, asyncio.CancelledError)):
            raise error

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                data = (
                    chunk
                    if isinstance(chunk, bytes)
                    else bytes(chunk)
                    if isinstance(chunk, memoryview)
                    else chunk.encode()
                )
                async with asyncio.timeout(self.send_timeout):  # no task per send, unlike wait_for
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except TimeoutError:
            log.info("SSE client stopped reading for %.0fs: cut loose", self.send_timeout)
            return
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


Batch = LiveBatch | list[Entry]


async def _next(sub: Subscription, shutdown: asyncio.Event, limit: int, wire: Wire | None) -> Batch | None:
    """The next batch of `sub`: cached live bytes when `wire` is given and the fast path
    applies, entries otherwise; [] once `PING_INTERVAL` passed with nothing new; None
    when the stream must end (the client's subscription closed, or the server stops)."""
    deadline = time.monotonic() + PING_INTERVAL
    while True:
        sub.event.clear()
        live = await sub.take_live(limit, wire.name, wire.encode) if wire is not None else None
        if live is not None:
            if live.encoded:
                return live
        else:
            entries = await sub.next(limit, wait=False)
            if entries:
                return entries
        if sub.closed or shutdown.is_set():
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return []
        try:
            async with asyncio.timeout(remaining):
                await sub.event.wait()
        except TimeoutError:
            pass


def _ended_at(batch: Batch) -> LogRecord | None:
    """The first status record in `batch` that says the process stopped."""
    if isinstance(batch, LiveBatch):
        statuses = batch.statuses
    else:
        statuses = [p for kind, p in batch if kind is EventType.STATUS and isinstance(p, LogRecord)]
    for record in statuses:
        if record.state in END_STATES:
            return record
    return None


async def sse_body(
    hub: Hub,
    sub: Subscription,
    shutdown: asyncio.Event,
    *,
    end_on_stop: bool = False,
) -> AsyncIterator[bytes]:
    """The SSE byte stream of one subscription."""
    try:
        yield b"retry: 1000\n\n"
        while True:
            batch = await _next(sub, shutdown, BATCH, SSE)
            if batch is None:
                break
            if not isinstance(batch, LiveBatch) and not batch:
                yield b": ping\n\n"
                continue
            ended = _ended_at(batch) if end_on_stop else None
            if ended is None:
                yield _sse_bytes(hub, sub, batch)
                continue
            if isinstance(batch, LiveBatch):  # cut the batch after the stopping status
                first = batch.last_seq - len(batch.encoded) + 1
                chunk = b"".join(batch.encoded[: ended.seq - first + 1])
            else:
                cut = next(i for i, (_, p) in enumerate(batch) if p is ended)
                chunk = sse_chunk(hub, sub.plog, batch[: cut + 1])
            yield chunk + b"id: %d\ndata: %s\n\n" % (
                ended.seq,
                message_json(EventType.STREAM_END, f"{sub.process} {ended.state}: {ended.message}"),
            )
            break
    finally:
        sub.close()


def _sse_bytes(hub: Hub, sub: Subscription, batch: Batch) -> bytes:
    if isinstance(batch, LiveBatch):
        return b"".join(batch.encoded)
    return sse_chunk(hub, sub.plog, batch)


async def websocket_stream(
    ws: WebSocket,
    hub: Hub,
    subs: list[Subscription],
    shutdown: asyncio.Event,
    *,
    as_json: bool,
) -> None:
    """Send every subscription's entries to one WebSocket until either side ends.

    Under our uvicorn protocol (`wsframes`) a batch of lines goes out as whole frames
    in one write, the live ones straight from the hub's cache; elsewhere each line is
    one `websocket.send`.
    """
    lock = asyncio.Lock()
    stop = asyncio.Event()
    batched = FRAMES in ws.scope.get("extensions", {})
    wire = (WS_JSON if as_json else WS_TEXT) if batched else None
    limit = BATCH if batched else WS_BATCH
    raw_send = ws._send  # the ASGI send: Starlette's own refuses message types it does not know

    def texts(sub: Subscription, entries: list[Entry]) -> list[str]:
        if as_json:
            return json_frames(hub, sub.plog, entries)
        return [t for kind, payload in entries if (t := text_line(kind, payload)) is not None]

    async def pump(sub: Subscription) -> None:
        while not stop.is_set():
            batch = await _next(sub, shutdown, limit, wire)
            if batch is None:
                stop.set()
                return
            if isinstance(batch, LiveBatch):
                data = b"".join(batch.encoded)
            elif not batch:
                continue  # nothing for a while: the protocol's own pings keep the line alive
            elif batched:
                data = b"".join(text_frame(t.encode("utf-8", "replace")) for t in texts(sub, batch))
            else:
                # one deadline per batch: a timer per frame cost more than the send itself
                async with lock, asyncio.timeout(SEND_TIMEOUT):
                    for frame in texts(sub, batch):
                        await ws.send_text(frame)
                # A send that does not block never yields: let the other streams have their turn.
                await asyncio.sleep(0)
                continue
            async with lock, asyncio.timeout(SEND_TIMEOUT):
                await raw_send({"type": FRAMES, "bytes": data})
            await asyncio.sleep(0)

    async def watch_client() -> None:
        # The client has nothing to say; reading is how we learn it left.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return

    async def stopped() -> None:
        await stop.wait()

    tasks = [asyncio.create_task(pump(sub)) for sub in subs]
    tasks.append(asyncio.create_task(watch_client()))
    tasks.append(asyncio.create_task(stopped()))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if isinstance(exc, TimeoutError):
                log.info("WebSocket client stopped reading for %.0fs: cut loose", SEND_TIMEOUT)
                with contextlib.suppress(Exception):
                    await ws.close(code=1008, reason="client too slow: reconnect with after=<last seq>")
            elif exc is not None and not isinstance(exc, (WebSocketDisconnect, OSError, ClientDisconnected)):
                log.warning("WebSocket stream failed: %r", exc)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sub in subs:
            sub.close()
        if ws.application_state is WebSocketState.CONNECTED and ws.client_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(code=1001 if shutdown.is_set() else 1000)


def last_event_id(header: str | None) -> int | None:
    """The seq a client resumes after, from its `Last-Event-ID` header; None when there is
    none (or it is empty). Anything but a number 0..2^63-1 is a ValueError saying why: a
    resume point that cannot be honoured is refused (422), never guessed."""
    from logcast.web.encode import parse_seq

    if header is None or not header.strip():
        return None
    return parse_seq(header, "Last-Event-ID")


__all__ = ["BoundedSSEResponse", "last_event_id", "sse_body", "websocket_stream"]
