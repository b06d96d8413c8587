"""`logcast tail NAME…`: follow processes' logs in a terminal, like the LLM manager's `test_log_stream.py`.

History, then live lines, across restarts of the process and of the server (the client
resumes by seq: nothing lost, nothing repeated); stdout carries log lines only.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import sys
from dataclasses import dataclass, field
from typing import Annotated, TextIO

import orjson
import typer

from logcast.cli import render
from logcast.cli.options import TokenOption, UrlOption
from logcast.client import AsyncClient, ConnectionState, Event
from logcast.errors import ClientError
from logcast.query import Regex, compile_regex, parse_levels
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


@dataclass
class Printer:
    """Turns events into terminal lines. Writes synchronously: one event, one whole write."""

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
    follows: dict[str, _Follow] = field(init=False)
    width: int = field(init=False)

    def __post_init__(self) -> None:
        self.follows = {name: _Follow(name, render.process_style(i)) for i, name in enumerate(self.names)}
        self.width = max(len(name) for name in self.names)

    def text(self, key: str) -> str:
        return MESSAGES[self.lang][key]

    # -- stdout ------------------------------------------------------------------------

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def _prefix(self, follow: _Follow, live: bool) -> str:
        parts = []
        if len(self.names) > 1:
            parts.append(render.paint(follow.name.ljust(self.width), follow.style, self.color) + " |")
        marker = self.text("live") if live else self.text("history")
        parts.append(marker if live else render.paint(marker, "dim", self.color))
        return " ".join(parts) + " "

    def _line(self, follow: _Follow, live: bool, record: LogRecord) -> str:
        style = render.LEVEL_STYLE.get(record.level, "")
        message = render.safe_text(record.message, raw=self.raw, color=self.color)
        level = render.paint(record.level.value.upper().ljust(8), style, self.color)
        body = render.paint(message, style, self.color)
        return f"{self._prefix(follow, live)}{render.clock(record.timestamp)} {level} {body}"

    def _system(self, follow: _Follow, live: bool, message: str, style: str = "dim") -> str:
        text = render.safe_text(message, color=False)  # logcast's words: always one plain line
        return self._prefix(follow, live) + render.paint(
            f"[logcast] {follow.name}: {text}", style, self.color
        )

    def event(self, event: Event) -> None:
        follow = self.follows.get(event.process) or self.follows[self.names[0]]
        if event.type == "connection":
            self.connection(follow, event)
            return
        if event.type is EventType.HISTORICAL_COMPLETE:
            follow.live = True
        elif event.type is EventType.REALTIME:
            follow.live = True
        if event.is_line and event.log is not None and event.log.stream is not Stream.SYSTEM:
            if self.grep is not None and not self.grep.search(event.log.message):
                return
        if self.json:
            self._write(orjson.dumps(event.as_dict()).decode())
            return
        line = self._render(follow, event)
        if line is not None:
            self._write(line)

    def _render(self, follow: _Follow, event: Event) -> str | None:
        log = event.log
        if log is not None and (event.type is EventType.STATUS or log.stream is Stream.SYSTEM):
            style = "red" if log.state in (ProcessState.CRASHED, ProcessState.BACKOFF) else "dim"
            if log.level in (Level.ERROR, Level.CRITICAL):
                style = "red"
            return self._system(follow, follow.live, log.message or (log.state or ""), style)
        if event.is_line and log is not None:
            return self._line(follow, event.type is EventType.REALTIME, log)
        if event.type is EventType.GAP:
            key = "missed_reason" if event.reason else "missed"
            text = self.text(key).format(
                count=event.missed, first=event.gap_from, last=event.gap_to, reason=event.reason
            )
            return self._prefix(follow, follow.live) + render.paint(text, "yellow", self.color)
        if event.type is EventType.STREAM_END:
            return self._system(follow, follow.live, event.message or "stream ended")
        if event.type is EventType.ERROR:
            return self._system(follow, follow.live, f"{self.text('error')}: {event.message or ''}", "red")
        return None

    # -- stderr ------------------------------------------------------------------------

    def connection(self, follow: _Follow, event: Event) -> None:
        state = event.connection
        if state is None:
            return
        if state is ConnectionState.CONNECTING and follow.shown is not None:
            return  # every retry starts with `connecting`: say it once
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
        if event.reason and state in (ConnectionState.NOT_RUNNING, ConnectionState.DISCONNECTED):
            details.append(render.safe_text(event.reason, color=False))
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
    events = client.stream(
        name,
        lines=opts.lines,
        level=opts.level,
        reconnect=True,
        max_attempts=opts.max_attempts,
        interval=opts.interval,
        wait_running=opts.wait,
    )
    async with contextlib.aclosing(events):
        async for event in events:
            printer.event(event)


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
        int | None, typer.Option(min=0, help="History lines to print first (server default: 1000).")
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(callback=_validate_level, help="Minimum level (warning), or a list (info,error)."),
    ] = None,
    grep: Annotated[
        str | None,
        typer.Option(
            metavar="REGEX", callback=_validate_grep, help="Only lines matching (case-insensitive)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One event per line as JSON.")] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print log text as is, control sequences included.")
    ] = False,
    lang: Annotated[Lang, typer.Option(help="Language of markers and states.")] = Lang.EN,
) -> None:
    """Follow processes' logs: history first, then live lines, across restarts."""
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
        color=render.color_enabled(sys.stdout) and not as_json,
        err_color=render.color_enabled(sys.stderr),
    )
    opts = TailOptions(url, token, 0 if no_history else lines, level, max_attempts, interval, wait)
    # Exit codes: 0 after Ctrl-C, 1 when following fails (unknown process, wrong token, gave
    # up retrying); typer's usage errors (bad regex, unknown level) are 2.
    try:
        failures = asyncio.run(follow_all(names, opts, printer))
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
