"""Closed by default: token, cookie, Origin, Host, bind refusal, no stack traces."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.e2e.conftest import py_command

pytestmark = pytest.mark.e2e

ECHO = py_command(
    """
    import time
    print("secret life of a process")
    time.sleep(600)
    """
)
CONFIG = f"""
[process.app]
command = {ECHO}
"""
TOKEN = "s3cret-token-for-tests"


def test_token_is_required_everywhere_but_healthz(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG, token=TOKEN)
    anon = httpx.Client(base_url=server.url, timeout=10)
    assert anon.get("/healthz").status_code == 200
    for path in (
        "/api/processes",
        "/api/logs/stats",
        "/metrics",
        "/api/processes/app/logs",
        "/api/processes/app/logs/stream",
        "/api/models/app/logs/stream",
        "/docs",
        "/openapi.json",
    ):
        answer = anon.get(path)
        assert answer.status_code == 401, path
        assert answer.json() == {"detail": "token missing or wrong"}
    assert anon.post("/api/processes/app/stop").status_code == 401
    page = anon.get("/logs.html?process=app", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login.html?next=")
    assert anon.get("/login.html").status_code == 200
    wrong = anon.get("/api/processes", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    good = anon.get("/api/processes", headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200
    # the dashboard's login sets an HttpOnly, SameSite=Strict cookie that works for API and streams
    assert anon.post("/api/login", json={"token": "nope"}).status_code == 401
    login = anon.post("/api/login", json={"token": TOKEN})
    assert login.status_code == 204
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN not in cookie
    assert anon.get("/api/processes").status_code == 200
    assert anon.get("/api/session").json() == {"auth_required": True, "authenticated": True}
    ws_url = server.url.replace("http", "ws") + "/ws/logs?process=app&after=0"  # with its history
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, open_timeout=10)
    assert refused.value.response.status_code == 401  # as SPEC says for a missing token, not 403
    assert b"token missing or wrong" in refused.value.response.body
    session = anon.cookies.get("logcast_session")
    with connect(ws_url, additional_headers={"Cookie": f"logcast_session={session}"}, open_timeout=10) as ws:
        assert _first_line(ws) == "secret life of a process\n"
    with connect(ws_url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, open_timeout=10) as ws:
        assert _first_line(ws) == "secret life of a process\n"
    anon.close()


def _first_line(ws) -> str:  # type: ignore[no-untyped-def]
    while True:
        text = str(ws.recv(timeout=10))
        if not text.startswith("[logcast]"):
            return text


def test_foreign_origin_and_host_are_refused(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    with server.client() as c:
        evil = c.post("/api/processes/app/restart", headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403
        assert c.post("/api/logs/app/clear", headers={"Origin": "null"}).status_code == 403
        same = c.post("/api/logs/app/clear", headers={"Origin": server.url})
        assert same.status_code == 200
        assert (
            c.get("/api/processes", headers={"Origin": "http://evil.example"}).status_code == 200
        )  # reads are fine
        rebinding = c.get("/api/processes", headers={"Host": "attacker.example:8080"})
        assert rebinding.status_code == 421
        assert c.get("/api/processes", headers={"Host": f"localhost:{server.port}"}).status_code == 200
    ws_url = server.url.replace("http", "ws") + "/ws/logs?process=app"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, origin="http://evil.example", open_timeout=10)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    assert b"cross-origin request refused" in refused.value.response.body
    with connect(ws_url + "&format=json", origin=server.url, open_timeout=10) as ws:  # type: ignore[arg-type]
        assert "historical_complete" in str(ws.recv(timeout=10))  # history was cleared above


def test_pages_carry_a_strict_csp(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    with server.client() as c:
        for path in ("/", "/logs.html", "/config.html", "/login.html"):
            answer = c.get(path)
            assert answer.status_code == 200, path
            csp = answer.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert answer.headers["x-content-type-options"] == "nosniff"
        module = c.get("/static/js/logs.js")
        assert module.status_code == 200 and module.headers["cache-control"] == "no-cache"
        assert c.get("/static/../../../etc/passwd").status_code == 404


def test_binding_beyond_loopback_needs_a_token(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "logcast.toml"
    config.write_text(CONFIG)
    result = subprocess.run(
        [sys.executable, "-m", "logcast", "serve", "-c", str(config), "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "without a token" in result.stderr and "Traceback" not in result.stderr


def test_bad_configuration_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "logcast.toml"
    config.write_text(CONFIG + "restrat = 'always'\n")
    result = subprocess.run(
        [sys.executable, "-m", "logcast", "serve", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "logcast.toml" in result.stderr and "restrat" in result.stderr
    assert "Traceback" not in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "logcast", "serve", "-c", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "none.toml" in missing.stderr


def test_a_big_login_body_is_refused_before_it_is_read(make_server) -> None:  # type: ignore[no-untyped-def]
    """`POST /api/login` is open to anyone; its body was read whole before any check: 200 MB
    there took the server from 88 to 483 MB. Now 413 as soon as the head says so."""
    server = make_server(CONFIG, token=TOKEN)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: 200000000\r\n\r\n" + b"{" * 1000
        )
        answer = b""
        with contextlib.suppress(ConnectionResetError):  # closed with a body it did not read
            while chunk := conn.recv(65536):  # the head and the body may come apart; then it closes
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"a request body is at most 1,048,576 bytes" in answer
    with server.client() as c:
        assert c.post("/api/login", json={"token": TOKEN}).status_code == 204
        assert c.get("/healthz").status_code == 200


def test_a_login_token_that_is_no_utf8_is_a_wrong_token(make_server) -> None:  # type: ignore[no-untyped-def]
    """JSON may carry a lone surrogate (`"\\ud800"`), which has no UTF-8: the login answered
    500 with two tracebacks in the log (a review)."""
    server = make_server(CONFIG, token=TOKEN)
    with server.client() as c:
        for body in (b'{"token": "\\ud800"}', b'{"token": "' + TOKEN.encode() + b'\\udfff"}'):
            answer = c.post("/api/login", content=body, headers={"content-type": "application/json"})
            assert answer.status_code == 401, answer.text
            assert answer.json()["detail"] == "wrong token"
    assert "Traceback" not in server.output()
