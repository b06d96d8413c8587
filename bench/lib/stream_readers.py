"""The stream readers of a client process: SSE over raw sockets, WebSocket with the
`websockets` library or a minimal frame parser. Each checks every line came, in order, and
times it, at a cost small enough that the server, not the client, is what is measured."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.lib.histogram import BUCKET_COUNT, FINE_BUCKETS, bucket_index


@dataclass
class StreamState:
    """What one stream got: lines, the places their numbers did not go up by one, and the
    `gap` notices with the lines they announced (lines skipped without a notice, a broken
    invariant 2, are told apart from lines announced as lost)."""

    kind: str
    connected: bool = False
    error: str | None = None
    lines: int = 0
    last: int = -1
    order_errors: int = 0  # places where the next line was not the previous one + 1
    skipped: int = 0  # lines jumped over at those places
    backwards: int = 0  # places where a line number went back (repeat or disorder)
    first_skip: tuple[int, int] | None = None  # (line before, line after) of the first such place
    announced: int = 0  # lines that gap notices said would not come
    gaps: int = 0
    status: int = 0
    t_first: float | None = None
    t_last: float | None = None  # time the expected last line arrived
    closed_early: bool = False
    done: asyncio.Future[None] | None = None
    cap_ms: list[float] = field(default_factory=list)  # child -> capture, per read (SSE)

    def note_jump(self, before: int, after: int) -> None:
        if after > before + 1:
            self.skipped += after - before - 1
        else:
            self.backwards += 1
        if self.first_skip is None:
            self.first_skip = (before, after)

    def report(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "error": self.error,
            "lines": self.lines,
            "last": self.last,
            "order_errors": self.order_errors,
            "skipped": self.skipped,
            "backwards": self.backwards,
            "first_skip": self.first_skip,
            "announced": self.announced,
            "gaps": self.gaps,
            "t_first": self.t_first,
            "t_last": self.t_last,
            "closed_early": self.closed_early,
        }


REALTIME_EVENT = b'"type":"realtime"'
MESSAGE_FIELD = b'"message":"'
TIMESTAMP_FIELD = b'"timestamp":'


class RawStream(asyncio.Protocol):
    """What the raw SSE and WebSocket clients share: send the request on connect; on a
    close, fail the opening if it had not happened (`awaiting` names what was awaited)
    and mark the stream as closed early if it had not got its last line."""

    awaiting = "the response"
    state: StreamState
    request: bytes
    opened: asyncio.Future[None]
    transport: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transport is not an asyncio.Transport subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before {self.awaiting}: {exc!r}"))
        assert self.state.done is not None
        if not self.state.done.done():
            self.state.closed_early = True
            self.state.done.set_result(None)


class SSEProtocol(RawStream):
    """A raw HTTP/1.1 SSE reader (chunked decoding) that checks and times whole reads, not
    single events. Per read it counts the `realtime` events (bytes.count), parses the line
    numbers of the first and last, and checks first == previous last + 1 and last - first + 1
    == count: every line, in order, without parsing every event (where that fails, every event
    of the read is walked to count what was skipped). Latency is taken from the read's first
    (oldest) line and charged to every line of the read: an upper bound."""

    def __init__(
        self, state: StreamState, request: bytes, expect: int, bucket_counts: list[int], max_ms: list[float]
    ):
        self.state = state
        self.request = request
        self.expect = expect
        self.bucket_counts = bucket_counts
        self.max_ms = max_ms
        self.head = b""
        self.headers_done = False
        self.chunked = False
        self.raw = b""
        self.need = 0
        self.skip = 0
        self.body = b""
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.headers_done:
            self.head += data
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            head, data = self.head[:i], self.head[i + 4 :]
            self.head = b""
            self.headers_done = True
            status = head.split(b"\r\n", 1)[0]
            if b" 200" not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            self.chunked = b"transfer-encoding: chunked" in head.lower()
            self.opened.set_result(None)
        if self.chunked:
            data = self._dechunk(data)
        if not data:
            return
        body = self.body + data if self.body else data
        end = body.rfind(b"\n\n")
        if end < 0:
            self.body = body
            return
        end += 2
        self.body = body[end:]
        self._take_events(body, end, now)

    def _note_each_break(self, events: bytes, end: int) -> None:
        """Walk every realtime event of `events` and note each place the line numbers do not go +1."""
        state = self.state
        prev = state.last
        i = events.find(REALTIME_EVENT, 0, end)
        while i >= 0:
            m = events.find(MESSAGE_FIELD, i) + 11
            n = int(events[m : m + 9])
            if n != prev + 1:
                state.order_errors += 1
                state.note_jump(prev, n)
            prev = n
            i = events.find(REALTIME_EVENT, m, end)

    def _dechunk(self, data: bytes) -> bytes:
        raw = self.raw + data if self.raw else data
        out: list[bytes] = []
        pos, n = 0, len(raw)
        while pos < n:
            if self.skip:
                k = min(self.skip, n - pos)
                pos += k
                self.skip -= k
                continue
            if self.need:
                k = min(self.need, n - pos)
                out.append(raw[pos : pos + k])
                pos += k
                self.need -= k
                if not self.need:
                    self.skip = 2
                continue
            j = raw.find(b"\r\n", pos)
            if j < 0:
                break
            size = int(raw[pos:j].split(b";", 1)[0], 16)
            pos = j + 2
            if size == 0:
                pos = n
                break
            self.need = size
        self.raw = raw[pos:]
        return b"".join(out)

    def _take_events(self, events: bytes, end: int, now: float) -> None:
        state = self.state
        n = events.count(REALTIME_EVENT, 0, end)
        if n:
            i = events.find(REALTIME_EVENT, 0, end)
            m = events.find(MESSAGE_FIELD, i) + 11
            first = int(events[m : m + 9])
            t_child = float(events[m + 10 : m + 27])
            j = events.rfind(REALTIME_EVENT, 0, end)
            m2 = events.find(MESSAGE_FIELD, j) + 11
            last = int(events[m2 : m2 + 9])
            if first != state.last + 1 or last - first + 1 != n:
                self._note_each_break(events, end)  # slow path, only where something is wrong
            state.last = last
            state.lines += n
            if state.t_first is None:
                state.t_first = now
            ms = (now - t_child) * 1000.0
            self.bucket_counts[bucket_index(ms)] += n
            if ms > self.max_ms[0]:
                self.max_ms[0] = ms
            if len(state.cap_ms) < 20000:
                t = events.find(TIMESTAMP_FIELD, i, m)
                if t > 0:
                    comma = events.find(b",", t)
                    state.cap_ms.append((float(events[t + 12 : comma]) - t_child) * 1000.0)
            if last >= self.expect - 1 and state.done is not None and not state.done.done():
                state.t_last = now
                state.done.set_result(None)
        if b'"type":"gap"' in events:
            i = events.find(b'"type":"gap"', 0, end)
            while i >= 0:
                state.gaps += 1
                c = events.find(b'"count":', i) + 8
                state.announced += int(events[c : events.find(b",", c)])
                i = events.find(b'"type":"gap"', c, end)
        if b'"type":"status"' in events:
            state.status += events.count(b'"type":"status"', 0, end)


async def follow_sse(
    spec: dict[str, Any], state: StreamState, bucket_counts: list[int], max_ms: list[float]
) -> None:
    port = spec["port"]
    request = (
        f"GET {spec['sse_path']} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    await follow_raw(state, lambda: SSEProtocol(state, request, spec["expect"], bucket_counts, max_ms), port)


async def follow_raw(state: StreamState, protocol: Callable[[], RawStream], port: int) -> None:
    """Connect a raw client's protocol to the server on `port`; return once its stream is over."""
    loop = asyncio.get_running_loop()
    transport, proto = await asyncio.wait_for(loop.create_connection(protocol, "127.0.0.1", port), 30)
    try:
        await asyncio.wait_for(proto.opened, 30)
        state.connected = True
        assert state.done is not None
        await state.done
    finally:
        transport.close()


