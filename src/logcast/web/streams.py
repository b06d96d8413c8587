"""Log streams over SSE and WebSocket, each a hub `Subscription`: history, then live.

A client that stops reading is cut loose after the send timeout, so it never holds anyone
up (it resumes from its last seq); one that reads slowly but steadily is never cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, MutableMapping
from itertools import accumulate
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from uvicorn.protocols.utils import ClientDisconnected

from logcast.hub import Entry, Hub, LiveBatch, Subscription
from logcast.loop import raise_if_cancelled
from logcast.types import EventType, LogRecord, fitting
from logcast.web.conn import Conn, conn_of, send_timeout_setting
from logcast.web.deadline import Quiet, SendDeadline
from logcast.web.direct import Direct
from logcast.web.encode import (
    JSON,
    SSE,
    WS_JSON,
    WS_TEXT,
    Wire,
    batch_chunk,
    batch_messages,
    column_messages,
    entries_text,
    json_frames,
    message_json,
    sse_chunk,
    text_frame,
    text_line,
)
from logcast.web.wsframes import frames_direct, frames_sender

log = logging.getLogger(__name__)

PING_INTERVAL = 15.0
LOST_LOOK = 2.0  # s of quiet after which a stream that ends with its process looks whether its host is lost
SEND_TIMEOUT = send_timeout_setting()  # LOGCAST_SEND_TIMEOUT; an app sets its own in `state.send_timeout`
WRITE_SLICE = 64 * 1024  # bytes per write: with the transport's high-water mark, the most queued
ENTRIES = 256  # entries taken at a time off the slow path (history, filters): a stalled
# client holds one such list, and many large ones leave the heap fragmented
PART = 128  # events encoded at a time for one client (history, filtered streams)
# ...and characters of text at most (one event at least): 1,024 history lines of 64 KiB of
# control characters were 400 MB of JSON made on the event loop at once (a review)
PART_TEXT = 1 << 20
ABORT_GRACE = 1.0  # seconds to let the server see an aborted connection before the app returns
BATCH_PART = 1024  # entries taken (and encoded) at a time for a batched SSE client off the
# fast path: its messages are that long, and a stalled one holds one such list
BATCH = 2000  # live events (cached wire bytes) taken at a time
COLUMN_ENTRIES = 1024  # entries taken at a time for a `batch=columns` client, as `BATCH_PART`:
# a stalled one holds one such list (and one message made of it)
WS_BATCH = 256  # WebSocket without batched frames: sends between two turns of the other streams
DIRECT_LINES = 256  # the most new lines written from the hub's wake (`_direct`); more go by the task


def send_timeout_of(scope: MutableMapping[str, Any]) -> float:
    """The send timeout of the app serving `scope` (`app.state.send_timeout`), else the default."""
    state = getattr(scope.get("app"), "state", None)
    value = getattr(state, "send_timeout", None)
    return float(value) if isinstance(value, (int, float)) and value > 0 else SEND_TIMEOUT


def _as_bytes(chunk: bytes | memoryview | str) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    return bytes(chunk) if isinstance(chunk, memoryview) else chunk.encode()


class BoundedStreamingResponse(StreamingResponse):
    """A streaming body whose every write is bounded in size and in time.

    A chunk is written in slices of at most `WRITE_SLICE` bytes, each waiting while the
    transport is over its high-water mark, so a client holds about two slices of our
    memory. A slice not written within the send timeout cuts the client: its transport
    is aborted (`conn`), since merely returning would have uvicorn `close()` it, which
    waits to flush to a client that never reads.
    """

    client_name = "client of a streamed body"  # for the log line that says it was cut

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        send_timeout: float | None = None,
        on_close: Callable[[], object] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(content, **kw)
        self.send_timeout = send_timeout  # None: the app's
        self.stalled = False  # the client stopped reading and was cut
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the stream while watching for the client leaving; the first to end wins.

        `on_close` runs however it ends: a client that leaves before the body's first
        step (its generator never started, so its own `finally` never runs) must not leave
        its subscription behind."""
        try:
            await self._serve(scope, receive, send)
        finally:
            if self._on_close is not None:
                self._on_close()

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.send_timeout is None:
            self.send_timeout = send_timeout_of(scope)
        conn = conn_of(scope)
        if conn is not None:
            conn.limit_unsent()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        streaming = asyncio.ensure_future(self.stream_response(send))
        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            await asyncio.wait({streaming, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if self.stalled and conn is not None:
                conn.abort()
                # the server learns of it on its next turn: leaving before, uvicorn would
                # take the response for one the app forgot to finish
                await asyncio.wait({watcher}, timeout=ABORT_GRACE)
        finally:
            for task in (streaming, watcher):
                task.cancel()
            results = await asyncio.gather(streaming, watcher, return_exceptions=True)
        error = results[0]
        if isinstance(error, Exception) and not isinstance(error, (OSError, asyncio.CancelledError)):
            raise error
        if conn is not None and not self.stalled and not conn.aborted:
            # the stream ended with bytes still queued: keep-alive must not keep them forever
            conn.abort_unless_drained(self.timeout)

    @property
    def timeout(self) -> float:
        return self.send_timeout if self.send_timeout is not None else SEND_TIMEOUT

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        timeout = self.timeout
        deadline = SendDeadline(timeout)  # one timer for every write, not one each
        try:
            async for chunk in self.body_iterator:
                data = _as_bytes(chunk)
                for start in range(0, len(data), WRITE_SLICE):
                    # uvicorn's send waits while the transport is over its high-water mark
                    with deadline:
                        await send(
                            {
                                "type": "http.response.body",
                                "body": data[start : start + WRITE_SLICE],
                                "more_body": True,
                            }
                        )
        except TimeoutError:
            self.stalled = True
            log.info("%s stopped reading for %.0fs: cut loose", self.client_name, timeout)
            return
        finally:
            deadline.close()
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        try:
            async with asyncio.timeout(timeout):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            self.stalled = True


class BoundedSSEResponse(BoundedStreamingResponse):
    """`text/event-stream`, written as `BoundedStreamingResponse` writes.

    It takes pre-encoded batches (one encoding per line, shared by every subscriber)
    rather than FastAPI's generator mode, which builds and serialises a model per event
    and subscriber.
    """

    media_type = "text/event-stream"
    client_name = "SSE client"

    def __init__(self, content: AsyncIterator[bytes], **kw: Any) -> None:
        super().__init__(content, **kw)
        self.headers["Cache-Control"] = "no-cache"
        self.headers["X-Accel-Buffering"] = "no"


Batch = LiveBatch | list[Entry]


async def _next(
    sub: Subscription,
    shutdown: asyncio.Event,
    quiet: Quiet,
    limit: int,
    wire: Wire | None,
    entries_at_once: int = ENTRIES,
    on_wake: Callable[[], bool] | None = None,
) -> Batch | None:
    """The next batch of `sub`: cached live bytes when `wire` is given and the fast path
    applies, entries otherwise; [] once `quiet`'s interval passed with nothing new; None
    when the stream must end (the client's subscription closed, or the server stops).
    While it waits, the hub writes what is new through `on_wake` (see `_direct`)."""
    quiet.start()
    while True:
        raise_if_cancelled()  # the store may be Redis
        sub.event.clear()
        live = await sub.take_live(limit, wire.name, wire.encode) if wire is not None else None
        if live is not None:
            if live.encoded:
                return live
        else:
            cursor = sub.cursor
            entries = await sub.next(min(limit, entries_at_once), wait=False)
            if entries:
                return entries
            if sub.cursor != cursor and not (sub.closed or shutdown.is_set() or quiet.over()):
                # a window the filter kept nothing of: the next one now, not at the next
                # line or ping (a filtered stream crept 256 lines a ping), the loop's
                # other work between the two
                await asyncio.sleep(0)
                continue
        if sub.closed or shutdown.is_set():
            return None
        if quiet.over():
            return []
        sub.on_wake = on_wake  # nothing of ours in flight until the event wakes us
        try:
            await sub.event.wait()  # new lines the hub could not write, the end, or `quiet`
        finally:
            sub.on_wake = None


def _direct(
    sub: Subscription,
    out: Direct | None,
    take: Callable[[], Batch | None],
    pieces: Callable[[Batch], Iterable[bytes]],
    quiet: Quiet,
) -> Callable[[], bool] | None:
    """The `on_wake` of `sub`'s stream (`logcast.web.direct`): its new lines, taken now
    (`take`, at most `DIRECT_LINES` through `Subscription.take_ready`) and written to `out`
    as the stream's task would write them (`pieces`); the stream's `quiet` spell starts
    again. It declines, and the task takes over, when `out` cannot take bytes now, when the
    lines are not plain realtime ones in the ring, or when their bytes are more than one
    write (`WRITE_SLICE`). Another stream of the same WebSocket may be waiting to write:
    whole frames of two processes may go in either order. The cursor moves only if the
    bytes were handed over: when making or writing them fails, the task tries again from
    where it was, and fails where the client sees it; this writer declines from then on."""
    if out is None:
        return None

    failed = False

    def write() -> bool:
        nonlocal failed
        if failed or not out.writable():
            return False
        before = sub.cursor
        batch = take()
        if batch is None:
            return False
        if not (batch.encoded if isinstance(batch, LiveBatch) else batch):
            return True  # nothing new (or nothing the filter lets through)
        try:
            data = b"".join(pieces(batch))
            if len(data) > WRITE_SLICE:
                sub.cursor = before
                return False
            out.write(data)
        except BaseException:
            sub.cursor = before
            failed = True  # the hub logs it once; the task writes from now on
            raise
        quiet.start()
        return True

    return write


def _ended_at(batch: Batch) -> LogRecord | None:
    """The first status record in `batch` that says the process stopped."""
    if isinstance(batch, LiveBatch):
        statuses = batch.statuses
    else:
        statuses = [p for kind, p in batch if kind is EventType.STATUS and isinstance(p, LogRecord)]
    for record in statuses:
        if record.state is not None and record.state.has_ended:
            return record
    return None


async def sse_body(
    hub: Hub,
    sub: Subscription,
    shutdown: asyncio.Event,
    *,
    end_on_stop: bool = False,
    batched: bool = False,
    columns: bool = False,
    direct: Direct | None = None,
    lost: Callable[[], str | None] | None = None,
) -> AsyncIterator[bytes]:
    """The SSE byte stream of one subscription: one message per event, or with `batched`
    (`batch=1`) messages of many events each, `data: [<event>,…]` (see `batch_messages`),
    or with `columns` (`batch=columns`) such messages whose runs of lines go column-wise
    (see `column_messages`). `direct` is the response's body where the server lets the
    hub write new lines to it while this waits (`direct.body_of`).

    With `end_on_stop`, the stream ends (`stream_end`) after the status record of the
    process's stop; with `lost`, also when it says why no such record will come (a
    replica's process whose host is lost), looked at every `LOST_LOOK` s of quiet."""
    pieces = _column_pieces if columns else _batch_pieces if batched else _sse_pieces
    wire = None if columns else JSON if batched else SSE  # columns: built from the records

    def take() -> Batch | None:
        if wire is None:
            return sub.take_ready(DIRECT_LINES)
        return sub.take_ready(DIRECT_LINES, wire.name, wire.encode)

    quiet = Quiet(sub.event, LOST_LOOK if lost is not None else PING_INTERVAL)
    on_wake = _direct(sub, direct, take, lambda batch: pieces(hub, sub, batch), quiet)
    try:
        yield b"retry: 1000\n\n"
        while True:
            if columns:
                batch = await _next(sub, shutdown, quiet, COLUMN_ENTRIES, None, COLUMN_ENTRIES, on_wake)
            elif batched:
                batch = await _next(sub, shutdown, quiet, BATCH, JSON, BATCH_PART, on_wake)
            else:
                batch = await _next(sub, shutdown, quiet, BATCH, SSE, on_wake=on_wake)
            if batch is None:
                break
            if not isinstance(batch, LiveBatch) and not batch:
                why = lost() if lost is not None else None
                if why is not None:
                    end = message_json(EventType.STREAM_END, f"{sub.process} unknown: {why}")
                    yield b"data: %s\n\n" % (b"[%s]" % end if batched or columns else end)
                    break
                # A batched stream's ping is also an empty batch, which an EventSource (deaf to
                # comments) sees: the web viewer tells a hung server from a quiet process by it.
                yield b": ping\ndata: []\n\n" if batched or columns else b": ping\n\n"
                continue
            ended = _ended_at(batch) if end_on_stop else None
            if ended is None:
                for piece in pieces(hub, sub, batch):
                    yield piece
                continue
            if isinstance(batch, LiveBatch):  # cut the batch after the stopping status
                first = batch.last_seq - len(batch.encoded) + 1
                batch = LiveBatch(batch.encoded[: ended.seq - first + 1], batch.statuses, ended.seq)
            else:
                cut = next(i for i, (_, p) in enumerate(batch) if p is ended)
                batch = batch[: cut + 1]
            for piece in pieces(hub, sub, batch):
                yield piece
            end = message_json(EventType.STREAM_END, f"{sub.process} {ended.state}: {ended.message}")
            yield b"id: %d\ndata: %s\n\n" % (ended.seq, b"[%s]" % end if batched or columns else end)
            break
    finally:
        quiet.close()
        sub.close()


def _parts(entries: list[Entry], size: int = PART) -> Iterator[list[Entry]]:
    """`entries` in slices of at most `size` entries and `PART_TEXT` characters of text
    (one entry at least): each slice is encoded at once, on the event loop."""
    start = 0
    count = len(entries)
    while start < count:
        part = entries[start : start + size]
        if entries_text(part) > PART_TEXT:
            part = _fitting(part)
        yield part
        start += len(part)


def _fitting(entries: list[Entry]) -> list[Entry]:
    """The first of `entries` whose text is at most `PART_TEXT` characters (one at least)."""
    sizes = (len(p.message) if isinstance(p, LogRecord) else 0 for _, p in entries)
    return entries[: max(1, fitting(sizes, PART_TEXT)[0])]


def _sse_pieces(hub: Hub, sub: Subscription, batch: Batch) -> Iterator[bytes]:
    """The SSE bytes of `batch` in pieces of about `WRITE_SLICE` bytes (or `PART`
    events), each made only when the previous one was sent: a client that stops
    reading holds one piece, not a whole batch."""
    if isinstance(batch, LiveBatch):
        yield from _groups(batch.encoded, WRITE_SLICE)
        return
    for part in _parts(batch):
        yield sse_chunk(hub, sub.journal, part)


def _batch_pieces(hub: Hub, sub: Subscription, batch: Batch) -> Iterator[bytes]:
    """The batched SSE messages of `batch`, each made only when the previous one was sent."""
    if isinstance(batch, LiveBatch):
        yield from batch_messages(batch.encoded, batch.last_seq - len(batch.encoded) + 1)
        return
    for part in _parts(batch, BATCH_PART):
        yield from batch_chunk(hub, sub.journal, part)


def _column_pieces(hub: Hub, sub: Subscription, batch: Batch) -> Iterator[bytes]:
    """The `batch=columns` messages of `batch` (always entries: see `sse_body`)."""
    assert not isinstance(batch, LiveBatch)
    yield from column_messages(batch)


def _groups(frames: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """Whole frames joined into writes of at most `limit` bytes (a longer frame alone).
    WebSocket writes are cut only between frames: the protocol writes its own pings and
    close frames between them. A list (a live batch's cached frames, the same for every
    reader) is cut without a Python step per frame; other iterables are consumed lazily."""
    if isinstance(frames, list):
        yield from _list_groups(frames, limit)
        return
    group: list[bytes] = []
    size = 0
    for frame in frames:
        if group and size + len(frame) > limit:
            yield b"".join(group)
            group, size = [], 0
        group.append(frame)
        size += len(frame)
    if group:
        yield b"".join(group)


def _list_groups(frames: list[bytes], limit: int) -> Iterator[bytes]:
    """`_groups` of a list: the cuts found by bisecting the running sizes, in C."""
    if sum(map(len, frames)) <= limit:  # the usual live batch: one write
        if frames:
            yield b"".join(frames)
        return
    ends = list(accumulate(map(len, frames)))
    start, before, count = 0, 0, len(frames)
    while start < count:
        # frames start..stop-1 fit in `limit`; a longer frame goes alone
        stop = max(bisect_right(ends, before + limit, start), start + 1)
        yield b"".join(frames[start:stop])
        before, start = ends[stop - 1], stop


async def websocket_stream(
    ws: WebSocket,
    hub: Hub,
    subs: list[Subscription],
    shutdown: asyncio.Event,
    *,
    as_json: bool,
    send_timeout: float | None = None,
) -> None:
    """Send every subscription's entries to one WebSocket until either side ends.

    Under our uvicorn protocol (`wsframes`) a batch of lines goes out as whole frames
    in writes of at most `WRITE_SLICE` bytes, the live ones straight from the hub's
    cache; elsewhere each line is one `websocket.send`. Either way each write waits
    while the transport is over its high-water mark, and a client that takes nothing
    for `send_timeout` seconds has its connection aborted.
    """
    timeout = send_timeout if send_timeout is not None else send_timeout_of(ws.scope)
    conn = conn_of(ws.scope)
    if conn is not None:
        conn.limit_unsent()
    lock = asyncio.Lock()
    stop = asyncio.Event()
    send_frames = frames_sender(ws)
    batched = send_frames is not None
    wire = (WS_JSON if as_json else WS_TEXT) if batched else None
    limit = BATCH if batched else WS_BATCH
    direct = frames_direct(ws) if batched else None

    def texts(sub: Subscription, entries: list[Entry]) -> list[str]:
        if as_json:
            return json_frames(hub, sub.journal, entries)
        return [t for kind, payload in entries if (t := text_line(kind, payload)) is not None]

    def frames_of(sub: Subscription, entries: list[Entry]) -> Iterator[bytes]:
        for part in _parts(entries):  # encoded as they are written, not all at once
            for text in texts(sub, part):
                yield text_frame(text.encode("utf-8", "replace"))

    async def write_frames(frames: Iterable[bytes], deadline: SendDeadline) -> None:
        for data in _groups(frames, WRITE_SLICE):
            async with lock:
                assert send_frames is not None
                with deadline:
                    await send_frames(data)

    async def pump(sub: Subscription) -> None:
        deadline = SendDeadline(timeout)  # this task's writes share one timer
        quiet = Quiet(sub.event, PING_INTERVAL)
        try:
            await pump_until_stopped(sub, deadline, quiet)
        finally:
            quiet.close()
            deadline.close()

    def frames(batch: Batch) -> list[bytes]:
        assert isinstance(batch, LiveBatch)
        return batch.encoded

    async def pump_until_stopped(sub: Subscription, deadline: SendDeadline, quiet: Quiet) -> None:
        on_wake = None
        if wire is not None:
            fmt, encode = wire.name, wire.encode
            on_wake = _direct(sub, direct, lambda: sub.take_ready(DIRECT_LINES, fmt, encode), frames, quiet)
        while not stop.is_set():
            batch = await _next(sub, shutdown, quiet, limit, wire, on_wake=on_wake)
            if batch is None:
                stop.set()
                return
            if isinstance(batch, LiveBatch):
                await write_frames(batch.encoded, deadline)
            elif not batch:
                continue  # nothing for a while: the protocol's own pings keep the line alive
            elif batched:
                await write_frames(frames_of(sub, batch), deadline)
            else:
                # one deadline per batch: a timer per frame cost more than the send itself;
                # each send waits while the transport is over its high-water mark
                async with lock, asyncio.timeout(timeout):
                    for part in _parts(batch):
                        for frame in texts(sub, part):
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
                log.info("WebSocket client stopped reading for %.0fs: cut loose", timeout)
                await _cut(ws, conn)
            elif exc is not None and not isinstance(exc, (WebSocketDisconnect, OSError, ClientDisconnected)):
                log.warning("WebSocket stream failed: %r", exc)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sub in subs:
            sub.close()
        if (
            not (conn is not None and conn.aborted)
            and ws.application_state is WebSocketState.CONNECTED
            and ws.client_state is WebSocketState.CONNECTED
        ):
            try:
                async with asyncio.timeout(timeout):  # the close frame waits for room too
                    await ws.close(code=1001 if shutdown.is_set() else 1000)
            except TimeoutError:
                await _cut(ws, conn)
            except Exception as exc:
                log.debug("WebSocket close failed: %r", exc)


async def _cut(ws: WebSocket, conn: Conn | None) -> None:
    """Let a client that stopped reading go: abort its connection, or (under a server
    that does not let us reach it) send a close that waits no longer than `ABORT_GRACE`."""
    if conn is not None:
        conn.abort()
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(ABORT_GRACE):
            await ws.close(code=1008, reason="client too slow: reconnect with after=<last seq>")


def last_event_id(header: str | None) -> int | None:
    """The seq a client resumes after, from its `Last-Event-ID` header; None when there is
    none (or it is empty). Anything but a number 0..2^63-1 is a ValueError saying why: a
    resume point that cannot be honoured is refused (422), never guessed."""
    from logcast.web.encode import parse_seq

    if header is None or not header.strip():
        return None
    return parse_seq(header, "Last-Event-ID")


__all__ = ["BoundedSSEResponse", "last_event_id", "sse_body", "websocket_stream"]
