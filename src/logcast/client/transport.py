"""An event stream's GET on asyncio and httptools, answered as an `httpx.Response`.

httpx reads a body through httpcore, anyio and h11: on this machine about 70 µs of CPU
for each piece of body that arrives. A follower of ordinary output gets a piece per line,
so `logcast tail` following 1,000 lines/s spent more of its time there than on everything
else, and each line waited for it. This opens the one request a follower makes, a GET
over plain http that no proxy from the environment applies to, with httptools' parser
(uvicorn's, in C), and hands the answer on as an `httpx.Response`: status, headers, body
and the errors it raises are httpx's, so the code that reads it does not know.

Everything else (https, a proxy in the environment, credentials in the URL, a replaced
httpx client) goes through httpx (`streams_here`). The body is read ahead by at most
`HIGH_WATER` bytes; past that the socket is left unread until the reader takes them, as
httpx would: a follower that stops reading (a stuck terminal) holds the server's send,
which cuts it loose after its timeout. As httpcore does, interim answers (1xx) are
skipped, what follows the answer is ignored, and a head over `HEAD_MAX` bytes is refused.

Not done: httpcore tries a name's next address 250 ms after the first when that one
neither answers nor refuses (happy eyeballs); here the addresses are tried in turn within
the connect timeout (uvloop's `create_connection` has no such option).
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import httptools
import httpx

from logcast.client.bounds import refuse_compressed

__all__ = ["ERROR_BODY_MAX", "HEAD_MAX", "HIGH_WATER", "open_stream", "streams_here"]

HIGH_WATER = 1 << 20  # bytes of body read ahead of the reader before reading stops (until it takes them)
ERROR_BODY_MAX = 1 << 20  # bytes of an answer other than 2xx kept (its JSON says why)
HEAD_MAX = 100 * 1024  # bytes of status line and headers at most (httpcore's bound)
HEAD_DEADLINE_FACTOR = 3.0  # the head within this many connect timeouts of the request
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110 5.1)
_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")  # a header value: no control byte but tab


def streams_here(url: str) -> bool:
    """Whether `open_stream` can serve `url`'s streams: plain http, no credentials in the
    URL (httpx sends those as Basic auth), and no proxy that httpx might use: none in the
    system's settings or the environment (`http_proxy`, `all_proxy`), or `no_proxy=*`.
    Whether a narrower `no_proxy` spares this host is httpx's to decide, by its rules."""
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError):
        return False
    if parsed.scheme != "http" or not host or parsed.userinfo:
        return False
    proxies = urllib.request.getproxies()
    if not (proxies.get("http") or proxies.get("all")):
        return True
    return proxies.get("no", "").strip() == "*"


@asynccontextmanager
async def open_stream(request: httpx.Request, timeouts: httpx.Timeout) -> AsyncIterator[httpx.Response]:
    """Send `request` (a GET without a body, `http://`) and yield its answer: a 2xx with
    its body still to read (`aiter_bytes`), anything else with its body read (at most
    `ERROR_BODY_MAX` bytes). The connection closes on the way out.

    Raises what httpx would: `ConnectError`/`ConnectTimeout`, `ReadError`/`ReadTimeout`,
    `RemoteProtocolError` (a malformed answer), `LocalProtocolError` (a header that
    would break the request); all are `httpx.TransportError`. And `DecodingError` for a
    compressed answer (`bounds.refuse_compressed`); a head that has not all come
    `HEAD_DEADLINE_FACTOR` connect timeouts after the request is a `ReadTimeout`."""
    head = _request_head(request)
    url = request.url
    host, port = url.raw_host.decode("ascii"), url.port or 80  # the name as httpx connects to it (IDNA 2008)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeouts.connect):
            transport, protocol = await loop.create_connection(
                lambda: _ResponseProtocol(loop, request, timeouts.read), host, port
            )
    except TimeoutError:
        raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time", request=request) from None
    except (OSError, UnicodeError) as exc:  # UnicodeError: a name no resolver takes (an empty label)
        raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from None
    try:
        transport.write(head)
        try:
            async with asyncio.timeout(HEAD_DEADLINE_FACTOR * (timeouts.connect or 10.0)):
                status, headers = await protocol.head()
        except TimeoutError:  # a head that comes a byte now and then
            raise httpx.ReadTimeout("the answer's head took too long to arrive", request=request) from None
        stream = _Body(protocol)
        response = httpx.Response(status, headers=headers, stream=stream, request=request)
        refuse_compressed(response)  # httpx would inflate it, whatever it costs
        if not 200 <= status < 300:
            stream.limit = ERROR_BODY_MAX
            await response.aread()
        yield response
    finally:
        transport.abort()  # whatever the server still sends is nobody's now