async def follow_ws_library(
    spec: dict[str, Any],
    state: StreamState,
    bucket_counts: list[int],
    max_ms: list[float],
    opened: asyncio.Event,
) -> None:
    """The `websockets` library's client (`format=text`: the frame is the bare line): every
    frame is checked (line number + 1) and, in latency mode, timed."""
    from websockets.asyncio.client import connect

    expect = spec["expect"]
    timed = spec["mode"] == "latency"  # burst: count and order only
    clock = time.time
    count = order = gaps = 0
    last = -1
    worst = 0.0
    try:
        async with connect(
            spec["ws_url"],
            compression="deflate" if spec.get("ws_compression") else None,
            max_queue=1024,
            max_size=None,
            open_timeout=30,
            ping_interval=None,
            close_timeout=1,
            proxy=None,
        ) as ws:
            state.connected = True
            opened.set()
            async for msg in ws:
                if msg[:1] == "[":  # a logcast note: status change or gap
                    if " lines missed " in msg:
                        assert isinstance(msg, str)  # format=text: text frames
                        gaps += 1
                        state.announced += int(msg.split(": ", 1)[1].split(" ", 1)[0])
                    continue
                n = int(msg[:9])
                if n != last + 1:
                    order += 1
                    state.note_jump(last, n)
                last = n
                count += 1
                if timed:
                    ms = (clock() - float(msg[10:27])) * 1000.0
                    if ms < 1000.0:
                        bucket_counts[int(ms * 100.0) if ms > 0 else 0] += 1
                    else:
                        bucket_counts[min(BUCKET_COUNT - 1, FINE_BUCKETS + int((ms - 1000.0) / 10.0))] += 1
                        if ms > worst:
                            worst = ms
                if n >= expect - 1:
                    state.t_last = clock()
                    break
            else:
                state.closed_early = True
    finally:
        state.lines, state.last, state.order_errors, state.gaps = count, last, order, gaps
        max_ms[0] = max(max_ms[0], worst)
        opened.set()


