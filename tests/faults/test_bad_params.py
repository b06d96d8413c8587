"""Every odd parameter is a 4xx with a reason, never a 500 (issue 10 item 6).

One real server; each table below is sent to it, and every answer must be a 4xx whose
JSON `detail` names what was wrong. The WebSocket route answers in its first frame and
closes with 1008. At the end the server's log must hold no traceback, and the same
routes with good parameters must still answer 200 (so the tables test live routes).

Queries are written percent-encoded by hand (`%FF`, `%00`), so that the bytes the
server sees are exactly the odd ones.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import free_port
from tests.e2e.conftest import Server, _spawn, _wait_healthy, py_command
from tests.e2e.sse import wait_for

pytestmark = pytest.mark.e2e

APP = py_command(
    """
    import time
    for i in range(1, 21):
        print(f"line {i}")
    while True:
        time.sleep(1)
    """
)
CONFIG = f"""
[process.app]
command = {APP}
aliases = ["the-app"]
restart = "never"
"""

HUGE = "99999999999999999999"  # beyond 2^63
TWO_TO_63 = "9223372036854775808"
MAX_SEQ = "9223372036854775807"

LOGS = "/api/processes/app/logs"
STREAM = "/api/processes/app/logs/stream"
MODEL_STREAM = "/api/models/app/logs/stream"

# (path with its query, a word the reason must contain)
HISTORY = [
    (f"{LOGS}?after={HUGE}", "after"),
    (f"{LOGS}?after={TWO_TO_63}", "after"),
    (f"{LOGS}?after=-1", "after"),
    (f"{LOGS}?after=abc", "after"),
    (f"{LOGS}?after=%2B5", "after"),  # +5: pydantic alone takes it
    (f"{LOGS}?after=1_0", "after"),  # ...and reads this as 10
    (f"{LOGS}?after=%205", "after"),
    (f"{LOGS}?tail=5&before=1_0", "before"),
    (f"{LOGS}?tail=%2B3", "tail"),
    (f"{LOGS}?limit=1_0", "limit"),
    (f"{LOGS}?after=1.5", "after"),
    (f"{LOGS}?after=", "after"),
    (f"{LOGS}?limit=0", "limit"),
    (f"{LOGS}?limit=10001", "limit"),
    (f"{LOGS}?limit=-5", "limit"),
    (f"{LOGS}?limit={HUGE}", "limit"),
    (f"{LOGS}?tail=-1", "tail"),
    (f"{LOGS}?tail=10001", "tail"),
    (f"{LOGS}?tail={HUGE}", "tail"),
    (f"{LOGS}?tail=5&before=-1", "before"),
    (f"{LOGS}?tail=5&before={HUGE}", "before"),
    (f"{LOGS}?since=nan", "since"),
    (f"{LOGS}?since=inf", "since"),
    (f"{LOGS}?until=-inf", "until"),
    (f"{LOGS}?since=1e400", "since"),
    (f"{LOGS}?since=abc", "since"),
    (f"{LOGS}?since=10&until=5", "until"),
    (f"{LOGS}?level=bogus", "level"),
    (f"{LOGS}?level=%00", "level"),
    (f"{LOGS}?level=%FF", "level"),
    (f"{LOGS}?q=%00", "q"),
    (f"{LOGS}?q=line%001", "q"),
    (f"{LOGS}?q=%FF", "q"),
    (f"{LOGS}?q=%C3%28", "q"),  # a broken two-byte sequence
    (f"{LOGS}?q=%ED%A0%80", "q"),  # a UTF-16 surrogate, which UTF-8 may not carry
    (f"{LOGS}?q={'x' * 1001}", "q"),
    (f"{LOGS}?regex=%00", "regex"),
    (f"{LOGS}?regex=%FF", "regex"),
    (f"{LOGS}?regex=(", "regex"),
    (f"{LOGS}?regex=(a)%5C1", "regex"),  # a backreference: not linear-time
    (f"{LOGS}?regex=x(%3F=y)", "regex"),  # a lookahead: not linear-time
    (f"{LOGS}?%FF=1", "query parameter"),  # the name of a parameter counts too
    ("/api/processes/app/logs/download?plain=maybe", "plain"),
]

STREAMS = [
    *[
        (f"{route}?{query}", word)
        for route in (STREAM, MODEL_STREAM)
        for query, word in [
            (f"after={HUGE}", "after"),
            ("after=-1", "after"),
            ("after=abc", "after"),
            ("after=%2B5", "after"),
            ("lines=1_0", "lines"),
            (f"lines={HUGE}", "lines"),
            ("lines=-1", "lines"),
            ("lines=1e3", "lines"),
        ]
    ],
    (f"{STREAM}?level=bogus", "level"),
    (f"{STREAM}?q=%00", "q"),
    (f"{STREAM}?q=%FF", "q"),
]

BAD_EVENT_IDS = ["abc", "-1", HUGE, TWO_TO_63, "1" + "0" * 5000, "1.5", "0x10", "+5", "5 6", "1_000", "1e3"]

NAMES = [
    ("GET", "/api/processes/%FF"),
    ("GET", "/api/processes/a%00b/logs"),
    ("GET", "/api/processes/%C3%28/logs/stream"),
    ("GET", "/api/processes/%FF/logs/download"),
    ("GET", "/api/models/%FF/logs/stream"),
    ("POST", "/api/processes/%00/start"),
    ("POST", "/api/processes/app%FF/restart"),
    ("POST", "/api/logs/%FF/clear"),
    ("POST", "/api/models/%FF/start"),
    ("POST", "/api/models/a%00/stop"),
]

CLEAR = [
    ("/api/logs/app/clear?keep_minutes=-1", "keep_minutes"),
    ("/api/logs/app/clear?keep_minutes=nan", "keep_minutes"),
    ("/api/logs/app/clear?keep_minutes=inf", "keep_minutes"),
    ("/api/logs/app/clear?keep_minutes=1e400", "keep_minutes"),
    ("/api/logs/app/clear?keep_minutes=abc", "keep_minutes"),
    ("/api/logs/the-app/clear?keep_minutes=%00", "keep_minutes"),
]

WS = [
    (f"process=app&after={HUGE}", "after"),
    (f"process=app&after={TWO_TO_63}", "after"),
    ("process=app&after=-1", "after"),
    ("process=app&after=abc", "after"),
    (f"process=app&lines={HUGE}", "lines"),
    ("process=app&lines=-1", "lines"),
    ("process=app&lines=2.5", "lines"),
    ("process=%FF", "UTF-8"),
    ("process=a%00", "NUL"),
    ("process=nope", "unknown process"),
    ("process=app&q=%00", "NUL"),
    ("process=app&q=%C3%28", "UTF-8"),
    ("process=app&level=bogus", "level"),
    ("process=app&format=xml", "format"),
    ("after=5", "after needs process"),
    # a close frame's reason holds 123 bytes: cut by characters, these made it too long
    ("process=" + "%C3%A9" * 100, "unknown process"),
    ("process=app&after=" + "%E6%97%A5" * 50, "after"),
    ("process=app&level=" + "%C3%A9" * 80, "level"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server for the module (as `make_server` starts it): every case here is
    refused or only reads, so they can share it."""
    folder = tmp_path_factory.mktemp("bad-params")
    config = folder / "logcast.toml"
    config.write_text(textwrap.dedent(CONFIG))
    port = free_port()
    log_path = folder / "server.log"
    srv = Server(f"http://127.0.0.1:{port}", port, folder, config, _spawn(config, port, log_path, []))
    srv.log_path = log_path
    try:
        _wait_healthy(srv, 20.0)
        with srv.client() as c:
            wait_for(lambda: len(c.get(LOGS).json()["logs"]) >= 20, what="the app's lines")
        yield srv
    finally:
        srv.stop()


