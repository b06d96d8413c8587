"""What the sync and the async client share: shapes, error mapping, the stream cursor.

The two clients differ only in how they wait (httpx.Client or httpx.AsyncClient,
`time.sleep` or `asyncio.sleep`); every decision — which route, which resume header,
which status is worth waiting for, how long to back off, when to give up — is made here
once, so that both behave alike.
"""

from __future__ import annotations

import enum
import functools
import logging
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from itertools import islice
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from pydantic import PrivateAttr, ValidationError

from logcast.client.bounds import ENCODING
from logcast.client.events import (
    ConnectionState,
    Event,
    LineRun,
    connection_event,
    line_events,
    parse_events,
    parse_items,
    record_of,
)
from logcast.client.sse import Message, SSEDecoder
from logcast.errors import ClientError
from logcast.schemas import Host, HostList, Process
from logcast.secrets import mask_text
from logcast.types import EventType, LogRecord

logger = logging.getLogger(__name__)

MAX_BACKOFF = 10.0
# The server sends a comment every 15 s; four missed pings mean the link is dead.
STREAM_READ_TIMEOUT = 60.0
# s a start, stop or restart may take to answer: the server answers once the process has
# stopped (its `stop_timeout`, 10 s by default, then SIGKILL), longer than a client's timeout
CONTROL_TIMEOUT = 600.0
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})  # 429: a proxy's rate limit, waited out
SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
_LOG = operator.attrgetter("log")
_SEQ = operator.attrgetter("seq")


class ProcessInfo(Process):
    """A process as `GET /api/processes` describes it: the API's `logcast.schemas.Process`,
    with the JSON it was read from in `raw` (not compared)."""

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProcessInfo:
        try:
            info = cls.model_validate(d)
        except ValidationError as exc:
            raise ClientError(f"unexpected process description from the server: {_problem(exc)}") from None
        info._raw = d
        return info

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProcessInfo):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = Process.__hash__


def process_list(body: Any) -> list[ProcessInfo]:
    """The processes of `GET /api/processes`."""
    processes = body.get("processes") if isinstance(body, dict) else None
    if not isinstance(processes, list) or not all(isinstance(p, dict) for p in processes):
        raise ClientError("unexpected process list from the server: no list of processes")
    return [ProcessInfo.from_dict(d) for d in processes]


def host_list(body: Any) -> list[Host]:
    """The hosts of `GET /api/hosts`, as `logcast.schemas.Host`s."""
    try:
        return list(HostList.model_validate(body).hosts)
    except ValidationError as exc:
        raise ClientError(f"unexpected host list from the server: {_problem(exc)}") from None


def _problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


@dataclass(frozen=True, slots=True)
class LogPage:
    """A page of history, oldest first; pass `next` as `after` for the following page.

    The page is `logcast.schemas.HistoryPage` on the wire; its records are read straight
    into `LogRecord`s (`Log` is their model), without a model per record."""

    logs: list[LogRecord]
    next: int | None


@functools.cache
def user_agent() -> str:
    try:
        return f"logcast-client/{metadata.version('logcast')}"
    except metadata.PackageNotFoundError:
        return "logcast-client"


def base_headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "Accept-Encoding": ENCODING, "User-Agent": user_agent()}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def stream_timeout(timeout: float) -> httpx.Timeout:
    return httpx.Timeout(timeout, read=max(STREAM_READ_TIMEOUT, timeout))


def control_timeout(timeout: float) -> httpx.Timeout:
    """A start, stop or restart: connect within `timeout`, the answer within `CONTROL_TIMEOUT`."""
    return httpx.Timeout(timeout, read=max(CONTROL_TIMEOUT, timeout))


def process_path(name: str, suffix: str = "") -> str:
    return f"/api/processes/{quote(name, safe='')}{suffix}"


def clear_path(name: str) -> str:
    return f"/api/logs/{quote(name, safe='')}/clear"


_NOT_JSON = object()


