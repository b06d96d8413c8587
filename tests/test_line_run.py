"""`batch=columns`: runs of lines a list per field. The server's encoder
(`column_messages`), the client's reading of it (`line_run`, `parse_items`, `LineRun`,
`StreamCursor.accept_items`), the fallback to `batch=1` on a server that refuses it, and
`logcast tail`'s printer, which must print a run exactly as the events it stands for.

The wire bytes are always the server's own encoder's; what they are checked against is
the `batch=1` encoding of the same entries (`event_json` + `batch_messages`)."""

from __future__ import annotations

import io
import itertools
import logging
import re
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logcast.cli import render
from logcast.cli.tail import Printer
from logcast.client import AsyncClient
from logcast.client import sse as sse_module
from logcast.client._common import StreamCursor
from logcast.client.events import ConnectionState, Event, LineRun, line_run, parse_events, parse_items
from logcast.client.sse import SSEDecoder
from logcast.query import Regex, compile_regex, shown
from logcast.types import Entry, EventType, Gap, GapReason, Level, LogRecord, ProcessState, Stream
from logcast.web import encode as encode_module
from logcast.web.encode import (
    BATCH_BYTES,
    BATCH_EVENTS,
    batch_messages,
    column_messages,
    entry_id,
    event_json,
)
from tests.fakes import make_record

T = 1_763_800_000.25
Item = Event | LineRun


def record(seq: int, message: str = "", **kw: Any) -> LogRecord:
    return make_record(seq, message, at=T, **kw)


def status(seq: int, message: str, state: ProcessState, run: int = 1) -> LogRecord:
    return LogRecord(seq, T + seq, Level.INFO, message, Stream.SYSTEM, "web", run, state=state)


def lines(kind: EventType, *records: LogRecord) -> list[Entry]:
    return [(kind, r) for r in records]


def messages(wire: list[bytes]) -> list[tuple[bytes, str | None]]:
    """SSE messages → (data, id), read by the client's decoder."""
    return [(bytes(data), ident) for data, ident in SSEDecoder().feed(b"".join(wire))]


def element(*records: LogRecord, kind: EventType = EventType.REALTIME) -> dict[str, Any]:
    """The one element the server sends for `records` (lines of one process and run)."""
    [(data, _)] = messages(list(column_messages(lines(kind, *records))))
    [obj] = orjson.loads(data)
    assert isinstance(obj, dict)
    return obj


def items_of(wire: list[bytes]) -> list[Item]:
    return [item for data, ident in messages(wire) for item in parse_items(data, ident, "web")]


def expanded(items: list[Item]) -> list[Event]:
    return [e for item in items for e in (item.events() if isinstance(item, LineRun) else [item])]


def batch_one(entries: list[Entry]) -> list[Event]:
    """The events a `batch=1` stream of `entries` gives."""
    wire = list(batch_messages([event_json(k, p) for k, p in entries], [entry_id(p) for _, p in entries]))
    return [e for data, ident in messages(wire) for e in parse_events(data, ident, "web")]


def ends_on(item: Item) -> int | None:
    return item.last_seq if isinstance(item, LineRun) else item.seq


# -- line_run: the element's shape -----------------------------------------------------------


def test_the_servers_element_is_read_as_its_records() -> None:
    records = [
        record(7, 'é 中文 "quoted" \\ \t\x1b[31mred\x1b[0m', level=Level.ERROR, stream=Stream.STDERR),
        record(9, "a piece of a line", partial=True),
        record(10, "", level=Level.WARNING),
    ]
    obj = element(*records)
    assert obj["type"] == "realtime" and obj["lines"]["partial"] == [False, True, False]
    run = line_run(obj)
    assert (run.type, run.process, run.run, len(run), run.last_seq) == (EventType.REALTIME, "web", 1, 3, 10)
    assert run.records() == records
    assert run.levels == [Level.ERROR, Level.INFO, Level.WARNING] and run.streams[0] is Stream.STDERR
    assert run.events() == [Event(EventType.REALTIME, "web", r, r.seq) for r in records]


