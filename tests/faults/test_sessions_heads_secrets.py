"""Sessions, request heads and credentials, against a real `logcast serve`.

Observed before: the session cookie was a fixed digest of the token (the same at every
login, no expiry, still valid after logout); a 64 MB header and 10,000 headers were
answered 200, and a head could take for ever; `--api-key sk-…` in a command line was
shown in status records to anyone who could read logs.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

TOKEN = "fault-suite-token"
SLEEPER = json.dumps([sys.executable, "-u", "-c", "import time; print('up'); time.sleep(600)"])
CONFIG = f"""
[process.app]
command = {SLEEPER}
"""
HEAD_TIMEOUT = 10.0  # logcast.web.heads.HEAD_TIMEOUT


# -- sessions ------------------------------------------------------------------------------


def _login(server: Server) -> tuple[str, str]:
    answer = httpx.post(server.url + "/api/login", json={"token": TOKEN}, timeout=10)
    assert answer.status_code == 204
    session = answer.cookies.get("logcast_session")
    assert session
    return session, answer.headers["set-cookie"]


def _with_cookie(server: Server, session: str, method: str = "GET", path: str = "/api/processes") -> int:
    answer = httpx.request(
        method, server.url + path, headers={"Cookie": f"logcast_session={session}"}, timeout=10
    )
    return answer.status_code


def _session_state(server: Server, session: str) -> bool:
    answer = httpx.get(
        server.url + "/api/session", headers={"Cookie": f"logcast_session={session}"}, timeout=10
    )
    authenticated: bool = answer.json()["authenticated"]
    return authenticated


def test_each_login_is_a_new_session_and_logout_ends_it(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG, token=TOKEN)
    first, header = _login(server)
    second, _ = _login(server)
    assert first != second and TOKEN not in first
    lowered = header.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered
    assert f"max-age={12 * 3600}" in lowered  # server.session_ttl's default
    assert _with_cookie(server, first) == 200 and _with_cookie(server, second) == 200
    assert _session_state(server, first) and _session_state(server, second)

    logout = httpx.post(
        server.url + "/api/logout", headers={"Cookie": f"logcast_session={first}"}, timeout=10
    )
    assert logout.status_code == 204
    assert 'logcast_session=""' in logout.headers["set-cookie"] or "max-age=0" in (
        logout.headers["set-cookie"].lower()
    )
    # the old cookie, replayed, is refused everywhere; the other session lives on
    assert _with_cookie(server, first) == 401
    assert _with_cookie(server, first, "POST", "/api/processes/app/restart") == 401
    assert not _session_state(server, first)
    assert _with_cookie(server, second) == 200
    assert _with_cookie(server, "made-up-session-id") == 401


def test_a_stream_opened_with_a_session_ends_with_the_session(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG, token=TOKEN)
    session, _ = _login(server)
    cookie = {"Cookie": f"logcast_session={session}"}
    ended = threading.Event()
    events: list[str] = []

    def follow() -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10.0, read=30.0)) as client,
                client.stream("GET", server.url + "/api/processes/app/logs/stream", headers=cookie) as stream,
            ):
                for line in stream.iter_lines():
                    events.append(line)
        except httpx.HTTPError:
            pass
        ended.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    deadline = time.monotonic() + 10
    while not any("historical_complete" in e for e in events):
        assert time.monotonic() < deadline, "the stream did not start"
        time.sleep(0.05)
    assert not ended.wait(0.5)  # a live stream stays open while its session lives
    httpx.post(server.url + "/api/logout", headers=cookie, timeout=10).raise_for_status()
    assert ended.wait(10), "the stream outlived its session"
    follower.join(5)


def test_an_expired_session_is_refused(make_server) -> None:  # type: ignore[no-untyped-def]
    ttl = 5  # the first request must come within it, on a loaded machine too
    server = make_server(f'[server]\ntoken = "{TOKEN}"\nsession_ttl = {ttl}\n' + CONFIG, token=TOKEN)
    session, header = _login(server)
    logged_in = time.monotonic()
    assert f"max-age={ttl}" in header.lower()
    assert _with_cookie(server, session) == 200
    # the deadline is the server's: wait until it has passed, then the cookie is dead
    time.sleep(max(0.0, logged_in + ttl + 0.3 - time.monotonic()))
    assert _with_cookie(server, session) == 401
    assert not _session_state(server, session)
    fresh, _ = _login(server)
    assert _with_cookie(server, fresh) == 200


# -- request heads -------------------------------------------------------------------------


class HealthPoller:
    """Times `GET /healthz` every 50 ms in a thread; `worst` is the longest answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self.answers = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(self.url + "/healthz").status_code == 200
                except httpx.HTTPError as exc:
                    ok = False
                    self.failures.append(repr(exc))
                self.worst = max(self.worst, time.perf_counter() - started)
                self.answers += ok
                self._first.set()
                self._stop.wait(0.05)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        assert self._first.wait(10), "no answer from /healthz"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@contextmanager
def raw(port: int, timeout: float = 30.0) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()


