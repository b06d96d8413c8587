"""The client's reading of a stream: SSE bytes → messages (`SSEDecoder`), a message → events
(one, or a batch of them), the cursor that drops repeats and says where to resume. The wire
bytes are the server's own encoder's (`logcast.web.encode`)."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logcast.client import sse as sse_module
from logcast.client._common import StreamCursor, error_from_response, log_page
from logcast.client.events import Event, LineRun, parse_event, parse_events
from logcast.client.sse import SSEDecoder
from logcast.errors import ClientError
from logcast.types import EventType, Level, LogRecord, ProcessState, Stream
from logcast.web import encode
from tests.fakes import make_record


def record(seq: int, message: str = "", **kw: object) -> LogRecord:
    return make_record(seq, message, at=1_763_800_000.5, **kw)


def feed_in_pieces(stream: bytes, sizes: list[int]) -> list[tuple[bytes, str | None]]:
    decoder = SSEDecoder()
    got = []
    pos = 0
    for size in sizes:
        got += decoder.feed(stream[pos : pos + size])
        pos += size
    got += decoder.feed(stream[pos:])
    return got


# -- SSE bytes → messages --------------------------------------------------------------------

SAMPLE = (
    b"retry: 1000\n\n"
    b": ping\n\n"
    b'id: 1\ndata: {"a":1}\n\n'
    b"data: no id of its own\n\n"  # keeps the last id
    b"event: ignored\ndata: first\ndata: second\n\n"
    b"id: 7\n\n"  # no data: not dispatched, but the id counts
    b"data:no space\n\n"
    b"data\n\n"  # a field without a colon: an empty value
    b"id: bad\x00id\ndata: nul in the id is ignored\n\n"
    b"\n\n\n"
    b"id: 9\ndata: [1,2]\n\n"
    b"data: never finished"
)
EXPECTED = [
    (b'{"a":1}', "1"),
    (b"no id of its own", "1"),
    (b"first\nsecond", "1"),
    (b"no space", "7"),
    (b"", "7"),
    (b"nul in the id is ignored", "7"),
    (b"[1,2]", "9"),
]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_messages_whatever_the_line_ends(newline: bytes) -> None:
    stream = SAMPLE.replace(b"\n", newline)
    assert feed_in_pieces(stream, []) == EXPECTED
    assert feed_in_pieces(stream, [1] * len(stream)) == EXPECTED  # a byte at a time


@given(
    st.lists(st.integers(min_value=0, max_value=40), max_size=60), st.sampled_from([b"\n", b"\r\n", b"\r"])
)
def test_messages_however_the_bytes_are_cut(sizes: list[int], newline: bytes) -> None:
    assert feed_in_pieces(SAMPLE.replace(b"\n", newline), sizes) == EXPECTED


def test_the_servers_batched_and_single_messages() -> None:
    records = [record(seq) for seq in range(1, 6)]
    jsons = [encode.event_json(EventType.REALTIME, r) for r in records]
    stream = b"".join(encode.batch_messages(jsons[:3], 1)) + b"".join(encode.live_sse(r) for r in records[3:])
    assert feed_in_pieces(stream, [17] * 100) == [
        (b"[" + b",".join(jsons[:3]) + b"]", "3"),
        (jsons[3], "4"),
        (jsons[4], "5"),
    ]


# -- a message → events ----------------------------------------------------------------------


def kinds_of(events: list[Event]) -> list[str]:
    return [e.type.value for e in events]


def test_a_batch_is_read_as_its_events_one_by_one() -> None:
    status = record(4, "web exited with code 1", stream=Stream.SYSTEM, state=ProcessState.CRASHED)
    lines = [
        record(1),
        record(2, 'quotes " and \\ and \u00e9 and \t', level=Level.ERROR, stream=Stream.STDERR),
        record(3, "a piece", partial=True),
    ]
    wire = [
        encode.event_json(EventType.HISTORICAL, lines[0]),
        encode.event_json(EventType.HISTORICAL_COMPLETE, 1),
        encode.event_json(EventType.REALTIME, lines[1]),
        encode.event_json(EventType.REALTIME, lines[2]),
        encode.event_json(EventType.STATUS, status),
        encode.event_json(EventType.GAP, encode.Gap("web", 5, 9, "slow")),
        encode.message_json(EventType.STREAM_END, "web crashed"),
    ]
    data = b"[" + b",".join(wire) + b"]"
    events = parse_events(data, "9", "web")
    # exactly what each event read alone gives (the last one takes the message's id)
    alone = [parse_event(w, "9" if i == len(wire) - 1 else None, "web") for i, w in enumerate(wire)]
    assert events == alone
    assert kinds_of(events) == [
        "historical",
        "historical_complete",
        "realtime",
        "realtime",
        "status",
        "gap",
        "stream_end",
    ]
    assert [e.log for e in events if e.is_line] == lines
    assert events[4].log == status
    assert (events[5].gap_from, events[5].gap_to, events[5].reason) == (5, 9, "slow")
    assert events[6].seq == 9 and events[6].message == "web crashed"
    assert isinstance(events[0].log, LogRecord) and events[0].log.level is Level.INFO


def test_one_event_alone_and_an_empty_message() -> None:
    data = encode.event_json(EventType.REALTIME, record(5))
    assert parse_events(data, "5", "web") == [parse_event(data, "5", "web")]
    assert parse_events(data.decode(), "5", "web") == parse_events(data, "5", "web")
    assert parse_events(b"", "5", "web") == []
    assert parse_events(b"[]", "5", "web") == []


def test_odd_elements_of_a_batch_are_skipped_and_said(caplog: pytest.LogCaptureFixture) -> None:
    good = encode.event_json(EventType.REALTIME, record(1))
    odd = [
        b"42",
        b'{"type":"from the future","log":{}}',
        b'{"type":"realtime","log":{"seq":"x"}}',
        b'{"type":["realtime"]}',
    ]
    with caplog.at_level(logging.DEBUG):
        events = parse_events(b"[" + b",".join([good, *odd, good]) + b"]", "1", "web")
    assert [e.log.seq for e in events if e.log is not None] == [1, 1]
    assert "not a JSON object" in caplog.text and "malformed log record" in caplog.text


def test_a_line_in_an_unusual_shape_takes_the_long_way() -> None:
    # fields missing (a status record may leave some out), a seq as text, an int timestamp
    data = b'[{"type":"realtime","log":{"seq":"7","timestamp":12,"message":"m","process":"web"}}]'
    [event] = parse_events(data, "7", "web")
    assert event.log == LogRecord(7, 12.0, Level.INFO, "m", Stream.STDOUT, "web", 0)
    assert event.seq == 7


@pytest.mark.parametrize("data", [b"[1,", b"not json", b'"a string"'])
def test_messages_that_are_not_events(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"not JSON|not a JSON object"):
        parse_events(data, "1", "web")


def test_a_message_that_never_ends_fails_at_its_bound_and_the_next_one_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sse_module, "MESSAGE_MAX", 1000)
    decoder = SSEDecoder()
    assert decoder.feed(b"data: " + b"x" * 994) == []  # 1,000 bytes held: at the bound
    assert [bytes(d) for d, _ in decoder.feed(b"\n\n")] == [b"x" * 994]  # and whole
    assert decoder.feed(b"data: " + b"x" * 994) == []
    with pytest.raises(httpx.DecodingError, match="over 1,000 bytes"):
        decoder.feed(b"x")
    assert [bytes(d) for d, _ in decoder.feed(b"data: ok\n\n")] == [b"ok"]  # held nothing more
    with pytest.raises(httpx.DecodingError):  # lines without the blank line that ends them
        for _ in range(200):
            decoder.feed(b"data: line\n")


# JSON nested this deep is within orjson's limit (1,024) but past Python's recursion limit
# for `str`, `repr` and `==` of it: a hostile server's way to crash a client that turns
# whatever it is sent into text.
DEEP = "[" * 1000 + "]" * 1000
LOG = '{"seq":5,"timestamp":1.5,"level":"info","message":"m","stream":"stdout","process":"web","run":1}'
DEEP_MESSAGES = {
    "an event's type": f'{{"type":{DEEP},"seq":5}}',
    "a batched event's type": f'[{{"type":{DEEP},"seq":5}}]',
    **{
        f"a record's {key}": '{"type":"realtime","log":'
        + LOG.replace(f'"{key}":', f'"{key}":{DEEP},"x":')
        + "}"
        for key in ("message", "level", "stream", "process", "seq", "timestamp", "run")
    },
    "a status record's state": '{"type":"status","log":{"seq":5,"state":' + DEEP + ',"message":"m"}}',
}


@pytest.mark.parametrize("data", DEEP_MESSAGES.values(), ids=DEEP_MESSAGES.keys())
def test_deeply_nested_json_from_a_server_is_refused_or_skipped_not_a_crash(data: str) -> None:
    try:
        events = parse_events(data.encode(), "5", "web")
    except ValueError:
        return  # refused: the stream logs it and goes on
    assert all(event.log is None or isinstance(event.log.message, str) for event in events)


def test_a_history_page_or_an_error_nested_deep_is_a_clear_error() -> None:
    deep_log = LOG.replace('"message":"m"', '"message":' + DEEP)
    page = orjson.loads('{"logs":[' + deep_log + '],"next":null}')
    with pytest.raises(ClientError, match="unexpected history page"):
        log_page(page)
    body = f'{{"detail":[{{"loc":["query",{DEEP}],"msg":{DEEP}}},{{"loc":["query",{DEEP},"lines"],"msg":"bad"}}]}}'
    response = httpx.Response(422, content=body.encode(), request=httpx.Request("GET", "http://x/"))
    assert str(error_from_response(response)).endswith("lines: bad")


# -- the cursor ------------------------------------------------------------------------------


def batch(*seqs: int) -> bytes:
    return b"[" + b",".join(encode.event_json(EventType.REALTIME, record(s)) for s in seqs) + b"]"


def test_the_cursor_drops_what_it_has_seen_and_resumes_after_it() -> None:
    cursor = StreamCursor("web", after=None, lines=100, level=None, q=None, model_route=False, columns=False)
    params, headers = cursor.request()
    assert params == {"batch": 1, "lines": 100} and headers["Accept"] == "text/event-stream"
    assert "Last-Event-ID" not in headers
    assert [e.seq for e in cursor.accept(batch(1, 2, 3), "3")] == [1, 2, 3]
    assert cursor.last_seq == 3
    assert [e.seq for e in cursor.accept(batch(2, 3, 4, 5), "5")] == [4, 5]  # sent again after a resume
    assert cursor.duplicates == 2
    gap = encode.event_json(EventType.GAP, encode.Gap("web", 6, 10, "slow"))
    assert [e.type for e in cursor.accept(gap, "10")] == [EventType.GAP]
    assert cursor.last_seq == 10
    assert cursor.accept(b"[1,", "11") == []  # logged and dropped, the stream goes on
    assert cursor.accept_all([(batch(11), "11"), (batch(11, 12), "12")]) == [
        e for e in parse_events(batch(11, 12), "12", "web")
    ]
    cursor.connections = 1
    params, headers = cursor.request()
    assert headers["Last-Event-ID"] == "12" and "after" not in params and "lines" not in params
    assert cursor.accept(gap, "10") == []  # told of already: not a second notice after a resume
    wider = encode.event_json(EventType.GAP, encode.Gap("web", 6, 14, "slow"))
    assert [e.gap_to for e in cursor.accept(wider, "14")] == [14] and cursor.last_seq == 14


def test_a_gap_that_ends_before_it_begins_is_refused() -> None:
    backwards = encode.event_json(EventType.GAP, encode.Gap("web", 50, 3, "slow"))
    with pytest.raises(ValueError, match="ends before it begins"):
        parse_events(backwards, "3", "web")
    cursor = StreamCursor("web", after=None, lines=0, level=None, q=None, model_route=False, columns=False)
    assert cursor.accept(backwards, "3") == []  # logged and skipped: no "-46 lines missed"


def test_the_native_route_is_asked_for_columns_until_a_server_refuses_them() -> None:
    cursor = StreamCursor("web", after=None, lines=5, level=None, q=None, model_route=False)
    assert cursor.request()[0] == {"batch": "columns", "lines": 5}
    refusal = httpx.Response(
        422,
        json={"detail": [{"loc": ["query", "batch"], "msg": "Input should be '0' or '1'"}]},
    )
    assert cursor.refused_columns(refusal)
    assert cursor.request()[0] == {"batch": 1, "lines": 5}
    assert not cursor.refused_columns(refusal)  # asked once: a second 422 is an error
    other = StreamCursor("web", after=None, lines=5, level=None, q=None, model_route=False)
    assert not other.refused_columns(httpx.Response(422, json={"detail": "Last-Event-ID must be a number"}))
    assert other.columns


def test_a_run_of_lines_is_read_as_its_events_or_as_one_run() -> None:
    records = [record(s) for s in range(1, 6)]
    (message,) = encode.column_messages([(EventType.REALTIME, r) for r in records])
    data = message.split(b"data: ", 1)[1].rstrip(b"\n")
    events = StreamCursor("web", after=None, lines=None, level=None, q=None, model_route=False)
    assert [e.log for e in events.events_of([(data, "5")])] == records
    runs = StreamCursor("web", after=2, lines=None, level=None, q=None, model_route=False)
    (run,) = runs.items_of([(data, "5")])
    assert isinstance(run, LineRun) and run.seqs == [3, 4, 5] and runs.duplicates == 2
    assert runs.last_seq == 5 and runs.items_of([(data, "5")]) == []


def test_the_llm_managers_route_is_asked_for_single_events() -> None:
    cursor = StreamCursor("qwen", after=4, lines=None, level="error", q=None, model_route=True)
    params, _ = cursor.request()
    assert params == {"level": "error", "after": 4}
    assert cursor.path == "/api/models/qwen/logs/stream"


def test_one_event_messages_of_a_read_are_taken_together_as_each_alone() -> None:
    status = record(3, "exited", stream=Stream.SYSTEM, state=ProcessState.EXITED)
    reads = [
        [encode.live_sse(record(s)) for s in (1, 2)],  # lines only: parsed as one batch
        [encode.live_sse(record(2)), encode.live_sse(status)],  # a repeat, a status
        [encode.live_sse(record(5)), b'id: 6\ndata: {"type":"stream_end","message":"bye"}\n\n'],
        [encode.live_sse(record(7)), b"id: 8\ndata: {not json\n\n", encode.live_sse(record(9))],
    ]
    together = StreamCursor("web", after=None, lines=None, level=None, q=None, model_route=True)
    alone = StreamCursor("web", after=None, lines=None, level=None, q=None, model_route=True)
    for read in reads:
        messages = SSEDecoder().feed(b"".join(read))
        expected = [e for data, ident in messages for e in alone.accept(data, ident)]
        assert together.accept_all(messages) == expected
        assert together.last_seq == alone.last_seq
    assert [e.seq for e in expected] == [7, 9]
    assert together.duplicates == alone.duplicates == 1
