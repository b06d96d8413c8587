"""Typed stream events: what `AsyncClient.stream()` and `Client.stream()` yield.

A server event (SPEC's `historical`, `historical_complete`, `realtime`, `status`, `gap`,
`stream_end`, `error`) keeps its `EventType`. The client adds events of its own, of type
`connection`, for the state of its link to the server (`connecting`, `connected`,
`not_running`, `disconnected`), so that a terminal or a UI can say why nothing arrives
without the stream ever raising for a condition it can wait out.

The server's events are `logcast.schemas.StreamEvent` on the wire; they are parsed here by
hand, not through the models, since a stream may carry thousands of events a second
(tests/test_schemas.py checks that both read the encoder's output alike).
"""

from __future__ import annotations

import enum
import logging
import operator
from bisect import bisect_right
from dataclasses import dataclass
from itertools import compress, islice, repeat
from typing import Any, NamedTuple, TypeVar

import orjson

from logcast.types import MAX_SEQ, EventType, Level, LogRecord, Stream, whole_number

logger = logging.getLogger(__name__)


class ClientEventType(enum.StrEnum):
    """Event types the client makes itself; the server's are `logcast.types.EventType`."""

    CONNECTION = "connection"


class ConnectionState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    NOT_RUNNING = "not_running"  # the server answers, the process does not run (yet)
    DISCONNECTED = "disconnected"  # the server could not be reached, or the stream broke


class Event(NamedTuple):
    """One event of a process's stream.

    `log` is set for `historical`, `realtime` and `status`; `seq` is the event's sequence
    number (the record's, or the last history line's for `historical_complete`);
    `gap_from`..`gap_to` are the lines that will not arrive, `reason` says why
    (`retention`, `slow`, `cleared`, `lost`). For `connection` events `message` is the
    `ConnectionState`, `reason` the cause, `attempt` the failed attempts in a row and
    `retry_in` the seconds before the next one (None once the client gives up).

    A named tuple, like `LogRecord`: a flood makes one per line, and a frozen dataclass
    cost ten times as much to build.
    """

    type: EventType | ClientEventType
    process: str
    log: LogRecord | None = None
    seq: int | None = None
    message: str | None = None
    gap_from: int | None = None
    gap_to: int | None = None
    reason: str | None = None
    attempt: int = 0
    retry_in: float | None = None

    @property
    def connection(self) -> ConnectionState | None:
        if self.type is ClientEventType.CONNECTION and self.message is not None:
            return ConnectionState(self.message)
        return None

    @property
    def is_line(self) -> bool:
        """A captured line (history or realtime), as opposed to a status or control event."""
        return self.type in (EventType.HISTORICAL, EventType.REALTIME) and self.log is not None

    @property
    def missed(self) -> int:
        """How many lines a `gap` event stands for."""
        if self.gap_from is None or self.gap_to is None:
            return 0
        return self.gap_to - self.gap_from + 1

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data, in the server's shape plus `process`."""
        d: dict[str, Any] = {"type": self.type.value, "process": self.process}
        if self.log is not None:
            d["log"] = self.log.as_dict()
        if self.seq is not None:
            d["seq"] = self.seq
        if self.message is not None:
            d["message"] = self.message
        if self.gap_from is not None:
            d["from"] = self.gap_from
        if self.gap_to is not None:
            d["to"] = self.gap_to
        if self.reason is not None:
            d["reason"] = self.reason
        if self.type is ClientEventType.CONNECTION:
            d["attempt"] = self.attempt
            d["retry_in"] = self.retry_in
        return d


def connection_event(
    process: str,
    state: ConnectionState,
    *,
    reason: str | None = None,
    attempt: int = 0,
    retry_in: float | None = None,
) -> Event:
    return Event(
        ClientEventType.CONNECTION,
        process,
        message=state.value,
        reason=reason,
        attempt=attempt,
        retry_in=retry_in,
    )


def _record(data: dict[str, Any], process: str) -> LogRecord:
    """A LogRecord from the wire, tolerant of the fields a status record may leave out."""
    d = dict(data)
    d.setdefault("process", process)
    d.setdefault("stream", Stream.SYSTEM.value if d.get("state") else Stream.STDOUT.value)
    d.setdefault("level", Level.INFO.value)
    d.setdefault("message", "")
    d.setdefault("run", 0)
    d.setdefault("timestamp", 0.0)
    return record_of(d)


