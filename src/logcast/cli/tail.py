"""`logcast tail NAME…`: follow processes' logs in a terminal, like the LLM manager's `test_log_stream.py`.

History, then live lines, across restarts of the process and of the server (the client
resumes by seq: nothing lost, nothing repeated); stdout carries log lines only.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import operator
import os
import select
import sys
from dataclasses import dataclass, field, replace
from typing import Annotated, TextIO

import orjson
import typer

from logcast import loop
from logcast.cli import render
from logcast.cli.options import TokenOption, UrlOption
from logcast.client import AsyncClient, ConnectionState, Event
from logcast.client.events import LineRun
from logcast.errors import ClientError
from logcast.query import Regex, compile_regex, parse_levels, shown
from logcast.types import EventType, Level, LogRecord, ProcessState, Stream


class Lang(enum.StrEnum):
    EN = "en"
    ZH = "zh"


# The LLM manager's terminal tool's words for its states (状态指示器, 日志类型).
MESSAGES: dict[Lang, dict[str, str]] = {
    Lang.EN: {
        ConnectionState.CONNECTING: "connecting",
        ConnectionState.NOT_RUNNING: "not running",
        ConnectionState.CONNECTED: "connected",
        ConnectionState.DISCONNECTED: "disconnected",
        "history": "[history]",
        "live": "[live]",
        "missed": "… {count} lines missed ({first}–{last})",
        "missed_reason": "… {count} lines missed ({first}–{last}, {reason})",
        "retry": "retrying in {seconds:g} s",
        "attempt": "attempt {attempt}/{max}",
        "giving_up": "giving up",
        "error": "error",
    },
    Lang.ZH: {
        ConnectionState.CONNECTING: "连接中",
        ConnectionState.NOT_RUNNING: "模型未运行",
        ConnectionState.CONNECTED: "已连接",
        ConnectionState.DISCONNECTED: "连接断开",
        "history": "[历史]",
        "live": "[实时]",
        "missed": "… 丢失 {count} 行 ({first}–{last})",
        "missed_reason": "… 丢失 {count} 行 ({first}–{last}, {reason})",
        "retry": "{seconds:g} 秒后重试",
        "attempt": "第 {attempt}/{max} 次尝试",
        "giving_up": "放弃重试",
        "error": "错误",
    },
}

ICONS: dict[ConnectionState, str] = {
    ConnectionState.CONNECTING: "🟡",
    ConnectionState.NOT_RUNNING: "🔴",
    ConnectionState.CONNECTED: "🟢",
    ConnectionState.DISCONNECTED: "⚫",
}


@dataclass
class _Follow:
    """What the printer knows of one followed process."""

    name: str
    style: str
    live: bool = False
    shown: ConnectionState | None = None


ALIASES_MAX = 64  # names a stream's lines may carry besides the ones followed
GC_THRESHOLD = 50_000  # objects made between two collections of the youngest generation
_LOG = operator.attrgetter("log")
_TYPE = operator.attrgetter("type")
_PROCESS = operator.attrgetter("process")
_STREAM = operator.attrgetter("stream")
_RUN = operator.attrgetter("run")
_LINE_KINDS = (EventType.HISTORICAL, EventType.REALTIME)


def _one_run(batch: list[Event]) -> bool:
    """Every event of `batch` is a log line (not logcast's), of one kind, from one run of
    one process: checked without a Python step per event."""
    first = batch[0]
    if first.type not in _LINE_KINDS or list(map(_TYPE, batch)).count(first.type) != len(batch):
        return False
    logs = list(map(_LOG, batch))
    if None in logs or Stream.SYSTEM in map(_STREAM, logs):
        return False
    if list(map(_RUN, logs)).count(logs[0].run) != len(logs):
        return False
    return list(map(_PROCESS, batch)).count(first.process) == len(batch)


def _as_run(kind: EventType, records: list[LogRecord]) -> LineRun:
    """Records of one kind, process and run, as the `LineRun` the printer formats."""
    first = records[0]
    partial = [r.partial for r in records]
    return LineRun(
        kind,
        first.process,
        first.run,
        [r.seq for r in records],
        [r.timestamp for r in records],
        [r.level for r in records],
        [r.stream for r in records],
        [r.message for r in records],
        partial if True in partial else None,
    )


@dataclass
class Printer:
    """Turns events into terminal lines, a batch at a time: the stdout text of a whole batch
    is built as one string and written with one write and one flush, so that a flood costs a
    write per batch, not per line, while a line that arrives alone is written at once.

    `bare`: each log line as the process wrote it (made safe, without colours), without
    marker, time or level; logcast's own words (states, gaps, the end of a stream) go to
    stderr, so that stdout carries the process's lines only."""

    names: list[str]
    out: TextIO
    err: TextIO
    lang: Lang = Lang.EN
    json: bool = False
    raw: bool = False
    grep: Regex | None = None
    max_attempts: int = 0
    color: bool = False
    err_color: bool = False
    bare: bool = False
    follows: dict[str, _Follow] = field(init=False)
    width: int = field(init=False)
    # (process, run) of a partial record printed bare: its line is still open on stdout
    _open: tuple[str, int] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.follows = {name: _Follow(name, render.process_style(i)) for i, name in enumerate(self.names)}
        self.width = max(len(name) for name in self.names)
        # per level: what stands between a line's time and its text, and the text's colour
        self._heads: dict[Level, str] = {}
        self._paints: dict[Level, tuple[str, str]] = {}
        for level in Level:
            style = render.LEVEL_STYLE.get(level, "")
            self._heads[level] = f" {render.paint(level.value.upper().ljust(8), style, self.color)} "
            code = render.ANSI.get(style, "")
            self._paints[level] = (f"\x1b[{code}m", render.RESET) if self.color and code else ("", "")

    def text(self, key: str) -> str:
        return MESSAGES[self.lang][key]

    # -- stdout ------------------------------------------------------------------------

    def event(self, event: Event) -> None:
        self.events([event])

    def events(self, batch: list[Event | LineRun] | list[Event], name: str | None = None) -> None:
        """Print a batch: its lines with one write of stdout, at once. `name`: the name its
        stream was opened with; a process followed by one of its aliases has its lines
        under that name, though they carry the process's own."""
        if name is not None and batch:
            self._alias(batch, name)
        text = self._json(batch) if self.json else self._text(batch)
        if text:
            self._write(text)

    def _alias(self, batch: list[Event | LineRun] | list[Event], name: str) -> None:
        """Show what the stream opened as `name` brings under `name` (one stream carries
        one process: its first and last items say which)."""
        follow = self.follows.get(name)
        if follow is None:
            return
        for item in (batch[0], batch[-1]):
            # a server naming a new process every run would grow this without end
            if item.process not in self.follows and len(self.follows) < len(self.names) + ALIASES_MAX:
                self.follows[item.process] = follow

    def _write(self, text: str) -> None:
        """`text` on stdout, all of it before returning.

        Straight to the file descriptor: a write through `sys.stdout` bigger than a pipe
        holds lost part of its text when the process was stopped and continued in the
        middle of it (Ctrl-Z then `fg`; CPython 3.11, reproduced with a plain script),
        where `os.write` says how much it wrote and the rest is written again."""
        try:
            fd = self.out.fileno()
        except (AttributeError, OSError, ValueError):  # not a file (a test's StringIO)
            self.out.write(text)
            self.out.flush()
            return
        self.out.flush()  # nothing may stay behind in its buffer
        view = memoryview(text.encode(self.out.encoding or "utf-8", "replace"))
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:  # a descriptor left non-blocking by whoever opened it
                select.select([], [fd], [])

    def _follow(self, event: Event) -> _Follow:
        return self.follows.get(event.process) or self.follows[self.names[0]]

    def _wanted(self, event: Event) -> bool:
        """Not a line that `--grep` leaves out."""
        log = event.log
        if self.grep is None or log is None or not event.is_line or log.stream is Stream.SYSTEM:
            return True
        return self.grep.search(shown(log.message))  # as shown: colours do not count

    def _json(self, batch: list[Event | LineRun] | list[Event]) -> str:
        lines: list[bytes] = []
        for item in batch:
            for event in item.events() if isinstance(item, LineRun) else (item,):
                if event.type == "connection":
                    self.connection(self._follow(event), event)
                elif self._wanted(event):
                    lines.append(orjson.dumps(event.as_dict()))
        return render.safe_json(b"\n".join(lines) + b"\n").decode() if lines else ""

    def _text(self, batch: list[Event | LineRun] | list[Event]) -> str:
        pieces: list[str] = []
        events: list[Event] = []  # events waiting to be formatted, in order
        for item in batch:
            if isinstance(item, LineRun):
                self._events(events, pieces)
                events = []
                self._run(item, pieces)
            else:
                events.append(item)
        self._events(events, pieces)
        return "".join(pieces)

    def _events(self, batch: list[Event], pieces: list[str]) -> None:
        """Events: each run of lines of one kind from one run of a process formatted together."""
        if not batch:
            return
        if _one_run(batch):  # a flood's batch from a server without `batch=columns`
            self._run(_as_run(EventType(batch[0].type), list(map(_LOG, batch))), pieces)
            return
        count = len(batch)
        i = 0
        while i < count:
            event = batch[i]
            kind, log = event.type, event.log
            if log is None or kind not in _LINE_KINDS or log.stream is Stream.SYSTEM:
                self._other(event, pieces)
                i += 1
                continue
            process, run = event.process, log.run
            end = i + 1
            while end < count:
                other = batch[end]
                other_log = other.log
                if (
                    other.type is not kind
                    or other_log is None
                    or other_log.stream is Stream.SYSTEM
                    or other.process != process
                    or other_log.run != run
                ):
                    break
                end += 1
            records = [e.log for e in batch[i:end] if e.log is not None]
            i = end
            self._run(_as_run(EventType(kind), records), pieces)

    def _run(self, run: LineRun, pieces: list[str]) -> None:
        """A run of lines: formatted together, after `--grep` kept what it matches."""
        follow = self.follows.get(run.process) or self.follows[self.names[0]]
        live = run.type is EventType.REALTIME
        if live:
            follow.live = True
        if self.grep is not None:
            keep = list(map(bool, map(self.grep.search, map(shown, run.messages))))
            if self.bare:
                run = self._cut_where_left_out(run, keep, pieces)
            kept = run.select(keep)
            if kept is None:
                return
            run = kept
        if self.bare:
            self._bare(run, pieces)
            return
        texts = render.safe_texts(run.messages, raw=self.raw, color=self.color)
        prefix = self._prefix(follow, live)
        heads = self._heads
        clocks = render.clocks(run.timestamps)
        if not self.color:
            pieces += [
                f"{prefix}{clock}{heads[level]}{text}\n"
                for level, clock, text in zip(run.levels, clocks, texts, strict=True)
            ]
            return
        paints = self._paints
        for level, clock, text in zip(run.levels, clocks, texts, strict=True):
            start, stop = paints[level] if text else ("", "")
            if not stop and "\x1b" in text:  # the line's own colours end with it
                stop = render.RESET
            pieces.append(f"{prefix}{clock}{heads[level]}{start}{text}{stop}\n")

    def _cut_where_left_out(self, run: LineRun, keep: list[bool], pieces: list[str]) -> LineRun:
        """`--grep` in bare mode: a piece of a long line (a partial record) whose rest was
        left out ends its line there, so that the next line printed is not glued to it."""
        if self._open == (run.process, run.run) and not keep[0]:
            pieces.append("\n")
            self._open = None
        partial = run.partial
        if partial is None:
            return run
        ends = [cut and not (i + 1 < len(keep) and keep[i + 1]) for i, cut in enumerate(partial)]
        # the last piece's rest is in the next run: it is looked at there (above)
        ends[-1] = False
        if not any(ends):
            return run
        return replace(run, partial=[cut and not end for cut, end in zip(partial, ends, strict=True)])

    def _bare(self, run: LineRun, pieces: list[str]) -> None:
        """The lines as the process wrote them: a partial record leaves its line open for
        the rest of it (the next record of the same run)."""
        texts = render.safe_texts(run.messages, raw=self.raw, color=False)
        if self._open is not None and self._open != (run.process, run.run):
            pieces.append("\n")
        partial = run.partial
        if partial is not None:
            pieces += [text if cut else text + "\n" for cut, text in zip(partial, texts, strict=True)]
        else:
            pieces += ["\n".join(texts), "\n"]
        self._open = (run.process, run.run) if partial is not None and partial[-1] else None

    def _prefix(self, follow: _Follow, live: bool) -> str:
        parts = []
        if len(self.names) > 1:
            parts.append(render.paint(follow.name.ljust(self.width), follow.style, self.color) + " |")
        marker = self.text("live") if live else self.text("history")
        parts.append(marker if live else render.paint(marker, "dim", self.color))
        return " ".join(parts) + " "

    def _other(self, event: Event, pieces: list[str]) -> None:
        """Anything but a run of log lines: a state, a status record, a gap, the end."""
        follow = self._follow(event)
        if event.type == "connection":
            self.connection(follow, event)
            return
        if event.type in (EventType.HISTORICAL_COMPLETE, EventType.REALTIME):
            follow.live = True
        if not self._wanted(event):
            return
        notice = self._notice(event)
        if notice is None:
            return
        text, style, system = notice
        if self.bare:  # stdout is the process's lines only
            self.err.write(render.paint(f"[logcast] {follow.name}: {text}", style, self.err_color) + "\n")
            self.err.flush()
            return
        body = f"[logcast] {follow.name}: {text}" if system else text
        pieces.append(self._prefix(follow, follow.live) + render.paint(body, style, self.color) + "\n")

    def _notice(self, event: Event) -> tuple[str, str, bool] | None:
        """logcast's words for an event that is not a log line (always one plain line),
        their style, and whether they are a system line (`[logcast] NAME: …`)."""
        log = event.log
        if log is not None and (event.type is EventType.STATUS or log.stream is Stream.SYSTEM):
            style = "red" if log.state in (ProcessState.CRASHED, ProcessState.BACKOFF) else "dim"
            if log.level in (Level.ERROR, Level.CRITICAL):
                style = "red"
            return render.plain(log.message or (log.state or "")), style, True
        if event.type is EventType.GAP:
            key = "missed_reason" if event.reason else "missed"
            reason = render.plain(event.reason) if event.reason else event.reason
            text = self.text(key).format(
                count=event.missed, first=event.gap_from, last=event.gap_to, reason=reason
            )
            return text, "yellow", False
        if event.type is EventType.STREAM_END:
            return render.plain(event.message or "stream ended"), "dim", True
        if event.type is EventType.ERROR:
            return render.plain(f"{self.text('error')}: {event.message or ''}"), "red", True
        return None

    # -- stderr ------------------------------------------------------------------------

    def connection(self, follow: _Follow, event: Event) -> None:
        state = event.connection
        if state is None:
            return
        if state is ConnectionState.CONNECTING and follow.shown is not None:
            return  # every retry starts with `connecting`: say it once
        if state is ConnectionState.CONNECTED and event.reason:
            self.status(follow, state, event)  # a word on the connection made (`behind_notice`)
            return
        if state is ConnectionState.CONNECTED:
            follow.live = False
        repeat = state is follow.shown and state is not ConnectionState.CONNECTED
        if repeat and not self.max_attempts:
            return
        follow.shown = state
        self.status(follow, state, event)

    def status(self, follow: _Follow, state: ConnectionState, event: Event) -> None:
        label = self.text(state)
        name = render.paint(follow.name, follow.style, self.err_color)
        details = []
        if event.reason and state is not ConnectionState.CONNECTING:
            details.append(render.plain(event.reason))
        if state in (ConnectionState.NOT_RUNNING, ConnectionState.DISCONNECTED):
            if self.max_attempts and event.attempt:
                details.append(self.text("attempt").format(attempt=event.attempt, max=self.max_attempts))
            if event.retry_in is None and event.attempt:
                details.append(self.text("giving_up"))
            elif event.retry_in is not None:
                details.append(self.text("retry").format(seconds=round(event.retry_in, 2)))
        suffix = f" ({'; '.join(details)})" if details else ""
        self.err.write(f"{ICONS[state]} {name}: {label}{suffix}\n")
        self.err.flush()

    def failure(self, message: str) -> None:
        """A failure, in words that may come from the server: made safe to print."""
        message = render.plain(message)
        self.err.write(render.paint(f"{self.text('error')}: {message}", "red", self.err_color) + "\n")
        self.err.flush()


@dataclass(frozen=True)
class TailOptions:
    url: str | None
    token: str | None
    lines: int | None
    level: str | None
    max_attempts: int
    interval: float
    wait: bool = True


async def _follow(client: AsyncClient, name: str, opts: TailOptions, printer: Printer) -> None:
    batches = client.stream_runs(
        name,
        lines=opts.lines,
        level=opts.level,
        reconnect=True,
        max_attempts=opts.max_attempts,
        interval=opts.interval,
        wait_running=opts.wait,
    )
    async with contextlib.aclosing(batches):
        async for batch in batches:
            printer.events(batch, name)


async def follow_all(names: list[str], opts: TailOptions, printer: Printer) -> list[str]:
    """Follow every name until cancelled; the failures (messages) if any stream fails."""
    async with AsyncClient(opts.url, opts.token) as client:
        tasks = [asyncio.create_task(_follow(client, name, opts, printer), name=name) for name in names]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    failures = []
    for task in done:
        exc = task.exception()
        if isinstance(exc, ClientError):
            failures.append(str(exc))
        elif exc is not None:
            raise exc
    return failures


def _validate_level(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_levels(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _validate_grep(value: str | None) -> str | None:
    try:
        compile_regex(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _quiet_broken_pipe() -> None:
    """stdout went away (`| head`): stop without a traceback at interpreter exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def tail(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Processes to follow.")],
    url: UrlOption = None,
    token: TokenOption = None,
    max_attempts: Annotated[
        int, typer.Option(min=0, help="Failed attempts in a row before giving up; 0 = forever.")
    ] = 0,
    interval: Annotated[float, typer.Option(min=0.01, help="Seconds between attempts.")] = 1.0,
    no_history: Annotated[bool, typer.Option("--no-history", help="Only new lines.")] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Wait until the process runs (default), or print its history now and follow it.",
        ),
    ] = True,
    lines: Annotated[
        int | None,
        typer.Option(
            min=0, help="History lines to print first (default: all the server keeps, as `docker logs -f`)."
        ),
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(callback=_validate_level, help="Minimum level (warning), or a list (info,error)."),
    ] = None,
    grep: Annotated[
        str | None,
        typer.Option(
            metavar="REGEX",
            callback=_validate_grep,
            help="Only lines matching (case-insensitive), as shown (colours left out). Looked at here,"
            " after `--lines` counted the history (`--level` is applied by the server, before).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One event per line as JSON.")] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print log text as is, control sequences included.")
    ] = False,
    bare: Annotated[
        bool,
        typer.Option(
            "--bare",
            help="Only the log lines as written: no marker, time, level, name nor colour "
            "(logcast's own notes go to stderr). For pipes.",
        ),
    ] = False,
    lang: Annotated[Lang, typer.Option(help="Language of markers and states.")] = Lang.EN,
) -> None:
    """Follow processes' logs: history first, then live lines, across restarts."""
    if bare and as_json:
        raise typer.BadParameter("--bare and --json cannot be used together", param_hint="'--bare'")
    names = list(dict.fromkeys(names))
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    printer = Printer(
        names,
        sys.stdout,
        sys.stderr,
        lang=lang,
        json=as_json,
        raw=raw,
        grep=compile_regex(grep),
        max_attempts=max_attempts,
        color=render.color_enabled(sys.stdout) and not as_json and not bare,
        err_color=render.color_enabled(sys.stderr),
        bare=bare,
    )
    opts = TailOptions(url, token, 0 if no_history else lines, level, max_attempts, interval, wait)
    # Exit codes: 0 after Ctrl-C, 1 when following fails (unknown process, wrong token, gave
    # up retrying); typer's usage errors (bad regex, unknown level) are 2.
    # A flood makes a few objects per line, alive for a batch: collecting every 700 of
    # them, and looking at everything the imports left each time the eldest generation
    # is collected, cost as much as the lines themselves. The imports' objects are there
    # for good (freeze), and a batch is collected once, not every 700 objects.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)
    try:
        failures = loop.run(follow_all(names, opts, printer))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except BrokenPipeError:
        _quiet_broken_pipe()
        raise typer.Exit(0) from None
    except ClientError as exc:  # settings: an unreadable logcast.toml
        printer.failure(str(exc))
        raise typer.Exit(1) from None
    for message in failures:
        printer.failure(message)
    raise typer.Exit(1 if failures else 0)


def register(app: typer.Typer) -> None:
    app.command("tail")(tail)
