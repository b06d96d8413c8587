"""The batched SSE stream (`batch=1`) on a real server: each message a JSON array of the
ordinary events, its id the last event's, resumable as before; without it, not a byte changes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import py_command
from tests.e2e.sse import wait_for

pytestmark = pytest.mark.e2e

# 3000 lines at once (more than one batched message of history), then one a few ms
WRITER = py_command(
    """
    import sys, time
    for i in range(1, 3001):
        print(f"line {i}")
    print("ERROR: one bad line", file=sys.stderr)
    sys.stdout.flush()
    i = 0
    while True:
        i += 1
        print(f"live {i}", flush=True)
        time.sleep(0.005)
    """
)

# 300 lines of 10 KB: 3 MB of history, more than a message may hold
WIDE = py_command(
    """
    import time
    for i in range(300):
        print(f"{i:05d} " + "x" * 10_000)
    print("wide done", flush=True)
    while True:
        time.sleep(1)
    """
)

QUIET = py_command(
    """
    import time
    print("quiet started", flush=True)
    while True:
        time.sleep(1)
    """
)

CONFIG = f"""
[process.writer]
command = {WRITER}

[process.wide]
command = {WIDE}

[process.quiet]
command = {QUIET}
autostart = false
"""


@dataclass
class Raw:
    """One SSE message as sent: its id, its data parsed, and its size in bytes."""

    id: str | None
    data: Any
    size: int


def raw_messages(response: httpx.Response) -> Iterator[Raw]:
    ident: str | None = None
    data: list[str] = []
    size = 0
    for line in response.iter_lines():
        size += len(line.encode()) + 1
        if line == "":
            if data:
                yield Raw(ident, json.loads("\n".join(data)), size)
            ident, data, size = None, [], 0
        elif line.startswith(":"):
            size = 0
        elif line.startswith("id:"):
            ident = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line.startswith("retry:"):
            size = 0


def read(
    url: str,
    until: Callable[[list[dict[str, Any]]], bool],
    *,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[list[Raw], list[dict[str, Any]]]:
    """Batched messages until `until(events so far)`; the messages and their events in order."""
    got: list[Raw] = []
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=httpx.Timeout(10.0, read=timeout)) as client:
        with client.stream(
            "GET", url, params={"batch": 1, **(params or {})}, headers=headers or {}
        ) as response:
            response.raise_for_status()
            for message in raw_messages(response):
                assert isinstance(message.data, list) and message.data, message.data
                got.append(message)
                events.extend(message.data)
                if until(events) or time.monotonic() > deadline:
                    break
    return got, events


def event_id(event: dict[str, Any]) -> int:
    """The id an event has in an ordinary stream (SPEC.md)."""
    if event.get("log"):
        return int(event["log"]["seq"])
    if event["type"] == "gap":
        return int(event["to"])
    return int(event["seq"])


def seqs_of(events: list[dict[str, Any]]) -> list[int]:
    return [e["log"]["seq"] for e in events if e.get("log")]


def completed(events: list[dict[str, Any]]) -> bool:
    return any(e["type"] == "historical_complete" for e in events)


def test_batched_history_then_live_exact_seam_ids_and_resume(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    url = server.url + "/api/processes/writer/logs/stream"
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/writer").json()["lines"] > 3100, what="history")
    messages, events = read(url, lambda es: completed(es) and sum(e["type"] == "realtime" for e in es) >= 50)
    types = [e["type"] for e in events]
    assert types.count("historical_complete") == 1
    cut = types.index("historical_complete")
    assert set(types[:cut]) <= {"historical"} and set(types[cut + 1 :]) <= {"realtime", "status"}
    seqs = seqs_of(events)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a line is missing or repeated"
    stdout = [e["log"]["message"] for e in events if e.get("log") and e["log"]["stream"] == "stdout"]
    assert stdout[:3000] == [f"line {i}" for i in range(1, 3001)]
    # history comes in several messages, none over the bound, each id its last event's
    history_messages = [m for m in messages if m.data[0]["type"] == "historical"]
    assert len(history_messages) >= 3
    assert all(len(m.data) <= 4096 for m in messages)
    for m in messages:
        assert m.id == str(event_id(m.data[-1]))
    # the events are exactly the ordinary ones: the same history as without batch=1
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", url, params={"after": 1000}) as plain:
            ordinary = []
            for message in raw_messages(plain):
                ordinary.append(message.data)
                if len(ordinary) == 1500:
                    break
    _, batched = read(url, lambda es: len(es) >= 1500, params={"after": 1000})
    assert batched[:1500] == ordinary
    # resume exactly after the last id seen, by header and by parameter
    last = int(messages[-1].id or 0)
    _, again = read(url, lambda es: len(seqs_of(es)) >= 5, headers={"Last-Event-ID": str(last)})
    assert seqs_of(again)[:5] == list(range(last + 1, last + 6))
    _, by_param = read(url, lambda es: len(seqs_of(es)) >= 5, params={"after": last})
    assert seqs_of(by_param)[:5] == list(range(last + 1, last + 6))


def test_batched_filtered_stream_and_status(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    url = server.url + "/api/processes/writer/logs/stream"
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/writer").json()["lines"] > 3100, what="history")
    _, errors = read(url, completed, params={"level": "error"})
    assert [e["log"]["message"] for e in errors if e.get("log") and e["log"]["stream"] != "system"] == [
        "ERROR: one bad line"
    ]
    quiet = server.url + "/api/processes/quiet/logs/stream"
    started: list[str] = []

    def restarted(events: list[dict[str, Any]]) -> bool:
        if completed(events) and not started:
            with server.client() as c:
                c.post("/api/processes/quiet/start")
            started.append("yes")
        return sum(e.get("log", {}).get("message") == "quiet started" for e in events) >= 1

    _, events = read(quiet, restarted)
    kinds = {e["type"] for e in events}
    assert {"historical_complete", "status", "realtime"} <= kinds
    assert all(e["log"]["stream"] == "system" for e in events if e["type"] == "status")


def test_a_batched_message_is_bounded_in_bytes(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    url = server.url + "/api/processes/wide/logs/stream"
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/wide").json()["lines"] >= 301, what="wide lines")
    messages, events = read(url, completed)
    texts = [e["log"]["message"] for e in events if e.get("log") and e["log"]["stream"] != "system"]
    assert [t[:5] for t in texts[:300]] == [f"{i:05d}" for i in range(300)]
    assert len(messages) >= 3
    assert all(m.size <= (1 << 20) + 11_000 for m in messages), [m.size for m in messages]


def test_without_batch_not_a_byte_changes(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    url = server.url + "/api/processes/wide/logs/stream"
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/wide").json()["lines"] >= 301, what="wide lines")

    def head(params: dict[str, Any]) -> bytes:
        body = b""
        with httpx.Client(timeout=30) as client:
            with client.stream("GET", url, params=params) as response:
                for chunk in response.iter_bytes():
                    body += chunk
                    if b'"historical_complete"' in body:
                        return body[: body.index(b"\n\n", body.index(b'"historical_complete"')) + 2]
        raise AssertionError("no historical_complete")

    plain, zero = head({"lines": 50}), head({"lines": 50, "batch": 0})
    assert plain == zero
    assert plain.startswith(b"retry: 1000\n\n")
    messages = plain.split(b"\n\n")[1:-1]
    assert len(messages) == 51  # one event per message
    for message in messages:
        ident, data = message.split(b"\n")
        event = json.loads(data.removeprefix(b"data: "))
        assert isinstance(event, dict) and ident == b"id: %d" % event_id(event)


def test_bad_batch_is_a_clear_422(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    with server.client() as c:
        for value in ["2", "abc", "-1", "1.5", "true", "", "01x", "Columns", "column", "columns "]:
            answer = c.get("/api/processes/writer/logs/stream", params={"batch": value})
            assert answer.status_code == 422, value
            detail = answer.json()["detail"]
            assert (
                detail[0]["loc"] == ["query", "batch"]
                and detail[0]["msg"] == "Input should be '0', '1' or 'columns'"
            ), (value, detail)
