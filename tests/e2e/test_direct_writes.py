"""Live lines written from the hub's wake (`logcast.web.direct`) reach real clients of every
stream format whole and in order, and a real server does write them that way.

The server is `logcast serve` in a process that counts the direct writes (its two writers
wrapped) and leaves the counts in a file when it stops.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import py_command, spawn_python
from tests.util import TCP_CLOSED_STATES, free_port, silent_client, stop_group, tcp_state, wait_healthy

pytestmark = pytest.mark.e2e

COUNT = 400

COUNTING_SERVER = """
import atexit, collections, json, sys
from logcast.web import direct, wsframes

counts = collections.Counter()

names = {}

def counting(cls, kind_of):
    write = cls.write
    def counted(self, data):
        # each writer (a stream) by the kind its first write showed, and a number
        name = names.get(id(self))
        if name is None:
            name = names[id(self)] = f"{kind_of(data)} #{len(names)}"
        counts[name] += 1
        write(self, data)
    cls.write = counted

def body_kind(data):
    if b'"lines":' in data:
        return "batch=columns"
    return "batch=1" if b"data: [" in data else "sse"

def frame_kind(data):
    payload = data[2:] if data[1] < 126 else data[4:]
    return "ws json" if payload.startswith(b'{"type"') else "ws text"

counting(direct.ChunkedBody, body_kind)
counting(wsframes._DirectFrames, frame_kind)
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(counts)))
from logcast.cli.main import main
sys.argv = ["logcast", "serve", "-c", sys.argv[2], "--port", sys.argv[3]]
main()
"""

WRITER = py_command(
    f"""
    import time
    for i in range({COUNT}):
        print(f"line {{i:04d}}", flush=True)
        time.sleep(0.002)
    print("END", flush=True)
    time.sleep(600)
    """
)

CONFIG = f"""
[process.writer]
command = {WRITER}
autostart = false
restart = "never"

[process.other]
command = {WRITER.replace("line ", "other ").replace("END", "other END")}
autostart = false
restart = "never"
"""

EXPECTED = [f"line {i:04d}" for i in range(COUNT)] + ["END"]


class Served:
    def __init__(self, url: str, counts: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.counts = counts
        self.proc = proc
        self.log = log

    def stop(self) -> dict[str, int]:
        stop_group(self.proc)
        output = self.log.read_text(errors="replace")
        assert "Traceback" not in output and "direct write" not in output, output
        return json.loads(self.counts.read_text()) if self.counts.exists() else {}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[str], Served]]:
    """Start the counting server on a configuration; stopped at the end of the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(toml: str) -> Served:
        config = tmp_path / "logcast.toml"
        config.write_text(textwrap.dedent(toml))
        counts = tmp_path / "counts.json"
        log = tmp_path / "server.log"
        port = free_port()
        proc = spawn_python(["-c", COUNTING_SERVER, str(counts), str(config), str(port)], tmp_path, log)
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, 20, log.read_text)
        return Served(url, counts, proc, log)

    try:
        yield start
    finally:
        for proc in started:
            stop_group(proc)


def sse_events(response: httpx.Response) -> Iterator[Any]:
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "" and data:
            yield json.loads("\n".join(data))
            data = []


def messages_of(event: Any) -> list[str]:
    """The stdout lines in one event of any SSE format (an element of a batch, or a
    `batch=columns` run)."""
    if isinstance(event, list):
        return [m for element in event for m in messages_of(element)]
    if "lines" in event:
        return [
            m
            for m, s in zip(event["lines"]["message"], event["lines"]["stream"], strict=True)
            if s == "stdout"
        ]
    log = event.get("log")
    if event.get("type") == "realtime" and log and log["stream"] == "stdout":
        return [log["message"]]
    return []


def read_sse(response: httpx.Response) -> list[str]:
    got: list[str] = []
    for event in sse_events(response):
        got += messages_of(event)
        if got and got[-1] == "END":
            break
    return got


def read_ws(ws: Any, as_json: bool, ends: int = 1) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + 30
    while sum(m.endswith("END") for m in got) < ends:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if as_json:
            got += messages_of(json.loads(message))
        elif not message.startswith("[logcast] "):
            got.append(message.rstrip("\n"))
    return got