def test_no_partial_column_without_a_partial_line_and_whole_timestamps_read_as_floats() -> None:
    obj = element(record(1), record(2), kind=EventType.HISTORICAL)
    assert "partial" not in obj["lines"]
    run = line_run(obj)
    assert run.type is EventType.HISTORICAL and run.partial is None
    obj["lines"]["timestamp"] = [5, 6]
    obj["lines"]["partial"] = [False, False]  # said, but none is partial
    run = line_run(obj)
    assert run.timestamps == [5.0, 6.0] and all(type(t) is float for t in run.timestamps)
    assert run.partial is None


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        obj["lines"][key] = value

    return change


def _top(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        obj[key] = value

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        del obj["lines"][key]

    return change


BAD_SHAPES: dict[str, Callable[[dict[str, Any]], None]] = {
    "a status kind": _top("type", "status"),
    "no kind": _top("type", None),
    "lines not an object": _top("lines", [[1, 2, 3]]),
    "process not text": _set("process", 1),
    "no process": _drop("process"),
    "run as text": _set("run", "1"),
    "run a bool": _set("run", True),
    "seq not a list": _set("seq", {"0": 1}),
    "message a string": _set("message", "abc"),
    "no level column": _drop("level"),
    "a column shorter": _set("message", ["a", "b"]),
    "a column longer": _set("timestamp", [1.0, 2.0, 3.0, 4.0]),
    "partial shorter": _set("partial", [True]),
    "empty": lambda obj: obj["lines"].update(
        seq=[], timestamp=[], level=[], stream=[], message=[], partial=[]
    ),
    "a seq as text": _set("seq", [1, "2", 3]),
    "a seq as float": _set("seq", [1, 2.0, 3]),
    "a seq a bool": _set("seq", [True, 2, 3]),
    "seqs repeated": _set("seq", [1, 2, 2]),
    "seqs going back": _set("seq", [3, 2, 1]),
    "a timestamp as text": _set("timestamp", [1.0, "2", 3.0]),
    "a timestamp null": _set("timestamp", [1.0, None, 3.0]),
    "a timestamp a bool": _set("timestamp", [1.0, True, 3.0]),
    "a message null": _set("message", ["a", None, "c"]),
    "a message a number": _set("message", ["a", 2, "c"]),
    "a partial flag 0/1": _set("partial", [0, 1, 0]),
    "a partial flag null": _set("partial", [False, None, True]),
    "a partial flag text": _set("partial", ["true", False, False]),
    "an unknown level": _set("level", ["info", "fatal", "info"]),
    "a level not text": _set("level", ["info", ["error"], "info"]),
    "a level in capitals": _set("level", ["info", "ERROR", "info"]),
    "logcast's system stream": _set("stream", ["stdout", "system", "stdout"]),
    "an unknown stream": _set("stream", ["stdout", "stdin", "stdout"]),
    # one name for the whole run is looked up once: as strict as a lookup per line
    "every level unknown": _set("level", ["fatal"] * 3),
    "every level a list": _set("level", [["error"]] * 3),
    "every level a number": _set("level", [1] * 3),
    "every level a bool": _set("level", [True] * 3),
    "every stream logcast's": _set("stream", ["system"] * 3),
    "every stream null": _set("stream", [None] * 3),
}


@pytest.mark.parametrize("column", ["level", "stream"])
def test_a_column_of_deeply_nested_lists_is_refused_not_a_crash(column: str) -> None:
    """Equal lists nested 1,000 deep, each its own object (as a server's JSON makes them):
    comparing them would recurse past Python's limit."""
    obj = element(record(1), record(2), record(3))
    deep = "[" * 1000 + "]" * 1000
    obj["lines"][column] = orjson.loads(f"[{deep},{deep},{deep}]")
    with pytest.raises(ValueError, match="run"):
        line_run(obj)


@pytest.mark.parametrize("change", BAD_SHAPES.values(), ids=BAD_SHAPES.keys())
def test_a_malformed_run_is_refused(change: Callable[[dict[str, Any]], None]) -> None:
    obj = element(record(1), record(2, partial=True), record(3))
    line_run(orjson.loads(orjson.dumps(obj)))  # the unchanged element is fine
    change(obj)
    with pytest.raises(ValueError, match="run"):
        line_run(obj)


def test_a_malformed_run_is_skipped_and_said_and_the_rest_kept_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = status(1, "started pid 7 (run 1)", ProcessState.RUNNING)
    bad = element(record(2), record(3))
    bad["lines"]["seq"] = [3, 2]
    good = element(record(4), record(5))
    wire = [
        event_json(EventType.HISTORICAL, started),
        orjson.dumps(bad),
        event_json(EventType.HISTORICAL_COMPLETE, 3),
        orjson.dumps(good),
        event_json(EventType.GAP, Gap("web", 6, 9, GapReason.LOST)),
    ]
    data = b"[" + b",".join(wire) + b"]"
    with caplog.at_level(logging.WARNING):
        items = parse_items(data, "9", "web")
    assert [type(i).__name__ for i in items] == ["Event", "Event", "LineRun", "Event"]
    first, complete, run, gap = items
    assert isinstance(first, Event) and first.log == started
    assert isinstance(complete, Event) and (complete.type, complete.seq) == (EventType.HISTORICAL_COMPLETE, 3)
    assert isinstance(run, LineRun) and run.records() == [record(4), record(5)]
    assert isinstance(gap, Event) and (gap.gap_from, gap.gap_to, gap.seq) == (6, 9, 9)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "web: skipping a run of lines" in caplog.text and "growing" in caplog.text
    # the events reader skips it alike, and expands the good run
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert parse_events(data, "9", "web") == [first, complete, *run.events(), gap]
    assert "skipping a run of lines" in caplog.text


# -- the encoder against batch=1, on random streams ------------------------------------------

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12) | st.sampled_from(
    ["", "中文日志 ✓", "\x1b[31mred\x1b[0m", 'q"uo\\te', "tab\there", "  spaced  "]
)
LINE = st.tuples(
    st.sampled_from(list(Level)),
    st.sampled_from([Stream.STDOUT, Stream.STDERR]),
    TEXT,
    st.booleans(),
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
PART = st.lists(st.sampled_from(["lines", "lines", "status", "gap"]), max_size=8)


@st.composite
def streams(draw: st.DrawFn) -> list[Entry]:
    """A stream's entries: history (lines in blocks of one process and run, status records,
    gaps), `historical_complete`, then live entries; seqs growing, with holes (a filter)."""
    seq = draw(st.integers(0, 2**53))
    entries: list[Entry] = []
    for live in (False, True):
        for part in draw(PART):
            if part == "lines":
                process = draw(st.sampled_from(["web", "api"]))
                run = draw(st.integers(1, 3))
                for level, stream, text, partial, ts in draw(st.lists(LINE, min_size=1, max_size=8)):
                    seq += draw(st.integers(1, 3))
                    kind = EventType.REALTIME if live else EventType.HISTORICAL
                    entries.append((kind, LogRecord(seq, ts, level, text, stream, process, run, partial)))
            elif part == "status":
                seq += 1
                kind = EventType.STATUS if live else EventType.HISTORICAL
                text = draw(TEXT)
                entries.append((kind, status(seq, text, draw(st.sampled_from(list(ProcessState))), run=2)))
            else:
                count = draw(st.integers(1, 50))
                reason = draw(st.sampled_from(list(GapReason)))
                entries.append((EventType.GAP, Gap("web", seq + 1, seq + count, reason)))
                seq += count
        if not live:
            entries.append((EventType.HISTORICAL_COMPLETE, seq))
    return entries


@settings(max_examples=300, deadline=None)
@given(streams())
def test_columns_carry_exactly_the_events_of_batch_one(entries: list[Entry]) -> None:
    wire = list(column_messages(entries))
    items = items_of(wire)
    assert expanded(items) == batch_one(entries)
    # parse_events reads the same messages as those events too
    assert [e for data, ident in messages(wire) for e in parse_events(data, ident, "web")] == batch_one(
        entries
    )
    # each message's id is where its last element ends
    for data, ident in messages(wire):
        assert ident == str(ends_on(parse_items(data, ident, "web")[-1]))
    # a run of lines of one kind, process and run is one element, never two side by side
    runs = [i for i in items if isinstance(i, LineRun)]
    for a, b in itertools.pairwise(items):
        if isinstance(a, LineRun) and isinstance(b, LineRun):
            assert (a.type, a.process, a.run) != (b.type, b.process, b.run)
    assert all(r.partial is None or True in r.partial for r in runs)
    assert all(Stream.SYSTEM not in r.streams for r in runs)


def test_a_run_is_cut_at_4096_lines_each_message_ids_its_last() -> None:
    records = [record(seq, f"n {seq}") for seq in range(1, 10_001)]
    wire = list(column_messages(lines(EventType.REALTIME, *records)))
    items = items_of(wire)
    runs = [i for i in items if isinstance(i, LineRun)]
    assert len(runs) == len(items) == 3 and [len(r) for r in runs] == [BATCH_EVENTS, BATCH_EVENTS, 1808]
    assert [r for run in runs for r in run.records()] == records
    assert [ident for _, ident in messages(wire)] == ["10000"]  # short lines: one message holds all three


@pytest.mark.parametrize(
    "text",
    ["x", "中", "\x1b"],
    ids=["ascii", "cjk", "escaped"],
)
def test_a_message_of_long_lines_stays_within_about_a_mebibyte(text: str) -> None:
    width = 65_536 // len(text.encode())  # the longest record the framer makes
    records = [record(seq, f"{seq:05d} " + text * width) for seq in range(1, 201)]
    wire = list(column_messages(lines(EventType.HISTORICAL, *records)))
    assert len(wire) >= 3
    for message in wire:
        count = sum(len(i) for i in items_of([message]) if isinstance(i, LineRun))
        assert len(message) <= BATCH_BYTES + 128 * count, (len(message), count)
    assert [r for run in items_of(wire) if isinstance(run, LineRun) for r in run.records()] == records


@pytest.mark.parametrize("text", ["\x1b" * 65_536, "中" * 21_845, "x" * 250], ids=["escaped", "cjk", "ascii"])
def test_a_run_is_encoded_about_once(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines whose JSON is longer than their text (escapes, multi-byte characters) are not
    encoded again and again to fit the message bound: about once in all."""
    encoded: list[int] = []
    run_json = encode_module._run_json

    def counting(kind: EventType, columns: encode_module.Columns, start: int, end: int) -> bytes:
        out = run_json(kind, columns, start, end)
        encoded.append(len(out))
        return out

    monkeypatch.setattr(encode_module, "_run_json", counting)
    records = [record(seq, text) for seq in range(1, 301)]
    sent = sum(map(len, column_messages(lines(EventType.REALTIME, *records))))
    assert sum(encoded) <= 1.25 * sent, (sum(encoded), sent)


def test_a_line_longer_than_a_message_goes_alone() -> None:
    records = [record(1, "a" * (BATCH_BYTES + 10)), record(2, "b" * (BATCH_BYTES + 10)), record(3, "c")]
    wire = list(column_messages(lines(EventType.REALTIME, *records)))
    runs = items_of(wire)
    assert [len(r) for r in runs if isinstance(r, LineRun)] == [1, 1, 1] and len(wire) == 3
    assert [r for run in runs if isinstance(run, LineRun) for r in run.records()] == records


# -- LineRun: after, select, records, events -------------------------------------------------


def a_run() -> LineRun:
    return line_run(
        element(
            record(3, "a"), record(5, "b", partial=True), record(6, "c"), record(9, "d", level=Level.ERROR)
        )
    )


def test_after_keeps_the_lines_past_a_seq() -> None:
    run = a_run()
    assert run.after(0) is run and run.after(2) is run
    assert [r.seq for r in run.after(3).records()] == [5, 6, 9]  # type: ignore[union-attr]
    assert [r.seq for r in run.after(4).records()] == [5, 6, 9]  # type: ignore[union-attr]
    later = run.after(5)
    assert later is not None and later.records() == run.records()[2:]
    assert (later.type, later.process, later.run, later.last_seq) == (run.type, run.process, run.run, 9)
    assert run.after(9) is None and run.after(100) is None


def test_select_keeps_what_is_marked_in_every_column() -> None:
    run = a_run()
    assert run.select([True] * 4) is run and run.select([False] * 4) is None
    kept = run.select([False, True, False, True])
    assert kept is not None and kept.records() == [run.records()[1], run.records()[3]]
    assert kept.partial == [True, False] and kept.levels == [Level.INFO, Level.ERROR]
    assert kept.events() == [run.events()[1], run.events()[3]]


def test_a_selection_without_a_partial_line_has_no_partial_column() -> None:
    run = a_run()
    kept = run.select([True, False, True, True])
    assert kept is not None and kept.partial is None
    assert kept == line_run(element(record(3, "a"), record(6, "c"), record(9, "d", level=Level.ERROR)))


def test_records_and_events_are_what_batch_one_gives() -> None:
    records = [record(1, "x"), record(2, "y", partial=True, stream=Stream.STDERR)]
    run = line_run(element(*records, kind=EventType.HISTORICAL))
    assert run.events() == batch_one(lines(EventType.HISTORICAL, *records))
    assert all(type(e.log) is LogRecord and e.log.state is None for e in run.events())


# -- the cursor: resuming, duplicates, refusal -----------------------------------------------


def cursor(**kw: Any) -> StreamCursor:
    options: dict[str, Any] = {"after": None, "lines": 100, "level": None, "q": None, "model_route": False}
    options.update(kw)
    return StreamCursor("web", columns=True, **options)


def wire_of(entries: list[Entry]) -> list[tuple[bytes | memoryview, str | None]]:
    return list(SSEDecoder().feed(b"".join(column_messages(entries))))


def test_the_cursor_asks_for_columns_and_cuts_what_it_has_seen() -> None:
    c = cursor()
    params, headers = c.request()
    assert params == {"batch": "columns", "lines": 100} and "Last-Event-ID" not in headers
    first = c.accept_items(wire_of(lines(EventType.HISTORICAL, *(record(s) for s in range(1, 6)))))
    assert [type(i) for i in first] == [LineRun] and c.last_seq == 5 and c.duplicates == 0
    # after a reconnect the server sends 3..5 again: cut off the run, counted
    again = [
        *lines(EventType.REALTIME, *(record(s) for s in range(3, 9))),
        (EventType.STATUS, status(9, "exited", ProcessState.EXITED)),
        *lines(EventType.REALTIME, *(record(s, run=2) for s in range(10, 13))),
    ]
    items = c.accept_items(wire_of(again))
    assert [type(i) for i in items] == [LineRun, Event, LineRun]
    assert [e.seq for e in expanded(items)] == [6, 7, 8, 9, 10, 11, 12]
    assert isinstance(items[1], Event) and items[1].type is EventType.STATUS
    assert c.duplicates == 3 and c.last_seq == 12
    # all seen already: a run wholly dropped, a status dropped, the new line kept
    items = c.accept_items(wire_of([*again[-4:], *lines(EventType.REALTIME, record(13, run=2))]))
    assert [e.seq for e in expanded(items)] == [13] and c.duplicates == 3 + 4
    c.connections = 1
    params, headers = c.request()
    assert params == {"batch": "columns"} and headers["Last-Event-ID"] == "13"


def test_the_cursor_keeps_going_after_a_message_that_is_not_json() -> None:
    c = cursor()
    items = c.accept_items([(b"[1,", "1"), *wire_of(lines(EventType.REALTIME, record(2)))])
    assert [e.seq for e in expanded(items)] == [2] and c.last_seq == 2


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.data())
def test_a_reconnect_that_sends_lines_again_repeats_none(entries: list[Entry], data: st.DataObject) -> None:
    """The first connection reads entries[:cut], the second is sent entries[start:] with
    start <= cut (what a server may send again): every record arrives once, in order."""
    cut = data.draw(st.integers(0, len(entries)))
    start = data.draw(st.integers(0, cut))
    c = cursor()
    items = c.accept_items(wire_of(entries[:cut])) + c.accept_items(wire_of(entries[start:]))
    got = [e.log for e in expanded(items) if e.log is not None]
    assert got == [p for _, p in entries if isinstance(p, LogRecord)]
    records = [p for _, p in entries[start:cut] if isinstance(p, LogRecord)]
    assert c.duplicates == len(records)


OLD_SERVER_422 = {
    "detail": [{"loc": ["query", "batch"], "msg": "Input should be '0' or '1'", "type": "literal_error"}]
}


@pytest.mark.parametrize(
    ("code", "body", "refused"),
    [
        (422, OLD_SERVER_422, True),
        (422, {"detail": "batch must be 0 or 1"}, False),  # not FastAPI's word on the parameter
        (
            422,
            {"detail": [{"loc": ["query", "level"], "msg": "unknown level", "type": "value_error"}]},
            False,
        ),
        (  # a level that happens to be called "batch": not a refusal of columns
            422,
            {"detail": [{"loc": ["query", "level"], "msg": "unknown level 'batch'", "type": "value_error"}]},
            False,
        ),
        (422, {"detail": "after must be a whole number"}, False),
        (400, OLD_SERVER_422, False),
        (404, {"detail": "no process batch"}, False),
    ],
)
def test_columns_are_given_up_only_on_a_422_about_batch(code: int, body: Any, refused: bool) -> None:
    c = cursor()
    assert c.refused_columns(httpx.Response(code, json=body)) is refused
    params, _ = c.request()
    assert params["batch"] == (1 if refused else "columns")
    assert c.refused_columns(httpx.Response(code, json=body)) is False  # said once


def test_the_llm_managers_route_never_asks_for_columns() -> None:
    c = cursor(model_route=True)
    params, _ = c.request()
    assert "batch" not in params
    assert c.refused_columns(httpx.Response(422, json=OLD_SERVER_422)) is False


# -- AsyncClient.stream_runs -----------------------------------------------------------------


def sse(wire: list[bytes]) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=b"retry: 1000\n\n" + b"".join(wire)
    )


HISTORY = [
    (EventType.HISTORICAL, status(1, "started pid 7 (run 1)", ProcessState.RUNNING)),
    *lines(EventType.HISTORICAL, *(record(s) for s in range(2, 3002))),
    (EventType.HISTORICAL_COMPLETE, 3001),
    *lines(EventType.REALTIME, *(record(s, f"live {s}") for s in range(3002, 3010))),
]


async def follow(
    handler: Callable[[httpx.Request], httpx.Response], until: int, **kw: Any
) -> list[list[Item]]:
    """`stream_runs` of "web" through `handler`, until the line `until` arrived (or it ends)."""
    client = AsyncClient("http://logcast.test", "t")
    await client._http.aclose()
    client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(handler))
    got: list[list[Item]] = []
    async with client:
        runs = client.stream_runs("web", **kw)
        async for batch in runs:
            got.append(batch)
            if any(e.seq == until for e in expanded(batch) if e.log is not None):
                break
        await runs.aclose()
    return got


async def test_a_stream_whose_message_never_ends_is_dropped_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that never ends its message (a broken proxy, a hostile server) costs the
    client at most `MESSAGE_MAX` bytes: the stream is dropped, with the reason."""
    monkeypatch.setattr(sse_module, "MESSAGE_MAX", 4096)

    def endless(request: httpx.Request) -> httpx.Response:
        return sse([b"data: " + b"x" * 10_000])

    got = await follow(endless, -1, reconnect=False)
    states = [e for e in expanded([i for batch in got for i in batch]) if e.type == "connection"]
    assert [e.connection for e in states] == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.DISCONNECTED,
    ]
    assert "event stream message of over 4,096 bytes" in (states[-1].reason or "")


async def test_a_server_before_columns_is_asked_again_for_events() -> None:
    requests: list[httpx.Request] = []

    def old_server(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.params.get("batch") == "columns":
            return httpx.Response(422, json=OLD_SERVER_422)
        return sse(
            list(batch_messages([event_json(k, p) for k, p in HISTORY], [entry_id(p) for _, p in HISTORY]))
        )

    got = await follow(old_server, 3009, lines=5000, reconnect=False)
    items = [i for batch in got for i in batch]
    assert not any(isinstance(i, LineRun) for i in items)
    events = [e for e in expanded(items) if e.log is not None]
    assert [e.seq for e in events] == list(range(1, 3010))
    assert [e.log.message for e in events[-8:] if e.log] == [f"live {s}" for s in range(3002, 3010)]
    assert [r.url.params.get("batch") for r in requests] == ["columns", "1"]
    assert [r.url.params.get("lines") for r in requests] == ["5000", "5000"]
    assert [r.url.path for r in requests] == ["/api/processes/web/logs/stream"] * 2


async def test_runs_across_a_reconnect_arrive_once() -> None:
    requests: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:
            return sse(list(column_messages(HISTORY[:2000])))
        # resumed from Last-Event-ID, but starting a little before it
        resumed = int(request.headers["Last-Event-ID"])
        return sse(list(column_messages([e for e in HISTORY if entry_id(e[1]) > resumed - 40])))

    got = await follow(server, 3009, reconnect=True, interval=0.0)
    items = [i for batch in got for i in batch]
    assert any(isinstance(i, LineRun) and len(i) > 1000 for i in items)
    assert [e.seq for e in expanded(items) if e.log is not None] == list(range(1, 3010))
    assert [r.url.params.get("batch") for r in requests] == ["columns", "columns"]
    assert requests[1].headers["Last-Event-ID"] == "2000"


# -- the tail printer: a run prints as its events --------------------------------------------

WORDS = st.sampled_from(
    ["ok", "ERROR bad", "", "中文", "\x1b[31mred\x1b[0m", "tab\tx", "bad\x07bell", "warn"]
)


@st.composite
def printed_batches(draw: st.DrawFn) -> list[list[Item]]:
    """Batches as `stream_runs` yields them: runs of history until `historical_complete`,
    then live ones, of two processes, across restarts; statuses and gaps between them."""
    seq = 0
    run_no = 1
    kind = EventType.HISTORICAL
    batches: list[list[Item]] = []
    for _ in range(draw(st.integers(1, 4))):
        batch: list[Item] = []
        for _ in range(draw(st.integers(1, 5))):
            what = draw(st.sampled_from(["run", "run", "run", "run", "status", "gap", "complete", "restart"]))
            if what == "restart":
                run_no += 1
            elif what == "status":
                seq += 1
                batch.append(Event(EventType.STATUS, "web", status(seq, "exited", ProcessState.CRASHED), seq))
            elif what == "gap":
                batch.append(
                    Event(EventType.GAP, "web", seq=seq + 3, gap_from=seq + 1, gap_to=seq + 3, reason="slow")
                )
                seq += 3
            elif what == "complete":
                batch.append(Event(EventType.HISTORICAL_COMPLETE, "web", seq=seq))
                kind = EventType.REALTIME
            else:
                process = draw(st.sampled_from(["web", "web", "web", "api"]))
                records = []
                for text, level, partial in draw(
                    st.lists(
                        st.tuples(WORDS, st.sampled_from(list(Level)), st.booleans()), min_size=1, max_size=6
                    )
                ):
                    seq += 1
                    records.append(
                        LogRecord(seq, T + seq, level, text, Stream.STDERR, process, run_no, partial)
                    )
                batch.append(line_run(element(*records, kind=kind)))
        batches.append(batch)
    return batches


MODES: dict[str, dict[str, Any]] = {
    "marked": {},
    "bare": {"bare": True},
    "grep": {"grep": compile_regex("bad|中")},
    "bare grep": {"bare": True, "grep": compile_regex("ERR")},
    "color": {"color": True},
    "raw": {"raw": True},
    "json": {"json": True},
    "two processes": {"names": ["web", "api"]},
    "two processes bare": {"names": ["web", "api"], "bare": True},
}


def printer(names: list[str] | None = None, **kw: Any) -> tuple[Printer, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Printer(names or ["web"], out, err, **kw), out, err


CLOCK = re.compile(r"\d\d:\d\d:\d\d\.\d{3}")


def bare_text(events: list[Event], grep: Regex | None) -> str:
    """What `--bare` prints of `events`: each line as written, a partial one left open
    until the next line of its run (another run's line closes it first; so does the next
    line of its run when `--grep` leaves it out)."""
    out = ""
    open_run: tuple[str, int] | None = None
    for e in events:
        if not e.is_line or e.log is None:
            continue
        log = e.log
        if grep is not None and not grep.search(shown(log.message)):
            if open_run == (log.process, log.run):
                out += "\n"
                open_run = None
            continue
        if open_run is not None and open_run != (log.process, log.run):
            out += "\n"
        out += render.safe_texts([log.message], raw=False, color=False)[0] + ("" if log.partial else "\n")
        open_run = (log.process, log.run) if log.partial else None
    return out


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
@settings(max_examples=80, deadline=None)
@given(batches=printed_batches())
def test_a_run_prints_exactly_as_its_events(mode: dict[str, Any], batches: list[list[Item]]) -> None:
    runs, runs_out, runs_err = printer(**mode)
    events, events_out, events_err = printer(**mode)
    for batch in batches:
        runs.events(batch)
        events.events(expanded(batch))
    assert runs_out.getvalue() == events_out.getvalue()
    assert runs_err.getvalue() == events_err.getvalue()
    # and what both print is right, by an account of their own
    every = [e for batch in batches for e in expanded(batch)]
    grep: Regex | None = mode.get("grep")
    kept = [e for e in every if e.is_line and e.log and (grep is None or grep.search(shown(e.log.message)))]
    others = [e for e in every if not e.is_line]
    out = runs_out.getvalue()
    if mode.get("bare"):
        assert out == bare_text(every, grep)
        assert runs_err.getvalue().count("\n") == sum(
            e.type is not EventType.HISTORICAL_COMPLETE for e in others
        )
    elif mode.get("json"):
        assert [orjson.loads(x)["log"]["seq"] for x in out.splitlines() if '"log"' in x] == [
            e.seq for e in every if e.log
        ]
    else:  # a line of output per line kept, with its time, and per status or gap
        assert out.count("\n") == len(kept) + sum(e.type is not EventType.HISTORICAL_COMPLETE for e in others)
        assert CLOCK.findall(out) == [render.clock(T + e.seq) for e in kept if e.seq is not None]


def test_bare_a_restart_in_one_batch_closes_the_open_line() -> None:
    batch: list[Item] = [
        line_run(element(record(1, "a"), record(2, "half", partial=True))),
        line_run(element(record(3, "new run", run=2))),
    ]
    for items in (batch, expanded(batch)):
        p, out, _ = printer(bare=True)
        p.events(items)
        assert out.getvalue() == "a\nhalf\nnew run\n"


def test_grep_keeps_the_matching_lines_of_a_run() -> None:
    p, out, _ = printer(grep=compile_regex("b[ao]d"))
    run = line_run(element(record(1, "good"), record(2, "bad one"), record(3, "BOD"), record(4, "fine")))
    show(p, run)
    assert out.getvalue().splitlines() == [
        f"[live] {render.clock(T + 2)} INFO     bad one",
        f"[live] {render.clock(T + 3)} INFO     BOD",
    ]
    show(p, line_run(element(record(5, "nothing here"))))
    assert out.getvalue().count("\n") == 2


def show(p: Printer, *items: Item) -> None:
    p.events(list(items))


def test_marked_run_lines_with_time_and_level() -> None:
    p, out, _ = printer()
    history = line_run(
        element(record(1, "one"), record(2, "two", level=Level.WARNING), kind=EventType.HISTORICAL)
    )
    live = line_run(element(record(4, "three", level=Level.ERROR), record(5, "part", partial=True)))
    show(p, history, Event(EventType.HISTORICAL_COMPLETE, "web", seq=2), live)
    assert out.getvalue().splitlines() == [
        f"[history] {render.clock(T + 1)} INFO     one",
        f"[history] {render.clock(T + 2)} WARNING  two",
        f"[live] {render.clock(T + 4)} ERROR    three",
        f"[live] {render.clock(T + 5)} INFO     part",
    ]


def test_a_live_run_marks_what_follows_live() -> None:
    p, out, _ = printer()
    show(
        p,
        line_run(element(record(1, "up"))),
        Event(EventType.STATUS, "web", status(2, "exited", ProcessState.EXITED), 2),
    )
    assert out.getvalue().splitlines() == [
        f"[live] {render.clock(T + 1)} INFO     up",
        "[live] [logcast] web: exited",
    ]


def test_bare_a_partial_line_stays_open_until_its_rest() -> None:
    p, out, err = printer(bare=True)
    show(p, line_run(element(record(1, "loading"), record(2, "… ", partial=True))))
    assert out.getvalue() == "loading\n… "
    show(p, line_run(element(record(3, "done"))))  # the rest of the line, in the next batch
    assert out.getvalue() == "loading\n… done\n"
    show(p, line_run(element(record(4, "xxx", partial=True), record(5, "yyy", partial=True))))
    show(p, line_run(element(record(6, "new run", run=2))))  # a restart ended the open line
    assert out.getvalue() == "loading\n… done\nxxxyyy\nnew run\n"
    show(p, line_run(element(record(7, "z", partial=True, run=2))))
    show(p, Event(EventType.STATUS, "web", status(8, "exited", ProcessState.EXITED, run=2), 8))
    show(p, line_run(element(record(9, "-end", run=2))))  # its own status on stderr only
    assert out.getvalue().endswith("new run\nz-end\n")
    assert err.getvalue() == "[logcast] web: exited\n"
