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
from collections.abc import AsyncIterator
from typing import Any

from fastapi.sse import EventSourceResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from logcast.hub import Hub, Subscription
from logcast.types import EventType, LogRecord, ProcessState
from logcast.web.encode import json_frames, message_json, sse_chunk, text_line

log = logging.getLogger(__name__)

PING_INTERVAL = 15.0
SEND_TIMEOUT = 30.0
BATCH = 2000  # SSE: events per chunk
WS_BATCH = 256  # WebSocket: frames between two turns of the other streams
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
                await asyncio.wait_for(
                    send({"type": "http.response.body", "body": data, "more_body": True}), self.send_timeout
                )
        except TimeoutError:
            log.info("SSE client stopped reading for %.0fs: cut loose", self.send_timeout)
            return
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _pull(sub: Subscription, shutdown: asyncio.Event, limit: int = BATCH) -> list[Any] | None:
    """Next batch; [] after a ping interval with nothing new; None when the stream must end."""
    entries = await sub.next(limit, wait=False)
    if entries:
        return entries
    if sub.closed or shutdown.is_set():
        return None
    waiter = asyncio.ensure_future(sub.event.wait())
    stopper = asyncio.ensure_future(shutdown.wait())
    try:
        await asyncio.wait({waiter, stopper}, timeout=PING_INTERVAL, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        stopper.cancel()
    if shutdown.is_set() or sub.closed:
        return None
    return []


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
            entries = await _pull(sub, shutdown)
            if entries is None:
                break
            if not entries:
                yield b": ping\n\n"
                continue
            chunk = sse_chunk(hub, sub.plog, entries)
            ended = _stopped(entries) if end_on_stop else None
            if ended is not None:
                chunk += b"id: %d\ndata: %s\n\n" % (
                    ended.seq,
                    message_json(EventType.STREAM_END, f"{sub.process} {ended.state}: {ended.message}"),
                )
                yield chunk
                break
            yield chunk
    finally:
        sub.close()


def _stopped(entries: list[Any]) -> LogRecord | None:
    for kind, payload in entries:
        if kind is EventType.STATUS and isinstance(payload, LogRecord) and payload.state in END_STATES:
            return payload
    return None


async def websocket_stream(
    ws: WebSocket,
    hub: Hub,
    subs: list[Subscription],
    shutdown: asyncio.Event,
    *,
    as_json: bool,
) -> None:
    """Send every subscription's entries to one WebSocket until either side ends."""
    lock = asyncio.Lock()
    stop = asyncio.Event()

    async def pump(sub: Subscription) -> None:
        while not stop.is_set():
            entries = await _pull(sub, shutdown, WS_BATCH)
            if entries is None:
                stop.set()
                return
            if not entries:
                continue
            if as_json:
                frames = json_frames(hub, sub.plog, entries)
            else:
                frames = [t for kind, payload in entries if (t := text_line(kind, payload)) is not None]
            # one deadline per batch: a timer per frame cost more than the send itself
            async with lock, asyncio.timeout(SEND_TIMEOUT):
                for frame in frames:
                    await ws.send_text(frame)
            # A send that does not block never yields: let the other streams have their turn.
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
            elif exc is not None and not isinstance(exc, (WebSocketDisconnect, OSError)):
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
    if header is None or not header.strip():
        return None
    try:
        value = int(header.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


__all__ = ["BoundedSSEResponse", "last_event_id", "sse_body", "websocket_stream"]
