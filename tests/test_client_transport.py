"""A stream's GET on asyncio and httptools (`logcast.client.transport`), against scripted
servers on a loopback port: what it sends, every shape of answer, every way an answer
breaks (as the httpx errors the client already handles), read-ahead that stops, and
when the client goes through httpx instead. Each test runs on asyncio's loop and on
uvloop's, which `logcast tail` runs on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvloop

from logcast.client import AsyncClient
from logcast.client.transport import (
    ERROR_BODY_MAX,
    HIGH_WATER,
    _request_head,
    open_stream,
    streams_here,
)
from tests.util import free_port

TIMEOUTS = httpx.Timeout(5.0)
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[Any]], Any]:
    def runner(coro: Awaitable[Any]) -> Any:
        async def main() -> Any:
            return await coro

        return asyncio.run(main()) if request.param == "asyncio" else uvloop.run(main())

    return runner


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    """A server on a free loopback port whose connections `handler` answers."""
    tasks: set[asyncio.Task[None]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def request(port: int, path: str = "/api/processes/web/logs/stream", **kw: Any) -> httpx.Request:
    return httpx.Request("GET", f"http://127.0.0.1:{port}{path}", **kw)


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


async def read_all(req: httpx.Request, timeouts: httpx.Timeout = TIMEOUTS) -> tuple[httpx.Response, bytes]:
    async with open_stream(req, timeouts) as response:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    return response, body


# -- what it sends ------------------------------------------------------------------------------


def test_the_request_is_the_get_httpx_built(run: Callable[[Awaitable[Any]], Any]) -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(SSE_HEAD + chunked(b"data: 1\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async def main() -> None:
        async with serving(handler) as port:
            client = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}/prefix", headers={"Authorization": "Bearer t"}
            )
            built = client.build_request(
                "GET", "/api/x", params={"batch": "columns", "q": "a b&c"}, headers={"Last-Event-ID": "41"}
            )
            await client.aclose()
            response, body = await read_all(built)
        assert response.status_code == 200 and body == b"data: 1\n\n"
        lines = seen[0].split(b"\r\n")
        assert lines[0] == b"GET /prefix/api/x?batch=columns&q=a+b%26c HTTP/1.1"
        headers = dict(line.split(b": ", 1) for line in lines[1:] if line)
        assert headers[b"Host"] == f"127.0.0.1:{port}".encode()
        assert headers[b"Authorization"] == b"Bearer t"
        assert headers[b"Last-Event-ID"] == b"41"

    run(main())


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("Authorization", "t\r\nX-Evil: 1", "control character"),
        ("Authorization", "t\nX-Evil: 1", "control character"),
        ("Authorization", "t\x00", "control character"),
        ("Authorization", "t\x1b[2J", "control character"),
        ("X-A: b", "c", "illegal header name"),
        ("bad name", "c", "illegal header name"),
        ("", "c", "illegal header name"),
    ],
)
def test_a_header_that_would_break_the_request_is_refused_before_connecting(
    run: Callable[[Awaitable[Any]], Any], name: str, value: str, error: str
) -> None:
    connections: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)

    async def main() -> None:
        async with serving(handler) as port:
            req = request(port, headers={name: value})
            with pytest.raises(httpx.LocalProtocolError, match=error):
                await read_all(req)
        assert connections == []

    run(main())


def test_a_tab_in_a_header_value_is_sent() -> None:
    assert _request_head(httpx.Request("GET", "http://h/", headers={"X-A": "a\tb"})).endswith(
        b"X-A: a\tb\r\n\r\n"
    )


def test_only_plain_http_gets_are_sent() -> None:
    with pytest.raises(ValueError, match="plain http GETs"):
        asyncio.run(read_all(httpx.Request("POST", "http://127.0.0.1:1/")))
    with pytest.raises(ValueError, match="plain http GETs"):
        asyncio.run(read_all(httpx.Request("GET", "https://127.0.0.1:1/")))


# -- answers ------------------------------------------------------------------------------------

BODY = b"retry: 1000\n\n" + b"".join(b'id: %d\ndata: {"seq":%d}\n\n' % (i, i) for i in range(200))


@pytest.mark.parametrize("shape", ["chunked", "length", "until close"])
def test_a_body_cut_anywhere_arrives_whole(run: Callable[[Awaitable[Any]], Any], shape: str) -> None:
    head = {
        "chunked": SSE_HEAD,
        "length": b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n"
        % len(BODY),
        "until close": b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
    }[shape]
    wire = head + (
        chunked(*(BODY[i : i + 37] for i in range(0, len(BODY), 37))) + b"0\r\n\r\n"
        if shape == "chunked"
        else BODY
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for i in range(0, len(wire), 29):  # pieces that cut the head, the chunk sizes and the lines
            writer.write(wire[i : i + 29])
            await writer.drain()
            await asyncio.sleep(0)

    async def main() -> None:
        async with serving(handler) as port:
            response, body = await read_all(request(port))
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert body == BODY

    run(main())


def test_an_answer_that_is_not_2xx_comes_read_with_its_json(run: Callable[[Awaitable[Any]], Any]) -> None:
    detail = b'{"detail":"web is stopped"}'

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(detail), detail)
        )
        await writer.drain()
        await asyncio.sleep(30)  # keep-alive: the body's end is its length, not the close

    async def main() -> None:
        async with serving(handler) as port:
            async with open_stream(request(port), TIMEOUTS) as response:
                assert response.status_code == 503
                assert response.json() == {"detail": "web is stopped"}
                assert await response.aread() == detail

    run(main())


def test_an_error_body_is_kept_up_to_its_bound(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(5000):  # 5 MB, and no end
            writer.write(chunked(b"x" * 1000))
            await writer.drain()

    async def main() -> None:
        async with serving(handler) as port, open_stream(request(port), TIMEOUTS) as response:
            assert response.status_code == 500
            assert len(response.content) == ERROR_BODY_MAX

    run(main())


# -- answers that break --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n",
    ],
    ids=["100", "103", "two"],
)
@pytest.mark.parametrize("together", [True, False], ids=["one read", "later reads"])
def test_interim_answers_are_skipped(
    run: Callable[[Awaitable[Any]], Any], interim: bytes, together: bool
) -> None:
    final = SSE_HEAD + chunked(b"data: 1\n\n") + b"0\r\n\r\n"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for piece in [interim + final] if together else [interim, final]:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)

    async def main() -> None:
        async with serving(handler) as port:
            response, body = await read_all(request(port))
        assert response.status_code == 200 and body == b"data: 1\n\n"
        assert "link" not in response.headers  # the interim answer's headers are not the answer's

    run(main())


@pytest.mark.parametrize(
    ("answer", "status", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
            200,
            b"hello",
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloXYZ garbage", 200, b"hello"),
        (SSE_HEAD + chunked(b"data: 1\n\n") + b"0\r\n\r\nXYZ garbage", 200, b"data: 1\n\n"),
        (b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusyXYZ", 503, b"busy"),
        (SSE_HEAD + chunked(b"data: 1\n\n") + b"0\r\nx-trailer: 1\r\n\r\n", 200, b"data: 1\n\n"),
    ],
    ids=[
        "a second answer",
        "junk after a length",
        "junk after the last chunk",
        "junk after an error",
        "trailers",
    ],
)
def test_what_follows_the_answer_is_ignored(
    run: Callable[[Awaitable[Any]], Any], answer: bytes, status: int, body: bytes
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(30)

    async def main() -> None:
        async with serving(handler) as port, open_stream(request(port), TIMEOUTS) as response:
            got = await response.aread()
            assert (response.status_code, got) == (status, body)
            assert "x-trailer" not in response.headers

    run(main())


@pytest.mark.parametrize("one_header", [True, False], ids=["one long header", "many headers"])
def test_a_head_without_end_is_refused_at_its_bound(
    run: Callable[[Awaitable[Any]], Any], one_header: bool
) -> None:
    sent = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n" + (b"x-long: " if one_header else b""))
        for i in range(2000):  # 16 MB, if nobody stopped reading
            writer.write(
                b"a" * 8000 if one_header else b"".join(b"x-%d: %s\r\n" % (i, b"a" * 90) for _ in range(80))
            )
            sent[0] += 8000
            await writer.drain()

    async def main() -> None:
        async with serving(handler) as port:
            with pytest.raises(httpx.RemoteProtocolError, match="head over"):
                await read_all(request(port))
        assert sent[0] < 2000 * 8000  # refused before the end (the kernel's buffers took the rest)

    run(main())


def test_a_stream_cut_in_the_middle_is_a_read_error_after_what_came(
    run: Callable[[Awaitable[Any]], Any],
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(SSE_HEAD + chunked(b"data: 1\n\n", b"data: 2\n\n") + b"40\r\ndata: half")
        await writer.drain()

    async def main() -> None:
        got: list[bytes] = []
        async with serving(handler) as port, open_stream(request(port), TIMEOUTS) as response:
            with pytest.raises(httpx.ReadError):
                async for chunk in response.aiter_bytes():
                    got.append(chunk)
        assert b"".join(got).startswith(b"data: 1\n\ndata: 2\n\n")

    run(main())


@pytest.mark.parametrize(
    "answer",
    [b"", b"HTTP/1.1 200 OK\r\ncontent-", b"HELLO\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"],
    ids=["nothing", "half a head", "not HTTP", "a broken header"],
)
def test_an_answer_that_is_no_answer_is_a_protocol_error(
    run: Callable[[Awaitable[Any]], Any], answer: bytes
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()

    async def main() -> None:
        async with serving(handler) as port:
            with pytest.raises(httpx.RemoteProtocolError):
                await read_all(request(port))

    run(main())


def test_a_server_that_switches_protocols_is_refused(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n\x81\x00"
        )
        await writer.drain()
        await asyncio.sleep(30)

    async def main() -> None:
        async with serving(handler) as port:
            with pytest.raises(httpx.RemoteProtocolError, match="switched protocols"):
                await read_all(request(port))

    run(main())


def test_silence_longer_than_the_read_timeout_is_a_read_timeout(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(SSE_HEAD + chunked(b"data: 1\n\n"))
        await writer.drain()
        await asyncio.sleep(30)

    async def main() -> None:
        async with (
            serving(handler) as port,
            open_stream(request(port), httpx.Timeout(5.0, read=0.3)) as response,
        ):
            chunks = response.aiter_bytes()
            assert await anext(chunks) == b"data: 1\n\n"
            with pytest.raises(httpx.ReadTimeout):
                await anext(chunks)

    run(main())


def test_bytes_that_keep_coming_within_the_read_timeout_never_time_out(
    run: Callable[[Awaitable[Any]], Any],
) -> None:
    """The timeout is per wait: a stream that sends every 0.15 s for 1.2 s, with a read
    timeout of 0.4 s, runs to its end (the one timer comes back for each new wait)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(SSE_HEAD)
        for i in range(8):
            await asyncio.sleep(0.15)
            writer.write(chunked(b"data: %d\n\n" % i))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def main() -> None:
        async with serving(handler) as port:
            _, body = await read_all(request(port), httpx.Timeout(5.0, read=0.4))
        assert body == b"".join(b"data: %d\n\n" % i for i in range(8))

    run(main())


