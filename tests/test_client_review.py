"""What a review of the Python client broke it with: a server down for hours, a hostile
`Retry-After`, credentials in the address, a history that went back in numbering, a rate
limiting proxy, `data:` lines without their space, events ended by `\\r`, a server that
answers a byte at a time. The servers are httpx mocks here."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from logcast.client import AsyncClient, Client
from logcast.client._common import RETRY_AFTER_MAX, Attempts, StreamCursor, _seconds
from logcast.client.events import ConnectionState, Event
from logcast.client.sse import DATA_LINES_MAX, SSEDecoder
from logcast.errors import ClientError
from logcast.types import EventType
from logcast.web import encode
from tests.fakes import make_record
from tests.test_client_wait import Chunks


def test_a_server_down_for_hours_is_retried_every_10s_not_a_crash() -> None:
    """A review: past 1,024 failures in a row (a server down ~3 h) the backoff's power of
    two was too large for a float: OverflowError, and `logcast tail` died with a traceback."""
    attempts = Attempts("web", 0, 1.0)
    delays = [attempts.failed(ConnectionState.DISCONNECTED, "down").retry_in for _ in range(3000)]
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 10.0] and set(delays[4:]) == {10.0}


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 12 ", 12.0),
        ("\xb2", None),  # '²': `isdigit` says yes, `float` refuses it
        ("٣", None),  # an Arabic-Indic three
        ("99999999", RETRY_AFTER_MAX),  # long: the longest wait, not none
        ("-5", None),
        ("1.5", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("", None),
    ],
)
def test_retry_after_is_read_as_ascii_seconds_and_capped(header: str, seconds: float | None) -> None:
    assert _seconds(header) == seconds


def stream_events(
    handler: httpx.MockTransport, url: str = "http://logcast.test", **kw: object
) -> tuple[list[Event], Exception | None]:
    client = Client(url)
    client._http = httpx.Client(base_url=client.url, transport=handler)
    events: list[Event] = []
    try:
        for batch in client.stream_batches("web", **kw):  # type: ignore[arg-type]
            events += batch
            if any(e.type is EventType.REALTIME for e in events):
                break
    except Exception as exc:
        return events, exc
    finally:
        client.close()
    return events, None


def sse(*events: bytes) -> bytes:
    return b"".join(b"data: %s\n\n" % event for event in events)


@pytest.mark.parametrize(
    "refusal",
    [
        httpx.Response(503, headers=[(b"retry-after", b"\xb2")], json={"detail": "busy"}),
        httpx.Response(429, headers={"retry-after": "0"}, text="slow down"),
    ],
    ids=["a hostile Retry-After", "a rate-limiting proxy"],
)
def test_a_refusal_is_waited_out_and_the_stream_goes_on(refusal: httpx.Response) -> None:
    """A review: `Retry-After: ²` raised a ValueError from both clients (a traceback from
    `logcast tail`); a 429 (a proxy's rate limit) ended the stream at once, `tail` exit 1."""
    answers = [
        refusal,
        httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=Chunks([sse(encode.event_json(EventType.REALTIME, make_record(1, "hello")))]),
        ),
    ]
    events, error = stream_events(httpx.MockTransport(lambda request: answers.pop(0)), interval=0.001)
    assert error is None
    assert [e.log.message for e in events if e.log is not None] == ["hello"]
    failed = [e for e in events if e.connection is ConnectionState.DISCONNECTED]
    assert len(failed) == 1 and failed[0].retry_in is not None


def test_credentials_in_the_address_stay_out_of_the_errors() -> None:
    """A review: `…/stream is not an event stream` and `did not answer within` printed
    `http://bob:s3cretpw@…` whole."""
    html = httpx.MockTransport(
        lambda request: httpx.Response(200, text="<html>", headers={"content-type": "text/html"})
    )
    _, error = stream_events(html, url="http://bob:s3cretpw@logcast.test", reconnect=False)
    assert isinstance(error, ClientError) and "not an event stream" in str(error)
    assert "s3cretpw" not in str(error) and "bob" in str(error)

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    async def ask() -> str:
        client = AsyncClient("http://bob:s3cretpw@logcast.test", timeout=0.02)
        client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(slow))
        async with client:
            with pytest.raises(ClientError) as caught:
                await client.processes()
        return str(caught.value)

    message = asyncio.run(ask())
    assert "did not answer within" in message and "s3cretpw" not in message


async def test_waiting_for_a_process_does_not_hang_on_a_server_that_never_answers() -> None:
    """A review: `logcast tail web` against a server that answered a byte at a time sat at
    "connecting" for good: asking whether the process runs had no deadline."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    client = AsyncClient("http://logcast.test", timeout=0.02)
    client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(slow))
    async with client:
        assert await asyncio.wait_for(client._running("web"), 5) is None  # "cannot say now"


def test_a_history_that_went_back_in_numbering_is_said_not_skipped_silently() -> None:
    """A review: after a server restart on a new data directory, a tail resumed at seq 94
    got `historical_complete` at seq 10 and dropped every new line as seen: it printed
    nothing, said nothing. Now a `connected` event says what happened (the lines up to 94
    are still taken for seen: a replica a little behind sends them later, and those are
    the same lines)."""
    body = sse(
        encode.event_json(EventType.HISTORICAL_COMPLETE, 10),
        encode.event_json(EventType.REALTIME, make_record(11, "new 11")),
        encode.event_json(EventType.REALTIME, make_record(95, "new 95")),
    )
    stream = httpx.MockTransport(
        lambda request: httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Chunks([body])
        )
    )
    events, error = stream_events(stream, after=94)
    assert error is None
    said = [e for e in events if e.connection is ConnectionState.CONNECTED and e.reason]
    assert len(said) == 1 and "ends at seq 10, before seq 94" in (said[0].reason or "")
    assert [e.log.message for e in events if e.log is not None] == ["new 95"]


def test_the_cursor_notes_a_server_behind_once() -> None:
    cursor = StreamCursor("web", after=50, lines=None, level=None, q=None, model_route=False)
    complete = json.dumps({"type": "historical_complete", "seq": 40}).encode()
    cursor.accept(complete, "40")
    notice = cursor.behind_notice()
    assert notice is not None and notice.connection is ConnectionState.CONNECTED
    assert cursor.behind_notice() is None
    cursor.accept(json.dumps({"type": "historical_complete", "seq": 60}).encode(), "60")
    assert cursor.behind_notice() is None  # ahead: nothing to say


def test_data_lines_without_their_space_are_bounded_too() -> None:
    """A review: `data:x` lines (no space after the colon) went past `DATA_LINES_MAX`:
    2.1 million of them took 288 MB and 2.4 s per message."""
    decoder = SSEDecoder()
    with pytest.raises(httpx.DecodingError, match="data lines"):
        decoder.feed(b"data:x\n" * (DATA_LINES_MAX + 1) + b"\n")
    assert SSEDecoder().feed(b"data:x\n" * 3 + b"\n") == [(b"x\nx\nx", None)]


def test_an_event_ended_by_cr_is_handed_on_at_once() -> None:
    """A review: a chunk that ended in `\\r` was held in case a `\\n` followed; an event
    ending in `\\r\\r` came a chunk later, up to a ping (15 s) late."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: one\r\r") == [(b"one", None)]
    assert decoder.feed(b"\ndata: two\r\n\r") == [(b"two", None)]  # the \n of a split \r\n: skipped
    assert decoder.feed(b"\ndata: three\r\n\r\n") == [(b"three", None)]


def test_an_empty_chunk_between_a_cr_and_its_lf_changes_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [(b"a\nb", None)]