_TEXT_FIELDS = ("message", "level", "stream", "process")


def record_of(d: dict[str, Any]) -> LogRecord:
    """`LogRecord.from_dict` of a record from a server, whose text fields must be text:
    turning anything else into text (`str`, an enum's error message) could recurse as
    deep as the JSON nests, past Python's limit (a RecursionError, not a ValueError).
    Raises KeyError, TypeError or ValueError for a record that is not one."""
    for key in _TEXT_FIELDS:
        if type(d[key]) is not str:
            raise ValueError(f"a log record's {key} must be text")
    state = d.get("state")
    if state and type(state) is not str:
        raise ValueError("a log record's state must be text")
    record = LogRecord.from_dict(d)
    if not (0 <= record.seq <= MAX_SEQ and 0 <= record.run <= MAX_SEQ):
        raise ValueError("a log record's seq and run must be whole numbers below 2**63")
    return record


def _loads(data: str | bytes | memoryview) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"stream message is not JSON: {exc}") from None


def parse_event(data: str | bytes | memoryview, sse_id: str | None, process: str) -> Event | None:
    """One SSE message of one event → Event. None for an empty message or a type this
    client does not know.

    Raises ValueError on a message that is not the JSON the API describes.
    """
    if not data:
        return None
    obj = _loads(data)
    if not isinstance(obj, dict):
        raise ValueError("stream message is not a JSON object")
    return _event(obj, sse_id, process)


def _event(obj: dict[str, Any], sse_id: str | None, process: str) -> Event | None:
    name = obj.get("type")
    kind = _EVENT_TYPES.get(name) if type(name) is str else None
    if kind is None:  # not `str()` of what may be nested deep: see `record_of`
        logger.debug("skipping stream event of unknown type %r", name if type(name) is str else type(name))
        return None
    seq = whole_number(sse_id)
    log: LogRecord | None = None
    raw_log = obj.get("log")
    try:
        if isinstance(raw_log, dict):
            log = _record(raw_log, process)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed log record in stream: {exc}") from None
    if log is not None:
        seq = log.seq
    elif (told := whole_number(obj.get("seq"))) is not None:
        seq = told
    message = obj.get("message")
    if kind is EventType.GAP:
        gap_from, gap_to = whole_number(obj.get("from")), whole_number(obj.get("to"))
        if gap_from is not None and gap_to is not None and gap_from > gap_to:
            raise ValueError(f"a gap from {gap_from} to {gap_to}, which ends before it begins")
        return Event(
            kind,
            process,
            seq=gap_to if gap_to is not None else seq,
            message=message if isinstance(message, str) else None,
            gap_from=gap_from,
            gap_to=gap_to,
            reason=obj.get("reason") if isinstance(obj.get("reason"), str) else None,
        )
    return Event(
        kind,
        log.process if log is not None else process,
        log=log,
        seq=seq,
        message=message if isinstance(message, str) else None,
    )


# What a batch's line events are read with, without a call per field (`_line`).
_LINE_KINDS = {EventType.HISTORICAL.value: EventType.HISTORICAL, EventType.REALTIME.value: EventType.REALTIME}
T = TypeVar("T")
_EVENT_TYPES = {kind.value: kind for kind in EventType}
_LEVELS = {level.value: level for level in Level}
_STREAMS = {stream.value: stream for stream in Stream if stream is not Stream.SYSTEM}
_LINE_FIELDS = operator.itemgetter("seq", "timestamp", "level", "message", "stream", "process", "run")
_new = tuple.__new__


def _line(obj: Any) -> Event | None:
    """The event of a captured line in the shape the server writes it (every field there,
    of its type), built without a call per field; None for anything else (a status, a gap,
    control events, an odd record), which goes the long way."""
    if type(obj) is not dict:
        return None
    kind = obj.get("type")
    log = obj.get("log")
    if type(kind) is not str or kind not in _LINE_KINDS or type(log) is not dict or "state" in log:
        return None
    try:
        seq, timestamp, level, message, stream, name, run = _LINE_FIELDS(log)
    except KeyError:
        return None
    partial = log.get("partial", False)
    level = _LEVELS.get(level) if type(level) is str else None
    stream = _STREAMS.get(stream) if type(stream) is str else None
    if (
        type(seq) is int
        and type(timestamp) is float
        and type(message) is str
        and type(name) is str
        and type(run) is int
        and level is not None
        and stream is not None
        and (partial is False or partial is True)
    ):
        record = _new(LogRecord, (seq, timestamp, level, message, stream, name, run, partial, None))
        return _new(Event, (_LINE_KINDS[kind], name, record, seq, None, None, None, None, 0, None))
    return None