def test_nobody_listening_is_a_connect_error(run: Callable[[Awaitable[Any]], Any]) -> None:
    async def main() -> None:
        with pytest.raises(httpx.ConnectError):
            await read_all(request(free_port()))

    run(main())


@pytest.mark.parametrize("host", ["logs..example", "a" * 64 + ".example"], ids=["empty label", "long label"])
def test_a_name_no_resolver_takes_is_a_connect_error(run: Callable[[Awaitable[Any]], Any], host: str) -> None:
    async def main() -> None:
        with pytest.raises(httpx.ConnectError):
            await read_all(httpx.Request("GET", f"http://{host}:8080/"))

    run(main())


# -- read-ahead ---------------------------------------------------------------------------------


def test_a_reader_that_stops_taking_stops_the_reading(run: Callable[[Awaitable[Any]], Any]) -> None:
    """Read-ahead stops near `HIGH_WATER`: the server's writes wait, as they would for a
    client that reads nothing, and when the reader takes again every byte arrives."""
    piece = b"data: " + b"x" * 65_530 + b"\n\n"  # 64 KiB
    pieces = 320  # 20 MiB
    written = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(SSE_HEAD)
        for _ in range(pieces):
            writer.write(chunked(piece))
            await writer.drain()
            written[0] += 1
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def main() -> None:
        async with serving(handler) as port, open_stream(request(port), TIMEOUTS) as response:
            chunks = response.aiter_bytes()
            first = await anext(chunks)
            body = response.stream._protocol  # type: ignore[attr-defined]
            still = 0
            while still < 30:  # the server has written nothing more for 0.3 s: it is held
                before = written[0]
                await asyncio.sleep(0.01)
                still = still + 1 if written[0] == before else 0
                assert body._buffered <= HIGH_WATER + (1 << 18)  # and we hold about HIGH_WATER
            assert written[0] < pieces // 2
            total = len(first) + sum([len(c) async for c in chunks])
        assert total == pieces * len(piece)
        assert written[0] == pieces

    run(main())


