"""Wire encodings of stream events, shared by SSE and WebSocket.

A record's `log` object is serialised once and cached by the hub; every event splices
those bytes into a constant envelope, so building one is a concatenation.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby, repeat
from operator import itemgetter
from typing import Any

import orjson

from logcast.hub import Entry, Gap, Hub, Journal
from logcast.types import (
    MAX_SEQ,
    MESSAGE_OF,
    EventType,
    LogRecord,
    Stream,
    columns_of,
)


def parse_seq(text: str, what: str) -> int:
    """A sequence number (or count) written by a client: decimal digits for 0..MAX_SEQ.
    ValueError saying why otherwise (the routes answer 422 with it, never a 500)."""
    text = text.strip()
    if not text or not (text.isascii() and text.isdecimal()):
        raise ValueError(f"{what} must be a whole number from 0 to 2^63-1, got {text[:40]!r}")
    digits = text.lstrip("0") or "0"  # int() refuses over 4,300 digits, leading zeros counted
    if len(digits) > 19 or int(digits) > MAX_SEQ:
        raise ValueError(f"{what} is beyond the largest sequence number (2^63-1)")
    return int(digits)


def encode_log(record: LogRecord) -> bytes:
    # orjson's result has a large spare capacity; these encodings stay cached in the ring,
    # so keep an exact copy.
    return bytes(memoryview(orjson.dumps(record.as_dict())))


_PREFIX = {kind: b'{"type":"' + kind.value.encode() + b'","log":' for kind in EventType}


def event_json(
    kind: EventType, payload: LogRecord | Gap | int, log_json: bytes | None = None, process: str | None = None
) -> bytes:
    """The JSON of one stream event (docs/api.md); `process` names the process of an
    event that carries only a seq (`historical_complete`), where one socket has several."""
    if isinstance(payload, LogRecord):
        return _PREFIX[kind] + (log_json or encode_log(payload)) + b"}"
    if isinstance(payload, Gap):
        return orjson.dumps(
            {
                "type": "gap",
                "from": payload.start,
                "to": payload.end,
                "count": payload.count,
                "reason": payload.reason,
                "process": payload.process,
            }
        )
    if process is not None:
        return orjson.dumps({"type": kind.value, "seq": payload, "process": process})
    return orjson.dumps({"type": kind.value, "seq": payload})


def entries_text(entries: list[Entry]) -> int:
    """The characters of text of the records among `entries` (without a Python step per
    entry when they are all records, the usual case)."""
    try:
        return sum(map(len, map(MESSAGE_OF, map(_PAYLOAD, entries))))
    except TypeError:  # a gap or a seq among them
        return sum(len(p.message) for _, p in entries if isinstance(p, LogRecord))


def message_json(kind: EventType, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"type": kind.value, "message": message, **extra})


def entry_id(payload: LogRecord | Gap | int) -> int:
    if isinstance(payload, LogRecord):
        return payload.seq
    if isinstance(payload, Gap):
        return payload.end
    return payload


_SSE_HEAD = {kind: b'\ndata: {"type":"' + kind.value.encode() + b'","log":' for kind in EventType}


def _each(hub: Hub, journal: Journal, entries: list[Entry]) -> Iterator[tuple[EventType, Any, bytes | None]]:
    """Entries with the cached `log` encoding of each record (None for other entries)."""
    records = [p for _, p in entries if isinstance(p, LogRecord)]
    encoded = iter(hub.encode_logs(journal, records, LOG) if records else ())
    for kind, payload in entries:
        yield kind, payload, next(encoded) if isinstance(payload, LogRecord) else None


def _sse_record(kind: EventType, record: LogRecord, log_json: bytes) -> bytes:
    """The SSE message of a record's event, its `log` object given encoded."""
    return b"id: %d%s%s}\n\n" % (record.seq, _SSE_HEAD[kind], log_json)


def sse_chunk(hub: Hub, journal: Journal, entries: list[Entry]) -> bytes:
    """One SSE message per entry (`id: <seq>` then `data: <json>`), as one chunk."""
    parts: list[bytes] = []
    for kind, payload, log_json in _each(hub, journal, entries):
        if log_json is not None:
            parts.append(_sse_record(kind, payload, log_json))
        else:
            parts.append(b"id: %d\ndata: %s\n\n" % (entry_id(payload), event_json(kind, payload)))
    return b"".join(parts)


