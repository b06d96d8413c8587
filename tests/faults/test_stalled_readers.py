"""Readers that stop reading are let go for real; the number of streams is bounded.

Observed before: 300 SSE clients that never read were each logged as cut loose, yet
every socket stayed open with megabytes queued (RSS 78 → 435 MiB, still 380 MiB
afterwards) and `/healthz` took over a second while they connected. Here a real
`logcast serve` (send timeout 2 s through `LOGCAST_SEND_TIMEOUT`) streams a flooding
child to 300 raw sockets that send their request and never read (a 4 KiB receive
buffer), over SSE and over WebSocket, while one normal reader reads every line and a
poller times `/healthz`. The server's open fds and RSS must come back near their
baseline soon after the timeout, every stalled socket must be closed by the server,
`/healthz` must stay under a second, and the normal reader must miss nothing.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import select
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.conftest import Server, py_command
from tests.util import wait_for

pytestmark = pytest.mark.e2e

SEND_TIMEOUT = 2.0
STALLED = 300
WARM_UP = 10
TRIM_SETTLE = 1.5  # the server gives freed memory back a second after a wave of aborts
# MiB above the baseline that RSS must come back under. Holding the stalled readers' data
# kept +300 MiB (the bug this catches); what a wave leaves behind for good is the store's
# page cache for readers (16 MiB at most), a SQLite cache per worker thread and heap that
# the allocator keeps: +38 to +57 MiB here, too near the 64 MiB this was, on a busier machine.
RSS_MARGIN = 96
STORE_FDS = 12  # at most 6 worker threads x (database, WAL) opened on first use
MiB = 1024 * 1024

FLOOD_SOURCE = textwrap.dedent(
    """
    import sys, time
    pad = "x" * 150
    i = 0
    while True:
        out = []
        for _ in range(40):
            i += 1
            out.append(f"flood {i:08d} {pad}\\n")
        sys.stdout.write("".join(out))
        sys.stdout.flush()
        time.sleep(0.01)
    """
)
FLOOD = py_command(FLOOD_SOURCE)

CONFIG = f"""
[storage]
memory_lines = 20000

