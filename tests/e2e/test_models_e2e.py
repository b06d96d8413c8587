"""Model servers end to end: a real `logcast serve` running the demo's fake llama.cpp and vLLM
servers (examples/demo/), read through the HTTP API, `/metrics` and the history as a user would.

- a llama.cpp server's phases (loading with its progress, ready, serving/idle), its requests and
  tokens/s, the status records of its phases and the lines it was read from (`marked`);
- a vLLM server that `depends_on = { llm = "ready" }`: it waits until the llama.cpp one is
  ready, then starts and is read as vLLM, named (`parse = "vllm"`) or guessed;
- `parse = "none"`: no model;
- `/metrics`: the model's figures and every running process's resources;
- why a run died (`last_exit`): an exit code with that run's error lines, a SIGKILL from outside;
- `depends_on` mistakes refused by `logcast serve` with the file, the line and the key;
- a model that fails to load.

The llama.cpp, vLLM, `parse = "none"` and metrics tests share one server (module fixture): the
fakes take seconds to come up, and they come up side by side.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Server, _spawn, _wait_healthy, py_command
from tests.util import wait_for

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


def fake(script: str, *args: str) -> str:
    """A TOML array that runs one of the demo's fake servers."""
    return json.dumps([sys.executable, "-u", str(DEMO / script), *args])


# The llama.cpp fake loads for 4 s, printing its progress dots at a steady pace with no pause:
# the dots that came are handed on as a partial record every idle flush time (0.25 s) while the
# line grows, so the progress shows between 0 and 1 (with --load-seconds 1 too).
MODELS_TOML = f"""
[process.llm]
command = {fake("fake_llm.py", "--load-seconds", "4")}
ready = {{ log = "server is listening on" }}
autostart = false
restart = "never"

[process.vllm]
command = {fake("fake_vllm.py", "--shard-seconds", "0.2", "--log-interval", "1", "--quiet-spell", "2")}
depends_on = {{ llm = "ready" }}
parse = "vllm"
restart = "never"

[process.guess]
command = {fake("fake_vllm.py", "--shard-seconds", "0.2", "--log-interval", "1", "--quiet-spell", "2")}
depends_on = {{ llm = "ready" }}
restart = "never"

[process.plain]
command = {fake("fake_llm.py", "--load-seconds", "1")}
parse = "none"
restart = "never"

[process.sleeper]
command = {py_command("import time; print('sleeping', flush=True); time.sleep(3600)")}
restart = "never"
"""

LLAMA_SIGNS = (  # what the llama.cpp parser reads in the fake's output (models/llamacpp.py)
    "loading model",
    "llama_model_load",
    "load_tensors:",
    "model loaded",
    "server is listening",
    "processing task",
    "all slots are idle",
    "tokens per second",
)


@dataclass
class Poll:
    t: float
    processes: dict[str, dict[str, Any]]


@dataclass
class Startup:
    """The shared server, and what `GET /api/processes` said while the llama.cpp fake came up."""

    server: Server
    client: httpx.Client
    before_start: dict[str, dict[str, Any]]
    polls: list[Poll] = field(default_factory=list)