def line_events(items: Any) -> list[Event] | None:
    """`items` as events when every one is a captured line in the server's shape (see
    `_line`): their ids add nothing to their seqs. None otherwise."""
    if type(items) is not list or not items:
        return None
    events: list[Event] = []
    for obj in items:
        event = _line(obj)
        if event is None:
            return None
        events.append(event)
    return events


@dataclass(frozen=True, slots=True)
class LineRun:
    """Captured lines of one process and run, all `historical` or all `realtime`, a list
    per field: one element of a `batch=columns` message (docs/api.md), and what
    `AsyncClient.stream_runs()` yields in place of an `Event` per line. Every list holds
    one item per line; `seqs` grow strictly; `partial` is None when no line is partial.
    A million lines come as a few hundred of these and no object per line but its text.
    Frozen but not deep: its lists are shared, not copied (`after` and `select` may
    return the run itself), so change none of them; a run is compared by value and has
    no hash."""

    type: EventType
    process: str
    run: int
    seqs: list[int]
    timestamps: list[float]
    levels: list[Level]
    streams: list[Stream]
    messages: list[str]
    partial: list[bool] | None = None

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def last_seq(self) -> int:
        return self.seqs[-1]

    def after(self, seq: int) -> LineRun | None:
        """The lines after `seq`; None when there are none."""
        start = bisect_right(self.seqs, seq)
        if start == 0:
            return self
        if start == len(self.seqs):
            return None
        return self.select([False] * start + [True] * (len(self.seqs) - start))

    def select(self, keep: list[bool]) -> LineRun | None:
        """The lines whose `keep` is true; None when there are none."""
        if all(keep):
            return self
        if not any(keep):
            return None
        partial = None if self.partial is None else list(compress(self.partial, keep))
        return LineRun(
            self.type,
            self.process,
            self.run,
            list(compress(self.seqs, keep)),
            list(compress(self.timestamps, keep)),
            list(compress(self.levels, keep)),
            list(compress(self.streams, keep)),
            list(compress(self.messages, keep)),
            partial if partial is not None and True in partial else None,
        )

    def records(self) -> list[LogRecord]:
        """A `LogRecord` per line, built by `map` and `zip` (loops in C)."""
        size = len(self.seqs)
        fields = zip(
            self.seqs,
            self.timestamps,
            self.levels,
            self.messages,
            self.streams,
            repeat(self.process, size),
            repeat(self.run, size),
            self.partial if self.partial is not None else repeat(False, size),
            repeat(None, size),
            strict=True,
        )
        return list(map(_new, repeat(LogRecord, size), fields))

    def events(self) -> list[Event]:
        """An `Event` per line, as a `batch=1` stream would have given them."""
        size = len(self.seqs)
        nones = [repeat(None, size) for _ in range(5)]
        fields = zip(
            repeat(self.type, size),
            repeat(self.process, size),
            self.records(),
            self.seqs,
            *nones[:4],
            repeat(0, size),
            nones[4],
            strict=True,
        )
        return list(map(_new, repeat(Event, size), fields))


_TIME_TYPES = frozenset({float, int})


def _named(table: dict[str, T], names: list[Any]) -> list[T]:
    """`names` looked up in `table`, once when they are all the same text (a flood's usual
    run: one stream, often one level); KeyError or TypeError for a name it does not hold.
    Only text is counted: counting compares, and comparing deeply nested lists recurses."""
    first = names[0]
    if type(first) is str and names.count(first) == len(names):
        return [table[first]] * len(names)
    return list(map(table.__getitem__, names))


