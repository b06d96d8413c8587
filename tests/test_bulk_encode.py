"""Many records encoded at once (`encode.Bulk`) are the same bytes, record for record, as
each encoded alone: for every live wire format and the `log` object, whatever the fields
hold (status records, partial lines, escapes, odd floats, several processes and runs in
one list), and a list orjson refuses fails as the one-by-one encoding fails."""

from __future__ import annotations

import math
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcast.types import MAX_SEQ, Level, LogRecord, ProcessState, Stream
from logcast.web import encode
from logcast.web.encode import BULK_MIN, JSON, LOG, SSE, WS_JSON, WS_TEXT, Bulk

ONE: dict[str, Callable[[LogRecord], bytes]] = {
    "sse": encode.live_sse,
    "json": encode.live_json,
    "ws-json": encode.live_ws_json,
    "ws-text": encode.live_ws_text,
    "log": encode.encode_log,
}
MANY: dict[str, Callable[[list[LogRecord]], list[bytes]]] = {
    "sse": SSE.encode,
    "json": JSON.encode,
    "ws-json": WS_JSON.encode,
    "ws-text": WS_TEXT.encode,
    "log": LOG,
}

texts = st.text(
    st.characters(blacklist_categories=("Cs",)),  # lone surrogates: their own test
    max_size=300,
)
timestamps = st.one_of(  # floats, as `LogRecord` has them: 0.0 and -0.0 are equal and written apart
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e9, max_value=2e9),
    st.sampled_from([0.0, -0.0]),
)


@st.composite
def records(draw: st.DrawFn) -> LogRecord:
    stream = draw(st.sampled_from(Stream))
    system = stream is Stream.SYSTEM
    return LogRecord(
        seq=draw(st.integers(min_value=0, max_value=MAX_SEQ)),
        timestamp=draw(timestamps),
        level=draw(st.sampled_from(Level)),
        message=draw(texts),
        stream=stream,
        process=draw(st.sampled_from(["web", "api", 'quo"te\\', "ünï", "\x1b[31m"])),
        run=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        partial=draw(st.booleans()),
        state=draw(st.one_of(st.none(), st.sampled_from(ProcessState)))
        if system or draw(st.booleans())
        else None,
    )


@st.composite
def page_like(draw: st.DrawFn) -> list[LogRecord]:
    """Lines of one process as a page holds them: consecutive seqs, a few timestamps,
    runs and streams, with here and there a status or a partial line."""
    n = draw(st.integers(min_value=0, max_value=3 * BULK_MIN))
    first = draw(st.integers(min_value=1, max_value=MAX_SEQ - 100))
    stamps = draw(st.lists(timestamps, min_size=1, max_size=3))
    out = []
    for i in range(n):
        status = draw(st.integers(0, 9)) == 0
        out.append(
            LogRecord(
                first + i,
                stamps[i % len(stamps)],
                draw(st.sampled_from(Level)),
                draw(texts),
                Stream.SYSTEM if status else draw(st.sampled_from([Stream.STDOUT, Stream.STDERR])),
                "web",
                1 + i // 7,
                draw(st.integers(0, 5)) == 0,
                draw(st.sampled_from(ProcessState)) if status else None,
            )
        )
    return out


def _one_by_one(fmt: str, batch: list[LogRecord]) -> list[bytes]:
    return [ONE[fmt](r) for r in batch]


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), max_size=3 * BULK_MIN), st.sampled_from(sorted(MANY)))
def test_any_records_encode_as_one_by_one(batch: list[LogRecord], fmt: str) -> None:
    assert MANY[fmt](batch) == _one_by_one(fmt, batch)


@settings(max_examples=300, deadline=None)
@given(page_like(), st.sampled_from(sorted(MANY)))
def test_a_page_of_lines_encodes_as_one_by_one(batch: list[LogRecord], fmt: str) -> None:
    assert MANY[fmt](batch) == _one_by_one(fmt, batch)


def _lines(n: int, **changes: object) -> list[LogRecord]:
    base = LogRecord(1, 1_765_000_000.25, Level.INFO, "", Stream.STDOUT, "web", 1)
    return [base._replace(seq=i + 1, message=f'line {i} "q" \\ \t é 😀', **changes) for i in range(n)]