[process.flood]
command = {FLOOD}
restart = "never"
"""


# -- what the server holds -----------------------------------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sockets(pid: int) -> int:
    return fd_kinds(pid).get("socket", 0)


def fd_kinds(pid: int) -> dict[str, int]:
    """What the open fds are: socket, pipe, file name (for a failure message)."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            kind = target.split(":")[0] if ":[" in target else target
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Probe(threading.Thread):
    """Times `/healthz` every 20 ms and samples the server's RSS and fds."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.peak_rss = 0
        self.peak_fds = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        pid = self.server.proc.pid
        try:
            with httpx.Client(base_url=self.server.url, timeout=10.0) as c:
                while not self.stop.is_set():
                    t0 = time.perf_counter()
                    status = c.get("/healthz").status_code
                    self.latencies.append(time.perf_counter() - t0)
                    if status != 200:
                        raise AssertionError(f"/healthz answered {status}")
                    self.peak_rss = max(self.peak_rss, rss(pid))
                    self.peak_fds = max(self.peak_fds, open_fds(pid))
                    self.stop.wait(0.02)
        except BaseException as exc:
            self.error = exc


class Reader(threading.Thread):
    """A normal SSE reader from the live end: every seq it gets, until told where to stop."""

    def __init__(self, server: Server, after: int) -> None:
        super().__init__(daemon=True)
        self.url = f"{server.url}/api/processes/flood/logs/stream?after={after}"
        self.after = after
        self.seqs: list[int] = []
        self.kinds: set[str] = set()
        self.until: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, timeout=30.0) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    event = json.loads(line[6:])
                    self.kinds.add(event["type"])
                    if event["type"] in ("realtime", "historical") and event["log"]["stream"] == "stdout":
                        self.seqs.append(event["log"]["seq"])
                        if self.until is not None and self.seqs[-1] >= self.until:
                            return
        except BaseException as exc:
            self.error = exc


# -- clients that never read -----------------------------------------------------------------


def raw_socket(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def stall_sse(port: int) -> socket.socket:
    s = raw_socket(port)
    s.sendall(
        b"GET /api/processes/flood/logs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    return s


def stall_sse_columns(port: int) -> socket.socket:
    s = raw_socket(port)
    s.sendall(
        b"GET /api/processes/flood/logs/stream?batch=columns HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Accept: text/event-stream\r\n\r\n"
    )
    return s


def stall_ws(port: int) -> socket.socket:
    s = raw_socket(port)
    key = base64.b64encode(os.urandom(16))
    s.sendall(
        b"GET /ws/logs?process=flood&format=json&after=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
    )
    return s


def answered(s: socket.socket) -> bool:
    """Whether the server has sent `s` anything, or cut it already (readable), without
    reading it or waiting."""
    poller = select.poll()  # not select(): the suite's fds may be past FD_SETSIZE
    poller.register(s, select.POLLIN)
    return bool(poller.poll(0))


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    """Reads what the socket holds; True once the server closed or reset it."""
    s.settimeout(timeout)
    try:
        while s.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except OSError as exc:
        if exc.errno == errno.ECONNRESET:
            return True
        return False  # a timeout: still open
    return True


@contextlib.contextmanager
def closing_all(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for s in sockets:
            s.close()


def lines_so_far(server: Server) -> int:
    return int(httpx.get(f"{server.url}/api/processes/flood", timeout=10).json()["last_seq"])


def stall_and_recover(server: Server, open_stalled: Callable[[int], socket.socket]) -> dict[str, Any]:
    wait_for(lambda: lines_so_far(server) > 30_000, 30, "the flood filled the memory tail")
    reader = Reader(server, lines_so_far(server))
    reader.start()
    probe = Probe(server)
    probe.start()
    try:
        return _stall_and_recover(server, open_stalled, reader, probe)
    finally:
        probe.stop.set()
        probe.join(10)
        reader.until = 0  # if it is still reading, it stops at its next line


def _stall_and_recover(
    server: Server, open_stalled: Callable[[int], socket.socket], reader: Reader, probe: Probe
) -> dict[str, Any]:
    pid = server.proc.pid
    # A first small wave: the store opens its reader connections (fds) on first use.
    wait_for(lambda: bool(probe.latencies and reader.seqs), 10, "the probe and the reader are connected")
    quiet = sockets(pid)
    with closing_all([open_stalled(server.port) for _ in range(WARM_UP)]):
        wait_for(lambda: sockets(pid) >= quiet + WARM_UP, 10, "the warm-up clients are connected")
        wait_for(lambda: sockets(pid) <= quiet, SEND_TIMEOUT + 15, "the warm-up clients are cut")
    time.sleep(TRIM_SETTLE)
    base_fds, base_rss, base_kinds = open_fds(pid), rss(pid), fd_kinds(pid)
    t0 = time.monotonic()
    with closing_all([open_stalled(server.port) for _ in range(STALLED)]) as stalled:
        connected = time.monotonic() - t0
        # Every one answered, not all held at once: where the server takes them slower than
        # the send timeout (a slower machine), the first are cut before the last come in.
        wait_for(
            lambda: all(answered(s) for s in stalled),
            30,
            lambda: (
                f"the server answers every stalled client: {sum(answered(s) for s in stalled)} of"
                f" {STALLED}, at most {probe.peak_fds - base_fds} fds above the baseline at once,"
                f" /healthz at worst {max(probe.latencies):.2f} s"
            ),
        )
        # the timeout counts from each client's last successful write: give it that and some
        wait_for(
            lambda: sockets(pid) <= base_kinds.get("socket", 0),
            SEND_TIMEOUT + 15,
            lambda: f"the stalled sockets are closed: {fd_kinds(pid)}, before {base_kinds}",
        )
        cut = time.monotonic() - t0
        still_open = [s for s in stalled if not closed_by_server(s, 2.0)]
    wait_for(
        lambda: rss(pid) <= base_rss + RSS_MARGIN * MiB,
        15,
        lambda: f"RSS back near its baseline: {rss(pid) / MiB:.0f} MiB, {base_rss / MiB:.0f} before",
    )
    after_rss, after_fds = rss(pid), open_fds(pid)
    # the store opens a reader connection per worker thread on demand (a file and its WAL)
    assert after_fds <= base_fds + STORE_FDS, f"fds left open: {fd_kinds(pid)}, before {base_kinds}"
    reader.until = lines_so_far(server)
    reader.join(30)
    probe.stop.set()
    probe.join(10)
    assert probe.error is None, probe.error
    figures = {
        "connected_s": connected,
        "cut_s": cut,
        "base_fds": base_fds,
        "peak_fds": probe.peak_fds,
        "after_fds": after_fds,
        "base_rss_mib": base_rss / MiB,
        "peak_rss_mib": probe.peak_rss / MiB,
        "after_rss_mib": after_rss / MiB,
        "healthz_max_s": max(probe.latencies),
    }
    print(figures)
    assert not still_open, f"{len(still_open)} stalled sockets still open: {figures}"
    assert probe.peak_fds >= base_fds + STALLED * 0.5, f"the stalled clients were never held: {figures}"
    assert max(probe.latencies) < 1.0, f"/healthz slow while they connected: {figures}"
    assert reader.error is None, f"the normal reader failed: {reader.error!r}"
    assert not reader.is_alive(), f"the normal reader did not reach {reader.until}: {reader.seqs[-1:]}"
    assert "gap" not in reader.kinds, f"the normal reader was told of a gap: {reader.kinds}"
    seqs = reader.seqs
    assert seqs and seqs[-1] >= reader.until, f"the normal reader stopped at {seqs[-1:]}, not {reader.until}"
    missed = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"the normal reader missed {missed[:5]}"
    assert seqs[0] == reader.after + 1 or seqs[0] <= reader.after + 100, (seqs[0], reader.after)
    output = server.output()
    cut_logged = output.count("stopped reading")
    assert "Traceback" not in output and "without completing response" not in output, output[-2000:]
    assert cut_logged >= STALLED * 0.9, f"only {cut_logged} cuts logged: {output[-1000:]}"
    return figures


@pytest.fixture
def flood_server(make_server, monkeypatch: pytest.MonkeyPatch) -> Server:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LOGCAST_SEND_TIMEOUT", str(SEND_TIMEOUT))
    server: Server = make_server(CONFIG)
    return server


def test_stalled_sse_readers_are_aborted_and_their_memory_freed(flood_server: Server) -> None:
    stall_and_recover(flood_server, stall_sse)


def test_stalled_websocket_readers_are_aborted_and_their_memory_freed(flood_server: Server) -> None:
    stall_and_recover(flood_server, stall_ws)


def test_stalled_column_readers_are_aborted_and_their_memory_freed(flood_server: Server) -> None:
    """`batch=columns` builds each message only when the last was taken: a reader that
    stops reading holds one message and one take of entries until it is cut."""
    stall_and_recover(flood_server, stall_sse_columns)


# -- the limit on open streams ---------------------------------------------------------------


def open_sse(server: Server) -> tuple[socket.socket, int, dict[str, str], bytes]:
    """An SSE request on a raw socket: (socket, status, headers, start of the body)."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"GET /api/processes/flood/logs/stream?lines=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return s, int(lines[0].split()[1]), headers, body


def test_streams_past_max_streams_are_refused_with_a_reason(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server("[server]\nmax_streams = 5\n" + CONFIG)
    ws_url = server.url.replace("http", "ws") + "/ws/logs?process=flood"
    streams = []
    with contextlib.ExitStack() as stack:
        for _ in range(4):
            s, status, _, _ = open_sse(server)
            stack.callback(s.close)
            assert status == 200
            streams.append(s)
        ws = stack.enter_context(connect(ws_url, open_timeout=10, proxy=None))
        assert ws.recv(timeout=10)  # the fifth stream is served

        s, status, headers, body = open_sse(server)
        with s:
            assert status == 503
            assert int(headers["retry-after"]) > 0
            while len(body) < int(headers["content-length"]):
                body += s.recv(65536)
            assert "too many log streams" in json.loads(body)["detail"]
        with connect(ws_url, open_timeout=10, proxy=None) as refused:
            with pytest.raises(ConnectionClosed) as closed:
                refused.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013 and "too many log streams" in closed.value.rcvd.reason
        # other requests are not counted
        assert httpx.get(server.url + "/api/processes", timeout=10).status_code == 200

        streams.pop().close()  # one leaves: a new one is accepted once the server saw it go

        def accepted() -> bool:
            s, status, _, _ = open_sse(server)
            stack.callback(s.close)
            return status == 200

        wait_for(accepted, 10, "a stream is accepted again")


# -- downloads -----------------------------------------------------------------------------

LONG_LINES = py_command(
    "import sys, time\n"
    "for i in range(300):\n"
    "    sys.stdout.write(f'{i:04d} ' + 'y' * 60000 + '\\n')\n"
    "sys.stdout.flush()\n"
    "print('done', flush=True)\n"
    "time.sleep(3600)\n"
)


def stall_download(port: int) -> socket.socket:
    s = raw_socket(port)
    s.sendall(b"GET /api/processes/long/logs/download HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return s


def test_a_download_counts_as_a_stream_and_a_stalled_one_is_cut(make_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A review: downloads whose clients never read stayed open past the send timeout
    (45 s and more), each holding pages of 10,000 lines, and were not counted against
    `max_streams`."""
    monkeypatch.setenv("LOGCAST_SEND_TIMEOUT", str(SEND_TIMEOUT))
    server: Server = make_server(
        f'[server]\nmax_streams = 2\n\n[process.long]\ncommand = {LONG_LINES}\nrestart = "never"\n'
    )
    wait_for(
        lambda: httpx.get(f"{server.url}/api/processes/long", timeout=10).json()["last_seq"] >= 301,
        30,
        "the long lines are in",
    )
    with closing_all([stall_download(server.port) for _ in range(2)]) as stalled:
        wait_for(lambda: all(answered(s) for s in stalled), 15, "both downloads began")
        refused = httpx.get(f"{server.url}/api/processes/long/logs/download", timeout=10)
        assert refused.status_code == 503 and "too many log streams" in refused.json()["detail"]
        assert all(closed_by_server(s, SEND_TIMEOUT + 15) for s in stalled)

    # the slots are given back: a download that reads gets the whole history
    def whole() -> bool:
        got = httpx.get(f"{server.url}/api/processes/long/logs/download", timeout=30)
        return got.status_code == 200 and got.text.count("\n") >= 301

    wait_for(whole, 15, "a whole download after the stalled ones were cut")
    assert "stopped reading" in server.output()
