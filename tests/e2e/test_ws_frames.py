"""WebSocket frames built by logcast itself, read by a real client parser.

Under `logcast serve` the live lines of a WebSocket stream are whole frames made by
`encode.text_frame` and written in batches (`wsframes`); under another ASGI server the
stream falls back to one `websocket.send` per line. Both must deliver every line, in
order, whatever its length (the three length encodings of RFC 6455) and with or
without permessage-deflate.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import struct
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader
from websockets.sync.client import ClientConnection, connect

from logcast.capture.framing import frame_all
from logcast.web.encode import text_frame
from tests.conftest import free_port, stop_group
from tests.e2e.conftest import py_command, spawn_python
from tests.util import TCP_CLOSED_STATES, silent_client, tcp_state, wait_healthy

# -- text_frame, parsed by hand and by the websockets library -----------------------------


def parse_header(frame: bytes) -> tuple[int, int, int]:
    """(first byte, payload length, header length) of an unmasked server frame."""
    first, second = frame[0], frame[1]
    assert second & 0x80 == 0  # a server never masks
    n = second & 0x7F
    if n < 126:
        return first, n, 2
    if n == 126:
        return first, struct.unpack("!H", frame[2:4])[0], 4
    assert n == 127
    return first, struct.unpack("!Q", frame[2:10])[0], 10


def library_parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize(
    ("size", "header"), [(0, 2), (1, 2), (125, 2), (126, 4), (127, 4), (65535, 4), (65536, 10), (70000, 10)]
)
def test_text_frame_header(size: int, header: int) -> None:
    payload = bytes((i * 7) % 26 + 97 for i in range(size))
    frame = text_frame(payload)
    first, length, header_len = parse_header(frame)
    assert first == 0x81  # FIN, no RSV bit, opcode 1 (text)
    assert (length, header_len) == (size, header)
    assert frame[header_len:] == payload and len(frame) == header + size
    parsed = library_parse(frame)
    assert parsed.opcode is Opcode.TEXT and parsed.fin and not parsed.rsv1
    assert parsed.data == payload


def test_text_frames_concatenated_parse_back_one_by_one() -> None:
    payloads = ["", "é" * 63, "x" * 126, "日本" * 20000, "end"]
    data = b"".join(text_frame(p.encode()) for p in payloads)
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    got = []
    for _ in payloads:
        parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
        try:
            next(parser)
        except StopIteration as done:
            got.append(done.value.data.decode())
    assert got == payloads
    assert reader.at_eof()  # type: ignore[no-untyped-call]


# -- the real server ---------------------------------------------------------------------

LINES_SOURCE = """
def make_lines():
    special = {
        10: "",
        11: "a" * 125,
        12: "b" * 126,
        13: "c" * 127,
        14: "é" * 63,  # 126 bytes, 63 characters
        15: "d" * 65535,
        16: "e" * 65536,  # the longest record
        17: "x" * 65530 + "日本",  # 65536 bytes, ending in multibyte characters
        18: "f" * 70000,  # cut into two records
        19: "héllo wörld ✓ 日本語 \\U0001f389 Ωμέγα",
        20: "ü" * 40000,  # 80000 bytes, cut on a character boundary
        21: "g" * 65400,  # its JSON event is just over 65535 bytes
    }
    lines = [special.get(i, f"line {i:05d} " + "z" * (i % 50)) for i in range(1, 5001)]
    lines.append("END")
    return lines
"""

CHILD = py_command(
    LINES_SOURCE
    + """
import sys, time
lines = make_lines()
for start in range(0, len(lines), 100):
    sys.stdout.write("".join(line + "\\n" for line in lines[start:start + 100]))
    sys.stdout.flush()
while True:
    time.sleep(1)
