"""What a server's answer may cost the client (`logcast.client.bounds`): no compression,
at most `ANSWER_MAX` bytes and a deadline for an answer that is not an event stream, a
head in time on the client's own stream transport."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
import typer

from logcast.cli import control
from logcast.client import AsyncClient, Client, bounds, sse, transport
from logcast.errors import ClientError

PROCESSES = b'{"processes": []}'


def sync_client(handler: Callable[[httpx.Request], httpx.Response]) -> Client:
    """A `Client` whose own httpx client (its headers, its hooks) answers through `handler`."""
    client = Client("http://logcast.test", "t")
    client._http._transport = httpx.MockTransport(handler)
    return client


def async_client(handler: Callable[[httpx.Request], httpx.Response]) -> AsyncClient:
    client = AsyncClient("http://logcast.test", "t")
    client._http._transport = httpx.MockTransport(handler)
    return client


def compressed(request: httpx.Request) -> httpx.Response:
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB inflated from about 8 KiB
    return httpx.Response(200, headers={"content-encoding": "gzip"}, content=bomb)


def test_the_client_asks_for_no_compression_and_refuses_it() -> None:
    seen: list[httpx.Request] = []

    def plain(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PROCESSES)

    with sync_client(plain) as client:
        assert client.processes() == []
    assert seen[0].headers["accept-encoding"] == "identity"
    with (
        sync_client(compressed) as client,
        pytest.raises(ClientError, match=r"compressed its answer \(gzip\)"),
    ):
        client.processes()


async def test_the_async_client_refuses_compression_too() -> None:
    async with async_client(compressed) as client:
        with pytest.raises(ClientError, match="compressed"):
            await client.processes()


def test_an_answer_past_its_bound_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounds, "ANSWER_MAX", 1000)

    def large(request: httpx.Request) -> httpx.Response:  # streamed, as from a socket
        return httpx.Response(200, content=iter([b'{"processes": [', b" " * 2000, b"]}"]))

    with sync_client(large) as client, pytest.raises(ClientError, match="over 1,000 bytes"):
        client.processes()
    with sync_client(lambda r: httpx.Response(200, content=PROCESSES)) as client:
        assert client.processes() == []  # within it


async def test_an_answer_past_its_deadline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounds, "DEADLINE_FACTOR", -1.0)  # the deadline passed at its head

    async def body() -> AsyncIterator[bytes]:  # streamed, as from a socket
        yield PROCESSES

    async with async_client(lambda r: httpx.Response(200, content=body())) as client:
        with pytest.raises(ClientError, match="took too long"):
            await client.processes()


def test_an_event_stream_is_not_cut_by_the_answer_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounds, "ANSWER_MAX", 10)
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"data: 1\n\n" * 10)
    bounds.bound(response)
    assert response.read() == b"data: 1\n\n" * 10


# -- the client's own stream transport (httptools) ------------------------------------------


@contextlib.asynccontextmanager
async def answering(answer: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> AsyncIterator[str]:
    """A server on a free port that, once a request's head came, has `answer` write to the
    connection (until the test ends), then closes it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):  # the test ended
            await answer(writer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


def raw_server(answer: bytes) -> contextlib.AbstractAsyncContextManager[str]:
    """A server that writes `answer`, then holds the connection."""

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(30)

    return answering(write)


async def follow_once(url: str) -> None:
    async with AsyncClient(url, "t") as client:
        async for _batch in client.stream_runs("web", reconnect=False, lines=0):
            pass


async def test_a_compressed_event_stream_is_dropped_with_its_reason() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\ncontent-length: 10\r\n\r\n"
    async with raw_server(head + gzip.compress(b"x")[:10]) as url:
        with pytest.raises(ClientError, match=r"unexpected answer .* compressed its answer \(gzip\)"):
            await follow_once(url)


async def test_a_head_that_never_ends_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "HEAD_DEADLINE_FACTOR", 0.02)  # 0.2 s of the 10 s connect timeout
    async with raw_server(b"HTTP/1.1 200 OK\r\nx-slow: 1\r\n") as url:
        with pytest.raises(ClientError, match="head took too long"):
            await follow_once(url)


def trickle_server(every: float) -> contextlib.AbstractAsyncContextManager[str]:
    """A server that answers a byte of its head at a time, one every `every` seconds."""

    async def write(writer: asyncio.StreamWriter) -> None:
        for byte in b"HTTP/1.1 200 OK\r\n" + b"x" * 1000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)

    return answering(write)


async def test_an_answer_that_trickles_in_is_given_up_at_its_deadline() -> None:
    async with trickle_server(every=0.05) as url, AsyncClient(url, "t", timeout=0.3) as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(ClientError, match=r"did not answer within 0\.9 s"):
            await client.processes()  # no read waits 0.3 s: only the deadline ends it
        assert asyncio.get_running_loop().time() - started < 5


def test_a_message_of_too_many_data_lines_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "DATA_LINES_MAX", 10)
    decoder = sse.SSEDecoder()
    assert len(decoder.feed(b"data: x\n" * 10 + b"\n")) == 1
    with pytest.raises(httpx.DecodingError, match="over 10 data lines"):
        decoder.feed(b"data: x\n" * 11 + b"\n")


@contextlib.contextmanager
def threaded_trickle_server(every: float) -> Iterator[str]:
    """`trickle_server` on a thread of its own, for the blocking client: a byte of its head
    every `every` seconds, until the client goes away."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\n" + b"x" * 1000:
                    if stop.wait(every):
                        return
                    conn.sendall(bytes([byte]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_ps_gives_up_an_answer_that_trickles_in(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """httpx bounds each read, not the answer: a head that trickles in a byte at a time held
    `logcast ps` forever. The command's call has a deadline (`ANSWER_DEADLINE_FACTOR`
    client timeouts: 10 s x 0.08 here), and the test runner's own timer still runs."""
    monkeypatch.setattr(control, "ANSWER_DEADLINE_FACTOR", 0.08)
    runner_alarm = signal.getitimer(signal.ITIMER_REAL)[0]
    with threaded_trickle_server(every=0.05) as url:
        started = time.monotonic()
        with pytest.raises(typer.Exit) as exit_:
            control.ps(url=url)
        took = time.monotonic() - started
    assert exit_.value.exit_code == 1
    assert "did not answer within 0.8 s" in capsys.readouterr().err
    assert 0.7 < took < 5
    if runner_alarm:  # pytest-timeout's, set again for what was left of it
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= runner_alarm


def test_an_earlier_timer_goes_off_during_the_call_and_after_it_as_set() -> None:
    """A timer set before the call (a test runner's, a program's) keeps its due time: its
    alarm goes to its own handler, during the call as after it."""
    rang: list[float] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: rang.append(time.monotonic()))
    saved = signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        started = time.monotonic()
        with control._answered_within(0.6):
            time.sleep(0.4)  # the earlier alarm rings here, not the deadline
        assert len(rang) == 1 and 0.15 < rang[0] - started < 0.4
        with pytest.raises(ClientError, match=r"did not answer within 0\.3 s"), control._answered_within(0.3):
            time.sleep(2)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with control._answered_within(5):
            pass
        assert 0.3 < signal.getitimer(signal.ITIMER_REAL)[0] <= 0.5  # set again, as it was
        time.sleep(0.6)
        assert len(rang) == 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, *saved)
        signal.signal(signal.SIGALRM, previous)