@pytest.mark.parametrize("fmt", sorted(MANY))
def test_the_columns_path_is_taken_and_agrees_on_a_long_list(fmt: str) -> None:
    batch = _lines(5000)
    batch[17] = batch[17]._replace(stream=Stream.SYSTEM, state=ProcessState.RUNNING, message="running")
    batch[18] = batch[18]._replace(partial=True)
    batch[19] = batch[19]._replace(timestamp=math.nan, level=Level.ERROR, run=2, process="api")
    batch[20] = batch[20]._replace(message="y" * 70_000)  # a WebSocket frame with a 64-bit length
    assert MANY[fmt](batch) == _one_by_one(fmt, batch)
    batch = _lines(3 * BULK_MIN, partial=True)  # one stream and run, every line partial
    assert MANY[fmt](batch) == _one_by_one(fmt, batch)
    batch = _lines(3 * BULK_MIN, stream=Stream.STDERR, run=7)
    batch[-1] = batch[-1]._replace(partial=True)  # one line partial
    assert MANY[fmt](batch) == _one_by_one(fmt, batch)


@pytest.mark.parametrize("fmt", sorted(MANY))
def test_zero_and_minus_zero_stay_apart(fmt: str) -> None:
    batch = [r._replace(timestamp=(0.0, -0.0, 5.0)[r.seq % 3]) for r in _lines(3 * BULK_MIN)]
    assert MANY[fmt](batch) == _one_by_one(fmt, batch)


def test_a_status_record_keeps_its_event_type_and_state() -> None:
    batch = _lines(BULK_MIN)
    batch[3] = batch[3]._replace(stream=Stream.SYSTEM, state=ProcessState.STOPPED, message="stopped")
    out = SSE.encode(batch)
    assert b'"type":"status"' in out[3] and b'"state":"stopped"' in out[3]
    assert all(b'"type":"realtime"' in e for i, e in enumerate(out) if i != 3)


class _Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, record: LogRecord) -> bytes:
        self.calls += 1
        return encode.live_sse(record)


def test_short_lists_go_one_by_one_and_long_ones_do_not() -> None:
    one = _Counting()
    bulk = Bulk(one, encode._SSE_REALTIME, b"}\n\n", sse_id=True)
    assert bulk(_lines(BULK_MIN - 1)) == _one_by_one("sse", _lines(BULK_MIN - 1))
    assert one.calls == BULK_MIN - 1
    assert bulk(_lines(100)) == _one_by_one("sse", _lines(100))
    assert one.calls == BULK_MIN - 1  # not one call for the hundred


@pytest.mark.parametrize("fmt", ["sse", "json", "ws-json", "log"])
def test_a_lone_surrogate_fails_as_it_fails_alone(fmt: str) -> None:
    batch = _lines(2 * BULK_MIN)
    batch[5] = batch[5]._replace(message="bad \udc80 text")
    with pytest.raises(orjson.JSONEncodeError):
        ONE[fmt](batch[5])
    with pytest.raises(orjson.JSONEncodeError):
        MANY[fmt](batch)
    assert MANY[fmt](batch[6:]) == _one_by_one(fmt, batch[6:])  # and the next list is fine


@pytest.mark.parametrize("fmt", ["sse", "json", "ws-json", "log"])
def test_a_seq_orjson_refuses_fails_as_it_fails_alone(fmt: str) -> None:
    batch = _lines(2 * BULK_MIN)
    for seq in (2**64, -(2**63) - 1):
        bad = [*batch[:-1], batch[-1]._replace(seq=seq)]
        with pytest.raises(orjson.JSONEncodeError):
            ONE[fmt](bad[-1])
        with pytest.raises(orjson.JSONEncodeError):
            MANY[fmt](bad)


def test_the_memos_start_again_when_full() -> None:
    batch = _lines(BULK_MIN * 3)
    many = [r._replace(run=run) for run in range(3000) for r in batch[:1]]  # 3,000 tails
    for fmt in sorted(MANY):
        assert MANY[fmt](many) == _one_by_one(fmt, many)
    assert len(SSE.encode._tails) <= encode._MEMO_MAX  # type: ignore[attr-defined]
