"""Two existing clients, unmodified, against the real `logcast serve`: logcast serves the
routes of an LLM-manager tool, so that its clients work unchanged.

* `ManagerLogTester` behaves as the LLM manager's terminal tool (its `test_log_stream.py`,
  issue 10 item 9): it polls `GET /v1/models` until its model name is in some
  item's `aliases`, then reads `/api/models/{alias}/logs/stream`, printing `[历史]` for
  history and `[实时]` for realtime, waiting again on a 503; its diagnose mode calls
  `GET /health`. It reads only what the original read (`data: ` lines; `type`, `log`,
  `message`) and ignores the rest, as the original did.
* `ORIGINAL_PAGE` is the original log page (issue 10 item 10): one bare `/ws/logs`, every
  frame appended to a `<pre>` with `textContent +=`, reconnect with backoff 1 → 10 s.
  It runs in a real headless Chromium, on one origin with the API as it was originally
  (`PageSite` serves it and passes the WebSocket through to logcast).

Also here: the original manager's other shapes (`/health`, model start/stop answers,
the stats envelope, clear with `keep_minutes`), aliases in every route, and no
credential in any answer these routes give.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.conftest import Server, py_command
from tests.e2e.sse import collect, wait_for
from tests.util import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.e2e

# --- the LLM manager's terminal tool ---------------------------------------------------------

RED, YELLOW, GREEN, WHITE, RESET = "\033[91m", "\033[93m", "\033[92m", "\033[97m", "\033[0m"
LEVEL_COLOURS = {"error": RED, "warning": YELLOW, "success": GREEN, "info": WHITE}

WAITING = "模型未启动，等待中"  # /v1/models does not list the model (yet)
NOT_RUNNING = "🔴 模型未运行"  # the stream answered 503
CONNECTED = "🟢 已连接"
HISTORY_DONE = "历史日志输出完成，开始实时推送"
ENDED = "⚫ 日志流结束"
DROPPED = "⚫ 连接断开"


class ManagerLogTester:
    """The LLM manager's `test_log_stream.py`: wait for the model, then history, then realtime."""

    def __init__(self, url: str, model: str, *, max_attempts: int = 0, interval: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.max_attempts = max_attempts
        self.interval = interval
        self.output: list[str] = []
        self.changed = threading.Condition()
        self.cancelled = threading.Event()  # the user's Ctrl-C

    def say(self, text: str) -> None:
        with self.changed:
            self.output.append(text)
            self.changed.notify_all()

    def wait_output(self, predicate: Callable[[list[str]], bool], timeout: float = 20.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self.output), timeout):
                raise AssertionError(f"the tool never printed what was expected; it printed {self.output}")

    def check_model_running(self) -> bool:
        try:
            answer = httpx.get(f"{self.url}/v1/models", timeout=5)
        except httpx.HTTPError:
            return False
        if answer.status_code != 200:
            return False
        return any(self.model in item.get("aliases", []) for item in answer.json().get("data", []))

    def show(self, mark: str, log: dict[str, Any]) -> None:
        colour = LEVEL_COLOURS.get(log.get("level", "info"), WHITE)
        self.say(f"{colour}{mark} {log.get('message', '')}{RESET}")

    def stream_logs(self) -> bool:
        """True when the stream ended (`stream_end`); False to wait and try again."""
        url = f"{self.url}/api/models/{self.model}/logs/stream"
        with (
            httpx.Client(timeout=httpx.Timeout(5.0, read=60.0)) as client,
            client.stream("GET", url) as answer,
        ):
            if answer.status_code == 503:
                answer.read()
                self.say(f"{NOT_RUNNING}: {answer.json().get('message')}")
                return False
            if answer.status_code != 200:
                self.say(f"连接失败: HTTP {answer.status_code}")
                return False
            self.say(CONNECTED)
            for line in answer.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = json.loads(line[6:])
                kind = data.get("type")
                if kind == "historical":
                    self.show("[历史]", data["log"])
                elif kind == "historical_complete":
                    self.say(HISTORY_DONE)
                elif kind == "realtime":
                    self.show("[实时]", data["log"])
                elif kind == "stream_end":
                    self.say(ENDED)
                    return True
                elif kind == "error":
                    self.say(f"错误: {data.get('message')}")
                    return False
        self.say(DROPPED)
        return False

    def run(self) -> bool:
        attempt = 0
        while self.max_attempts == 0 or attempt < self.max_attempts:
            attempt += 1
            if not self.check_model_running():
                self.say(f"🔴 模型 {self.model} {WAITING}... (第 {attempt} 次)")
            elif self.stream_logs():
                return True
            if self.cancelled.wait(self.interval):
                return False
        return False

    def diagnose(self, headers: dict[str, str] | None = None) -> dict[str, Any] | None:
        """The tool's diagnose mode: is the manager there, how many models run?"""
        answer = httpx.get(f"{self.url}/health", headers=headers or {}, timeout=5)
        if answer.status_code != 200:
            self.say(f"服务不可用: HTTP {answer.status_code}")
            return None
        health: dict[str, Any] = answer.json()
        self.say(
            f"状态: {health['status']}, 模型: {health['models_count']}, 运行中: {health['running_models']}"
        )
        return health