def event_jsons(hub: Hub, journal: Journal, entries: list[Entry]) -> list[bytes]:
    """The JSON of each entry's event, as bytes (the `log` objects from the hub's cache)."""
    return [
        _PREFIX[kind] + log_json + b"}" if log_json is not None else event_json(kind, payload)
        for kind, payload, log_json in _each(hub, journal, entries)
    ]


# A batched SSE message (`batch=1`) carries at most this many events and about this many
# bytes (an event longer than that goes alone): a client that stops reading holds one.
BATCH_EVENTS = 4096
BATCH_BYTES = 1 << 20


def batch_messages(events: list[bytes], last_ids: list[int] | int) -> Iterator[bytes]:
    """Batched SSE messages of `events` (each an event's JSON): `data: [e1,e2,…]`, its
    `id:` the one its last event would have had alone. `last_ids` gives each event's id,
    or (an int) the id of the first of consecutive ones."""
    start = 0
    count = len(events)
    while start < count:
        end = start
        size = 0
        while end < count and end - start < BATCH_EVENTS:
            size += len(events[end]) + 1
            if size > BATCH_BYTES and end > start:
                break
            end += 1
        ident = last_ids + end - 1 if isinstance(last_ids, int) else last_ids[end - 1]
        yield b"id: %d\ndata: [%s]\n\n" % (ident, b",".join(events[start:end]))
        start = end


def batch_chunk(hub: Hub, journal: Journal, entries: list[Entry]) -> Iterator[bytes]:
    """The batched SSE messages of `entries` (see `batch_messages`)."""
    yield from batch_messages(event_jsons(hub, journal, entries), [entry_id(p) for _, p in entries])


# -- `batch=columns`: runs of lines column-wise ----------------------------------------

_KIND = itemgetter(0)  # an entry's kind
_PAYLOAD = itemgetter(1)  # ...and its record (or gap, or seq)
_LINE_KINDS = (EventType.HISTORICAL, EventType.REALTIME)


def _run_key(entry: Entry) -> tuple[EventType, str, int] | None:
    """What lines share to go in one run: their kind, process and run; None for anything
    else (a status, a gap, `historical_complete`), which goes as an event of its own."""
    kind, payload = entry
    if kind in _LINE_KINDS and isinstance(payload, LogRecord) and payload.stream is not Stream.SYSTEM:
        return (kind, payload.process, payload.run)
    return None


# A run's records as columns, by `zip(*records)` (a loop in C): seq, timestamp, level,
# message, stream, process, run, partial, state, each a tuple, which orjson writes as an array.
Columns = tuple[tuple[Any, ...], ...]


def _is_run(kind: EventType, columns: Columns) -> bool:
    """The records are lines of one process and run, checked without a Python step per record."""
    streams, processes, runs = columns[4], columns[5], columns[6]
    size = len(streams)
    return (
        kind in _LINE_KINDS
        and Stream.SYSTEM not in streams
        and runs.count(runs[0]) == size
        and processes.count(processes[0]) == size
    )


def _run_json(kind: EventType, columns: Columns, start: int, end: int) -> bytes:
    """One element of a `batch=columns` message: lines `start` to `end` of a run of one
    process and run, a list per field."""
    seqs, timestamps, levels, messages, streams, processes, runs, partial, _states = columns
    lines: dict[str, Any] = {
        "process": processes[start],
        "run": runs[start],
        "seq": seqs[start:end],
        "timestamp": timestamps[start:end],
        "level": levels[start:end],
        "stream": streams[start:end],
        "message": messages[start:end],
    }
    flags = partial[start:end]
    if True in flags:
        lines["partial"] = flags
    return orjson.dumps({"type": kind, "lines": lines})


LINE_JSON = 64  # bytes of a line's JSON in a run besides its text: seq, time, level, stream, quotes


