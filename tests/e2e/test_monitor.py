"""`logcast monitor` under Textual's pilot, against a real server with real children."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from rich.text import Text
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, RichLog, Select, Static

from logcast.cli.monitor import ConfirmScreen, HelpScreen, MonitorApp, StatsScreen
from logcast.cli.monitor.app import COLUMNS
from logcast.client import ProcessInfo
from tests.conftest import free_port
from tests.e2e.conftest import Server, py_command

pytestmark = pytest.mark.e2e

Make = Callable[..., Server]

CHATTY = py_command(
    """
    import time
    for line in ["INFO:root:hello", "WARNING:root:careful", "ERROR:root:broken bolt", "INFO:root:bye"]:
        print(line, flush=True)
    time.sleep(3600)
    """
)
SLEEPER = py_command("import time; print('idle up', flush=True); time.sleep(3600)")
SIZE = (150, 45)


@pytest.fixture
def server(make_server: Make) -> Server:
    server = make_server(
        f"""
        [process.web]
        command = {CHATTY}

        [process.idle]
        command = {SLEEPER}
        autostart = false
        """
    )
    deadline = time.monotonic() + 15
    with server.client() as c:
        while "bye" not in c.get("/api/processes/web/logs?after=0").text:
            assert time.monotonic() < deadline, "web never printed"
            time.sleep(0.02)
    return server


async def until(pilot: Pilot[Any], predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def cell(app: MonitorApp, name: str, column: str) -> str:
    value = app.query_one("#processes", DataTable).get_cell(name, column)
    return value.plain if isinstance(value, Text) else str(value)


def pane(app: MonitorApp) -> list[str]:
    return [strip.text for strip in app.query_one("#pane", RichLog).lines]


def status(app: MonitorApp) -> str:
    rendered = app.query_one("#status", Static).render()
    return str(rendered)


def has(app: MonitorApp, text: str) -> bool:
    """A line of the children's own in the pane (status lines quote their commands)."""
    return any(text in line for line in pane(app) if "[logcast]" not in line)


async def test_states_logs_and_filters(server: Server) -> None:
    app = MonitorApp(url=server.url)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.query_one("#processes", DataTable).row_count == 2, "two rows")
        assert cell(app, "idle", "state") == "stopped"
        assert cell(app, "web", "host") == cell(app, "idle", "host") == socket.gethostname()
        await until(pilot, lambda: cell(app, "web", "state") in ("running", "ready"), "web running")
        assert cell(app, "web", "pid").isdigit()
        await until(pilot, lambda: has(app, "root:bye"), "web's log in the pane")
        await until(pilot, lambda: cell(app, "web", "errors") == "1", "error counted")
        assert cell(app, "web", "warnings") == "1"
        assert any("web" in line and "ERROR" in line and "broken bolt" in line for line in pane(app))
        assert server.url in status(app)

        app.query_one("#level", Select).value = "warning"
        await until(pilot, lambda: not has(app, "root:hello"), "level filter")
        assert has(app, "careful") and has(app, "broken bolt")

        app.query_one("#level", Select).value = ""
        await until(pilot, lambda: has(app, "root:hello"), "filter off")
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"BOLT")
        await until(pilot, lambda: not has(app, "careful"), "search")
        assert has(app, "broken bolt") and "search: bolt" in status(app)
        await pilot.press("enter")  # back to the table
        app.query_one("#search", Input).value = ""
        await until(pilot, lambda: has(app, "careful"), "search cleared")


def test_a_lost_hosts_process_shows_unknown_and_not_running() -> None:
    """Several hosts, gpu-2 lost: its process is `unknown`, dim, with no pid nor uptime."""
    app = MonitorApp(url="http://replica.test")
    info = ProcessInfo.from_dict({
        "name": "infer", "state": "unknown", "host": "gpu-2", "pid": 40, "run": 1, "restarts": 0,
        "lines": 3, "bytes": 30, "lines_per_s": 0.0, "warnings": 0, "errors": 0, "last_error": None,
        "subscribers": 0, "last_seq": 3,
    })  # fmt: skip
    cells = dict(zip((key for key, _ in COLUMNS), app._cells(info), strict=True))
    assert isinstance(cells["state"], Text) and isinstance(cells["host"], Text)
    assert (cells["state"].plain, cells["host"].plain) == ("unknown", "gpu-2")
    assert str(cells["state"].style) == "dim"
    assert cells["pid"] == cells["uptime"] == "-"


