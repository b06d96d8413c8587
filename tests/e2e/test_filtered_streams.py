"""A filtered stream (`level=`, `q=`) over a long history that holds few matches: every
match and `historical_complete` come at once, over SSE in each batch mode and over the
WebSocket. Before, each window of lines the filter kept nothing of waited for the next
line or the next ping (15 s): 256 lines a ping, 20,000 lines in about 20 minutes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import Server, py_command
from tests.e2e.sse import messages
from tests.util import wait_for

LINES = 20_000
CHILD = f"""
for i in range({LINES}):
    print(f"INFO step {{i}}")
print("ERROR: first failure")
print("INFO between")
print("ERROR: second failure")
import time
time.sleep(3600)
"""
WANTED = ["ERROR: first failure", "ERROR: second failure"]
TIMEOUT = 10.0  # s: a tenth of what a stall of one ping per window would take for two


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    server = make_server(f"[process.gen]\ncommand = {py_command(CHILD)}\nautostart = true\n")
    with server.client() as c:
        wait_for(
            lambda: c.get("/api/processes/gen").json()["lines"] >= LINES + 3,
            timeout=30,
            what="the child's lines",
        )
    return server


def sse_matches(server: Server, params: dict[str, Any]) -> tuple[list[str], bool, float]:
    """The messages of the matches, whether historical_complete came, and how long it took."""
    started = time.monotonic()
    found: list[str] = []
    with (
        server.client() as c,
        c.stream("GET", "/api/processes/gen/logs/stream", params=params) as response,
    ):
        assert response.status_code == 200
        for message in messages(response):
            events = message.data if isinstance(message.data, list) else [message.data]
            for event in events:
                if event.get("type") == "historical":
                    found.append(event["log"]["message"])
                if event.get("type") == "historical_complete":
                    return found, True, time.monotonic() - started
    return found, False, time.monotonic() - started


@pytest.mark.parametrize(
    "params",
    [
        {"level": "error", "after": "0"},
        {"q": "failure", "after": "0"},
        {"level": "error", "after": "0", "batch": "1"},
        {"level": "error"},  # all the retained history: the default without `lines`
    ],
    ids=["level", "q", "batched", "all history"],
)
def test_sse_filtered_history_comes_at_once(server: Server, params: dict[str, Any]) -> None:
    found, complete, took = sse_matches(server, params)
    assert [text for text in found if text.startswith("ERROR")] == WANTED
    assert complete and took < TIMEOUT


def test_websocket_filtered_history_comes_at_once(server: Server) -> None:
    started = time.monotonic()
    found: list[str] = []
    url = server.url.replace("http", "ws", 1) + "/ws/logs?process=gen&format=json&level=error&after=0"
    with connect(url, open_timeout=TIMEOUT) as ws:
        while True:
            frame = ws.recv(timeout=TIMEOUT)
            data = json.loads(frame)
            events = data if isinstance(data, list) else [data]
            found += [event["log"]["message"] for event in events if event.get("type") == "historical"]
            if any(event.get("type") == "historical_complete" for event in events):
                break
    assert [text for text in found if text.startswith("ERROR")] == WANTED  # and the status lines
    assert time.monotonic() - started < TIMEOUT