def _request_head(request: httpx.Request) -> bytes:
    """`request`'s line and headers, as HTTP/1.1 bytes."""
    if request.method != "GET" or request.url.scheme != "http":
        raise ValueError(f"open_stream sends plain http GETs, not {request.method} {request.url.scheme}")
    parts = [b"GET ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if not _TOKEN.fullmatch(name):
            raise httpx.LocalProtocolError(f"illegal header name {name!r}", request=request)
        if not _VALUE.fullmatch(value):
            raise httpx.LocalProtocolError(f"header {name!r} holds a control character", request=request)
        parts += [name, b": ", value, b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts)


class _ResponseProtocol(asyncio.Protocol):
    """The answer to one request, parsed as it arrives; the body waits in `_chunks`."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, request: httpx.Request, read_timeout: float | None
    ) -> None:
        self._loop = loop
        self._request = request
        self._read_timeout = read_timeout  # s without a byte, after which a read fails
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0  # bytes read before the head was complete
        self._status = 0
        self._interim = False  # the head being read is a 1xx's, which the answer follows
        self._head_done = False
        self._until_close = False  # the body has neither a length nor chunks: it ends with the connection
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._complete = False  # the whole body has arrived
        self._error: httpx.TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wait_began = 0.0  # loop time the wait in progress began
        self._timer: asyncio.TimerHandle | None = None  # the read timeout's (see _check_timeout)

    # -- asyncio ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._complete or self._error is not None:
            return  # what follows the answer is nobody's
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols", request=self._request))
        except httptools.HttpParserError as exc:
            if not self._complete:  # not bytes after the answer, in the same read
                self._fail(httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}", request=self._request))
        if not self._head_done and self._error is None:
            self._head_bytes += len(data)
            if self._head_bytes > HEAD_MAX:
                self._fail(
                    httpx.RemoteProtocolError(
                        f"an answer's head over {HEAD_MAX} bytes", request=self._request
                    )
                )
        self._wake()

    def eof_received(self) -> bool:
        return False  # close: the answer is over either way (see connection_lost)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._complete and self._error is None:
            if self._head_done and self._until_close and exc is None:
                self._complete = True
            elif self._head_done:
                reason = str(exc) if exc else "the server closed the connection in the middle of the answer"
                self._error = httpx.ReadError(reason, request=self._request)
            else:
                reason = str(exc) if exc else "the server closed the connection without answering"
                self._error = httpx.RemoteProtocolError(reason, request=self._request)
        self._wake()

    # -- httptools' callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head_done:  # not a chunked body's trailers
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # an interim answer: the real one follows
            self._interim = True
            self._headers = []
            return
        self._status = status
        names = {name.lower() for name, _ in self._headers}
        self._until_close = b"content-length" not in names and b"transfer-encoding" not in names
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif self._head_done:
            self._complete = True

    # -- the reader ---------------------------------------------------------------------

    async def head(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        """The status and headers, once they have arrived."""
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._status, self._headers

    async def chunk(self) -> bytes | None:
        """What has arrived of the body since the last call (waiting for some); None at its end."""
        chunks = self._chunks
        while not chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return None
            await self._wait()
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    def _fail(self, error: httpx.TransportError) -> None:
        self._error = error
        if self._transport is not None:
            self._transport.abort()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        """Wait for the next bytes (or the end), at most the read timeout."""
        self._waiter = self._loop.create_future()
        self._wait_began = self._loop.time()
        if self._timer is None and self._read_timeout is not None:
            self._timer = self._loop.call_at(self._wait_began + self._read_timeout, self._check_timeout)
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _check_timeout(self) -> None:
        """The read timeout's one timer: it fails the wait in progress if that began a
        timeout ago, else comes back when it would have. A timer per wait (`asyncio.timeout`)
        cost a follower of ordinary output a timer scheduled and cancelled per line."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done() or self._read_timeout is None:
            return  # no wait in progress: the next one sets the timer again
        due = self._wait_began + self._read_timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check_timeout)
            return
        error = httpx.ReadTimeout(f"nothing arrived for {self._read_timeout:g} s", request=self._request)
        waiter.set_exception(error)


class _Body(httpx.AsyncByteStream):
    """The body of an answer, as httpx reads it: the pieces as they arrive."""

    def __init__(self, protocol: _ResponseProtocol) -> None:
        self._protocol = protocol
        self.limit: int | None = None  # bytes after which the rest is not read (an error's body)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        left = self.limit
        while (data := await self._protocol.chunk()) is not None:
            if left is not None:
                data = data[:left]
                left -= len(data)
            if data:
                yield data
            if left is not None and left <= 0:
                return