"""
)


def expected_records() -> list[tuple[str, bool]]:
    scope: dict[str, Any] = {}
    exec(LINES_SOURCE, scope)
    lines: list[str] = scope["make_lines"]()
    return frame_all(["".join(line + "\n" for line in lines).encode()])


CONFIG = f"""
[process.writer]
command = {CHILD}
autostart = false
restart = "never"
"""

LOG_KEYS = {"seq", "timestamp", "level", "message", "stream", "process", "run", "partial"}


def ws_connect(url: str, **kw: Any) -> ClientConnection:
    return connect(url, open_timeout=10, proxy=None, max_size=4 * 1024 * 1024, **kw)


def read_text(ws: ClientConnection, timeout: float = 20.0) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not got or got[-1] != "END\n":
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        assert isinstance(message, str)  # a text frame
        got.append(message)
    return got


def read_json(ws: ClientConnection, timeout: float = 20.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not got or got[-1].get("log", {}).get("message") != "END":
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        assert isinstance(message, str)
        got.append(json.loads(message))
    return got


def check_text(frames: list[str], records: list[tuple[str, bool]]) -> None:
    notes = [f for f in frames if f.startswith("[logcast] writer: ")]
    assert notes, "the start of the process is announced"
    assert all(f.endswith("\n") for f in notes)
    lines = [f for f in frames if not f.startswith("[logcast] ")]
    assert len(lines) == len(records)
    for i, (got, (want, partial)) in enumerate(zip(lines, records, strict=True)):
        # the line as readline() gave it; a piece of an overlong line has no newline, so
        # that the frames joined are the child's text
        want = want if partial else want + "\n"
        assert got == want, f"record {i}: {len(got)} characters, expected {len(want)}"


def check_json(events: list[dict[str, Any]], records: list[tuple[str, bool]]) -> None:
    assert events[0]["type"] == "historical_complete" and isinstance(events[0]["seq"], int)
    logs = events[1:]
    assert {e["type"] for e in logs} <= {"realtime", "status"}
    for event in logs:
        assert set(event) == {"type", "log"}
        log = event["log"]
        if event["type"] == "status":
            assert set(log) == LOG_KEYS | {"state"} and log["stream"] == "system"
        else:
            assert set(log) == LOG_KEYS and log["stream"] == "stdout"
        assert log["process"] == "writer" and log["run"] == 1
    seqs = [e["log"]["seq"] for e in logs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, no gap, no duplicate
    lines = [e["log"] for e in logs if e["type"] == "realtime"]
    assert [(log["message"], log["partial"]) for log in lines] == records
    assert any(e["type"] == "status" and e["log"]["state"] == "running" for e in logs)


def negotiated(ws: ClientConnection) -> str:
    response = ws.response
    assert response is not None
    return str(response.headers.get("Sec-WebSocket-Extensions", ""))


def start_and_read(base: str, ws_url: str, headers: dict[str, str] | None = None) -> dict[Any, Any]:
    """Open four clients (text/json x deflate/none), start the writer, read them all."""
    urls = {
        ("text", "deflate"): ws_url + "?process=writer",
        ("text", None): ws_url + "?process=writer",
        ("json", "deflate"): ws_url + "?process=writer&format=json",
        ("json", None): ws_url + "?process=writer&format=json",
    }
    with contextlib.ExitStack() as stack:
        variants = {
            key: stack.enter_context(ws_connect(url, compression=key[1])) for key, url in urls.items()
        }
        for (_, compression), ws in variants.items():
            if compression:
                assert "permessage-deflate" in negotiated(ws)
            else:
                assert "permessage-deflate" not in negotiated(ws)
        with httpx.Client(base_url=base, headers=headers or {}, timeout=10.0) as c:
            assert c.post("/api/processes/writer/start").status_code < 300
            pid = int(c.get("/api/processes/writer").json()["pid"] or 0)
        with ThreadPoolExecutor(len(variants)) as pool:
            futures = {
                key: pool.submit(read_text if key[0] == "text" else read_json, ws)
                for key, ws in variants.items()
            }
            results: dict[Any, Any] = {key: f.result() for key, f in futures.items()}
    results["pid"] = pid
    return results


@pytest.mark.e2e
def test_live_frames_of_every_length_reach_real_clients(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    records = expected_records()
    lengths = {len(t.encode()) for t, _ in records}
    assert {0, 125, 126, 127, 65535, 65536} <= lengths and len(records) > 5000
    results = start_and_read(server.url, server.url.replace("http", "ws") + "/ws/logs")
    for compression in ("deflate", None):
        check_text(results[("text", compression)], records)
        check_json(results[("json", compression)], records)
    assert results[("text", "deflate")] == results[("text", None)]
    assert results[("json", "deflate")] == results[("json", None)]


@pytest.mark.e2e
def test_a_second_wave_of_clients_after_the_burst_gets_history_then_live(make_server) -> None:  # type: ignore[no-untyped-def]
    """Clients that join after the burst read it as history (slow path), then live lines."""
    server = make_server(CONFIG)
    ws_url = server.url.replace("http", "ws") + "/ws/logs"
    records = expected_records()
    start_and_read(server.url, ws_url)
    with ws_connect(ws_url + "?process=writer&format=json&after=0") as ws:  # history asked for
        events = read_json(ws)
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "historical" and "realtime" not in kinds
    lines = [e["log"] for e in events if e["type"] == "historical" and e["log"]["stream"] == "stdout"]
    assert [(log["message"], log["partial"]) for log in lines] == records
    with ws_connect(ws_url + "?process=writer&lines=10") as ws:
        assert read_text(ws)[-1] == "END\n"


# -- another ASGI server: no batched frames, one websocket.send per line -------------------

FALLBACK_SERVER = """
import sys
import uvicorn
from logcast.config import load
from logcast.web.app import create_app