def _run_elements(kind: EventType, columns: Columns) -> Iterator[tuple[bytes, int]]:
    """The run as elements of at most `BATCH_EVENTS` lines and about `BATCH_BYTES` each
    (a longer line alone), with the seq each one ends on.

    An element is sized from its lines' text, and made again shorter in proportion when
    its JSON came out longer (multi-byte text, escaped control characters); the next one
    starts from the number of lines that fitted, so such a run is encoded about once, not
    halved down again for every element."""
    start = 0
    seqs = columns[0]
    count = len(seqs)
    sizes = list(map(len, columns[3]))
    step = BATCH_EVENTS
    while start < count:
        end = min(count, start + step)
        while sum(sizes[start:end]) + LINE_JSON * (end - start) > BATCH_BYTES and end - start > 1:
            end = start + (end - start) // 2
        element = _run_json(kind, columns, start, end)
        while len(element) > BATCH_BYTES and end - start > 1:
            end = start + max(1, (end - start) * BATCH_BYTES // len(element))
            element = _run_json(kind, columns, start, end)
        fitted = end - start
        step = fitted if len(element) > BATCH_BYTES // 2 else min(BATCH_EVENTS, 2 * fitted)
        yield element, seqs[end - 1]
        start = end


def _columns(records: Iterator[LogRecord] | list[LogRecord]) -> Columns:
    return tuple(zip(*records, strict=True))


def _column_elements(entries: list[Entry]) -> Iterator[tuple[bytes, int]]:
    """The elements of `entries` in a `batch=columns` message, each with the id it ends on."""
    kinds = list(map(_KIND, entries))
    first_kind = kinds[0]
    if kinds.count(first_kind) == len(kinds) and first_kind in _LINE_KINDS:
        columns = _columns(map(_PAYLOAD, entries))
        if _is_run(first_kind, columns):  # the usual batch: no step per line in Python
            yield from _run_elements(first_kind, columns)
            return
    for key, group in groupby(entries, key=_run_key):
        if key is not None:
            yield from _run_elements(key[0], _columns(map(_PAYLOAD, group)))
            continue
        for kind, payload in group:
            yield event_json(kind, payload), entry_id(payload)


def column_messages(entries: list[Entry]) -> Iterator[bytes]:
    """`batch=columns` SSE messages of `entries`: `batch=1`'s messages (see
    `batch_messages`), where each run of lines of one kind, process and run is one element
    `{"type": "realtime"|"historical", "lines": {"process", "run", "seq": […], "timestamp":
    […], "level": […], "stream": […], "message": […], "partial": […] if any}}` instead of an
    event per line; every other event is the element it is in `batch=1`. Each message is
    made when the previous one has been taken: a client that stops reading holds one."""
    if not entries:
        return
    group: list[bytes] = []
    size = 0
    last = 0
    for element, ident in _column_elements(entries):
        if group and (size + len(element) > BATCH_BYTES or len(group) == BATCH_EVENTS):
            yield b"id: %d\ndata: [%s]\n\n" % (last, b",".join(group))
            group, size = [], 0
        group.append(element)
        size += len(element) + 1
        last = ident
    if group:
        yield b"id: %d\ndata: [%s]\n\n" % (last, b",".join(group))


def json_frames(hub: Hub, journal: Journal, entries: list[Entry]) -> list[str]:
    """The same events as SSE, one JSON text per WebSocket frame; `historical_complete`
    also names its process, since one socket may carry several."""
    return [
        event_json(kind, payload, log_json, journal.name).decode()
        for kind, payload, log_json in _each(hub, journal, entries)
    ]


def text_line(kind: EventType, payload: LogRecord | Gap | int) -> str | None:
    """A text frame: the line as `readline()` returned it, `\\n` included (the LLM
    manager's log page appends frames with `textContent +=`); status and gaps as bracketed notes,
    each a line of its own. A `partial` record (a piece of a line over 64 KiB, or text the
    child has not ended yet) carries no `\\n`: the frames joined give the child's text."""
    if isinstance(payload, LogRecord):
        if payload.stream is Stream.SYSTEM:
            return f"[logcast] {payload.process}: {payload.message}\n"
        return payload.message if payload.partial else payload.message + "\n"
    if isinstance(payload, Gap):
        return (
            f"[logcast] {payload.process}: {payload.count} lines missed "
            f"({payload.start}-{payload.end}, {payload.reason})\n"
        )
    return None


# -- live wire bytes: one encoding per record and format, shared through the ring --------


def text_frame(payload: bytes) -> bytes:
    """A whole server-to-client WebSocket text frame (FIN, unmasked) carrying `payload`."""
    return _frame_head(len(payload)) + payload


def _frame_head(size: int) -> bytes:
    """The head of a server-to-client WebSocket text frame (FIN, unmasked) of `size` bytes."""
    if size < 126:
        return bytes((0x81, size))
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size)
    return struct.pack("!BBQ", 0x81, 127, size)


