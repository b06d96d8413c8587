"""`logcast ps` and `logcast start|stop|restart` against a real server."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from logcast.cli.control import process_table
from logcast.client import ProcessInfo
from tests.conftest import free_port
from tests.e2e.conftest import Server, py_command
from tests.util import wait_for

pytestmark = pytest.mark.e2e

Make = Callable[..., Server]

SLEEPER = py_command("import time; print('up', flush=True); time.sleep(3600)")


def logcast(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("LOGCAST_URL", "LOGCAST_TOKEN")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "logcast", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def server(make_server: Make) -> Server:
    return make_server(
        f"""
        [process.web]
        command = {SLEEPER}

        [process.worker]
        command = {SLEEPER}
        autostart = false
        """
    )


def wait_state(server: Server, name: str, alive: bool, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server.client() as c:
            state = c.get(f"/api/processes/{name}").json()["state"]
        if (state in ("starting", "running", "ready")) == alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"{name} never became {'alive' if alive else 'stopped'}")


def test_ps_table_and_json(server: Server, tmp_path: Path) -> None:
    wait_state(server, "web", alive=True)
    result = logcast("ps", "--url", server.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, *rows = [line.split() for line in result.stdout.strip().splitlines()]
    assert header == [
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RUN",
        "RESTARTS",
        "LINES",
        "HOST",
        "CPU",
        "MEM",
        "MODEL",
    ]
    table = {row[0]: row for row in rows}
    assert list(table) == ["web", "worker"]
    assert table["web"][1] in ("running", "ready") and table["web"][2].isdigit()
    assert table["worker"][1:3] == ["stopped", "-"]
    # one machine: every process runs on it
    assert table["web"][7] == table["worker"][7] == socket.gethostname()
    assert table["worker"][8:] == ["-", "-", "-"]  # not running: no resources; not a model server

    as_json = logcast("ps", "--url", server.url, "--json", cwd=tmp_path)
    assert as_json.returncode == 0
    processes = json.loads(as_json.stdout)["processes"]
    assert [p["name"] for p in processes] == ["web", "worker"]
    assert processes[1]["state"] == "stopped"
    assert {p["host"] for p in processes} == {socket.gethostname()}


def test_ps_shows_a_lost_hosts_process_as_unknown() -> None:
    """Several hosts, gpu-2 lost: its process is `unknown`, dim, without a pid nor uptime."""
    base = {
        "name": "train", "state": "running", "host": "gpu-1", "pid": 12, "uptime": 63.0, "run": 1,
        "restarts": 0, "lines": 3, "bytes": 30, "lines_per_s": 0.0, "warnings": 0, "errors": 0,
        "last_error": None, "subscribers": 0, "last_seq": 3,
    }  # fmt: skip
    listed = [base, {**base, "name": "infer", "host": "gpu-2", "state": "unknown", "pid": 40, "uptime": None}]
    console = Console(
        file=io.StringIO(), width=120, force_terminal=True, color_system="standard", record=True
    )
    console.print(process_table([ProcessInfo.from_dict(p) for p in listed]))
    plain = [line.split() for line in console.export_text(clear=False).splitlines()]
    assert plain == [
        ["NAME", "STATE", "PID", "UPTIME", "RUN", "RESTARTS", "LINES", "HOST", "CPU", "MEM", "MODEL"],
        ["train", "running", "12", "1m03s", "1", "0", "3", "gpu-1", "-", "-", "-"],
        ["infer", "unknown", "-", "-", "1", "0", "3", "gpu-2", "-", "-", "-"],
    ]
    styled = console.export_text(styles=True)
    assert "\x1b[2munknown" in styled and "\x1b[32mrunning" in styled


def test_url_from_environment_and_config_file(server: Server, tmp_path: Path) -> None:
    from_env = logcast("ps", cwd=tmp_path, env={"LOGCAST_URL": server.url})
    assert from_env.returncode == 0 and "worker" in from_env.stdout
    (tmp_path / "logcast.toml").write_text(f"[server]\nport = {server.port}\n")
    from_file = logcast("ps", cwd=tmp_path)
    assert from_file.returncode == 0 and "worker" in from_file.stdout


def test_start_stop_restart(server: Server, tmp_path: Path) -> None:
    started = logcast("start", "worker", "--url", server.url, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("worker: ") and "pid" in started.stdout
    wait_state(server, "worker", alive=True)

    again = logcast("start", "worker", "--url", server.url, cwd=tmp_path)
    assert again.returncode == 1 and "already running" in again.stderr

    restarted = logcast("restart", "worker", "--url", server.url, "--json", cwd=tmp_path)
    assert restarted.returncode == 0
    assert json.loads(restarted.stdout)["processes"][0]["run"] == 2

    stopped = logcast("stop", "worker", "web", "--url", server.url, cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    lines = stopped.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["worker", "web"]
    assert all("running" not in line for line in lines)
    wait_state(server, "web", alive=False)


def test_a_start_that_fails_at_once_says_why_and_fails(make_server: Make, tmp_path: Path) -> None:
    """A review: `logcast start missing` printed `missing: backoff` and exited 0."""
    server = make_server(
        f"""
        [process.missing]
        command = ["/nonexistent/bin/server"]
        autostart = false
        restart = "on-failure"
        backoff_initial = 60

        [process.badcwd]
        command = {SLEEPER}
        cwd = "/nonexistent/dir"
        autostart = false

        [process.worker]
        command = {SLEEPER}
        autostart = false
        """
    )
    for action, name, why in (
        ("start", "missing", "failed to start: command not found: /nonexistent/bin/server"),
        ("restart", "badcwd", "failed to start: working directory not found: /nonexistent/dir"),
    ):
        result = logcast(action, name, "--url", server.url, cwd=tmp_path)
        assert result.returncode == 1, (action, result.stdout, result.stderr)
        assert result.stdout.startswith(f"{name}: "), result.stdout
        assert f"error: {name}: {why}" in result.stderr, result.stderr
    both = logcast("start", "worker", "missing", "--url", server.url, "--json", cwd=tmp_path)
    assert both.returncode == 1, both.stderr
    assert [p["name"] for p in json.loads(both.stdout)["processes"]] == ["worker", "missing"]
    assert "error: missing: failed to start" in both.stderr and "worker" not in both.stderr


def test_a_start_that_waits_after_a_crash_is_no_failure(make_server: Make, tmp_path: Path) -> None:
    """A review: `app` crashed once; started again while its dependency is stopped, it waits,
    and the CLI took the old crash for this start's (`error: app: exited with code 3`, 1)."""
    server = make_server(
        f"""
        [process.db]
        command = {SLEEPER}

        [process.app]
        command = ["sh", "-c", "exit 3"]
        restart = "never"
        depends_on = {{ db = "started" }}
        """
    )
    wait_state(server, "db", alive=True)
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/app").json()["state"] == "crashed", what="app crashed")
    assert logcast("stop", "db", "--url", server.url, cwd=tmp_path).returncode == 0
    for action in ("start", "restart"):
        result = logcast(action, "app", "--url", server.url, cwd=tmp_path)
        assert result.returncode == 0, (action, result.stdout, result.stderr)
        assert "app: waiting for db (started)" in result.stdout and "error" not in result.stderr