def test_every_stream_format_gets_every_line_in_order_and_most_are_written_directly(
    serve: Callable[[str], Served],
) -> None:
    served = serve(CONFIG)
    path = "/api/processes/writer/logs/stream"
    ws_url = served.url.replace("http", "ws") + "/ws/logs?process=writer"
    with httpx.Client(base_url=served.url, timeout=30.0) as client:
        with (
            client.stream("GET", path) as plain,
            client.stream("GET", path, params={"batch": "1"}) as batched,
            client.stream("GET", path, params={"batch": "columns"}) as columns,
            connect(ws_url, open_timeout=10, proxy=None) as ws_text,
            connect(ws_url + "&format=json", open_timeout=10, proxy=None) as ws_json,
            # every process on one socket: two streams share its writes
            connect(ws_url.split("?")[0], open_timeout=10, proxy=None) as ws_all,
        ):
            deadline = time.monotonic() + 10
            while client.get("/api/logs/stats").json()["subscribers"] < 7:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert client.post("/api/processes/writer/start").status_code < 300
            assert client.post("/api/processes/other/start").status_code < 300
            with ThreadPoolExecutor(6) as pool:
                futures = {
                    "sse": pool.submit(read_sse, plain),
                    "batch=1": pool.submit(read_sse, batched),
                    "batch=columns": pool.submit(read_sse, columns),
                    "ws text": pool.submit(read_ws, ws_text, False),
                    "ws json": pool.submit(read_ws, ws_json, True),
                    "ws all": pool.submit(read_ws, ws_all, False, 2),
                }
                results = {name: future.result(timeout=60) for name, future in futures.items()}
    both = results.pop("ws all")
    assert [m for m in both if not m.startswith("other ")] == EXPECTED
    assert [m for m in both if m.startswith("other ")] == [
        "other " + m.removeprefix("line ") for m in EXPECTED
    ]
    for name, got in results.items():
        assert got == EXPECTED, f"{name}: {len(got)} lines"
    counts = served.stop()
    # a line every 2 ms: most go out one by one, written by the wake, not by the streams'
    # tasks, in every format
    kinds = sorted(name.split(" #")[0] for name in counts)
    assert kinds == ["batch=1", "batch=columns", "sse", "ws json", "ws text", "ws text"], counts
    assert all(n > COUNT // 2 for n in counts.values()), counts
    assert max(n for name, n in counts.items() if name.startswith("ws text")) > COUNT, (
        counts
    )  # both processes


# -- a client that stops reading while lines trickle in ---------------------------------

STALL_TIMEOUT = 2.0
TRICKLE = 4000  # 2 KB lines, one a millisecond: the stalled sockets fill within a second

TRICKLER = py_command(
    f"""
    import time
    for i in range({TRICKLE}):
        print(f"line {{i:04d}} " + "x" * 2000, flush=True)
        time.sleep(0.001)
    print("END", flush=True)
    time.sleep(600)
    """
)


def test_a_live_reader_that_stops_reading_is_cut_once_direct_writes_stop(
    serve: Callable[[str], Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written to directly while it read, a client that stops is left to its task once its
    transport is full, and that task's send timeout cuts it; a reader beside it gets
    every line."""
    monkeypatch.setenv("LOGCAST_SEND_TIMEOUT", str(STALL_TIMEOUT))
    served = serve(f"""
        [process.writer]
        command = {TRICKLER}
        autostart = false
        restart = "never"
        """)
    port = int(served.url.rsplit(":", 1)[1])
    key = base64.b64encode(os.urandom(16))
    quiet = [
        silent_client(port, b"GET /api/processes/writer/logs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        silent_client(
            port,
            b"GET /ws/logs?process=writer HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n",
        ),
    ]
    try:
        with httpx.Client(base_url=served.url, timeout=30.0) as client:
            with client.stream("GET", "/api/processes/writer/logs/stream") as reader:
                deadline = time.monotonic() + 10
                while client.get("/api/logs/stats").json()["subscribers"] < 3:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                t0 = time.monotonic()
                assert client.post("/api/processes/writer/start").status_code < 300
                got = [" ".join(m.split(" ")[:2]) for m in read_sse(reader)]  # without the x's
            assert got == [f"line {i:04d}" for i in range(TRICKLE)] + ["END"]
            deadline = time.monotonic() + 20
            while not all(tcp_state(s) in TCP_CLOSED_STATES for s in quiet):
                assert time.monotonic() < deadline, [tcp_state(s) for s in quiet]
                time.sleep(0.05)
            assert time.monotonic() - t0 >= STALL_TIMEOUT * 0.9  # not before the timeout
            assert client.get("/api/logs/stats").json()["subscribers"] == 0
    finally:
        for s in quiet:
            s.close()
    output = served.log.read_text(errors="replace")
    assert "SSE client stopped reading" in output and "WebSocket client stopped reading" in output
    counts = served.stop()
    stalled_writers = [n for name, n in counts.items() if n < TRICKLE // 2]
    assert len(counts) == 3 and len(stalled_writers) == 2, counts  # the reader's, and two that stopped
    assert all(n > 0 for n in stalled_writers), counts  # written to directly before they filled up
