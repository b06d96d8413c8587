"""The commands of the LLM manager's `advanced_log_tester.py` (`stats`, `logs <name>`, `clear`,
`help`, `quit`), offered in Textual's command palette (ctrl+p) for those who know that tool."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from logcast.cli import render


class MonitorCommands(Provider):
    """The interactive commands (`stats`, `logs`, `clear`…) in the command palette."""

    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        from logcast.cli.monitor.app import MonitorApp  # here: app.py imports this module

        app = self.app
        if not isinstance(app, MonitorApp):
            return []
        commands: list[tuple[str, Callable[[], Any], str]] = [
            ("stats", app.action_stats, "per-process totals"),
            ("clear", app.action_clear_pane, "clear the screen (the log pane)"),
            ("help", app.action_help, "keys and commands"),
            ("quit", app.exit, "leave the monitor"),
            ("logs all", partial(app.select_view, None), "every process's log"),
        ]
        for name in app.names:
            commands.append((f"logs {name}", partial(app.select_view, name), f"show {name}'s log"))
        return commands

    async def discover(self) -> Hits:
        for text, command, help_text in self._commands():
            yield DiscoveryHit(text, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, command, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                # a name from the server may look like markup: shown as it is, not highlighted
                safe = render.plain(text)
                shown = matcher.highlight(safe) if "[" not in safe else Content(safe)
                yield Hit(score, shown, command, text=text, help=help_text)
