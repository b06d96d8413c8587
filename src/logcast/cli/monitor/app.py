"""The monitor's main screen: the process table, the live log pane and its filters, and
the keys that control processes."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input, RichLog, Select, Static

from logcast.cli import render
from logcast.cli.control import model_text
from logcast.cli.monitor.palette import MonitorCommands
from logcast.cli.monitor.screens import ConfirmScreen, HelpScreen, StatsScreen
from logcast.client import AsyncClient, ConnectionState, Event, ProcessInfo
from logcast.errors import ClientError
from logcast.query import parse_levels, shown
from logcast.secrets import mask_line
from logcast.types import EventType, Level, ProcessState, Stream

HISTORY = 200  # history lines each stream starts with
PANE_LINES = 2000  # lines the pane keeps
BUFFER_LINES = 2000  # lines kept per process for re-filtering
REFRESH = 1.0  # seconds between table refreshes

COLUMNS = (
    ("name", "NAME"),
    ("host", "HOST"),
    ("state", "STATE"),
    ("pid", "PID"),
    ("uptime", "UPTIME"),
    ("restarts", "RESTARTS"),
    ("rate", "LINES/S"),
    ("warnings", "WARN"),
    ("errors", "ERR"),
    ("subscribers", "SUBS"),
    ("cpu", "CPU"),
    ("memory", "MEM"),
    ("model", "MODEL"),
)

LEVEL_OPTIONS: list[tuple[str, str]] = [
    ("all levels", ""),
    ("debug+", Level.DEBUG.value),
    ("info+", Level.INFO.value),
    ("warning+", Level.WARNING.value),
    ("error+", Level.ERROR.value),
    ("critical", Level.CRITICAL.value),
]

# Truecolour, so that no process looks like a level (red, yellow, green) in any theme.
PROCESS_COLOURS = ("#61afef", "#c678dd", "#56b6c2", "#8787ff", "#87afaf", "#d7afff")


log = logging.getLogger(__name__)


class MonitorApp(App[None]):
    """Processes, their live logs and their controls, in one terminal screen.

    A table of processes refreshed every second; a bounded log pane fed by one stream per
    process (history then realtime, reconnecting by itself), for one process or all of them,
    filtered by level and by text; keys to start, stop, restart and clear, each confirmed.
    Nothing the server does raises out of the app: failures are shown in the status bar or
    as notifications, and the app keeps retrying.
    """

    TITLE = "logcast monitor"
    COMMANDS = App.COMMANDS | {MonitorCommands}
    CSS_PATH = "monitor.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "control('start')", "Start"),
        Binding("x", "control('stop')", "Stop"),
        Binding("r", "control('restart')", "Restart"),
        Binding("c", "clear_history", "Clear"),
        Binding("t", "stats", "Stats"),
        Binding("a", "select_view_all", "All logs"),
        Binding("slash", "focus_search", "Search"),
        Binding("escape", "focus_table", "Table", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, names: list[str] | None = None, url: str | None = None, token: str | None = None):
        super().__init__()
        self.client = AsyncClient(url, token)
        self.requested = list(dict.fromkeys(names or []))  # the names given on the command line; none: all
        self.names: list[str] = list(self.requested)
        self.infos: dict[str, ProcessInfo] = {}
        self.view: str | None = self.requested[0] if len(self.requested) == 1 else None
        self.levels: frozenset[Level] | None = None
        self.search_text = ""
        self.buffers: dict[str, deque[Event]] = {}
        self.merged: deque[Event] = deque(maxlen=PANE_LINES)
        self.streams: dict[str, ConnectionState] = {}
        self.server_error: str | None = None
        self._followed: set[str] = set()
        self._unknown: set[str] = set()
        # Kept, not queried: a stream or a refresh may finish while the app is closing.
        self.table: DataTable[Text | str] = DataTable(id="processes", cursor_type="row", zebra_stripes=True)
        self.level_select: Select[str] = Select(LEVEL_OPTIONS, value="", allow_blank=False, id="level")
        self.search_input = Input(placeholder="search the log  (/)", id="search")
        self.pane = RichLog(id="pane", max_lines=PANE_LINES, wrap=False, markup=False, highlight=False)
        self.status_bar = Static("", id="status")

    # -- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield self.table
        with Horizontal(id="filters"):
            yield self.level_select
            yield self.search_input
        yield self.pane
        yield self.status_bar
        yield Footer()

    async def on_mount(self) -> None:
        table = self.table
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self._update_title()
        self._update_status()
        self.set_interval(REFRESH, self.refresh_processes)
        await self.refresh_processes()

    async def on_unmount(self) -> None:
        self.workers.cancel_all()
        with contextlib.suppress(Exception):
            await self.client.aclose()

    # -- the process table ---------------------------------------------------------------

    async def refresh_processes(self) -> None:
        try:
            infos = await self.client.processes()
        except ClientError as exc:
            if not self.table.is_attached:
                return
            if self.server_error is None and exc.status is not None:
                self.say(str(exc), severity="error", title="logcast")
            self.server_error = str(exc)
            self._update_status()
            return
        if not self.table.is_attached:  # the app closed while we waited
            return
        self.server_error = None
        if self.requested:
            known = {i.name for i in infos}
            for name in self.requested:
                if name not in known and name not in self._unknown:
                    self._unknown.add(name)
                    self.say(f"unknown process {name!r}", severity="warning", title="logcast")
            infos = [i for i in infos if i.name in self.requested]
        self.infos = {info.name: info for info in infos}
        self.names = [info.name for info in infos]
        self._update_table(infos)
        for info in infos:
            if info.name not in self._followed:
                self._followed.add(info.name)
                self.run_worker(self._follow(info.name), group="streams", exit_on_error=False)
        self._update_status()

    def _update_table(self, infos: list[ProcessInfo]) -> None:
        table = self.table
        present = {str(key.value) for key in table.rows}
        for info in infos:
            cells = self._cells(info)
            if info.name in present:
                for (key, _), value in zip(COLUMNS, cells, strict=True):
                    table.update_cell(info.name, key, value)
            else:
                table.add_row(*cells, key=info.name)
        for gone in present - {info.name for info in infos}:
            table.remove_row(gone)

    def _cells(self, info: ProcessInfo) -> list[Text | str]:
        # unknown: the host that runs it is lost; shown dim, like a process that does not run
        unknown = info.state is ProcessState.UNKNOWN
        state = Text(info.state.value, render.STATE_STYLE.get(info.state, ""))
        if info.exit_code is not None and not info.state.is_alive and not unknown:
            state.append(f" ({info.exit_code})", "red" if info.exit_code else "dim")
        return [
            Text(render.plain(info.name), self.colour(info.name)),
            Text(render.plain(info.host or "-"), "dim"),
            state,
            str(info.pid) if info.pid and info.state.is_alive else "-",
            render.duration(info.uptime) if info.state.is_alive else "-",
            str(info.restarts),
            f"{info.lines_per_s:.1f}",
            Text(str(info.warnings), "yellow" if info.warnings else ""),
            Text(str(info.errors), "bold red" if info.errors else ""),
            str(info.subscribers),
            f"{info.resources.cpu_percent:.0f}%" if info.resources is not None else "-",
            render.size(info.resources.rss_bytes) if info.resources is not None else "-",
            model_text(info),
        ]

    def colour(self, name: str) -> str:
        index = self.names.index(name) if name in self.names else 0
        return PROCESS_COLOURS[index % len(PROCESS_COLOURS)]

    def highlighted(self) -> str | None:
        table = self.table
        if table.row_count == 0 or not table.is_valid_row_index(table.cursor_row):
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    @on(DataTable.RowSelected, "#processes")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.select_view(str(event.row_key.value))

    # -- streams and the pane ------------------------------------------------------------

    async def _follow(self, name: str) -> None:
        events = self.client.stream(name, lines=HISTORY, interval=REFRESH)
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    self._on_event(name, event)
        except Exception as exc:  # a ClientError, or what a broken server made of our code
            if not isinstance(exc, ClientError):
                log.exception("the stream of %s failed", name)
            self.streams[name] = ConnectionState.DISCONNECTED
            self._followed.discard(name)
            self.say(f"{name}: {exc}", severity="error", title="stream")
            self._update_status()

    def _on_event(self, name: str, event: Event) -> None:
        if not self.pane.is_attached:
            return
        state = event.connection
        if state is not None:
            if self.streams.get(name) is not state:
                self.streams[name] = state
                self._update_status()
            return
        if not (event.log is not None or event.type is EventType.GAP):
            return
        buffer = self.buffers.setdefault(name, deque(maxlen=BUFFER_LINES))
        buffer.append(event)
        self.merged.append(event)
        if self._wanted(event):
            self.pane.write(self._line(event))

    def _wanted(self, event: Event) -> bool:
        if self.view is not None and event.process != self.view:
            return False
        log = event.log
        if log is None or log.stream is Stream.SYSTEM:
            return True
        if self.levels is not None and log.level not in self.levels:
            return False
        return not (self.search_text and self.search_text not in shown(log.message).casefold())

    def _line(self, event: Event) -> Text:
        line = Text(no_wrap=True)
        log = event.log
        line.append(render.clock(log.timestamp if log else 0.0) + " ", "dim")
        if self.view is None:
            line.append(f"{render.plain(event.process)} ", self.colour(event.process))
        if log is None:  # a gap
            line.append(f"… {event.missed} lines missed ({event.gap_from}–{event.gap_to})", "yellow")
            return line
        if log.stream is Stream.SYSTEM:
            style = "red" if log.state in (ProcessState.CRASHED, ProcessState.BACKOFF) else "dim italic"
            # status lines are masked by the server; older history may not be
            line.append(f"[logcast] {render.plain(mask_line(log.message))}", style)
            return line
        style = render.LEVEL_STYLE.get(log.level, "")
        line.append(f"{log.level.value.upper():<8} ", style)
        body = Text.from_ansi(render.safe_text(log.message))
        if style:
            body.stylize(style)
        line.append_text(body)
        return line

    def _rerender(self) -> None:
        pane = self.pane
        pane.clear()
        source = self.merged if self.view is None else self.buffers.get(self.view, deque())
        for event in source:
            if self._wanted(event):
                pane.write(self._line(event))

    def select_view(self, name: str | None) -> None:
        self.view = name
        self._update_title()
        self._update_status()
        self._rerender()

    def say(self, message: str, **options: Any) -> None:
        """`notify`, of words that may come from the server (names, errors): made safe to
        print, and not read as markup (a name with `[/x]` in it would end the app)."""
        self.notify(render.plain(message), markup=False, **options)

    def _update_title(self) -> None:
        self.sub_title = render.plain(f"{self.client.url} · logs: {self.view or 'all'}")

    def _update_status(self) -> None:
        text = Text()
        if self.server_error is not None:
            text.append(f"● {render.plain(self.server_error)} (retrying)", "red")
        else:
            connected = sum(1 for s in self.streams.values() if s is ConnectionState.CONNECTED)
            text.append("● ", "green")
            text.append(self.client.url)
            text.append(f" · {len(self.infos)} processes · streams {connected}/{len(self.streams)}")
        text.append(render.plain(f" · logs: {self.view or 'all'}"))
        if self.levels is not None:
            text.append(f" · level: {self.level_select.value}+")
        if self.search_text:
            text.append(f" · search: {self.search_text}")
        self.status_bar.update(text)

    # -- filters -------------------------------------------------------------------------

    @on(Select.Changed, "#level")
    def level_changed(self, event: Select.Changed) -> None:
        value = event.value
        self.levels = parse_levels(value) if isinstance(value, str) and value else None
        self._update_status()
        self._rerender()

    @on(Input.Changed, "#search")
    def search_changed(self, event: Input.Changed) -> None:
        self.search_text = event.value.strip().casefold()
        self._update_status()
        self._rerender()

    @on(Input.Submitted, "#search")
    def search_submitted(self) -> None:
        self.table.focus()

    def action_focus_search(self) -> None:
        self.search_input.focus()

    def action_focus_table(self) -> None:
        self.table.focus()

    def action_select_view_all(self) -> None:
        self.select_view(None)

    def action_clear_pane(self) -> None:
        self.pane.clear()

    # -- controls ------------------------------------------------------------------------

    def action_control(self, action: str) -> None:
        self._confirm_control(action, lambda name: f"{action.capitalize()} {name}?")

    def action_clear_history(self) -> None:
        self._confirm_control("clear", lambda name: f"Clear the history of {name}?")

    def _confirm_control(self, action: str, question: Callable[[str], str]) -> None:
        """Ask `question` about the highlighted process; on yes, carry out `action`."""
        name = self.highlighted()
        if name is None:
            self.say("no process selected", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.control(action, name)

        self.push_screen(ConfirmScreen(question(name)), answered)

    @work(group="control", exit_on_error=False)
    async def control(self, action: str, name: str) -> None:
        try:
            if action == "clear":
                await self.client.clear(name)
                self.buffers.pop(name, None)
                self.merged = deque(
                    (event for event in self.merged if event.process != name), maxlen=PANE_LINES
                )
                self._rerender()
                self.say(f"{name}: history cleared")
            else:
                call: Callable[[str], Any] = getattr(self.client, action)
                info: ProcessInfo = await call(name)
                self.say(f"{name}: {info.state.value}")
        except ClientError as exc:
            self.say(f"{action} {name}: {exc}", severity="error")
        await self.refresh_processes()

    def action_stats(self) -> None:
        self.push_screen(StatsScreen(self.client))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())