def processes(client: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/processes")
    answer.raise_for_status()
    return {p["name"]: p for p in answer.json()["processes"]}


def process(client: httpx.Client, name: str) -> dict[str, Any]:
    answer = client.get(f"/api/processes/{name}")
    answer.raise_for_status()
    return answer.json()  # type: ignore[no-any-return]


def history(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    """Every retained record of a process, oldest first."""
    records: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get(f"/api/processes/{name}/logs", params={"after": after, "limit": 10000})
        page.raise_for_status()
        body = page.json()
        records += body["logs"]
        if body["next"] is None:
            return records
        after = body["next"]


def statuses(records: list[dict[str, Any]]) -> list[str]:
    return [r["message"] for r in records if r["stream"] == "system"]


def index_of(messages: list[str], start: str) -> int:
    found = [i for i, m in enumerate(messages) if m.startswith(start)]
    assert found, f"no status record starting with {start!r} in {messages}"
    return found[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Startup]:
    folder = tmp_path_factory.mktemp("models")
    config = folder / "logcast.toml"
    config.write_text(MODELS_TOML)
    port = free_port()
    log_path = folder / "server.log"
    proc = _spawn(config, port, log_path, [])
    server = Server(f"http://127.0.0.1:{port}", port, folder, config, proc, None, log_path)
    try:
        _wait_healthy(server, 20.0)
        with server.client() as client:
            # the dependents are autostarted, and wait: llm is not started (autostart = false)
            before = wait_for(
                lambda: (
                    (ps := processes(client))["vllm"]["waiting_for"] == "llm (ready)"
                    and ps["guess"]["waiting_for"] == "llm (ready)"
                    and ps
                ),
                10.0,
                "vllm and guess to wait for llm",
            )
            client.post("/api/processes/llm/start").raise_for_status()
            startup = Startup(server, client, before)
            deadline = time.monotonic() + 40.0
            while time.monotonic() < deadline:  # until llm is ready and both dependents started
                ps = processes(client)
                startup.polls.append(Poll(time.time(), ps))
                model = ps["llm"]["model"]
                if (
                    model is not None
                    and model["phase"] != "loading"
                    and ps["vllm"]["pid"] is not None
                    and ps["guess"]["pid"] is not None
                ):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"llm not ready or vllm/guess not started: {startup.polls[-1]}")
            yield startup
    finally:
        server.stop()


# -- 1. llama.cpp -----------------------------------------------------------------------------


def test_llamacpp_loads_with_progress_becomes_ready_then_serves(models: Startup) -> None:
    client = models.client
    seen = [p.processes["llm"]["model"] for p in models.polls if p.processes["llm"]["model"] is not None]
    assert seen, "llm never had a model"
    assert {m["kind"] for m in seen} == {"llamacpp"}
    phases = [m["phase"] for m in seen]
    distinct = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert distinct[0] == "loading", distinct
    assert "ready" in distinct, distinct
    assert distinct.index("ready") > distinct.index("loading")

    loading = [m["load_progress"] for m in seen if m["phase"] == "loading"]
    progress = [v for v in loading if v is not None]
    assert all(0.0 <= v <= 1.0 for v in progress), progress
    assert progress == sorted(progress), f"load_progress went back: {progress}"
    assert any(0.0 < v < 1.0 for v in progress), (
        f"load_progress never between 0 and 1 while loading: {loading}"
    )

    ready = next(m for m in seen if m["phase"] == "ready")
    assert ready["load_progress"] == 1.0
    assert ready["ready_after_s"] is not None and 3.0 < ready["ready_after_s"] < 30.0, ready
    assert ready["requests"] == 0

    def served() -> dict[str, Any] | None:
        model = process(client, "llm")["model"]
        ok = (
            model["phase"] in ("serving", "idle")
            and model["requests"] >= 1
            and (model["gen_tokens_per_s"] or 0) > 0
        )
        return model if ok else None

    model = wait_for(served, 30.0, "llm to serve a request with generation tokens/s", interval=0.2)
    assert model["kind"] == "llamacpp"
    assert model["load_progress"] == 1.0
    assert model["ready_after_s"] == ready["ready_after_s"]
    assert model["prompt_tokens_per_s"] is not None and model["prompt_tokens_per_s"] > 0
    assert model["last_request_at"] is not None and model["last_request_at"] <= time.time()

    records = history(client, "llm")
    messages = statuses(records)
    loading_at = index_of(messages, "model loading")
    ready_at = index_of(messages, "model ready after")
    assert messages[loading_at] == "model loading (llamacpp)"
    assert loading_at < ready_at
    assert messages[ready_at] == f"model ready after {ready['ready_after_s']:.1f}s"

    by_seq = {r["seq"]: r for r in records}
    marked = model["marked"]
    assert marked, "no marked lines"
    assert marked == sorted(set(marked)), marked
    for seq in marked:
        assert seq in by_seq, f"marked seq {seq} is not in the history"
        record = by_seq[seq]
        assert record["stream"] != "system" and "state" not in record, (
            f"marked seq {seq} is a status: {record}"
        )
        text = record["message"]
        assert any(sign in text for sign in LLAMA_SIGNS) or (text and not text.strip(".")), (
            f"marked seq {seq} is not a line the llama.cpp parser reads: {text!r}"
        )
    texts = [by_seq[s]["message"] for s in marked]
    assert any("loading model" in t for t in texts), texts
    assert any("tokens per second" in t for t in texts), texts


# -- 2. depends_on: vLLM after llama.cpp is ready ---------------------------------------------


def test_vllm_waits_for_llm_ready_then_starts_and_is_read_as_vllm(models: Startup) -> None:
    client = models.client
    for name in ("vllm", "guess"):
        before = models.before_start[name]
        assert before["state"] == "stopped" and before["pid"] is None and before["run"] == 0, before
        assert before["waiting_for"] == "llm (ready)"
    waiting_polls = [p for p in models.polls if p.processes["llm"]["state"] != "ready"]
    assert waiting_polls, "no poll while llm was not ready"
    assert any((p.processes["llm"]["model"] or {}).get("phase") == "loading" for p in waiting_polls)
    for poll in waiting_polls:
        for name in ("vllm", "guess"):
            info = poll.processes[name]
            assert info["state"] == "stopped", (name, info)
            assert info["pid"] is None and info["run"] == 0, (name, info)
            assert info["waiting_for"] == "llm (ready)", (name, info)

    llm_ready = next(r for r in history(client, "llm") if r.get("state") == "ready")
    # llama-server says "HTTP server is listening" before it loads: ready comes after the load
    loaded = next(r for r in history(client, "llm") if "main: model loaded" in r["message"])
    assert llm_ready["seq"] > loaded["seq"]
    for name in ("vllm", "guess"):
        records = history(client, name)
        started = next(r for r in records if r.get("state") == "starting")
        assert started["timestamp"] >= llm_ready["timestamp"], (name, started, llm_ready)
        assert all(r["run"] == 0 for r in records if r["seq"] < started["seq"])
        assert not any(r["stream"] != "system" for r in records if r["seq"] < started["seq"])

    names = ("vllm", "guess")

    def past(counts: dict[str, int]) -> dict[str, dict[str, Any]] | None:
        """Both processes, once each has logged more requests than `counts` says."""
        infos = {name: process(client, name) for name in names}
        for name, info in infos.items():
            model = info["model"]
            if model is None or model["requests"] <= counts[name]:
                return None
        return infos

    # both at once (the fake's quiet spells last up to 2 s here)
    infos = wait_for(
        lambda: past(dict.fromkeys(names, 0)), 30.0, "vllm and guess to log a request", interval=0.2
    )
    for name, info in infos.items():
        assert info["waiting_for"] is None and info["state"] == "running"
        model = info["model"]
        assert model["kind"] == "vllm", (name, model)
        assert model["load_progress"] == 1.0 and model["ready_after_s"] > 0
    first = {name: info["model"]["requests"] for name, info in infos.items()}
    later = wait_for(lambda: past(first), 40.0, f"requests to grow past {first}", interval=0.2)
    for name, info in later.items():
        assert info["model"]["kind"] == "vllm"
        messages = statuses(history(client, name))
        assert index_of(messages, "model loading") < index_of(messages, "model ready after")
        assert messages[index_of(messages, "model loading")] == "model loading (vllm)"


# -- 3. parse = "none" -------------------------------------------------------------------------


def test_parse_none_reads_no_model(models: Startup) -> None:
    client = models.client

    def has(needle: str) -> bool:
        return any(needle in r["message"] for r in history(client, "plain"))

    wait_for(lambda: has("server is listening"), 20.0, "plain to print 'server is listening'", interval=0.2)
    assert process(client, "plain")["model"] is None
    wait_for(lambda: has("tokens per second"), 30.0, "plain to print a request's timings", interval=0.2)
    info = process(client, "plain")
    assert info["model"] is None, info["model"]
    assert info["state"] == "running"
    assert not any(m.startswith("model ") for m in statuses(history(client, "plain")))
    assert 'process="plain"' not in "\n".join(
        line for line in client.get("/metrics").text.splitlines() if line.startswith("logcast_model_")
    )


# -- 4. /metrics ---------------------------------------------------------------------------------

MODEL_METRICS = (
    "logcast_model_load_progress",
    "logcast_model_ready_seconds",
    "logcast_model_requests_total",
    "logcast_model_prompt_tokens_per_second",
    "logcast_model_generation_tokens_per_second",
)
RESOURCE_METRICS = ("logcast_process_cpu_seconds_total", "logcast_process_resident_memory_bytes")
SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> dict[tuple[str, str], float]:
    """(metric, process label) -> value, of every sample with a process label."""
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(LABEL.findall(match.group(2)))
        if "process" in labels:
            found[(match.group(1), labels["process"])] = float(match.group(3))
    return found


def test_metrics_carry_model_figures_and_every_running_process_resources(models: Startup) -> None:
    client = models.client
    state: dict[str, Any] = {}

    def complete() -> bool:
        state["ps"] = ps = processes(client)
        state["text"] = text = client.get("/metrics").text
        state["values"] = values = samples(text)
        running = [n for n, p in ps.items() if p["state"] in ("running", "ready")]
        state["running"] = running
        return (
            sorted(running) == ["guess", "llm", "plain", "sleeper", "vllm"]
            and all((m, "llm") in values for m in MODEL_METRICS)
            and all((m, n) in values for m in RESOURCE_METRICS for n in running)
        )

    wait_for(
        complete,
        30.0,
        lambda: f"model metrics of llm and resources of {state.get('running')}:\n{state.get('text')}",
        interval=0.25,
    )
    values, ps = state["values"], state["ps"]
    assert values[("logcast_model_load_progress", "llm")] == 1.0
    assert values[("logcast_model_ready_seconds", "llm")] == pytest.approx(
        ps["llm"]["model"]["ready_after_s"]
    )
    assert values[("logcast_model_requests_total", "llm")] >= 1
    assert values[("logcast_model_generation_tokens_per_second", "llm")] > 0
    assert values[("logcast_model_prompt_tokens_per_second", "llm")] > 0
    for name in ("vllm", "guess"):
        assert ("logcast_model_requests_total", name) in values
        assert ("logcast_model_ready_seconds", name) in values
    for name in ("plain", "sleeper"):  # not model servers
        assert not any(metric.startswith("logcast_model_") for metric, p in values if p == name)
    for name in state["running"]:
        assert values[("logcast_process_resident_memory_bytes", name)] > 1_000_000
        assert values[("logcast_process_cpu_seconds_total", name)] >= 0
    # no GPU here: no GPU memory samples, and null in the API
    assert not [
        line for line in state["text"].splitlines() if line.startswith("logcast_process_gpu_memory_bytes{")
    ]
    resources = process(client, "llm")["resources"]
    assert resources is not None and resources["gpu_memory_bytes"] is None
    assert resources["rss_bytes"] > 1_000_000 and resources["threads"] >= 1 and resources["open_fds"] >= 3

    sampled = client.get("/api/samples").json()
    assert sampled["interval"] == 2.0
    llm = sampled["processes"]["llm"]
    columns = ("t", "lines_per_s", "errors", "cpu_percent", "rss_bytes", "gen_tokens_per_s")
    assert {len(llm[c]) for c in columns} == {len(llm["t"])} and llm["t"]
    assert any(v for v in llm["rss_bytes"] if v is not None)


# -- 5. why it died ------------------------------------------------------------------------------


def crasher(counter: Path) -> str:
    """Runs 1 and 2 print their own error and exit 3; run 3 stays up."""
    return py_command(
        f"""
        import pathlib, sys, time
        counter = pathlib.Path({str(counter)!r})
        n = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(n))
        name = {{1: "first", 2: "second"}}.get(n, "third")
        print(f"run {{n}} ({{name}}) starting", flush=True)
        if n <= 2:
            print(f"ERROR: boom in the {{name}} run", flush=True)
            print(f"cleaning up after the {{name}} run", flush=True)
            sys.exit(3)
        print("the third run stays up", flush=True)
        time.sleep(3600)
        """
    )


def check_bounds(records: list[dict[str, Any]], last_exit: dict[str, Any]) -> list[dict[str, Any]]:
    """`first_seq`..`last_seq` hold exactly that run's records, from its `starting` status to the
    one that says how it ended; returns them."""
    run, first, last = last_exit["run"], last_exit["first_seq"], last_exit["last_seq"]
    assert first is not None and last is not None and first <= last, last_exit
    inside = [r for r in records if first <= r["seq"] <= last]
    assert [r["seq"] for r in inside] == list(range(first, last + 1)), "a hole in the run's records"
    assert all(r["run"] == run for r in inside), [(r["seq"], r["run"]) for r in inside]
    assert inside[0]["stream"] == "system" and inside[0].get("state") == "starting", inside[0]
    assert inside[-1]["stream"] == "system", inside[-1]
    lines = [r for r in records if r["run"] == run and r["stream"] != "system"]
    assert lines, "the run printed nothing?"
    assert all(first < r["seq"] < last for r in lines), "a line of the run is outside first_seq..last_seq"
    return inside


def test_last_exit_tells_the_exit_code_and_that_runs_errors_only(make_server: Any, tmp_path: Path) -> None:
    server: Server = make_server(
        f"""
        [process.crasher]
        command = {crasher(tmp_path / "runs.txt")}
        restart = "on-failure"
        backoff_initial = 0.2
        backoff_max = 0.4
        """
    )
    with server.client() as client:

        def second_failure() -> dict[str, Any] | None:
            last = process(client, "crasher")["last_exit"]
            return last if last is not None and last["run"] == 2 else None

        last_exit = wait_for(second_failure, 20.0, "the second run's last_exit", interval=0.1)
        assert last_exit["exit_code"] == 3
        assert last_exit["signal"] is None
        assert last_exit["oom_killed"] is False
        assert "3" in last_exit["reason"], last_exit["reason"]
        assert last_exit["last_errors"] == ["ERROR: boom in the second run"], last_exit["last_errors"]
        assert last_exit["at"] <= time.time()

        wait_for(
            lambda: any("third run stays up" in r["message"] for r in history(client, "crasher")),
            20.0,
            "the third run to come up",
            interval=0.1,
        )
        info = process(client, "crasher")
        assert info["run"] == 3 and info["state"] == "running"
        assert info["last_exit"] == last_exit  # a run that did not fail leaves it as it was

        records = history(client, "crasher")
        inside = check_bounds(records, last_exit)
        texts = [r["message"] for r in inside]
        assert "ERROR: boom in the second run" in texts
        assert not any("first run" in t for t in texts)
        ended = inside[-1]["message"]
        assert re.search(r"\bcode 3\b", ended), ended
        assert "boom in the second run" in ended, ended  # it quotes the run's last error
        first_end = [
            r["message"]
            for r in records
            if r["run"] == 1 and r["stream"] == "system" and re.search(r"\bcode 3\b", r["message"])
        ]
        assert len(first_end) == 1 and "boom in the first run" in first_end[0], first_end


VICTIM = py_command(
    """
    import time
    print("victim up", flush=True)
    print("ERROR: something went wrong before the kill", flush=True)
    time.sleep(3600)
    """
)


def test_last_exit_tells_a_sigkill_from_outside(make_server: Any) -> None:
    server: Server = make_server(
        f"""
        [process.victim]
        command = {VICTIM}
        restart = "never"
        """
    )
    with server.client() as client:
        wait_for(
            lambda: process(client, "victim")["errors"] >= 1,
            15.0,
            "the victim's error line",
            interval=0.1,
        )
        pid = process(client, "victim")["pid"]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

        last_exit = wait_for(
            lambda: process(client, "victim")["last_exit"], 15.0, "the victim's last_exit", interval=0.1
        )
        assert last_exit["run"] == 1
        assert last_exit["signal"] == "SIGKILL"
        assert last_exit["oom_killed"] is False
        assert "SIGKILL" in last_exit["reason"], last_exit["reason"]
        assert last_exit["exit_code"] == -9  # as docs/api.md shows a signal's exit
        assert last_exit["last_errors"] == ["ERROR: something went wrong before the kill"]
        info = process(client, "victim")
        assert info["state"] == "crashed" and info["pid"] is None, info
        inside = check_bounds(history(client, "victim"), last_exit)
        assert "SIGKILL" in inside[-1]["message"], inside[-1]


# -- 6. depends_on refused at start ----------------------------------------------------------------


def refusal(tmp_path: Path, toml: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    config = tmp_path / "logcast.toml"
    marker = tmp_path / "started"
    command = py_command(f"import pathlib; pathlib.Path({str(marker)!r}).touch()")
    config.write_text(textwrap.dedent(toml).lstrip().replace("COMMAND", command))
    env = {k: v for k, v in os.environ.items() if k not in ("LOGCAST_URL", "LOGCAST_TOKEN")}
    done = subprocess.run(
        [sys.executable, "-m", "logcast", "serve", "-c", str(config), "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    return done, config, marker


REFUSALS = {
    "cycle": (
        """
        [process.a]
        command = COMMAND
        depends_on = { b = "started" }

        [process.b]
        command = COMMAND
        depends_on = { a = "started" }
        """,
        3,
        "process.a.depends_on.b: dependency cycle: a → b → a",
    ),
    "unknown name": (
        """
        [process.web]
        command = COMMAND

        [process.api]
        command = COMMAND
        depends_on = { web = "started", wbe = "started" }
        """,
        6,
        "process.api.depends_on.wbe: unknown process 'wbe' (did you mean 'web'?)",
    ),
    "ready without a probe": (
        """
        [process.db]
        command = COMMAND

        [process.api]
        command = COMMAND
        depends_on = { db = "ready" }
        """,
        6,
        "process.api.depends_on.db: process 'db' has no readiness probe",
    ),
    "itself": (
        """
        [process.a]
        command = COMMAND
        depends_on = { a = "started" }
        """,
        3,
        "process.a.depends_on.a: process 'a' cannot depend on itself",
    ),
    "restart_with alone": (
        """
        [process.a]
        command = COMMAND
        restart_with = true
        """,
        3,
        "process.a.restart_with: restart_with = true needs depends_on",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_serve_refuses_depends_on_mistakes_with_file_and_line(tmp_path: Path, case: str) -> None:
    toml, line, message = REFUSALS[case]
    done, config, marker = refusal(tmp_path, toml)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    output = done.stdout + done.stderr
    assert f"{config}:{line}: {message}" in output, output
    assert "Traceback" not in output
    assert not marker.exists(), "a process was started"


# -- 7. a model that fails to load ----------------------------------------------------------------


def test_a_model_that_fails_to_load_is_failed_with_a_status_record(make_server: Any) -> None:
    server: Server = make_server(
        f"""
        [process.llm]
        command = {fake("fake_llm.py", "--fail", "--load-seconds", "1")}
        restart = "never"

        [process.vllm]
        command = {fake("fake_vllm.py", "--fail", "--shard-seconds", "0.05")}
        restart = "never"
        """
    )
    with server.client() as client:
        for name, kind in (("llm", "llamacpp"), ("vllm", "vllm")):

            def failed(name: str = name) -> dict[str, Any] | None:
                info = process(client, name)
                model = info["model"]
                ok = info["state"] == "crashed" and model is not None and model["phase"] == "failed"
                return info if ok else None

            info = wait_for(failed, 20.0, f"{name}'s model to fail", interval=0.1)
            assert info["model"]["kind"] == kind
            assert info["model"]["ready_after_s"] is None
            assert info["last_exit"] is not None and info["last_exit"]["exit_code"] == 1
            messages = statuses(history(client, name))
            loading_at = index_of(messages, "model loading")
            failed_at = index_of(messages, "model failed")
            assert messages[loading_at] == f"model loading ({kind})"
            assert loading_at < failed_at
            assert not any(m.startswith("model ready") for m in messages)
            crashed_at = next(i for i, m in enumerate(messages) if re.search(r"\bcode 1\b", m))
            assert failed_at < crashed_at, messages