def _body(response: httpx.Response) -> Any:
    """The answer's JSON body, or _NOT_JSON."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _detail(response: httpx.Response) -> str | None:
    body = _body(response)
    if body is _NOT_JSON:
        # UTF-8 whatever charset the answer names (`rot13` is a codec of text, not of bytes)
        text = response.content[:800].decode("utf-8", "replace").strip()
        return text[:200] or None
    detail = body.get("detail", body.get("message")) if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # FastAPI validation errors
        parts = []
        for item in detail:
            if isinstance(item, dict) and isinstance(item.get("msg"), str):
                loc = item.get("loc")
                # text and numbers only: `str()` of what may nest deep could recurse (`record_of`)
                names = [str(p) for p in loc if type(p) in (str, int)] if isinstance(loc, list) else []
                where = ".".join(p for p in names if p not in ("query", "body"))
                parts.append(f"{where}: {item['msg']}" if where else item["msg"])
        return "; ".join(parts) or None
    return None


def _refuses_parameter(response: httpx.Response, name: str) -> bool:
    """The answer is FastAPI's validation error about the query parameter `name`."""
    body = _body(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    return isinstance(detail, list) and any(
        isinstance(item, dict) and item.get("loc") == ["query", name] for item in detail
    )


def error_from_response(response: httpx.Response) -> ClientError:
    status = response.status_code
    if status == 401:
        return ClientError("token missing or wrong", status=status)
    detail = _detail(response)
    if detail is None:
        detail = f"HTTP {status} {response.reason_phrase}".strip()
    return ClientError(detail, status=status)


# What reading an answer may raise besides the server's own error (`bounds` adds to both).
ANSWER_ERRORS = (httpx.TransportError, httpx.DecodingError)


def unreachable(url: str, exc: Exception) -> ClientError:
    reason = mask_text(str(exc) or type(exc).__name__)
    url = mask_text(url)  # `http://bob:pw@host`: the password stays here
    if isinstance(exc, httpx.DecodingError):  # it answered, with what the client will not read
        return ClientError(f"unexpected answer from logcast at {url}: {reason}")
    return ClientError(f"cannot reach logcast at {url}: {reason}")


def decode_json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise error_from_response(response)
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ClientError(f"the server did not answer JSON (HTTP {response.status_code})") from None


def logs_params(
    *,
    after: int | None,
    limit: int,
    level: str | None,
    q: str | None,
    regex: str | None,
    since: float | None,
    until: float | None,
    tail: int | None,
    before: int | None,
) -> dict[str, str | int | float]:
    params: dict[str, str | int | float] = {"limit": limit}
    for key, value in (
        ("after", after),
        ("level", level),
        ("q", q),
        ("regex", regex),
        ("since", since),
        ("until", until),
        ("tail", tail),
        ("before", before),
    ):
        if value is not None:
            params[key] = value
    return params


def log_page(body: Any) -> LogPage:
    try:
        logs = [record_of(d) for d in body["logs"]]
        nxt = body.get("next")
        return LogPage(logs, int(nxt) if nxt is not None else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise ClientError(f"unexpected history page from the server: {exc}") from None


class StreamCursor:
    """Where a stream stands: the last seq seen, and the request that resumes after it.

    The first request carries the caller's `after`/`lines`; every later one carries
    `Last-Event-ID` = the last seq seen, so that a reconnect (a dropped link, a restart
    of the server) neither loses nor repeats a line. Events at or below that seq are
    dropped, in case a server sends them again.
    """

    def __init__(
        self,
        process: str,
        *,
        after: int | None,
        lines: int | None,
        level: str | None,
        q: str | None,
        model_route: bool,
        columns: bool = True,
    ):
        self.process = process
        # `batch=columns` (runs of lines as `LineRun`s) until a server refuses it
        self.columns = columns and not model_route
        self.last_seq = after
        self.lines = lines
        self.level = level
        self.q = q
        self.model_route = model_route
        self.connections = 0
        self.duplicates = 0
        self.behind: tuple[int, int] | None = None  # (the server's last seq, ours): see behind_notice

    @property
    def path(self) -> str:
        if self.model_route:
            return f"/api/models/{quote(self.process, safe='')}/logs/stream"
        return process_path(self.process, "/logs/stream")

    def request(self) -> tuple[dict[str, str | int], dict[str, str]]:
        """Query parameters and headers of the next connection.

        The native route is asked for runs of lines column-wise (`batch=columns`: nothing
        built per line but its text; a server that predates it answers 422, and the cursor
        asks for `batch=1`, many events per message, from then on: `refused_columns`); a
        server that predates batches ignores the parameter and sends one event per message,
        which `accept` reads as well."""
        params: dict[str, str | int] = {}
        headers: dict[str, str] = dict(SSE_HEADERS)
        if self.columns:
            params["batch"] = "columns"
        elif not self.model_route:
            params["batch"] = 1
        if self.level:
            params["level"] = self.level
        if self.q:
            params["q"] = self.q
        if self.last_seq is not None:
            if self.connections == 0:
                params["after"] = self.last_seq
            else:
                headers["Last-Event-ID"] = str(self.last_seq)
        elif self.lines is not None:
            params["lines"] = self.lines
        return params, headers

    def opened(self, response: httpx.Response) -> None:
        """Check the answer of a connection; raise ClientError unless it is an event stream."""
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            url = mask_text(str(response.url))  # `http://bob:pw@host`: the password stays here
            raise ClientError(f"{url} is not an event stream (content-type {content_type!r})")
        self.connections += 1

    def accept(self, data: str | bytes | memoryview, sse_id: str | None) -> list[Event]:
        """An SSE message → the events to hand on, without the empty, unknown and
        duplicate ones; the message may be one event or a batch of them."""
        try:
            events = parse_events(data, sse_id, self.process)
        except ValueError as exc:
            logger.warning("%s: %s", self.process, exc)
            return []
        return self._keep(events)

    def _keep(self, events: list[Event]) -> list[Event]:
        """`events` without those at or below the last seq seen, which moves past them."""
        last_seq = self.last_seq
        first = events[0] if events else None
        if first is not None and first.log is not None and (last_seq is None or first.log.seq > last_seq):
            # the usual case: records after the last one seen, in order (checked without a
            # Python step per event)
            logs = list(map(_LOG, events))
            if None not in logs:
                seqs = list(map(_SEQ, logs))
                if all(map(operator.lt, seqs, islice(seqs, 1, None))):
                    self.last_seq = seqs[-1]
                    return events
        kept: list[Event] = []
        for event in events:
            log = event.log
            if log is not None and last_seq is not None and log.seq <= last_seq:
                self.duplicates += 1
                logger.debug("%s: dropping seq %d, seen up to %d", self.process, log.seq, last_seq)
                continue
            if event.type is EventType.GAP and event.gap_to is not None:
                if last_seq is not None and event.gap_to <= last_seq:
                    continue  # lines it stands for were told of already (a reconnect's history)
                last_seq = self._advance(event.gap_to)
            elif event.type is EventType.HISTORICAL_COMPLETE and event.seq is not None:
                if last_seq is not None and event.seq < last_seq:
                    self.behind = (event.seq, last_seq)
                last_seq = self._advance(event.seq)
            elif event.seq is not None:
                last_seq = self._advance(event.seq)
            kept.append(event)
        return kept

    def behind_notice(self) -> Event | None:
        """Once, after a connection whose server's history ended before the last seq this
        client saw (a replica catching up, or a server whose history was replaced: a new
        data directory, another Redis): a `connected` event saying so. Its lines up to that
        seq are taken for those seen, and skipped; said, not silent."""
        behind, self.behind = self.behind, None
        if behind is None:
            return None
        head, seen = behind
        reason = (
            f"the server's history ends at seq {head}, before seq {seen} seen already: lines up to"
            f" {seen} are skipped as seen (a replica catching up, or a history that was replaced;"
            " start again without a position to follow the new one)"
        )
        return connection_event(self.process, ConnectionState.CONNECTED, reason=reason)

    def accept_all(self, messages: list[Message]) -> list[Event]:
        """The events of SSE messages (`accept` of each), as one list."""
        if len(messages) == 1:
            return self.accept(*messages[0])
        # One event per message (a server without batches, the LLM manager's route): the
        # messages of one read are parsed as one batch when all of them are log lines,
        # whose ids are their seqs; otherwise each is read on its own.
        lines = None
        datas = [data for data, _ in messages]
        if all(data[:1] == b"{" for data in datas):
            try:
                lines = line_events(orjson.loads(b"[" + b",".join(datas) + b"]"))
            except (orjson.JSONDecodeError, TypeError):
                pass
        if lines is not None:
            return self._keep(lines)
        events: list[Event] = []
        for data, sse_id in messages:
            events += self.accept(data, sse_id)
        return events

    def accept_items(self, messages: list[Message]) -> list[Event | LineRun]:
        """The events of SSE messages, a `batch=columns` run of lines as one `LineRun`,
        without the empty, unknown and duplicate ones (a run keeps its lines after the
        last seq seen)."""
        items: list[Event | LineRun] = []
        for data, sse_id in messages:
            try:
                items += parse_items(data, sse_id, self.process)
            except ValueError as exc:
                logger.warning("%s: %s", self.process, exc)
        kept: list[Event | LineRun] = []
        for item in items:
            if isinstance(item, LineRun):
                last_seq = self.last_seq
                run = item if last_seq is None else item.after(last_seq)
                if run is not item:
                    self.duplicates += len(item) - (len(run) if run is not None else 0)
                if run is not None:
                    self.last_seq = run.last_seq
                    kept.append(run)
            else:
                kept += self._keep([item])
        return kept

    def events_of(self, messages: list[Message]) -> list[Event]:
        """`accept_items`, each run of lines as its events (what `stream()` yields)."""
        if not self.columns:
            return self.accept_all(messages)
        items = self.accept_items(messages)
        if not any(isinstance(item, LineRun) for item in items):
            return items  # type: ignore[return-value]  # events only
        events: list[Event] = []
        for item in items:
            if isinstance(item, LineRun):
                events += item.events()
            else:
                events.append(item)
        return events

    def items_of(self, messages: list[Message]) -> list[Event | LineRun]:
        """`accept_items`, or the events of a stream without columns."""
        return self.accept_items(messages) if self.columns else list(self.accept_all(messages))

    def refused_columns(self, response: httpx.Response) -> bool:
        """A server that predates `batch=columns` answered 422 to it: ask it for `batch=1`
        from now on; True when that is what happened."""
        if not self.columns or response.status_code != 422 or not _refuses_parameter(response, "batch"):
            return False
        self.columns = False
        return True

    def _advance(self, seq: int) -> int:
        if self.last_seq is None or seq > self.last_seq:
            self.last_seq = seq
        return self.last_seq


# A wait between attempts shorter than this is slept, not watched: a stream opened each
# time would cost the server more (a connection, a stream slot) than the wait saves.
WATCH_MIN = 0.5  # s


class Watch(enum.Enum):
    """What a `RunWatch` saw in a chunk."""

    NOTHING = "nothing"
    OPEN = "open"  # the stream is at its live end: a start from now on comes as a status event
    RUNS = "runs"  # a status event says the process runs


class RunWatch:
    """Between two attempts of a stream that waits for its process to run: a stream of
    that process without history, whose status events end the wait when the process
    starts, instead of at the next attempt (`interval` seconds later, up to a second of
    lines behind by default). Whoever reads it asks for the state once it is `OPEN`: a
    start before that moment is not in the stream."""

    def __init__(self, process: str) -> None:
        # events, not runs of lines: statuses are all it looks for
        self.cursor = StreamCursor(
            process, after=None, lines=0, level=None, q=None, model_route=False, columns=False
        )
        self._decoder = SSEDecoder()
        self.open = False  # `historical_complete` came

    def request(self) -> tuple[str, dict[str, str | int], dict[str, str]]:
        params, headers = self.cursor.request()
        return self.cursor.path, params, headers

    def feed(self, chunk: bytes) -> Watch:
        """Raises ValueError on a message that is not the API's JSON."""
        seen = Watch.NOTHING
        for event in self.cursor.accept_all(self._decoder.feed(chunk)):
            state = event.log.state if event.type is EventType.STATUS and event.log is not None else None
            if state is not None and state.is_alive:
                return Watch.RUNS
            if event.type is EventType.HISTORICAL_COMPLETE and not self.open:
                self.open = True
                seen = Watch.OPEN
        return seen


STEADY = 30.0  # s: a stream that stayed open this long, hearing the server, was no failed attempt


class Attempts:
    """Counts failed connection attempts in a row and says how long to wait before the next.

    Waiting for a process to start polls every `interval`; a server that cannot be
    reached is retried with a delay doubling from `interval` up to 10 s. `max_attempts`
    0 means forever; once reached, `failed()` returns None and the caller gives up.
    `clock` (monotonic seconds) times how long a stream stayed open.
    """

    def __init__(
        self, process: str, max_attempts: int, interval: float, clock: Callable[[], float] = time.monotonic
    ):
        if max_attempts < 0:
            raise ValueError("max_attempts must be 0 (forever) or more")
        if interval < 0:
            raise ValueError("interval must not be negative")
        self.process = process
        self.max_attempts = max_attempts
        self.interval = interval
        self.failures = 0
        self.last_reason = ""
        self._clock = clock
        self._opened_at = 0.0

    def failed(self, state: ConnectionState, reason: str) -> Event:
        self.failures += 1
        self.last_reason = reason
        retry_in: float | None
        if self.max_attempts and self.failures >= self.max_attempts:
            retry_in = None
        elif state is ConnectionState.NOT_RUNNING:
            retry_in = self.interval
        else:
            # the exponent is bounded: past ~1,024 failures (a server down for hours) the
            # power was too large for a float
            doubled = self.interval * 2 ** min(self.failures - 1, 32)
            retry_in = min(doubled, max(MAX_BACKOFF, self.interval))
        return connection_event(self.process, state, reason=reason, attempt=self.failures, retry_in=retry_in)

    def dropped(self, reason: str, *, heard: int, progressed: bool = False) -> Event:
        """An open stream broke, having `heard` that many messages and pings. If it was of
        use (it `progressed`: brought a line, an event, a seq not seen before; or it heard
        the server more than once, as a quiet process's stream does, its position and then a
        ping; or once, but stayed open `STEADY` s), that is not a failed attempt: the count
        begins again and the next try comes after `interval`. If it was not (a server that
        answers, then hangs up; one that sends the same `historical_complete` and then a
        message too large to take, again and again), it is one: counted towards
        `max_attempts` and backed off."""
        steady = heard > 0 and self._clock() - self._opened_at >= STEADY
        if not (progressed or heard > 1 or steady):
            return self.failed(ConnectionState.DISCONNECTED, reason)
        self.failures = 0
        self.last_reason = reason
        return connection_event(
            self.process, ConnectionState.DISCONNECTED, reason=reason, attempt=0, retry_in=self.interval
        )

    def give_up(self) -> ClientError:
        return ClientError(f"{self.process}: gave up after {self.failures} attempts ({self.last_reason})")

    def connecting(self) -> Event:
        return connection_event(self.process, ConnectionState.CONNECTING, attempt=self.failures)

    def connected(self) -> Event:
        self._opened_at = self._clock()
        return connection_event(self.process, ConnectionState.CONNECTED)


def not_running_reason(response: httpx.Response) -> str:
    detail = _detail(response)
    return detail or f"HTTP {response.status_code}"


RETRY_AFTER_MAX = 300.0  # s: a server's Retry-After beyond this is taken as this


def waited_out(attempts: Attempts, response: httpx.Response, *, model_route: bool) -> Event:
    """The failed attempt of a stream answered with a status worth waiting out (502, 503,
    504). "Not running" only where it means that (503 on the LLM manager's route); on
    logcast's own route a 503 is a server that cannot serve streams now (too many open,
    its Redis away), and the next attempt comes no sooner than the answer's `Retry-After`;
    a process that is not running is asked about each `interval`, as the LLM manager's
    clients do."""
    state = (
        ConnectionState.NOT_RUNNING
        if response.status_code == 503 and model_route
        else ConnectionState.DISCONNECTED
    )
    failure = attempts.failed(state, not_running_reason(response))
    after = _seconds(response.headers.get("retry-after", ""))
    if state is ConnectionState.NOT_RUNNING or failure.retry_in is None or after is None:
        return failure
    if after > failure.retry_in:
        failure = failure._replace(retry_in=after)
    return failure


def _seconds(text: str) -> float | None:
    """A `Retry-After` in seconds (its HTTP-date form is not read), at most RETRY_AFTER_MAX
    (a longer number too); None for anything else. ASCII digits only: `isdigit` is true
    of `²`, which `float` refuses."""
    text = text.strip()
    if not text or not (text.isascii() and text.isdecimal()):
        return None
    return RETRY_AFTER_MAX if len(text) > 6 else min(float(text), RETRY_AFTER_MAX)


def is_waitable(status: int) -> bool:
    """A status worth waiting out: the process is not running (503) or a proxy's hiccup."""
    return status in RETRYABLE_STATUS