settings = load(sys.argv[1])
uvicorn.run(
    create_app(settings),
    host="127.0.0.1",
    port=int(sys.argv[2]),
    ws="websockets-sansio",  # uvicorn's own protocol: no logcast.websocket.frames
    lifespan="on",
    log_level="warning",
)
"""


@pytest.fixture
def fallback_server(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "fallback"
    folder.mkdir()
    config = folder / "logcast.toml"
    config.write_text(textwrap.dedent(CONFIG))
    port = free_port()
    log_path = folder / "server.log"
    proc = spawn_python(["-c", FALLBACK_SERVER, str(config), str(port)], folder, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, 20, log_path.read_text)
        yield url
    finally:
        stop_group(proc)
        output = log_path.read_text(errors="replace")
    assert "Traceback" not in output and "WebSocket stream failed" not in output, output


@pytest.mark.e2e
def test_fallback_without_the_frames_extension_sends_one_frame_per_line(fallback_server: str) -> None:
    records = expected_records()
    results = start_and_read(fallback_server, fallback_server.replace("http", "ws") + "/ws/logs")
    pid = results.pop("pid")
    try:
        for compression in ("deflate", None):
            check_text(results[("text", compression)], records)
            check_json(results[("json", compression)], records)
    finally:
        kill_leftover(pid)


def kill_leftover(pid: int) -> None:
    """The writer child, if the server did not stop it (never expected): by its pid."""
    if not pid:
        return
    try:
        proc = psutil.Process(pid)
        if "make_lines" in " ".join(proc.cmdline()):
            os.kill(pid, signal.SIGKILL)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        pass


# -- readers slower than the writer: behind a small memory tail, served from the store ----

BURST = py_command(
    """
    import sys, time
    for i in range(1, 20001):
        sys.stdout.write(f"line {i:06d} " + "z" * (i % 300) + "\\n")
        if i % 200 == 0:
            sys.stdout.flush()
            time.sleep(0.01)
    sys.stdout.write("END\\n")
    sys.stdout.flush()
    while True:
        time.sleep(1)
    """
)


@pytest.mark.e2e
def test_slow_readers_behind_a_small_memory_tail_get_every_line(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(
        f"""
        [storage]
        memory_lines = 300

        [process.burst]
        command = {BURST}
        autostart = false
        restart = "never"
        """
    )
    ws_url = server.url.replace("http", "ws") + "/ws/logs?process=burst"
    expected = [f"line {i:06d} " + "z" * (i % 300) + "\n" for i in range(1, 20001)] + ["END\n"]

    def slow_reader(ws: ClientConnection) -> list[str]:
        got: list[str] = []
        while not got or (got[-1] != "END\n" and '"message":"END"' not in got[-1]):
            message = ws.recv(timeout=15)
            assert isinstance(message, str)
            got.append(message)
            if len(got) % 50 == 0:
                time.sleep(0.01)  # about 5,000 lines/s: slower than the child
        return got

    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(ws_connect(ws_url + ("&format=json" if i % 2 else ""), max_queue=4))
            for i in range(4)
        ]
        with server.client() as c, ThreadPoolExecutor(len(clients)) as pool:
            assert c.post("/api/processes/burst/start").status_code < 300
            futures = [pool.submit(slow_reader, ws) for ws in clients]
            behind = 0
            while not all(f.done() for f in futures):
                stats = c.get("/api/logs/stats").json()["processes"]["burst"]
                behind = max(behind, *stats["behind"], 0)
                time.sleep(0.1)
            results = [f.result() for f in futures]
    assert behind > 300, f"the readers never fell behind the memory tail (at most {behind} lines)"
    for i, frames in enumerate(results):
        if i % 2:
            events = [json.loads(f) for f in frames]
            assert not [e for e in events if e["type"] == "gap"]
            logs = [e["log"] for e in events if "log" in e]
            assert [s["seq"] for s in logs] == list(range(logs[0]["seq"], logs[0]["seq"] + len(logs)))
            assert [s["message"] + "\n" for s in logs if s["stream"] == "stdout"] == expected
        else:
            assert [f for f in frames if not f.startswith("[logcast] ")] == expected


# -- clients that stop reading: aborted on both paths -------------------------------------

STALL_TIMEOUT = 2.0


def stalled_ws(port: int) -> socket.socket:
    """A raw WebSocket upgrade asking for the whole history, then never a read."""
    key = base64.b64encode(os.urandom(16))
    return silent_client(
        port,
        b"GET /ws/logs?process=writer&format=json&after=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\n\r\n",
    )


def drained_to_the_end(s: socket.socket) -> bool:
    """Reads all the socket holds: True if the server closed or reset it."""
    s.settimeout(5)
    try:
        while s.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except OSError:
        return False
    return True


def check_stalled_clients_are_let_go(base: str, port: int) -> int:
    with httpx.Client(base_url=base, timeout=10.0) as c:
        assert c.post("/api/processes/writer/start").status_code < 300
        pid = int(c.get("/api/processes/writer").json()["pid"] or 0)
        deadline = time.monotonic() + 20
        while c.get("/api/processes/writer").json()["lines"] < 5000:
            assert time.monotonic() < deadline, "the writer did not write its lines"
            time.sleep(0.05)
    stalled = [stalled_ws(port) for _ in range(20)]
    try:
        t0 = time.monotonic()
        deadline = t0 + STALL_TIMEOUT + 15
        while not all(tcp_state(s) in TCP_CLOSED_STATES for s in stalled):
            assert time.monotonic() < deadline, [tcp_state(s) for s in stalled]
            time.sleep(0.05)
        assert time.monotonic() - t0 >= STALL_TIMEOUT * 0.9  # not before the timeout
        assert all(drained_to_the_end(s) for s in stalled)
        with httpx.Client(base_url=base, timeout=10.0) as c:  # the server serves on
            assert c.get("/healthz").status_code == 200
    finally:
        for s in stalled:
            s.close()
    return pid


@pytest.fixture
def short_send_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGCAST_SEND_TIMEOUT", str(STALL_TIMEOUT))


@pytest.mark.e2e
def test_stalled_clients_of_batched_frames_are_aborted(short_send_timeout: None, make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    check_stalled_clients_are_let_go(server.url, server.port)
    output = server.output()
    assert output.count("WebSocket client stopped reading") >= 20 and "Traceback" not in output


@pytest.mark.e2e
def test_stalled_clients_of_the_fallback_are_aborted(short_send_timeout: None, fallback_server: str) -> None:
    """Under uvicorn's own WebSocket protocol the app still reaches the transport (conn)."""
    kill_leftover(check_stalled_clients_are_let_go(fallback_server, int(fallback_server.rsplit(":", 1)[1])))