def test_unknown_process_and_unreachable_server(server: Server, tmp_path: Path) -> None:
    unknown = logcast("stop", "nope", "--url", server.url, cwd=tmp_path)
    assert unknown.returncode == 1
    assert "unknown process" in unknown.stderr and "Traceback" not in unknown.stderr

    nowhere = f"http://127.0.0.1:{free_port()}"
    for args in (["ps"], ["start", "web"], ["stop", "web"], ["restart", "web"]):
        result = logcast(*args, "--url", nowhere, cwd=tmp_path)
        assert result.returncode == 1, args
        assert "cannot reach logcast at" in result.stderr
        assert "Traceback" not in result.stderr


def test_token(make_server: Make, tmp_path: Path) -> None:
    server = make_server(f"[process.web]\ncommand = {SLEEPER}\n", token="s3cret")
    denied = logcast("ps", "--url", server.url, cwd=tmp_path)
    assert denied.returncode == 1 and "token missing or wrong" in denied.stderr
    allowed = logcast("ps", "--url", server.url, "--token", "s3cret", cwd=tmp_path)
    assert allowed.returncode == 0 and "web" in allowed.stdout


def test_ps_shows_resources_and_what_a_model_server_is_doing() -> None:
    base = {
        "name": "llm", "state": "running", "host": "gpu-1", "pid": 12, "uptime": 63.0, "run": 1,
        "restarts": 0, "lines": 3, "bytes": 30, "lines_per_s": 0.0, "warnings": 0, "errors": 0,
        "last_error": None, "subscribers": 0, "last_seq": 3,
        "resources": {"cpu_percent": 151.6, "rss_bytes": 14_800_000, "threads": 9, "open_fds": 12,
                      "gpu_memory_bytes": None, "cpu_seconds_total": 8.2, "sampled_at": 1.0},
    }  # fmt: skip
    model = {
        "kind": "llamacpp", "phase": "loading", "load_progress": 0.42, "ready_after_s": None, "requests": 0,
        "prompt_tokens_per_s": None, "gen_tokens_per_s": None, "last_request_at": None, "marked": [],
    }  # fmt: skip
    listed = [
        {**base, "model": model},
        {
            **base,
            "name": "vllm",
            "model": {**model, "kind": "vllm", "phase": "serving", "gen_tokens_per_s": 35.4},
        },
        {**base, "name": "web", "resources": None},
    ]
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(process_table([ProcessInfo.from_dict(p) for p in listed]))
    rows = [line.split()[8:] for line in console.export_text().splitlines()[1:]]
    assert rows == [
        ["152%", "14.1M", "loading", "42%"],
        ["152%", "14.1M", "serving", "35tok/s"],
        ["-", "-", "-"],
    ]


def test_a_start_that_waits_for_a_dependency_says_so(make_server: Make, tmp_path: Path) -> None:
    """A review: `logcast start waiter`, whose dependency was not ready yet, printed
    `waiter: stopped`; `ps` said `stopped` too."""
    server = make_server(
        f"""
        [process.db]
        command = {SLEEPER}
        ready = {{ log = "never printed" }}

        [process.waiter]
        command = {SLEEPER}
        autostart = false
        depends_on = {{ db = "ready" }}
        """
    )
    started = logcast("start", "waiter", "--url", server.url, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert "waiter: waiting for db (ready)" in started.stdout, started.stdout
    listed = logcast("ps", "--url", server.url, cwd=tmp_path)
    assert [line.split()[:2] for line in listed.stdout.splitlines()][2] == ["waiter", "waiting"], (
        listed.stdout
    )
