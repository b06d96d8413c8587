"""`logcast monitor`: an interactive terminal monitor of a logcast server's processes, as a
Textual app, in the manner of the LLM manager's `advanced_log_tester.py`."""

from logcast.cli.monitor.app import MonitorApp
from logcast.cli.monitor.command import monitor, register
from logcast.cli.monitor.screens import ConfirmScreen, HelpScreen, StatsScreen

__all__ = ["ConfirmScreen", "HelpScreen", "MonitorApp", "StatsScreen", "monitor", "register"]