def reason(answer: httpx.Response) -> str:
    """The `detail` of a 4xx answer, as text; fails on anything else."""
    assert 400 <= answer.status_code < 500, (answer.request.url, answer.status_code, answer.text[:300])
    body = answer.json()
    assert body.get("detail"), body
    assert "Traceback" not in answer.text
    return json.dumps(body["detail"], ensure_ascii=False)


def refused(c: httpx.Client, method: str, url: str, word: str, **kw: Any) -> str | None:
    """None when `url` is refused with a 4xx that mentions `word`; the problem otherwise."""
    with c.stream(method, url, **kw) as answer:
        if not 400 <= answer.status_code < 500:
            return f"{method} {url} {kw}: {answer.status_code}"  # (a stream is left unread)
        answer.read()
        detail = reason(answer)
        if word.lower() not in detail.lower():
            return f"{method} {url} {kw}: the reason does not say {word!r}: {detail}"
    return None


def check_all(c: httpx.Client, cases: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    problems = [p for method, url, word, kw in cases if (p := refused(c, method, url, word, **kw))]
    assert not problems, "\n".join(problems)


def test_history_parameters(server: Server) -> None:
    with server.client() as c:
        check_all(c, [("GET", url, word, {}) for url, word in HISTORY])


def test_stream_parameters_and_last_event_id(server: Server) -> None:
    cases = [("GET", url, word, {}) for url, word in STREAMS]
    for route in (STREAM, MODEL_STREAM):
        cases += [("GET", route, "Last-Event-ID", {"headers": {"Last-Event-ID": v}}) for v in BAD_EVENT_IDS]
    with server.client() as c:
        check_all(c, cases)


def test_names_that_are_not_text(server: Server) -> None:
    with server.client() as c:
        check_all(c, [(method, url, "path", {}) for method, url in NAMES])


def test_clear_parameters(server: Server) -> None:
    with server.client() as c:
        check_all(c, [("POST", url, word, {}) for url, word in CLEAR])
        assert len(c.get(LOGS).json()["logs"]) >= 20  # none of them cleared anything


def test_websocket_parameters(server: Server) -> None:
    problems = []
    base = server.url.replace("http", "ws") + "/ws/logs?"
    for query, word in WS:
        for fmt in ("text", "json"):
            url = base + query + ("&format=json" if fmt == "json" and "format=" not in query else "")
            with connect(url, open_timeout=10) as ws:
                first = str(ws.recv(timeout=10))
                try:
                    extra = ws.recv(timeout=10)
                    problems.append(f"{url}: still open after its error, sent {extra!r}")
                    continue
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd is not None else None
            message = json.loads(first)["message"] if first.startswith("{") else first
            if fmt == "json" and "format=" not in query and json.loads(first)["type"] != "error":
                problems.append(f"{url}: first frame is not an error event: {first}")
            if fmt == "text" and not (first.startswith("[logcast] error: ") and first.endswith("\n")):
                problems.append(f"{url}: first frame is not an error note: {first!r}")
            if word.lower() not in message.lower():
                problems.append(f"{url}: the reason does not say {word!r}: {message}")
            if code != 1008:
                problems.append(f"{url}: closed with {code}, expected 1008")
    assert not problems, "\n".join(problems)


def test_good_parameters_still_answer_and_the_log_has_no_traceback(server: Server) -> None:
    """Runs last in this module: the same routes answer good values (the largest seq
    included), and nothing above left a traceback in the server's log."""
    with server.client() as c:
        assert c.get(f"{LOGS}?after={MAX_SEQ}").json()["logs"] == []
        assert len(c.get(f"{LOGS}?tail=5&before={MAX_SEQ}").json()["logs"]) == 5
        assert len(c.get(f"{LOGS}?q=line%201&limit=100").json()["logs"]) >= 1
        assert c.get(f"{LOGS}?q=%C3%A9").status_code == 200  # é: valid UTF-8 is fine
        assert c.get("/api/processes/the-app/logs?level=info&since=0&until=1e12").status_code == 200
        for route in (STREAM, MODEL_STREAM):
            good_ids = (MAX_SEQ, "0", "7", "0" * 30 + "7", "0" * 60_000 + "7")  # leading zeros too
            for headers in [{"Last-Event-ID": v} for v in good_ids] + [{}]:
                with c.stream("GET", route, headers=headers) as answer:
                    assert answer.status_code == 200, (route, headers)
        assert c.post("/api/logs/app/clear?keep_minutes=600").json()["success"] is True
        assert c.get("/healthz").status_code == 200
    with connect(
        server.url.replace("http", "ws") + f"/ws/logs?process=app&after={MAX_SEQ}", open_timeout=10
    ) as ws:
        ws.send("hello")  # the route ignores what a client says; it stays open
    output = server.output()
    for marker in ("Traceback", "unhandled error", "Exception in ASGI application", "internal error"):
        assert marker not in output, output[-3000:]
