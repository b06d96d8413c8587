"""The monitor's modal screens: a yes/no confirmation before a process is changed, the
statistics view, and the help."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Static

from logcast.cli import render
from logcast.client import AsyncClient
from logcast.errors import ClientError
from logcast.types import ProcessState

HELP = """\
[b]Keys[/b]
  ↑ ↓        choose a process          enter   show its log
  a          show every process's log  /       search the log
  s x r      start, stop, restart      c       clear its history
  t          statistics                ctrl+p  command palette
  ?          this help                 q       quit

[b]Commands[/b] (ctrl+p)
  stats          per-process totals
  logs <name>    show that process's log (logs all: every process)
  clear          clear the screen (the log pane)
  help, quit

Level filter: one level means that level and above. Search: case-insensitive text.
"""


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no, for an action that changes a process."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Grid(id="dialog"):
            yield Label(render.plain(self.question), id="question", markup=False)
            yield Button("Yes (y)", variant="error", id="yes")
            yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class StatsScreen(ModalScreen[None]):
    """The `stats` command: totals and per-process counters."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,t", "close", "Close")]

    def __init__(self, client: AsyncClient):
        super().__init__()
        self.client = client

    def compose(self) -> ComposeResult:
        with Vertical(id="stats"):
            yield Label("Statistics", id="stats-title")
            yield DataTable[Text | str](id="stats-table", cursor_type="none", zebra_stripes=True)
            yield Static("", id="stats-summary")

    async def on_mount(self) -> None:
        table = self.query_one("#stats-table", DataTable)
        for key, label in (
            ("name", "PROCESS"),
            ("state", "STATE"),
            ("lines", "LINES"),
            ("bytes", "BYTES"),
            ("rate", "LINES/S"),
            ("warnings", "WARN"),
            ("errors", "ERR"),
            ("subscribers", "SUBS"),
            ("dropped", "DROPPED"),
        ):
            table.add_column(label, key=key)
        try:
            stats = await self.client.stats()
        except ClientError as exc:
            if not self.is_attached:  # closed while loading
                return
            self.query_one("#stats-summary", Static).update(
                Text(render.plain(f"cannot load statistics: {exc}"), "red")
            )
            return
        if not self.is_attached:
            return
        try:
            summary = _fill(table, stats)
        except (AttributeError, TypeError, ValueError, RecursionError):  # not what a logcast server answers
            table.clear()
            summary = Text("cannot load statistics: the server's answer is not in their shape", "red")
        self.query_one("#stats-summary", Static).update(summary)

    def action_close(self) -> None:
        self.dismiss(None)


def _cell(value: Any) -> str:
    """A value of the server's answer as text made safe to print."""
    return render.plain(str(value))


def _fill(table: DataTable[Any], stats: dict[str, Any]) -> Text:
    """The statistics' rows into `table`, and their summary; whatever does not fit the
    shape raises (AttributeError, TypeError, ValueError; RecursionError for lists nested
    deep)."""
    for name, counters in stats.get("processes", {}).items():
        table.add_row(
            Text(_cell(name)),
            _state_text(counters.get("state")),
            _cell(counters.get("lines", 0)),
            _human_size(counters.get("bytes", 0)),
            f"{float(counters.get('lines_per_s', 0.0)):.1f}",
            _cell(counters.get("warnings", 0)),
            Text(_cell(counters.get("errors", 0)), "red" if counters.get("errors") else ""),
            _cell(counters.get("subscribers", 0)),
            _cell(counters.get("dropped", 0)),
            key=name,
        )
    summary = (
        f"total: {stats.get('total_logs', 0)} lines, {_human_size(stats.get('total_bytes', 0))}, "
        f"{float(stats.get('lines_per_s', 0.0)):.1f} lines/s, {stats.get('subscribers', 0)} subscribers, "
        f"{stats.get('dropped', 0)} dropped"
    )
    store = stats.get("store")
    if isinstance(store, dict):
        summary += (
            f"\nstore: {store.get('engine', '?')}, {store.get('written', 0)} written, "
            f"{store.get('pending', 0)} pending, {store.get('errors', 0)} errors"
        )
    return Text(_cell(summary))


class HelpScreen(ModalScreen[None]):
    """The keys and the palette's commands."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(HELP)

    def action_close(self) -> None:
        self.dismiss(None)


def _state_text(value: Any) -> Text:
    try:
        return Text(str(value), render.STATE_STYLE.get(ProcessState(value), ""))
    except ValueError:
        return Text(str(value or "-"))


def _human_size(size_bytes: Any) -> str:
    size = float(size_bytes or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
