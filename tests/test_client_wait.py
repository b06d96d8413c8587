"""How a client waits between two attempts of a stream that waits for its process to run
(`wait_running=True`): it watches the process's status events, within the time the
attempt gave it. The server is an httpx mock here; tests/e2e/test_client.py has the real one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from logcast.client import AsyncClient, Client
from logcast.client._common import WATCH_MIN
from logcast.types import EventType, ProcessState, Stream
from logcast.web import encode
from tests.fakes import make_record

OPEN = b"retry: 1000\n\ndata: " + encode.event_json(EventType.HISTORICAL_COMPLETE, 4) + b"\nid: 4\n\n"
PING = b": ping\n\n"


def status(state: ProcessState) -> bytes:
    record = make_record(5, f"web is {state.value}", stream=Stream.SYSTEM, state=state)
    return b"data: " + encode.event_json(EventType.STATUS, record) + b"\nid: 5\n\n"


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body: these chunks, then the end."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


class Watches:
    """The mock server: each watch (a stream of the process) gets the next body; records
    every request with its read timeout and when it came."""

    def __init__(self, *bodies: list[bytes]) -> None:
        self.bodies = list(bodies)
        self.requests: list[tuple[str, dict[str, str], float, float]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        read = request.extensions["timeout"]["read"]
        self.requests.append((request.url.path, dict(request.url.params), read, time.monotonic()))
        assert request.url.path == "/api/processes/web/logs/stream"
        body = self.bodies.pop(0) if self.bodies else [OPEN]
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Chunks(body))


def sync_client(server: Watches, state: ProcessState = ProcessState.STOPPED) -> Client:
    client = Client("http://logcast.test")
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(server))
    client._running = lambda name, timeout=None: state  # type: ignore[method-assign]
    return client


def async_client(server: Watches, state: ProcessState = ProcessState.STOPPED) -> AsyncClient:
    client = AsyncClient("http://logcast.test")
    client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(server))

    async def running(name: str) -> ProcessState:
        return state

    client._running = running  # type: ignore[method-assign]
    return client


def timed(wait: Callable[[], object]) -> float:
    started = time.monotonic()
    wait()
    return time.monotonic() - started


def test_a_status_that_says_it_runs_ends_the_wait_at_once() -> None:
    server = Watches([OPEN, status(ProcessState.STARTING)])
    with sync_client(server) as client:
        assert timed(lambda: client._until_running("web", 30)) < 5
    ((_path, params, read, _),) = server.requests
    assert params == {"batch": "1", "lines": "0"}  # no history: only what changes from now on
    assert read <= 30


def test_a_status_that_does_not_say_it_runs_does_not_end_it() -> None:
    server = Watches([OPEN, status(ProcessState.CRASHED), status(ProcessState.BACKOFF)])
    with sync_client(server) as client:
        assert timed(lambda: client._until_running("web", 1.0)) >= 1.0


def test_the_state_asked_once_the_watch_is_open_ends_it_too() -> None:
    """A start before the watch was open is not in its stream: the state is asked then."""
    server = Watches([OPEN])
    with sync_client(server, state=ProcessState.RUNNING) as client:
        assert timed(lambda: client._until_running("web", 30)) < 5


def test_asking_the_state_once_the_watch_is_open_waits_no_longer_than_what_is_left() -> None:
    server = Watches([OPEN])
    asked: list[float] = []
    with sync_client(server) as client:

        def running(name: str, timeout: float | None = None) -> ProcessState:
            asked.append(timeout if timeout is not None else client.timeout)
            return ProcessState.STOPPED

        client._running = running  # type: ignore[method-assign]
        client._until_running("web", 0.8)
    assert asked and all(0 < timeout <= 0.8 for timeout in asked), asked
    assert all(read <= 0.8 for _, _, read, _ in server.requests)


def test_after_a_ping_the_watch_opens_again_with_what_is_left_of_the_wait() -> None:
    """No read may outlast the wait: the read timeout of each watch is what was left when
    it opened, and a ping (every 15 s) makes it open again rather than read on."""
    server = Watches([OPEN, PING], [OPEN, PING], [OPEN, status(ProcessState.RUNNING)])
    with sync_client(server) as client:
        client._until_running("web", 20)
    assert len(server.requests) == 3
    reads = [read for _, _, read, _ in server.requests]
    assert reads[0] <= 20 and reads[1] < reads[0] and reads[2] < reads[1]


def test_a_short_wait_is_slept_without_a_watch() -> None:
    server = Watches()
    with sync_client(server) as client:
        assert timed(lambda: client._until_running("web", WATCH_MIN / 2)) >= WATCH_MIN / 2
    assert server.requests == []


def test_a_watch_the_server_refuses_is_slept_out() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"detail": "not ready"})

    client = Client("http://logcast.test")
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(refuse))
    with client:
        assert timed(lambda: client._until_running("web", 0.6)) >= 0.6


async def test_async_a_status_that_says_it_runs_ends_the_wait_at_once() -> None:
    server = Watches([OPEN, status(ProcessState.RUNNING)])
    async with async_client(server) as client:
        started = time.monotonic()
        await client._until_running("web", 30)
        assert time.monotonic() - started < 5
    assert len(server.requests) == 1


async def test_async_a_short_wait_is_slept_without_a_watch_and_a_long_one_is_bounded() -> None:
    server = Watches([OPEN, status(ProcessState.EXITED)])
    async with async_client(server) as client:
        started = time.monotonic()
        await client._until_running("web", WATCH_MIN / 2)
        assert server.requests == []
        await client._until_running("web", 0.8)  # the watch ends without a start: slept out
        assert time.monotonic() - started >= WATCH_MIN / 2 + 0.8
    assert len(server.requests) == 1


async def test_async_a_cancel_during_the_wait_is_not_swallowed() -> None:
    server = Watches([OPEN])
    async with async_client(server) as client:
        task = asyncio.create_task(client._until_running("web", 30))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