def test_a_model_servers_resources_and_phase_are_in_its_row() -> None:
    app = MonitorApp(url="http://localhost.test")
    info = ProcessInfo.from_dict({
        "name": "llm", "state": "running", "host": "gpu-1", "pid": 40, "run": 1, "restarts": 0,
        "lines": 3, "bytes": 30, "lines_per_s": 0.0, "warnings": 0, "errors": 0, "last_error": None,
        "subscribers": 0, "last_seq": 3,
        "resources": {"cpu_percent": 98.0, "rss_bytes": 3 * 1024**3, "threads": 40, "open_fds": 80,
                      "gpu_memory_bytes": {"0": 2**33}, "cpu_seconds_total": 80.0, "sampled_at": 1.0},
        "model": {"kind": "vllm", "phase": "loading", "load_progress": 0.6, "ready_after_s": None,
                  "requests": 0, "prompt_tokens_per_s": None, "gen_tokens_per_s": None,
                  "last_request_at": None, "marked": [3]},
    })  # fmt: skip
    cells = dict(zip((key for key, _ in COLUMNS), app._cells(info), strict=True))
    assert (cells["cpu"], cells["memory"]) == ("98%", "3.0G")
    assert isinstance(cells["model"], Text) and cells["model"].plain == "loading 60%"


async def test_start_and_stop_with_confirmation(server: Server) -> None:
    app = MonitorApp(url=server.url)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one("#processes", DataTable)
        await until(pilot, lambda: table.row_count == 2, "two rows")
        table.focus()
        table.move_cursor(row=table.get_row_index("idle"))
        assert app.highlighted() == "idle"

        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # declined: nothing happens
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("s")
        await pilot.press("y")
        await until(pilot, lambda: cell(app, "idle", "state") in ("starting", "running", "ready"), "idle up")
        await until(pilot, lambda: has(app, "idle up"), "idle's line in the pane")

        await pilot.press("r", "y")
        await until(pilot, lambda: app.infos["idle"].run == 2, "restarted")

        await pilot.press("x", "y")
        await until(pilot, lambda: cell(app, "idle", "state").split()[0] in ("stopped", "exited"), "stopped")
        with httpx.Client(base_url=server.url) as c:
            assert c.get("/api/processes/idle").json()["state"] in ("stopped", "exited")

        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(pilot, lambda: not has(app, "idle up"), "history cleared from the pane")
        with httpx.Client(base_url=server.url) as c:
            logs = c.get("/api/processes/idle/logs?after=0").json()["logs"]
        assert not any(log["message"] == "idle up" for log in logs)


async def test_views_stats_help_and_palette(server: Server) -> None:
    app = MonitorApp(url=server.url)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one("#processes", DataTable)
        await until(pilot, lambda: table.row_count == 2 and has(app, "root:bye"), "rows and logs")

        table.focus()
        table.move_cursor(row=table.get_row_index("web"))
        await pilot.press("enter")
        assert app.view == "web"
        await pilot.press("a")
        assert app.view is None

        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, StatsScreen), "stats screen")
        stats = app.screen.query_one("#stats-table", DataTable)
        await until(pilot, lambda: stats.row_count == 2, "stats rows")
        assert "total:" in str(app.screen.query_one("#stats-summary", Static).render())
        await pilot.press("escape")
        assert not isinstance(app.screen, StatsScreen)

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")

        await palette(pilot, app, "logs idle")
        await until(pilot, lambda: app.view == "idle", "logs idle selected")
        assert not has(app, "root:bye")

        await palette(pilot, app, "logs all")
        await until(pilot, lambda: app.view is None and has(app, "root:bye"), "logs all selected")
        await palette(pilot, app, "clear")
        await until(pilot, lambda: pane(app) == [], "pane cleared")
        await palette(pilot, app, "stats")
        await until(pilot, lambda: isinstance(app.screen, StatsScreen), "stats from the palette")
        await pilot.press("escape")

        await pilot.press("q")
    assert app.return_code in (0, None)


async def palette(pilot: Pilot[Any], app: MonitorApp, command: str) -> None:
    """Run a command from the command palette, as a user types it."""
    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
    await pilot.press(*command)
    await until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0, f"hits for {command!r}")
    for _ in range(3):  # the first enter may only highlight the best hit
        await pilot.press("enter")
        await pilot.pause()
        if not isinstance(app.screen, CommandPalette):
            return
    raise AssertionError(f"the palette did not run {command!r}")


async def test_only_the_named_processes(server: Server) -> None:
    app = MonitorApp(["web", "nope"], url=server.url)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one("#processes", DataTable)
        await until(pilot, lambda: table.row_count == 1 and has(app, "root:bye"), "web only")
        assert app.names == ["web"] and app.view is None
    single = MonitorApp(["idle"], url=server.url)
    async with single.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: single.query_one("#processes", DataTable).row_count == 1, "idle only")
        assert single.view == "idle"


async def test_server_down_is_shown_not_raised() -> None:
    app = MonitorApp(url=f"http://127.0.0.1:{free_port()}")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "cannot reach" in status(app), "error in the status bar")
        assert app.is_running
        await pilot.press("s")  # nothing selected: a notification, not a crash
        assert app.is_running
