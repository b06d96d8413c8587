"""The vocabulary of logcast: records, levels, streams, process states, events.

It imports nothing from the project, so that any room of the code can depend on it
without cycles.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

MAX_SEQ = 2**63 - 1  # the largest sequence number: SQLite's INTEGER is a signed 64-bit number


def whole_number(value: object) -> int | None:
    """A seq, run or count that another party wrote (a server, an agent): a whole number
    from 0 to MAX_SEQ, or its decimal digits; None for anything else (a bool too)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:  # not "²"
        value = int(value)
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        return None
    return value


class Level(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


LEVEL_ORDER: dict[Level, int] = {
    Level.DEBUG: 10,
    Level.INFO: 20,
    Level.SUCCESS: 25,
    Level.WARNING: 30,
    Level.ERROR: 40,
    Level.CRITICAL: 50,
}


class Stream(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system"  # status records written by logcast itself


class ProcessState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    READY = "ready"
    STOPPING = "stopping"
    EXITED = "exited"
    CRASHED = "crashed"
    BACKOFF = "backoff"
    UNKNOWN = "unknown"  # the host that runs it is lost (several hosts); never a supervisor's state

    @property
    def is_alive(self) -> bool:
        """A child process exists in this state."""
        return self in _ALIVE

    @property
    def is_starting_or_up(self) -> bool:
        """Started and not being stopped: a start would do nothing."""
        return self in _STARTING_OR_UP

    @property
    def is_up(self) -> bool:
        """Running (ready or not): what the LLM manager's `/health` counts."""
        return self in _UP

    @property
    def has_ended(self) -> bool:
        """The run is over and no restart is pending: a stream of it may end."""
        return self in _ENDED


_ALIVE = frozenset({ProcessState.STARTING, ProcessState.RUNNING, ProcessState.READY, ProcessState.STOPPING})
_STARTING_OR_UP = frozenset({ProcessState.STARTING, ProcessState.RUNNING, ProcessState.READY})
_UP = frozenset({ProcessState.RUNNING, ProcessState.READY})
_ENDED = frozenset({ProcessState.STOPPED, ProcessState.EXITED, ProcessState.CRASHED})


class EventType(enum.StrEnum):
    HISTORICAL = "historical"
    HISTORICAL_COMPLETE = "historical_complete"
    REALTIME = "realtime"
    STREAM_END = "stream_end"
    ERROR = "error"
    GAP = "gap"
    STATUS = "status"


class LogRecord(NamedTuple):
    """One captured line (or one status change) of one process.

    A named tuple: one is built per captured line on the hot path, and a tuple is the
    cheapest immutable object Python can build. A status change is a record too, with
    `stream == Stream.SYSTEM`, so that the history keeps it in order with the lines and
    a client resuming by `seq` sees it exactly once.

    `seq` grows by one per record of a process for its whole life, across restarts,
    clears and restarts of logcast itself. `timestamp` is when logcast read the bytes.
    `run` counts the starts of the process. `partial` marks a record that does not end
    a line: a piece of an overlong line, or a line flushed because nothing followed it.
    `state` is set on status records only.
    """

    seq: int
    timestamp: float
    level: Level
    message: str
    stream: Stream
    process: str
    run: int
    partial: bool = False
    state: ProcessState | None = None

    def as_dict(self) -> dict[str, Any]:
        """The `log` object of a stream event. Levels, streams and states stay enum members (str
        subclasses equal to their values; orjson and json write them as those strings),
        because this runs once per line on the way out and `.value` lookups cost."""
        seq, timestamp, level, message, stream, process, run, partial, state = self
        fields: dict[str, Any] = {
            "seq": seq,
            "timestamp": timestamp,
            "level": level,
            "message": message,
            "stream": stream,
            "process": process,
            "run": run,
            "partial": partial,
        }
        if state is not None:
            fields["state"] = state
        return fields

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogRecord:
        state = d.get("state")
        return cls(
            seq=int(d["seq"]),
            timestamp=float(d["timestamp"]),
            level=Level(d["level"]),
            message=str(d["message"]),
            stream=Stream(d["stream"]),
            process=str(d["process"]),
            run=int(d["run"]),
            partial=bool(d.get("partial", False)),
            state=ProcessState(state) if state else None,
        )


def _field(name: str) -> itemgetter[Any]:
    return itemgetter(LogRecord._fields.index(name))


# A record's fields by position, for `map` over many records at once (a loop in C).
SEQ_OF = _field("seq")
MESSAGE_OF = _field("message")
STREAM_OF = _field("stream")
PROCESS_OF = _field("process")


def text_bytes(text: str) -> int:
    """Bytes of `text` as UTF-8, a lone surrogate three (as it was read: a byte the decoder
    could not take is one in the stream, `surrogateescape`'s three in the count, as before)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def line_bytes(message: str, partial: bool) -> int:
    """The bytes a captured line counts in `bytes` (the API's, every store's, a replica's):
    its text as UTF-8 and, unless it is a partial piece, its line end."""
    return text_bytes(message) + (not partial)


def fitting(sizes: Iterable[int], budget: int) -> tuple[int, int]:
    """How many of the first items of these `sizes` fit in `budget` together (maybe none),
    and their total; the running sums bisected, a loop in C. Every cut of a list at a text
    budget is this, with its own rule for an item alone over the budget."""
    totals = list(accumulate(sizes))
    count = bisect_right(totals, budget)
    return count, totals[count - 1] if count else 0


def text_fitting(records: Sequence[LogRecord], budget: int) -> int:
    """How many of the first `records` have at most `budget` characters of text in all
    (one at least, so that a reader always moves on; none of none)."""
    if not records:
        return 0
    return max(1, fitting(map(len, map(MESSAGE_OF, records)), budget)[0])


# Records transposed at a time: `zip(*records)` walks every record once per field, and a
# block this size stays in the CPU's cache across the nine walks. A batch of 20,000 cold
# records at once took 820-1,030 ns a record, in blocks of 256-512 150-170 (scratch
# benchmark, a million records); a `map` per field cost five times `zip`.
TRANSPOSE_BLOCK = 512


def columns_of(records: Sequence[LogRecord]) -> list[list[Any]]:
    """The records' fields as nine lists (seq, timestamp, level, message, …), built by
    `zip` in blocks of `TRANSPOSE_BLOCK` records (loops in C)."""
    if not isinstance(records, list):
        records = list(records)  # a sequence that cannot be sliced (a deque)
    columns: list[list[Any]] = [[] for _ in LogRecord._fields]
    for start in range(0, len(records), TRANSPOSE_BLOCK):
        block = zip(*records[start : start + TRANSPOSE_BLOCK], strict=True)
        for column, values in zip(columns, block, strict=True):
            column.extend(values)
    return columns


class GapReason(enum.StrEnum):
    RETENTION = "retention"  # the lines left memory and the store
    LOST = "lost"  # they never reached the store
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class Gap:
    """Lines `start`..`end` (inclusive) of `process` will not reach this reader."""

    process: str
    start: int
    end: int
    reason: GapReason

    @property
    def count(self) -> int:
        return self.end - self.start + 1


# What a subscription yields: (type, payload). The payload is a LogRecord for historical,
# realtime and status; a Gap for gap; the last historical seq for historical_complete.
Entry = tuple[EventType, "LogRecord | Gap | int"]


class Lines(NamedTuple):
    """Framed lines as capture hands them on, column-wise so that capture builds no
    object per line: one list per field, all of one length (`texts[i]` has level
    `levels[i]`)."""

    texts: list[str]
    levels: list[Level]
    partial: list[bool]

    def rows(self) -> list[tuple[str, Level, bool]]:
        """The same lines as `(text, level, partial)` tuples."""
        return list(zip(self.texts, self.levels, self.partial, strict=True))


class LineSink(Protocol):
    """Where captured lines and status changes go (the hub implements it).

    Both methods are called from capture threads as well as the event loop; they
    must be thread-safe and must never block on a consumer. `lines` is called from
    capture threads, which may be held while the store catches up (a sink that holds
    them is a `HoldingSink`), and, as `lines(..., hold=False)`, from the event loop.
    """

    def lines(self, process: str, run: int, stream: Stream, timestamp: float, lines: Lines) -> int | None:
        """Take a chunk of lines; the seq given to the first of them (None: none given)."""
        ...

    def status(
        self,
        process: str,
        run: int,
        state: ProcessState,
        message: str,
        level: Level = Level.INFO,
    ) -> None: ...


class HoldingSink(LineSink, Protocol):
    """A sink whose `lines` may hold the capture thread while the store catches up (the
    hub). It says when that might happen, and takes lines without ever holding when
    asked to: a reader thread, which must keep the child's pipe drained, hands ordinary
    output on itself that way, one thread switch sooner than through its framer. It may
    also say whether its event loop is busy waking readers (`loop_busy()`, as the hub
    does), so that capture is not read there meanwhile (see `PipeReader`)."""

    def lines(
        self, process: str, run: int, stream: Stream, timestamp: float, lines: Lines, *, hold: bool = True
    ) -> int | None:
        """As `LineSink.lines`; with `hold=False` it never waits (the memory tail may
        then go past its bounds by this chunk until the store has caught up)."""
        ...

    def would_hold(self, process: str) -> bool:
        """Whether `lines` for `process` might wait now."""
        ...