# Plain names: these run once per line, and an enum member's lookup costs more than the
# rest of the choice (`live_sse`: 1.02 against 0.79 us a line, timeit).
_SYSTEM = Stream.SYSTEM
_STATUS, _REALTIME = EventType.STATUS, EventType.REALTIME
_SSE_STATUS, _SSE_REALTIME = _SSE_HEAD[_STATUS], _SSE_HEAD[_REALTIME]


def _live_kind(record: LogRecord) -> EventType:
    return _STATUS if record.stream is _SYSTEM else _REALTIME


def live_sse(record: LogRecord) -> bytes:
    """The SSE message of a record read live: `realtime`, or `status` for a state change."""
    head = _SSE_STATUS if record.stream is _SYSTEM else _SSE_REALTIME
    # orjson's own result, not encode_log's exact-size copy: it is spliced into a new
    # bytes object at once and never kept.
    return b"id: %d%s%s}\n\n" % (record.seq, head, orjson.dumps(record.as_dict()))


def live_json(record: LogRecord) -> bytes:
    """The event JSON of a record read live (a batched SSE message's element)."""
    return event_json(_live_kind(record), record, orjson.dumps(record.as_dict()))


def live_ws_json(record: LogRecord) -> bytes:
    """The WebSocket frame of a record read live, `format=json`."""
    return text_frame(event_json(_live_kind(record), record, orjson.dumps(record.as_dict())))


def live_ws_text(record: LogRecord) -> bytes:
    """The WebSocket frame of a record read live, `format=text` (the line, `\\n` included)."""
    return text_frame((text_line(_live_kind(record), record) or "").encode("utf-8", "replace"))


# -- many records at once ------------------------------------------------------------

BULK_MIN = 8  # records: fewer are encoded one by one (the columns cost more than they save)
_MEMO_MAX = 1024  # entries a memo of field encodings keeps before it starts again


class _Memo(dict[Any, bytes]):
    """`encode(key)` of each key asked for, computed once (and again after `_MEMO_MAX`
    keys): a page's lines share a few timestamps, levels and (stream, process, run)."""

    def __init__(self, encode: Callable[[Any], bytes]) -> None:
        super().__init__()
        self._encode = encode

    def __missing__(self, key: Any) -> bytes:
        if len(self) >= _MEMO_MAX:
            self.clear()
        value = self[key] = self._encode(key)
        return value


def _level_head(level: Any) -> bytes:
    return b',"level":%s,"message":' % orjson.dumps(level)


def _tail(end: bytes) -> Callable[[tuple[Any, str, int, bool]], bytes]:
    def tail(key: tuple[Any, str, int, bool]) -> bytes:
        stream, process, run, partial = key
        return b',"stream":%s,"process":%s,"run":%s,"partial":%s}%s' % (
            orjson.dumps(stream),
            orjson.dumps(process),
            orjson.dumps(run),
            orjson.dumps(partial),
            end,
        )

    return tail


_LEVEL_HEADS = _Memo(_level_head)
_FRAME_HEADS = _Memo(_frame_head)


