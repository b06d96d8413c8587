"""How a following client counts its attempts (`max_attempts`) against a server that
answers a stream and hangs up before it sends anything, again and again: each such stream
is a failed attempt, backed off, until the client gives up; a stream that brought a
message is not, and the count begins again after it. The server is an httpx mock here."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from logcast.client import AsyncClient, Client
from logcast.client.events import ConnectionState, Event
from logcast.errors import ClientError
from logcast.types import EventType
from logcast.web import encode
from tests.test_client_wait import Chunks


def opened(seq: int) -> list[bytes]:
    """A stream at its live end at `seq` (`historical_complete`)."""
    return [b"data: " + encode.event_json(EventType.HISTORICAL_COMPLETE, seq) + b"\nid: %d\n\n" % seq]


OPEN = opened(4)[0]
SILENT: list[bytes] = []  # the head, then the end: no message
PING = [b": ping\n\n"]  # no message, but the server is there (a filter reading a long history)
HALF = [b'data: {"type": "historical_comp']  # a message cut before its end


class Server:
    """Each stream gets the next body; once they are used up, silent ones."""

    def __init__(self, *bodies: list[bytes]) -> None:
        self.bodies = list(bodies)
        self.streams = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.streams += 1
        body = self.bodies.pop(0) if self.bodies else SILENT
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Chunks(body))


def failures(events: list[Event]) -> list[tuple[int, float | None]]:
    """(attempt, retry_in) of each disconnection, in order."""
    return [
        (event.attempt, event.retry_in)
        for event in events
        if event.connection is ConnectionState.DISCONNECTED
    ]


def follow_sync(
    server: Server, max_attempts: int, most: int = 200, clock: Callable[[], float] = lambda: 0.0
) -> tuple[list[Event], ClientError | None]:
    client = Client("http://logcast.test", clock=clock)
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(server))
    events: list[Event] = []
    with client:
        try:
            for batch in client.stream_batches("web", max_attempts=max_attempts, interval=0.001):
                events += batch
                if len(failures(events)) >= most:
                    break
        except ClientError as exc:
            return events, exc
    return events, None


async def follow_async(server: Server, max_attempts: int) -> tuple[list[Event], ClientError | None]:
    client = AsyncClient("http://logcast.test")
    client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(server))
    events: list[Event] = []
    async with client:
        try:
            async for batch in client.stream_batches("web", max_attempts=max_attempts, interval=0.001):
                events += batch
                if len(failures(events)) >= 200:
                    break
        except ClientError as exc:
            return events, exc
    return events, None


@pytest.mark.parametrize("body", [SILENT, HALF], ids=["nothing", "half a message"])
def test_streams_that_end_before_any_message_are_failed_attempts(body: list[bytes]) -> None:
    server = Server(*[body] * 10)
    events, error = follow_sync(server, max_attempts=3)
    assert error is not None and "gave up after 3 attempts" in str(error)
    assert "the server closed the stream" in str(error)
    assert server.streams == 3
    assert failures(events) == [(1, 0.001), (2, 0.002), (3, None)]  # backed off, then given up


async def test_async_streams_that_end_before_any_message_are_failed_attempts() -> None:
    server = Server()
    events, error = await follow_async(server, max_attempts=4)
    assert error is not None and "gave up after 4 attempts" in str(error)
    assert server.streams == 4
    assert failures(events) == [(1, 0.001), (2, 0.002), (3, 0.004), (4, None)]


def test_a_stream_that_brought_a_message_is_a_drop_and_the_count_begins_again() -> None:
    server = Server(SILENT, SILENT, opened(4), SILENT, SILENT, opened(5), SILENT, SILENT, SILENT)
    events, error = follow_sync(server, max_attempts=3)
    assert error is not None and "gave up after 3 attempts" in str(error)
    assert server.streams == 9  # never three silent ones in a row before the last three
    assert failures(events) == [
        (1, 0.001),
        (2, 0.002),
        (0, 0.001),  # dropped after a message: not an attempt, retried after the interval
        (1, 0.001),
        (2, 0.002),
        (0, 0.001),
        (1, 0.001),
        (2, 0.002),
        (3, None),
    ]


async def test_async_a_stream_that_brought_a_message_begins_the_count_again() -> None:
    server = Server(SILENT, opened(4), SILENT, opened(5), SILENT)
    events, error = await follow_async(server, max_attempts=2)
    assert error is not None and "gave up after 2 attempts" in str(error)
    assert server.streams == 6
    assert [attempt for attempt, _ in failures(events)] == [1, 0, 1, 0, 1, 2]


def test_a_stream_that_brought_pings_for_long_is_a_drop() -> None:
    """A filtered stream may say nothing for long while the server reads a long history,
    but pings every 15 s: cut by a proxy after a while, it is not a failed attempt."""
    ticks = iter(range(0, 10**6, 31))  # each look at the clock is 31 s after the one before
    server = Server(PING, PING, PING, PING, SILENT, SILENT)
    events, error = follow_sync(server, max_attempts=2, clock=lambda: float(next(ticks)))
    assert error is not None and server.streams == 6
    assert [attempt for attempt, _ in failures(events)] == [0, 0, 0, 0, 1, 2]


@pytest.mark.parametrize("body", [PING, [OPEN]], ids=["a ping", "the same position"])
def test_a_server_that_says_a_little_and_hangs_up_at_once_is_backed_off_and_given_up(
    body: list[bytes],
) -> None:
    """A review: a server that answered with a ping (or the same `historical_complete`,
    then a message too large to take) and hung up was asked again every `interval`, for
    good: `max_attempts` was never reached. A stream that brought nothing new and did not
    stay open `STEADY` s is a failed attempt."""
    server = Server(*[body] * 10)
    events, error = follow_sync(server, max_attempts=3)
    assert error is not None and "gave up after 3 attempts" in str(error)
    expected = [(1, 0.001), (2, 0.002), (3, None)]
    if body == [OPEN]:  # the first brought a position never seen: of use
        expected = [(0, 0.001), *expected]
    assert failures(events) == expected


def test_without_a_bound_the_client_keeps_trying() -> None:
    server = Server()
    events, error = follow_sync(server, max_attempts=0, most=6)
    assert error is None  # stopped by the test
    assert failures(events) == [(1, 0.001), (2, 0.002), (3, 0.004), (4, 0.008), (5, 0.016), (6, 0.032)]


def test_a_503_on_logcasts_own_route_is_a_server_that_cannot_serve_now_not_a_stopped_process() -> None:
    """Too many streams open (or its Redis away): `logcast tail` said "not running" and
    retried at its interval; it is a disconnection, retried no sooner than Retry-After."""

    def full(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503, headers={"retry-after": "1"}, json={"detail": "too many log streams open (1)"}
        )

    client = Client("http://logcast.test")
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(full))
    events: list[Event] = []
    with client, pytest.raises(ClientError, match="gave up after 2 attempts"):
        for batch in client.stream_batches("web", max_attempts=2, interval=0.001):
            events += batch
    first = next(e for e in events if e.connection is ConnectionState.DISCONNECTED)
    assert first.retry_in == 1.0 and first.reason == "too many log streams open (1)"
    assert not any(e.connection is ConnectionState.NOT_RUNNING for e in events)


def test_a_quiet_stream_a_proxy_cuts_early_is_no_failed_attempt() -> None:
    """A review of the rule above: a quiet process's stream resumed at the same position
    each time (`historical_complete` repeats the seq the client has) and cut by a proxy
    after 20 s, a ping heard, counted as failed: the client gave up after `max_attempts`.
    Its position and then a ping: the server is there and the stream works."""
    server = Server(*[[OPEN, *PING]] * 6)
    events, error = follow_sync(server, max_attempts=2, most=6)
    assert error is None  # stopped by the test, never given up
    assert [attempt for attempt, _ in failures(events)] == [0] * 6