def _send_in_background(sock: socket.socket, chunks: Iterator[bytes]) -> threading.Thread:
    """Send while the test reads: the server answers before the client is done."""

    def run() -> None:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server closed the connection after answering: that is the point

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def _huge_header(size: int) -> Iterator[bytes]:
    yield b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    block = b"a" * (1 << 20)
    for _ in range(size // len(block)):
        yield block
    yield b"\r\n\r\n"


def _many_headers(count: int) -> Iterator[bytes]:
    yield b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"h: v\r\n" * count + b"\r\n"


def test_oversized_heads_are_refused_with_431_while_healthz_answers(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    with HealthPoller(server.url) as poller:
        with raw(server.port) as sock:
            sender = _send_in_background(sock, _huge_header(64 << 20))
            answer = _read_answer(sock)
            assert _status(answer) == 431, answer[:300]
            assert b"larger than 65536 bytes" in answer + sock.recv(4096)
        sender.join(30)
        for count in (10_000, 101):
            with raw(server.port) as sock:
                sender = _send_in_background(sock, _many_headers(count))
                answer = _read_answer(sock) + sock.recv(4096)
                assert _status(answer) == 431, (count, answer[:300])
                assert b"more than 100 header fields" in answer
            sender.join(30)
        # up to the limit is fine, and so is a head of 60 KB
        with raw(server.port) as sock:
            sock.sendall(b"".join(_many_headers(99)))
            assert _status(_read_answer(sock)) == 200
        with raw(server.port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n")
            assert _status(_read_answer(sock)) == 200
        # a body is not a head: a 1 MB POST arriving with its head is not refused for its size
        body = b"x" * (1 << 20)
        with raw(server.port) as sock:
            sock.sendall(
                b"POST /api/logs/app/clear HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            assert _status(_read_answer(sock)) == 200
        # a body has a bound of its own (web/bodies.py), said at once when its length is
        with raw(server.port) as sock:
            sock.sendall(
                b"POST /api/logs/app/clear HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1048577\r\n\r\n"
            )
            assert _status(_read_answer(sock)) == 413
    assert poller.answers > 0 and not poller.failures
    assert poller.worst < 1.0, poller.worst


def _closed_after(sock: socket.socket, drip: bytes | None, limit: float) -> tuple[float, bytes]:
    """Drip one byte a second (or nothing) until the server closes; seconds and answer."""
    started = time.monotonic()
    received = b""
    sock.settimeout(1.0)
    index = 0
    while time.monotonic() - started < limit:
        if drip is not None:
            try:
                sock.sendall(drip[index % len(drip) : index % len(drip) + 1])
            except OSError:
                break
            index += 1
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    return time.monotonic() - started, received


def test_a_head_that_does_not_arrive_in_time_is_cut(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    results: dict[str, tuple[float, bytes]] = {}

    def slowloris() -> None:
        with raw(server.port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            results["slowloris"] = _closed_after(sock, b"X-Slow-Header: a\r\n", limit=HEAD_TIMEOUT + 20)

    def silent() -> None:
        with raw(server.port) as sock:
            results["silent"] = _closed_after(sock, None, limit=HEAD_TIMEOUT + 20)

    with HealthPoller(server.url) as poller:
        threads = [threading.Thread(target=slowloris), threading.Thread(target=silent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HEAD_TIMEOUT + 30)
    seconds, answer = results["slowloris"]
    assert HEAD_TIMEOUT - 0.5 <= seconds <= HEAD_TIMEOUT + 3, seconds
    assert _status(answer) == 408
    seconds, answer = results["silent"]
    assert HEAD_TIMEOUT - 0.5 <= seconds <= HEAD_TIMEOUT + 3, seconds
    assert answer == b""  # not a byte asked, nothing answered
    assert poller.worst < 1.0 and not poller.failures


# -- credentials ---------------------------------------------------------------------------

SECRETS = ("sk-secret123456", "hunter2")
# short, so that the status line (cut at 120 characters) shows every argument
WITH_CREDENTIALS = json.dumps(
    ["sh", "-c", "echo up; exec sleep 600", "sh", "--api-key", "sk-secret123456", "password=hunter2"]
)


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}: {text[:2000]}"


def _sse_history(server: Server, path: str) -> str:
    events = []
    with (
        httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as client,
        client.stream("GET", path) as answer,
    ):
        assert answer.status_code == 200
        for line in answer.iter_lines():
            events.append(line)
            if "historical_complete" in line:
                break
    return "\n".join(events)


def test_credentials_in_a_command_line_never_leave_the_server(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(
        f"""
        [process.model]
        command = {WITH_CREDENTIALS}
        env = {{ HF_TOKEN = "hf_abcdefghijklmnop", MAX_TOKENS = "512" }}
        ready = {{ log = "up" }}
        """,
        token=TOKEN,
    )
    with server.client() as client:
        deadline = time.monotonic() + 20
        while client.get("/api/processes/model").json()["state"] != "ready":
            assert time.monotonic() < deadline, "the process never became ready"
            time.sleep(0.1)
        client.post("/api/processes/model/restart").raise_for_status()  # a second run, a second status line
        history = client.get("/api/processes/model/logs").text
        _assert_clean(history, "the history")
        statuses = [r["message"] for r in json.loads(history)["logs"] if r["stream"] == "system"]
        starting = [m for m in statuses if m.startswith("starting ")]
        assert len(starting) == 2, statuses
        assert all("--api-key •••••• password=•••••• (run" in m for m in starting), starting
        for path in (
            "/api/processes",
            "/api/processes/model",
            "/api/config",
            "/api/logs/stats",
            "/v1/models",
            "/metrics",
            "/api/processes/model/logs/download",
        ):
            answer = client.get(path)
            assert answer.status_code == 200, path
            _assert_clean(answer.text, path)
        config = client.get("/api/config").json()
        (model,) = config["processes"]
        assert model["env"]["HF_TOKEN"] == "••••••" and model["env"]["MAX_TOKENS"] == "512"
    _assert_clean(_sse_history(server, "/api/processes/model/logs/stream?after=0"), "the SSE stream")
    for args in (["ps"], ["ps", "--json"]):
        result = subprocess.run(
            [sys.executable, "-m", "logcast", *args, "--url", server.url, "--token", TOKEN],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "model" in result.stdout
        _assert_clean(result.stdout + result.stderr, f"logcast {' '.join(args)}")