class Bulk:
    """`one`'s encoding of many records at once, the same bytes record for record, with
    the loops in C: each line's `log` object is spliced from its fields' encodings, of
    which only the message's and the seq's are made per line (by orjson and `%d`, as
    `orjson.dumps(record.as_dict())` writes them); timestamps, levels and the fields
    after the message are encoded once per value. A status record (its own event type
    and `state`) is encoded by `one`; so is every record of a list that orjson refuses
    (a lone surrogate), so that the error is the same. A page of 2,000 lines costs
    35-43% less CPU than `one` per line (`bench/encode.py`)."""

    def __init__(
        self,
        one: Callable[[LogRecord], bytes],
        prefix: bytes,
        end: bytes,
        *,
        sse_id: bool = False,
        frame: bool = False,
    ) -> None:
        self.one = one
        self._prefix = prefix + b'{"seq":'
        self._tails = _Memo(_tail(end))
        self._sse_id = sse_id
        self._frame = frame

    def __call__(self, records: list[LogRecord]) -> list[bytes]:
        if len(records) < BULK_MIN:
            return list(map(self.one, records))
        try:
            return self._encode(records)
        except (orjson.JSONEncodeError, TypeError, ValueError):
            return list(map(self.one, records))

    def _encode(self, records: list[LogRecord]) -> list[bytes]:
        seqs, timestamps, levels, messages, streams, processes, runs, partial, states = columns_of(records)
        if min(seqs) < 0 or max(seqs) > MAX_SEQ:  # orjson refuses what is over 64 bits; `%d` would not
            return list(map(self.one, records))
        n = len(seqs)
        digits: Iterable[bytes] = map(_DECIMAL, seqs)
        if self._sse_id:
            digits = list(digits)  # twice: the SSE id and the seq
        # Equal keys share a memo's entry. The fields have `LogRecord`'s types exactly
        # (every producer makes them so: capture, the store's rows and packs, `from_dict`),
        # so 1 and True, or 5 and 5.0, never meet in one; only 0.0 and -0.0 are equal
        # floats that orjson writes differently.
        stamps = (
            map(_Memo(_stamp).__getitem__, timestamps)
            if not timestamps.count(0.0)
            else map(_stamp, timestamps)
        )
        tail_keys = zip(streams, processes, runs, partial, strict=True)
        uniform = streams.count(streams[0]) == processes.count(processes[0]) == runs.count(runs[0]) == n
        if uniform and True not in partial:  # the usual page: whole lines of one stream and run
            tails: Iterable[bytes] = repeat(self._tails[next(tail_keys)], n)
        else:
            tails = map(self._tails.__getitem__, tail_keys)
        parts: list[Iterable[bytes]] = [
            repeat(self._prefix, n),
            digits,
            stamps,
            map(_LEVEL_HEADS.__getitem__, levels),
            map(orjson.dumps, messages),
            tails,
        ]
        if self._sse_id:
            parts[:0] = [repeat(b"id: ", n), digits]
        out = list(map(b"".join, zip(*parts, strict=True)))
        if _SYSTEM in streams or states.count(None) != n:
            for i, (stream, state) in enumerate(zip(streams, states, strict=True)):
                if stream == _SYSTEM or state is not None:
                    out[i] = self.one(records[i])  # framed already, if framed
                elif self._frame:
                    out[i] = text_frame(out[i])
            return out
        if self._frame:
            return list(map(bytes.__add__, map(_FRAME_HEADS.__getitem__, map(len, out)), out))
        return out


_DECIMAL = b"%d".__mod__  # a seq as orjson writes an int


def _stamp(timestamp: float) -> bytes:
    return b',"timestamp":' + orjson.dumps(timestamp)


def _one_by_one(one: Callable[[LogRecord], bytes]) -> Callable[[list[LogRecord]], list[bytes]]:
    def encode(records: list[LogRecord]) -> list[bytes]:
        return list(map(one, records))

    return encode


@dataclass(frozen=True, slots=True)
class Wire:
    """A live wire format: the name of its cache in the ring and how to fill it, a list of
    records at a time."""

    name: str
    encode: Callable[[list[LogRecord]], list[bytes]]


SSE = Wire("sse", Bulk(live_sse, _SSE_REALTIME, b"}\n\n", sse_id=True))
WS_JSON = Wire("ws-json", Bulk(live_ws_json, _PREFIX[_REALTIME], b"}", frame=True))
WS_TEXT = Wire("ws-text", _one_by_one(live_ws_text))
JSON = Wire("json", Bulk(live_json, _PREFIX[_REALTIME], b"}"))  # batched SSE
LOG = Bulk(encode_log, b"", b"")  # the `log` object alone (history, filtered readers)