def marked(output: list[str], mark: str) -> list[str]:
    """The messages the tool printed under `mark` (colours removed)."""
    found = []
    for line in output:
        plain = re.sub(r"\033\[\d+m", "", line)
        if plain.startswith(mark + " "):
            found.append(plain[len(mark) + 1 :])
    return found


@pytest.fixture
def run_tool() -> Iterator[Callable[[ManagerLogTester], threading.Thread]]:
    started: list[tuple[ManagerLogTester, threading.Thread]] = []

    def start(tool: ManagerLogTester) -> threading.Thread:
        result: dict[str, bool] = {}
        thread = threading.Thread(target=lambda: result.setdefault("ended", tool.run()), daemon=True)
        thread.result = result  # type: ignore[attr-defined]
        thread.start()
        started.append((tool, thread))
        return thread

    yield start
    for tool, thread in started:
        tool.cancelled.set()
        thread.join(30)


# A model server as the terminal tool sees one: start-up lines, then a request every 50 ms.
MODEL = py_command(
    """
    import time
    print("loading model qwen3.gguf")
    print("WARNING: only 6 GiB of VRAM free")
    print("ERROR: flash attention unavailable, falling back")
    print("SUCCESS: 模型加载完成, server is listening")
    i = 0
    while True:
        i += 1
        print(f"request {i}")
        time.sleep(0.05)
    """
)
STARTUP = [
    "loading model qwen3.gguf",
    "WARNING: only 6 GiB of VRAM free",
    "ERROR: flash attention unavailable, falling back",
    "SUCCESS: 模型加载完成, server is listening",
]
QUIET = py_command(
    """
    import time
    print("other started")
    while True:
        time.sleep(1)
    """
)
CONFIG = f"""
[process.qwen3]
command = {MODEL}
aliases = ["Qwen3-8B", "qwen"]
autostart = false
restart = "never"

[process.other]
command = {QUIET}
aliases = ["embedder"]
"""


def requests_of(messages: list[str]) -> list[int]:
    return [int(m.split()[1]) for m in messages if re.fullmatch(r"request \d+", m)]