class RawWSProtocol(RawStream):
    """A minimal WebSocket client (RFC 6455, no extensions) that parses frames in place:
    about a microsecond of Python per frame, several times less than a full client
    library, so that at a million frames a second the clients are not what is measured.
    Answers pings, handles fragmented and masked frames, echoes a close. Latency per socket
    read from its oldest line, as for SSE (an upper bound: a clock read and a float parse per
    frame were a third of this client's CPU)."""

    awaiting = "the handshake"

    def __init__(
        self,
        state: StreamState,
        request: bytes,
        spec: dict[str, Any],
        bucket_counts: list[int],
        max_ms: list[float],
    ) -> None:
        self.state = state
        self.request = request
        self.expect = int(spec["expect"])
        self.timed = spec["mode"] == "latency"
        self.bucket_counts = bucket_counts
        self.max_ms = max_ms
        self.head = b""
        self.upgraded = False
        self.buf = b""
        self.fragments: list[bytes] = []
        self.oldest: float | None = None  # write time of the oldest line of the current read
        self.counted = 0  # lines of the current read
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.head += data
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            status = self.head.split(b"\r\n", 1)[0]
            data, self.head = self.head[i + 4 :], b""
            if b" 101" not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                return
            self.upgraded = True
            self.opened.set_result(None)
        buf = self.buf + data if self.buf else data
        self.oldest, self.counted = None, 0
        try:
            self._frames(buf, len(buf))
        finally:
            if self.counted:
                self._charge(self.oldest, self.counted)

    def _charge(self, oldest: float | None, count: int) -> None:
        """Latency of one read, from its oldest line, charged to each of its `count` lines."""
        if oldest is None:
            return
        ms = (time.time() - oldest) * 1000.0
        self.bucket_counts[bucket_index(ms)] += count
        if ms >= 1000.0 and ms > self.max_ms[0]:
            self.max_ms[0] = ms

    def _frames(self, buf: bytes, n: int) -> None:
        pos = 0
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            size, hdr = b1 & 0x7F, 2
            if size == 126:
                if n - pos < 4:
                    break
                size, hdr = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif size == 127:
                if n - pos < 10:
                    break
                size, hdr = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            masked = b1 & 0x80
            if masked:
                hdr += 4
            if n - pos < hdr + size:
                break
            payload = buf[pos + hdr : pos + hdr + size]
            if masked:
                key = buf[pos + hdr - 4 : pos + hdr]
                payload = bytes(c ^ key[j % 4] for j, c in enumerate(payload))
            pos += hdr + size
            opcode = b0 & 0x0F
            if opcode == 1 and b0 & 0x80:
                self._line(payload)
            elif opcode in (0, 1):  # fragments of a text message
                self.fragments.append(payload)
                if b0 & 0x80:
                    self._line(b"".join(self.fragments))
                    self.fragments = []
            elif opcode == 9:  # ping: pong with the same payload, masked with a zero key
                self._send(0xA, payload)
            elif opcode == 8:  # close: echo it
                self._send(0x8, payload[:2])
                self.transport.close()
                return
        self.buf = buf[pos:]

    def _send(self, opcode: int, payload: bytes) -> None:
        if len(payload) < 126:
            self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def _line(self, msg: bytes) -> None:
        state = self.state
        if msg[:1] == b"[":  # a logcast note: status change or gap
            if b" lines missed " in msg:
                state.gaps += 1
                state.announced += int(msg.split(b": ", 1)[1].split(b" ", 1)[0])
            return
        n = int(msg[:9])
        if n != state.last + 1:
            state.order_errors += 1
            state.note_jump(state.last, n)
        state.last = n
        state.lines += 1
        if self.timed:
            if self.oldest is None:
                self.oldest = float(msg[10:27])
            self.counted += 1
        if n >= self.expect - 1 and state.done is not None and not state.done.done():
            state.t_last = time.time()
            state.done.set_result(None)


async def follow_ws_raw(
    spec: dict[str, Any], state: StreamState, bucket_counts: list[int], max_ms: list[float]
) -> None:
    url = urlsplit(spec["ws_url"])
    port = url.port or 80
    path = url.path + (f"?{url.query}" if url.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    await follow_raw(state, lambda: RawWSProtocol(state, request, spec, bucket_counts, max_ms), port)