# -- which way a client streams -------------------------------------------------------------------


PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")


def test_plain_http_without_a_proxy_or_credentials_streams_here(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert streams_here("http://127.0.0.1:8080")
    assert streams_here("http://logs.example:80/prefix")
    assert not streams_here("https://logs.example")
    assert not streams_here("http://user:pw@logs.example")  # httpx sends them as Basic auth
    assert not streams_here("http://")
    assert not streams_here("not a url at all ::")
    assert streams_here("http://xn--zz:8080")  # not a name IDNA decodes: no error here (the connect fails)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert not streams_here("http://logs.example")
    monkeypatch.setenv("NO_PROXY", ".logs.example")  # httpx's rules decide which hosts it spares
    assert not streams_here("http://logs.example")
    monkeypatch.setenv("NO_PROXY", "*")
    assert streams_here("http://logs.example")
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("ALL_PROXY", "socks5://proxy.example:1080")
    assert not streams_here("http://other.example")


async def test_the_client_streams_here_unless_it_goes_through_a_proxy_or_another_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    opened: list[str] = []

    @contextlib.asynccontextmanager
    async def spy(req: httpx.Request, timeouts: httpx.Timeout) -> AsyncIterator[httpx.Response]:
        opened.append(str(req.url))
        yield httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"", request=req)

    monkeypatch.setattr("logcast.client._async.open_stream", spy)
    httpx_got: list[str] = []

    def mock(req: httpx.Request) -> httpx.Response:
        httpx_got.append(str(req.url))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"")

    async def one_connection(client: AsyncClient) -> None:
        async with client:
            batches = client.stream_batches("web", reconnect=False)
            with contextlib.suppress(Exception):
                async for _ in batches:
                    pass

    await one_connection(AsyncClient("http://127.0.0.1:9"))
    assert len(opened) == 1 and opened[0].startswith("http://127.0.0.1:9/api/processes/web/logs/stream?")

    replaced = AsyncClient("http://127.0.0.1:9")
    await replaced._http.aclose()
    replaced._http = httpx.AsyncClient(base_url=replaced.url, transport=httpx.MockTransport(mock))
    await one_connection(replaced)
    assert len(opened) == 1 and len(httpx_got) == 1

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    proxied = AsyncClient("http://127.0.0.1:9")
    assert not proxied._streams_here
    await proxied.aclose()
