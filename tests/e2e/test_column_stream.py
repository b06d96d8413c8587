"""The column stream (`batch=columns`) on a real server: each run of lines of one process
and run one element with a list per field, every other event as in `batch=1`; expanded,
exactly the lines `batch=1` gives, resumable by id. (`logcast tail`, which reads it, is
tests/e2e/test_tail.py's.)"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

from logcast.client.events import line_run
from logcast.web.streams import COLUMN_ENTRIES
from tests.e2e.conftest import Server, py_command
from tests.e2e.sse import wait_for
from tests.e2e.test_batch_stream import WIDE, Raw, completed, event_id, read
from tests.e2e.test_tail import api

pytestmark = pytest.mark.e2e

Make = Callable[..., Server]
COLUMNS = {"batch": "columns"}

# 5000 lines at once (several takes of `COLUMN_ENTRIES` entries, each a message), then one every few ms
WRITER = py_command(
    """
    import sys, time
    sys.stdout.write("".join(f"line {i}\\n" for i in range(1, 5001)))
    sys.stdout.flush()
    i = 0
    while True:
        i += 1
        print(f"live {i}", flush=True)
        time.sleep(0.005)
    """
)

# three lines in one write, then nothing: each run of the process a run of three lines
TICKS = py_command(
    """
    import sys, time
    sys.stdout.write("tick 1\\ntick 2\\ntick 3\\n")
    sys.stdout.flush()
    while True:
        time.sleep(1)
    """
)

# every third line an error: filtered, a run of lines whose seqs are not consecutive
ERRORS = py_command(
    """
    import sys, time
    sys.stdout.write("".join(f"ERROR: bad {i}\\n" if i % 3 == 0 else f"fine {i}\\n" for i in range(1, 301)))
    sys.stdout.flush()
    while True:
        time.sleep(1)
    """
)


def is_run(element: dict[str, Any]) -> bool:
    return "lines" in element


def expand(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events the elements stand for, each run of lines as the `batch=1` event per line
    (a status or any other event is already one)."""
    events: list[dict[str, Any]] = []
    for element in elements:
        if not is_run(element):
            events.append(element)
            continue
        lines = element["lines"]
        count = len(lines["seq"])
        partial = lines.get("partial", [False] * count)
        assert set(lines) <= {"process", "run", "seq", "timestamp", "level", "stream", "message", "partial"}
        assert all(len(lines[key]) == count for key in lines if key not in ("process", "run"))
        for i in range(count):
            log = {
                "seq": lines["seq"][i],
                "timestamp": lines["timestamp"][i],
                "level": lines["level"][i],
                "message": lines["message"][i],
                "stream": lines["stream"][i],
                "process": lines["process"],
                "run": lines["run"],
                "partial": partial[i],
            }
            events.append({"type": element["type"], "log": log})
    return events


def end_of(element: dict[str, Any]) -> int:
    """The seq an element ends on: what the id of a message ending with it must be."""
    return int(element["lines"]["seq"][-1]) if is_run(element) else event_id(element)


def line_seqs(elements: list[dict[str, Any]]) -> list[int]:
    return [e["log"]["seq"] for e in expand(elements) if e.get("log")]


def live_lines(elements: list[dict[str, Any]]) -> int:
    return sum(len(e["lines"]["seq"]) for e in elements if is_run(e) and e["type"] == "realtime")


def check_ids(messages: list[Raw]) -> None:
    for m in messages:
        assert m.id == str(end_of(m.data[-1])), (m.id, m.data[-1])