def test_models_list_and_health_have_the_original_shapes(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/other").json()["state"] == "running", what="other runs")
        models = c.get("/v1/models").json()
        health = c.get("/health").json()
    assert models["object"] == "list"
    by_id = {m["id"]: m for m in models["data"]}
    assert list(by_id) == ["qwen3", "other"]  # every configured process, in config order
    for item in models["data"]:
        assert set(item) == {"id", "object", "created", "owned_by", "aliases", "state"}
        assert (item["object"], item["owned_by"]) == ("model", "logcast")
        assert isinstance(item["created"], int) and item["created"] > 0
    assert by_id["qwen3"]["aliases"] == ["qwen3", "Qwen3-8B", "qwen"]  # its own name first
    assert by_id["other"]["aliases"] == ["other", "embedder"]
    assert (by_id["qwen3"]["state"], by_id["other"]["state"]) == ("stopped", "running")
    assert health == {"status": "healthy", "models_count": 2, "running_models": 1}
    tool = ManagerLogTester(server.url, "qwen")
    assert tool.diagnose() == health
    assert tool.output[-1] == "状态: healthy, 模型: 2, 运行中: 1"


def test_terminal_tool_waits_for_its_model_then_streams_until_it_stops(make_server, run_tool) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    tool = ManagerLogTester(server.url, "Qwen3-8B", interval=0.2)  # an alias, as the tool is given
    thread = run_tool(tool)
    # listed by /v1/models but not running: the stream answers 503 and the tool waits
    tool.wait_output(lambda out: sum(line.startswith(NOT_RUNNING) for line in out) >= 2)
    assert not marked(tool.output, "[历史]") and not marked(tool.output, "[实时]")
    with server.client() as c:
        started = c.post("/api/models/qwen/start")  # another alias of the same process
        assert started.status_code == 200
        body = started.json()
        assert body["success"] is True and "qwen3" in body["message"]
        assert body["process"] == "qwen3" and body["state"] in ("starting", "running")
        tool.wait_output(lambda out: len(requests_of(marked(out, "[实时]"))) >= 5)
        again = c.post("/api/models/Qwen3-8B/start").json()
        assert again["success"] is True and "already running" in again["message"]
        stopped = c.post("/api/models/qwen3/stop").json()
        assert stopped["success"] is True and stopped["message"] == "qwen3 stopped"
        thread.join(20)
        assert not thread.is_alive() and thread.result == {"ended": True}  # type: ignore[attr-defined]
        assert c.post("/api/models/qwen3/stop").json()["message"] == "qwen3 was not running"
        unknown = c.post("/api/models/nope/start")
        assert unknown.status_code == 404 and unknown.json()["success"] is False
    out = tool.output
    assert out[-1] == ENDED
    assert out.count(HISTORY_DONE) == 1
    lines = marked(out, "[历史]") + marked(out, "[实时]")
    # every line once, across the seam between history and realtime
    assert [m for m in lines if m in STARTUP] == STARTUP
    got = requests_of(lines)
    assert got == list(range(1, len(got) + 1))
    assert f"{RED}[" in "".join(o for o in out if "flash attention" in o)  # levels drive the colours
    assert f"{YELLOW}[" in "".join(o for o in out if "VRAM" in o)


def test_terminal_tool_prints_history_then_realtime(make_server, run_tool) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    with server.client() as c:
        assert c.post("/api/models/qwen3/start").json()["success"] is True

        def printed() -> list[int]:
            logs = c.get("/api/processes/qwen3/logs", params={"limit": 10000}).json()["logs"]
            return requests_of([r["message"] for r in logs])

        before = wait_for(lambda: printed() if len(printed()) >= 3 else None, what="requests printed")
        tool = ManagerLogTester(server.url, "qwen", interval=0.2)
        thread = run_tool(tool)
        tool.wait_output(lambda out: len(requests_of(marked(out, "[实时]"))) >= 3)
        assert c.post("/api/models/qwen/stop").json()["success"] is True
        thread.join(20)
        assert not thread.is_alive()
    out = tool.output
    assert out[0] == CONNECTED  # the model was listed and running: no waiting
    history, live = marked(out, "[历史]"), marked(out, "[实时]")
    assert out.index(HISTORY_DONE) == len(history) + 1 and out.count(HISTORY_DONE) == 1
    assert [m for m in history if m in STARTUP] == STARTUP
    assert set(before) <= set(requests_of(history))  # what was printed before it connected
    got = requests_of(history + live)
    assert got == list(range(1, len(got) + 1)) and requests_of(live)


def test_health_and_models_need_the_token_unlike_healthz(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG, token="tok-123")
    tool = ManagerLogTester(server.url, "qwen")
    assert tool.diagnose() is None and tool.output[-1] == "服务不可用: HTTP 401"
    assert tool.diagnose(server.headers) is not None
    assert httpx.get(server.url + "/v1/models").status_code == 401
    assert not tool.check_model_running()  # without the token the tool sees no model
    assert httpx.get(server.url + "/healthz").status_code == 200
    with server.client() as c:
        assert c.get("/v1/models").status_code == 200
        assert c.post("/api/models/qwen/start", headers={"Origin": "http://evil.example"}).status_code == 403


# --- the original's stats and clear ----------------------------------------------------------

CHATTY = py_command(
    """
    import os, sys, time
    gate = sys.argv[1]
    for batch in ("a", "b", "c"):
        while not os.path.exists(os.path.join(gate, batch)):
            time.sleep(0.01)
        for i in range(1, 6):
            print(f"batch {batch} line {i}")
    time.sleep(600)
    """
)


def chatty_config(gate: Path) -> str:
    command = [*json.loads(CHATTY), str(gate)]
    return f"""
    [process.qwen3]
    command = {json.dumps(command)}
    aliases = ["qwen"]
    restart = "never"

    [process.other]
    command = {QUIET}
    """


def messages_of(c: httpx.Client, name: str) -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = c.get(f"/api/processes/{name}/logs", params={"limit": 10000}).json()["logs"]
    return [r for r in logs if r["stream"] != "system"]


def at_least(c: httpx.Client, name: str, n: int) -> list[dict[str, Any]]:
    """The output records of `name` once there are at least `n`."""

    def enough() -> list[dict[str, Any]] | None:
        found = messages_of(c, name)
        return found if len(found) >= n else None

    found: list[dict[str, Any]] = wait_for(enough, what=f"{n} lines of {name}")
    return found


def open_gate(c: httpx.Client, gate: Path, batch: str) -> list[dict[str, Any]]:
    """Let the child print its next batch of 5 lines; their records once all are in."""
    (gate / batch).touch()

    def printed() -> list[dict[str, Any]] | None:
        found = [r for r in messages_of(c, "qwen3") if r["message"].startswith(f"batch {batch} ")]
        return found if len(found) == 5 else None

    found: list[dict[str, Any]] = wait_for(printed, what=f"batch {batch}")
    return found


def test_stats_carry_the_original_envelope_beside_logcast_fields(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gate = tmp_path / "gate"
    gate.mkdir()
    server = make_server(chatty_config(gate))
    with server.client() as c:
        open_gate(c, gate, "a")
        with httpx.Client(timeout=httpx.Timeout(5.0, read=30.0)) as reader:
            with reader.stream("GET", server.url + "/api/models/qwen/logs/stream") as stream:
                assert stream.status_code == 200
                wait_for(lambda: c.get("/api/logs/stats").json()["stats"]["total_subscribers"] == 1)
                stats = c.get("/api/logs/stats").json()
        # logcast's own fields are all still there
        assert {
            "total_logs",
            "total_bytes",
            "subscribers",
            "dropped",
            "lines_per_s",
            "processes",
            "store",
        } <= set(stats)
        assert stats["success"] is True
        envelope = stats["stats"]
        assert set(envelope) == {"total_models", "total_log_entries", "total_subscribers", "model_stats"}
        assert envelope["total_models"] == 2 and envelope["total_subscribers"] == 1
        model_stats = envelope["model_stats"]
        assert set(model_stats) == {"qwen3", "other"}
        for name, figures in model_stats.items():
            assert set(figures) == {"log_count", "subscriber_count"}
            # nothing was cleared or trimmed: the history holds every record, status ones included
            assert figures["log_count"] == stats["processes"][name]["last_seq"]
        assert model_stats["qwen3"]["subscriber_count"] == 1 and model_stats["other"]["subscriber_count"] == 0
        assert envelope["total_log_entries"] == sum(f["log_count"] for f in model_stats.values())
        assert c.post("/api/logs/qwen/clear").json()["success"] is True
        after = c.get("/api/logs/stats").json()
        assert after["stats"]["model_stats"]["qwen3"]["log_count"] == 0
        assert after["processes"]["qwen3"]["lines"] == stats["processes"]["qwen3"]["lines"]  # lifetime


def test_clear_with_keep_minutes_removes_only_older_lines(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gate = tmp_path / "gate"
    gate.mkdir()
    server = make_server(chatty_config(gate))
    with server.client() as c:
        old = open_gate(c, gate, "a")
        newest_old = max(r["timestamp"] for r in old)
        # lines of two ages: batch b is printed a second after batch a was read
        wait_for(lambda: time.time() > newest_old + 1.0, what="a second to pass")
        new = open_gate(c, gate, "b")
        oldest_new = min(r["timestamp"] for r in new)
        assert oldest_new - newest_old >= 1.0

        # The cut is the server's clock less `keep`, so it falls later by however long the
        # request takes: put it just after batch a, which leaves batch b most of a second.
        keep = (time.time() - newest_old - 0.05) / 60
        answer = c.post("/api/logs/qwen/clear", params={"keep_minutes": keep})
        assert answer.status_code == 200
        body = answer.json()
        assert body["success"] is True and isinstance(body["message"], str) and body["message"]
        assert (body["cleared"], body["process"], body["keep_minutes"]) == (True, "qwen3", keep)
        assert max(r["seq"] for r in old) <= body["upto"] < min(r["seq"] for r in new)
        assert [r["message"] for r in messages_of(c, "qwen3")] == [r["message"] for r in new]

        # a window that holds everything removes nothing
        kept = c.post("/api/logs/qwen3/clear", params={"keep_minutes": 60}).json()
        assert kept["upto"] == body["upto"] and len(messages_of(c, "qwen3")) == 5

        # keep_minutes=0 removes everything older than now; numbering goes on
        everything = c.post("/api/logs/qwen/clear", params={"keep_minutes": 0}).json()
        assert everything["upto"] >= max(r["seq"] for r in new)
        assert messages_of(c, "qwen3") == []
        later = open_gate(c, gate, "c")
        assert min(r["seq"] for r in later) > everything["upto"]
        assert c.post("/api/logs/nope/clear", params={"keep_minutes": 1}).status_code == 404


# --- aliases in every route ------------------------------------------------------------------


def test_every_route_takes_an_alias(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(CONFIG)
    ws_base = server.url.replace("http", "ws") + "/ws/logs"
    with server.client() as c:
        assert c.post("/api/processes/Qwen3-8B/start").json()["name"] == "qwen3"
        wait_for(lambda: len(messages_of(c, "qwen3")) >= 6, what="qwen3 prints")
        for alias in ("qwen3", "Qwen3-8B", "qwen"):
            wait_for(
                lambda alias=alias: any(r["message"] == STARTUP[0] for r in messages_of(c, alias)),
                what="the start-up lines (after the clear and restart of the round before)",
            )
            assert c.get(f"/api/processes/{alias}").json()["name"] == "qwen3"
            logs = c.get(f"/api/processes/{alias}/logs").json()["logs"]
            assert logs and {r["process"] for r in logs} == {"qwen3"}
            tail = c.get(f"/api/processes/{alias}/logs", params={"tail": 2}).json()["logs"]
            assert len(tail) == 2
            download = c.get(f"/api/processes/{alias}/logs/download")
            assert download.status_code == 200 and "loading model qwen3.gguf" in download.text
            assert 'filename="qwen3-' in download.headers["content-disposition"]
            for route in (f"/api/processes/{alias}/logs/stream", f"/api/models/{alias}/logs/stream"):
                events = collect(
                    server.url + route,
                    params={"lines": 3},
                    until=lambda got: any(m.type == "historical_complete" for m in got),
                )
                assert {m.data["log"]["process"] for m in events if "log" in m.data} == {"qwen3"}
            with connect(f"{ws_base}?process={alias}&format=json&lines=3", open_timeout=10) as ws:
                first = json.loads(ws.recv(timeout=10))
                assert first["type"] == "historical" and first["log"]["process"] == "qwen3"
            assert c.post(f"/api/logs/{alias}/clear").json()["process"] == "qwen3"
            assert c.post(f"/api/processes/{alias}/restart").json()["name"] == "qwen3"
        stop = c.post("/api/models/qwen/stop").json()
        assert (stop["success"], stop["process"]) == (True, "qwen3")
        # names are exact: no case folding, and an unknown name is a 404 everywhere
        for route in ("/api/processes/QWEN", "/api/processes/QWEN/logs", "/api/models/QWEN/logs/stream"):
            assert c.get(route).status_code == 404, route
        assert c.post("/api/logs/QWEN/clear").status_code == 404
        assert c.post("/api/processes/QWEN/start").status_code == 404
    with connect(f"{ws_base}?process=QWEN", open_timeout=10) as ws:
        assert "unknown process 'QWEN'" in str(ws.recv(timeout=10))


# --- no credential in any answer -------------------------------------------------------------

SECRETS = ("sk-live0123456789abcdef", "hunter2-db-pass", "tok-env-secret-42", "hf_abcdefghijklmnop")


def test_answers_carry_no_credential(make_server) -> None:  # type: ignore[no-untyped-def]
    command = [*json.loads(QUIET), "--api-key", SECRETS[0], "--db=postgres://app:" + SECRETS[1] + "@db/app"]
    server = make_server(
        f"""
        [process.model]
        command = {json.dumps(command)}
        aliases = ["m"]
        env = {{ API_TOKEN = "{SECRETS[2]}", HF_HOME = "/models", MIRROR = "{SECRETS[3]}" }}
        ready = {{ http = "http://user:{SECRETS[1]}@127.0.0.1:1/health", timeout = 600 }}
        """
    )
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/model").json()["pid"], what="the model runs")
        config = c.get("/api/config").json()["processes"][0]
        assert config["command"][:3] == json.loads(QUIET)[:3]
        assert config["command"][-2:] == ["••••••", "--db=postgres://app:••••••@db/app"]
        assert config["env"] == {"API_TOKEN": "••••••", "HF_HOME": "/models", "MIRROR": "••••••"}
        assert config["ready"]["http"] == "http://user:••••••@127.0.0.1:1/health"
        assert config["aliases"] == ["m"]
        answers = [
            c.get("/api/config"),
            c.get("/v1/models"),
            c.get("/health"),
            c.get("/api/logs/stats"),
            c.get("/api/processes"),
            c.get("/api/processes/m"),
            c.post("/api/models/m/stop"),
            c.post("/api/models/m/start"),
            c.post("/api/logs/m/clear", params={"keep_minutes": 5}),
        ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        for secret in SECRETS:
            assert secret not in answer.text, (answer.url, secret)


# --- the original log page in a real Chromium ------------------------------------------------

ORIGINAL_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>服务日志</title></head>
<body>
<span id="status" class="connecting">连接中</span>
<pre id="log-output"></pre>
<script>
  const output = document.getElementById("log-output");
  const status = document.getElementById("status");
  window.opens = 0;
  let delay = 1000;
  function setStatus(cls, text) { status.className = cls; status.textContent = text; }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws/logs`);
    setStatus("connecting", "连接中");
    ws.onopen = () => { delay = 1000; window.opens += 1; setStatus("connected", "已连接"); };
    ws.onmessage = (event) => {
      output.textContent += event.data;
      window.scrollTo(0, document.body.scrollHeight);
    };
    ws.onclose = () => {
      setStatus("disconnected", "已断开");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
    ws.onerror = () => ws.close();
  }
  connect();
</script>
</body></html>
"""

TICKER = py_command(
    """
    import os, time
    pid = os.getpid()
    i = 0
    while True:
        i += 1
        print(f"{pid} line {i}")
        time.sleep(0.05)
    """
)


class PageSite:
    """The original site on loopback: `GET /logs.html` is the original log page, answered
    here; every other connection (the page's WebSocket) is passed to logcast byte for byte,
    so that page and API share one origin, as they did originally (logcast refuses a
    WebSocket from a foreign Origin, and Chromium lets only a page that came from a
    loopback address open one to loopback)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        site = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                site.serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.add(sock)

    def serve(self, conn: socket.socket) -> None:
        self._track(conn)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk:
                return
            head += chunk
        if head.startswith(b"GET /logs.html "):
            body = ORIGINAL_PAGE.encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            return  # logcast is down: the connection closes and the page tries again later
        upstream.settimeout(None)
        self._track(upstream)
        upstream.sendall(head)
        back = threading.Thread(target=self._pipe, args=(upstream, conn), daemon=True)
        back.start()
        self._pipe(conn, upstream)
        back.join(10)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        self.thread.join(10)


def page_lines(page: Any) -> list[str]:
    text: str = page.evaluate("() => document.getElementById('log-output').textContent")
    return text.split("\n")


def child_lines(lines: list[str]) -> list[tuple[int, int]]:
    """(pid, n) of each child line on the page, in page order."""
    out = []
    for line in lines:
        m = re.fullmatch(r"(\d+) line (\d+)", line)
        if m:
            out.append((int(m.group(1)), int(m.group(2))))
    return out


@pytest.mark.browser
def test_original_page_shows_separate_lines_and_no_line_twice_after_reconnecting(make_server) -> None:  # type: ignore[no-untyped-def]
    playwright_api = pytest.importorskip("playwright.sync_api")
    server: Server = make_server(
        f"""
        [process.app]
        command = {TICKER}
        restart = "never"
        """
    )
    with server.client() as c:
        # history exists before the page opens: a bare /ws/logs must not send it
        history = at_least(c, "app", 10)
        old_pid = int(history[0]["message"].split()[0])
    site = PageSite(server.port)
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(30_000)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(site.url + "/logs.html")
                page.wait_for_function("() => document.getElementById('status').className === 'connected'")
                page.wait_for_function(
                    "() => (document.getElementById('log-output').textContent.match(/ line /g) || []).length >= 10"
                )
                before = page_lines(page)
                shown = child_lines(before)
                assert shown and all(pid == old_pid for pid, _ in shown)
                already = {r["message"] for r in history}
                assert not already & set(before), "a bare /ws/logs replayed history"

                server.restart()  # the server goes away and comes back: the page reconnects by itself
                page.wait_for_function("() => window.opens >= 2")
                page.wait_for_function(
                    "([old]) => document.getElementById('log-output').textContent"
                    ".split('\\n').filter(l => / line /.test(l) && !l.startsWith(old + ' ')).length >= 10",
                    arg=[str(old_pid)],
                )
                text: str = page.evaluate("() => document.getElementById('log-output').textContent")
            finally:
                browser.close()
    finally:
        site.close()
    assert not errors, errors
    assert text.endswith("\n")  # every frame ended its line
    lines = text.split("\n")[:-1]
    for line in lines:  # every line on its own: a child line or a logcast note, never two run together
        assert re.fullmatch(r"\d+ line \d+", line) or line.startswith("[logcast] app: "), line
    seen = child_lines(lines)
    assert len(seen) == len(set(seen)), "a line appeared twice"
    pids = list(dict.fromkeys(pid for pid, _ in seen))
    assert len(pids) == 2 and pids[0] == old_pid
    for pid in pids:  # while connected, nothing missing either
        numbers = [n for q, n in seen if q == pid]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_bare_websocket_starts_at_the_live_end_and_lines_or_after_ask_for_history(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(
        f"""
        [process.app]
        command = {TICKER}
        restart = "never"
        """
    )
    ws_base = server.url.replace("http", "ws") + "/ws/logs"
    with server.client() as c:
        history = at_least(c, "app", 5)
    old = {r["message"] + "\n" for r in history}
    for url in (ws_base, ws_base + "?process=app", ws_base + "?process=app&format=text"):
        with connect(url, open_timeout=10) as ws:
            frames = [str(ws.recv(timeout=10)) for _ in range(5)]
        assert not old & set(frames), url
        assert all(f.endswith("\n") and f.count("\n") == 1 for f in frames)
    with connect(ws_base + "?process=app&format=json", open_timeout=10) as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "historical_complete"  # nothing before it: no history
        assert json.loads(ws.recv(timeout=10))["type"] == "realtime"
    with connect(ws_base + "?process=app&lines=3&format=json", open_timeout=10) as ws:
        kinds = [json.loads(ws.recv(timeout=10))["type"] for _ in range(5)]
    assert kinds == ["historical"] * 3 + ["historical_complete", "realtime"]
    with connect(ws_base + "?process=app&after=0", open_timeout=10) as ws:
        frames = [str(ws.recv(timeout=10)) for _ in range(10)]
    assert [f for f in frames if not f.startswith("[logcast]")][:5] == [
        r["message"] + "\n" for r in history[:5]
    ]
    with connect(ws_base + "?lines=2", open_timeout=10) as ws:  # every process, with history
        assert str(ws.recv(timeout=10)).endswith("\n")
    with connect(ws_base + "?after=3", open_timeout=10) as ws:  # per-process seqs need a process
        assert "after needs process=" in str(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