def line_run(obj: dict[str, Any]) -> LineRun:
    """A `batch=columns` element (`{"type": …, "lines": {…}}`) → LineRun; ValueError saying
    what is wrong with one that is not in the shape docs/api.md gives. Checked a column at
    a time, without a Python step per line."""
    kind_name = obj.get("type")
    kind = _LINE_KINDS.get(kind_name) if isinstance(kind_name, str) else None
    lines = obj.get("lines")
    if kind is None or type(lines) is not dict:
        raise ValueError("a run of lines must be historical or realtime, with a `lines` object")
    process, run, partial = lines.get("process"), lines.get("run"), lines.get("partial")
    columns: list[Any] = [lines.get(key) for key in ("seq", "timestamp", "level", "stream", "message")]
    if type(process) is not str or type(run) is not int:
        raise ValueError("a run of lines needs its process (text) and run (a number)")
    if partial is not None:
        columns.append(partial)
    if any(type(column) is not list for column in columns) or len(set(map(len, columns))) != 1:
        raise ValueError(
            "a run of lines needs lists of one length for seq, timestamp, level, stream, message"
        )
    seqs, timestamps, levels, streams, messages = columns[:5]
    if not seqs or set(map(type, seqs)) != {int} or not all(map(operator.lt, seqs, islice(seqs, 1, None))):
        raise ValueError("a run's seqs must be whole numbers, growing")
    if not set(map(type, timestamps)) <= _TIME_TYPES or set(map(type, messages)) != {str}:
        raise ValueError("a run's timestamps must be numbers and its messages text")
    if partial is not None and set(map(type, partial)) != {bool}:
        raise ValueError("a run's partial flags must be true or false")
    try:
        levels = _named(_LEVELS, levels)
        streams = _named(_STREAMS, streams)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"a run holds an unknown level or stream: {exc}") from None
    if int in set(map(type, timestamps)):
        timestamps = list(map(float, timestamps))
    if partial is not None and True not in partial:
        partial = None
    return LineRun(kind, process, run, seqs, timestamps, levels, streams, messages, partial)


def parse_items(data: str | bytes | memoryview, sse_id: str | None, process: str) -> list[Event | LineRun]:
    """One SSE message → its events in order, a `batch=columns` run of lines as one
    `LineRun`; otherwise as `parse_events`. A malformed run is skipped (logged) like any
    malformed element of a batch."""
    if not data or data[:1] not in (b"[", "["):
        return list(parse_events(data, sse_id, process))
    items = _loads(data)
    if not isinstance(items, list):
        raise ValueError("stream message is not a JSON list")
    out: list[Event | LineRun] = []
    last = len(items) - 1
    for i, obj in enumerate(items):
        if type(obj) is dict and "lines" in obj:
            try:
                out.append(line_run(obj))
            except ValueError as exc:
                logger.warning("%s: skipping a run of lines: %s", process, exc)
            continue
        out += _batch_event(obj, sse_id if i == last else None, process)
    return out


def parse_events(data: str | bytes | memoryview, sse_id: str | None, process: str) -> list[Event]:
    """One SSE message → its events, in order.

    A `data` that starts with `[` is a batch (`?batch=1`): a list of events, the message's
    id being its last event's; anything else is one event (`parse_event`). Elements of a
    batch that are not events of the API, or of a type this client does not know, are
    skipped (logged); raises ValueError on a message that is not JSON, or neither an
    object nor a list.
    """
    if not data:
        return []
    if data[:1] not in (b"[", "["):
        event = parse_event(data, sse_id, process)
        return [] if event is None else [event]
    items = _loads(data)
    if not isinstance(items, list):
        raise ValueError("stream message is not a JSON list")
    events: list[Event] = []
    last = len(items) - 1
    for i, obj in enumerate(items):
        line = _line(obj)
        if line is not None:
            events.append(line)
        elif type(obj) is dict and "lines" in obj:  # a `batch=columns` run
            try:
                events += line_run(obj).events()
            except ValueError as exc:
                logger.warning("%s: skipping a run of lines: %s", process, exc)
        else:
            events += _batch_event(obj, sse_id if i == last else None, process)
    return events


def _batch_event(obj: Any, sse_id: str | None, process: str) -> list[Event]:
    """One element of a batch that is not a run of lines: its event, or nothing (logged)
    when it is not an event of the API or of a type this client does not know."""
    line = _line(obj)
    if line is not None:
        return [line]
    if type(obj) is not dict:
        logger.warning("%s: skipping a batched stream event that is not a JSON object", process)
        return []
    try:
        event = _event(obj, sse_id, process)
    except ValueError as exc:
        logger.warning("%s: %s", process, exc)
        return []
    return [] if event is None else [event]