def test_history_then_live_as_batch_one_gives_it_and_resume(make_server: Make) -> None:
    server = make_server(f"[process.writer]\ncommand = {WRITER}\n")
    url = server.url + "/api/processes/writer/logs/stream"
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/writer").json()["lines"] > 5010, what="history")
    messages, elements = read(
        url, lambda es: completed(es) and live_lines(es) >= 50, params={**COLUMNS, "after": 0}
    )
    check_ids(messages)
    events = expand(elements)
    types = [e["type"] for e in events]
    assert types.count("historical_complete") == 1
    cut = types.index("historical_complete")
    assert set(types[:cut]) == {"historical"} and set(types[cut + 1 :]) <= {"realtime", "status"}
    seqs = line_seqs(elements)
    assert seqs == list(range(1, len(seqs) + 1)), "a line is missing or repeated"
    stdout = [e["log"]["message"] for e in events if e.get("log") and e["log"]["stream"] == "stdout"]
    assert stdout[:5000] == [f"line {i}" for i in range(1, 5001)]
    assert stdout[5000:] == [f"live {i}" for i in range(1, len(stdout) - 4999)]
    # the history is a run per take of entries, not an element per line; the first message
    # is the first take: two status records, then a run of the lines after them
    first = messages[0].data
    assert [e["type"] for e in first[:2]] == ["historical", "historical"] and not is_run(first[0])
    assert is_run(first[-1]) and len(first[-1]["lines"]["seq"]) == COLUMN_ENTRIES - 2
    history_runs = [e for e in elements[: elements.index(events[cut])] if is_run(e)]
    takes = -(-cut // COLUMN_ENTRIES)  # the history's events, a take at a time
    history_lines = [e for e in events[:cut] if e["log"]["stream"] != "system"]
    assert len(history_runs) <= takes + 1
    assert sum(len(e["lines"]["seq"]) for e in history_runs) == len(history_lines) >= 5000
    assert all(len(e["lines"]["seq"]) <= 4096 for e in elements if is_run(e))
    assert all(line_run(e).records() for e in elements if is_run(e))  # the client reads each
    # exactly what batch=1 gives for the same lines, status records included
    _, ordinary = read(url, lambda es: max(line_seqs(es), default=0) >= seqs[-1], params={"after": 0})
    assert [e["log"] for e in events if e.get("log")] == [
        e["log"] for e in ordinary if e.get("log") and e["log"]["seq"] <= seqs[-1]
    ]
    # resume after an id inside a run (a reconnect at any point), and after a message's id
    for last in (1234, int(messages[len(messages) // 2].id or 0)):
        again, more = read(
            url, lambda es: len(line_seqs(es)) >= 5, params=COLUMNS, headers={"Last-Event-ID": str(last)}
        )
        assert line_seqs(more)[:5] == list(range(last + 1, last + 6))
        check_ids(again)


def test_a_restart_status_events_between_the_runs(make_server: Make) -> None:
    server = make_server(f"[process.ticks]\ncommand = {TICKS}\n")
    url = server.url + "/api/processes/ticks/logs/stream"
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/ticks").json()["lines"] >= 3, what="run 1")
    restarted: list[int] = []

    def second_run(elements: list[dict[str, Any]]) -> bool:
        if completed(elements) and not restarted:
            restarted.append(api(server, "POST", "/api/processes/ticks/restart").status_code)
        lines = [e for e in expand(elements) if e["type"] == "realtime" and e["log"]["run"] == 2]
        return len(lines) >= 3

    messages, elements = read(url, second_run, params=COLUMNS)
    check_ids(messages)
    assert restarted == [200]
    for m in messages:  # in a message, a run of lines of one kind and run is one element
        keys = [(e["type"], e["lines"]["run"]) if is_run(e) else None for e in m.data]
        assert all(a is None or a != b for a, b in pairwise(keys)), keys
    # across messages (live lines may come in two reads): run 1's history, then run 2 live
    runs: list[tuple[str, int, list[str]]] = []
    for e in filter(is_run, elements):
        key = (e["type"], e["lines"]["run"])
        if runs and runs[-1][:2] == key:
            runs[-1][2].extend(e["lines"]["message"])
        else:
            runs.append((*key, list(e["lines"]["message"])))
    assert runs == [
        ("historical", 1, ["tick 1", "tick 2", "tick 3"]),
        ("realtime", 2, ["tick 1", "tick 2", "tick 3"]),
    ]
    # between them, the restart's status events: run 1 stopping and stopped, run 2 starting
    first = max(i for i, e in enumerate(elements) if is_run(e) and e["lines"]["run"] == 1)
    second = min(i for i, e in enumerate(elements) if is_run(e) and e["lines"]["run"] == 2)
    between = elements[first + 1 : second]
    assert [e["type"] for e in between] == ["historical_complete"] + ["status"] * (len(between) - 1)
    statuses = [e["log"] for e in between[1:]]
    assert all(log["stream"] == "system" for log in statuses)
    assert [(log["state"], log["run"]) for log in statuses][:3] == [
        ("stopping", 1),
        ("stopped", 1),
        ("starting", 2),
    ]
    seqs = line_seqs(elements)
    assert seqs == sorted(set(seqs))


def test_filtered_by_level_a_run_of_seqs_with_holes(make_server: Make) -> None:
    server = make_server(f"[process.errors]\ncommand = {ERRORS}\n")
    url = server.url + "/api/processes/errors/logs/stream"
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/errors").json()["lines"] >= 300, what="errors")
    messages, elements = read(url, completed, params={**COLUMNS, "level": "error"})
    check_ids(messages)
    runs = [e for e in elements if is_run(e)]
    assert len(runs) == 1
    lines = runs[0]["lines"]
    assert lines["message"] == [f"ERROR: bad {i}" for i in range(3, 301, 3)]
    assert set(lines["level"]) == {"error"} and "partial" not in lines
    assert [b - a for a, b in pairwise(lines["seq"])] == [3] * 99
    assert line_run(runs[0]).seqs == lines["seq"]
    _, ordinary = read(url, completed, params={"level": "error"})
    assert [e["log"] for e in expand(elements) if e.get("log")] == [
        e["log"] for e in ordinary if e.get("log")
    ]


def test_a_column_message_stays_within_about_a_mebibyte(make_server: Make) -> None:
    server = make_server(f"[process.wide]\ncommand = {WIDE}\n")
    url = server.url + "/api/processes/wide/logs/stream"
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/wide").json()["lines"] >= 301, what="wide lines")
    messages, elements = read(url, completed, params=COLUMNS)
    check_ids(messages)
    texts = [e["log"]["message"] for e in expand(elements) if e.get("log") and e["log"]["stream"] != "system"]
    assert [t[:5] for t in texts[:300]] == [f"{i:05d}" for i in range(300)]
    assert all(len(t) == 10_006 for t in texts[:300]) and texts[300] == "wide done"
    assert len(messages) >= 3
    assert all(m.size <= (1 << 20) + 11_000 for m in messages), [m.size for m in messages]
