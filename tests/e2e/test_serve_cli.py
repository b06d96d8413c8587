"""`logcast run` and `serve --echo` as a user starts them, history across restarts, Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, stop_group
from tests.e2e.conftest import py_command
from tests.e2e.sse import collect, wait_for
from tests.util import clean_env

pytestmark = pytest.mark.e2e


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def test_run_shows_the_output_and_serves_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    child = "import time\nprint('hello from run', flush=True)\ntime.sleep(600)"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logcast",
            "run",
            "--name",
            "hello",
            "--port",
            str(port),
            "--",
            sys.executable,
            "-c",
            child,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def has_line() -> bool:
            answer = _get(url + "/api/processes/hello")
            return bool(answer is not None and answer.status_code == 200 and answer.json()["lines"] >= 1)

        wait_for(has_line, what="the child's first line")
        names = [p["name"] for p in httpx.get(url + "/api/processes").json()["processes"]]
        assert names == ["hello"]
    finally:
        stop_group(proc)
        raw, _ = proc.communicate()
    out = raw.decode()
    assert "hello | hello from run" in out  # `run` keeps the output in this terminal too
    assert proc.returncode == 0


def test_a_terminal_that_stops_reading_never_blocks_the_child(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    flood = "import sys\nfor i in range(1, 100001):\n    sys.stdout.write(f'line {i}\\n')\nprint('done', flush=True)"
    # stdout is a pipe nobody reads: the echo fills it, then must drop and count, not wait
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logcast",
            "run",
            "--name",
            "flood",
            "--port",
            str(port),
            "--",
            sys.executable,
            "-c",
            flood,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/processes/flood"

        def finished() -> bool:
            answer = _get(url)
            return bool(
                answer is not None and answer.status_code == 200 and answer.json()["state"] == "exited"
            )

        wait_for(finished, timeout=60, what="the flooding child to finish")
        assert httpx.get(url).json()["lines"] == 100001
        last = httpx.get(url + "/logs", params={"tail": 2}).json()["logs"]
        assert [r["message"] for r in last] == ["done", "exited with code 0"]
    finally:
        stop_group(proc)
        proc.communicate()


def test_serve_echo_prefixes_each_process(make_server) -> None:  # type: ignore[no-untyped-def]
    hello = py_command("import time\nprint('echoed line', flush=True)\ntime.sleep(600)")
    server = make_server(f"[process.alpha]\ncommand = {hello}\n", extra_args=["--echo"])
    wait_for(lambda: "alpha | echoed line" in server.output(), what="the echoed line")
    assert "alpha | [logcast] started pid" in server.output()


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
def test_history_and_numbering_survive_a_restart_of_logcast(make_server, engine, request) -> None:  # type: ignore[no-untyped-def]
    storage = ""
    if engine == "redis":
        url = request.getfixturevalue("redis_url")
        storage = f'[storage]\nengine = "redis"\nredis_url = "{url}"\n'
    counter = py_command(
        """
        import time
        for i in range(1, 21):
            print(f"count {i}", flush=True)
        time.sleep(600)
        """
    )
    server = make_server(storage + f"[process.counter]\ncommand = {counter}\nstop_timeout = 2\n")
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/counter").json()["lines"] >= 20, what="20 lines")
        first = c.get("/api/processes/counter/logs").json()["logs"]
    server.restart()
    with server.client() as c:
        wait_for(lambda: c.get("/api/processes/counter").json()["run"] == 2, what="run 2")
        wait_for(lambda: c.get("/api/processes/counter").json()["lines"] >= 40, what="40 lines")
        logs = c.get("/api/processes/counter/logs", params={"limit": 1000}).json()["logs"]
    seqs = [r["seq"] for r in logs]
    assert seqs == list(range(1, len(seqs) + 1)), "seq must continue without a hole or a repeat"
    assert logs[: len(first)] == first  # the old history is still there, unchanged
    assert {r["run"] for r in logs if r["message"].startswith("count")} == {1, 2}
    resumed = collect(
        server.url + "/api/processes/counter/logs/stream",
        params={"after": first[-1]["seq"]},
        until=lambda ms: any(m.type == "historical_complete" for m in ms),
    )
    assert resumed[0].seq == first[-1]["seq"] + 1


def test_serve_without_a_config_file_is_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, "-m", "logcast", "serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LOGCAST_TOKEN": ""},
    )
    assert result.returncode == 2 and "logcast.toml" in result.stderr


def test_demo_configuration_is_valid() -> None:
    from pathlib import Path

    from logcast.config import load

    demo = Path(__file__).resolve().parents[2] / "examples" / "demo.toml"
    settings = load(demo)
    assert list(settings.processes) == ["qwen3", "vllm", "web", "worker"]
    assert settings.processes["vllm"].depends_on == {"qwen3": "ready"}


def test_a_port_in_use_is_exit_code_1_with_the_reason(tmp_path: Path) -> None:
    """uvicorn exits with 3 when it cannot bind; logcast's exit codes are 0, 1 and 2."""
    config = tmp_path / "logcast.toml"
    config.write_text("[process.idle]\ncommand = ['sleep', '600']\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "logcast", "serve", "-c", str(config), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
        )
    assert done.returncode == 1, done.stderr
    assert "address already in use" in done.stderr.lower()


MARKS_ITS_START = "import os, sys, time\nopen(os.path.join(sys.argv[1], f'started-{os.getpid()}'), 'w').close()\ntime.sleep(600)"


def _marking(marks: Path) -> str:
    """A TOML array: a child that leaves a file in `marks` when it starts."""
    return json.dumps([sys.executable, "-u", "-c", MARKS_ITS_START, str(marks)])


def _serve_once(config: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logcast", "serve", "-c", str(config), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )


def test_a_second_logcast_on_one_storage_folder_is_refused(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two instances on one folder both numbered from its reservations: seq 3001 named a
    line of each (a review). The second now exits 1 naming the first, having started
    nothing; the first goes on."""
    marks = tmp_path / "marks"
    marks.mkdir()
    store = tmp_path / "shared-store"
    toml = f'[storage]\ndir = "{store}"\n[process.t]\ncommand = {_marking(marks)}\n'
    first = make_server(toml)
    wait_for(lambda: len(list(marks.iterdir())) == 1, what="the first server's child")
    second = _serve_once(first.config, free_port())
    assert second.returncode == 1, second.stderr
    assert f"in use by another logcast (pid {first.proc.pid})" in second.stderr
    assert "Traceback" not in second.stderr and "dashboard at" not in second.stderr
    assert len(list(marks.iterdir())) == 1  # the second started no child
    with first.client() as client:
        assert client.get("/api/processes/t").json()["state"] == "running"


@pytest.mark.parametrize("what", ["a file", "a corrupt database", "a port in use"])
def test_a_start_that_cannot_be_made_says_why_and_starts_no_child(what: str, tmp_path: Path) -> None:
    """A storage folder that is a file, a database that is not one, a port in use: one
    line saying why, exit 1, and no child started (before, the children were started
    and uvicorn printed its lifespan's traceback)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    store = tmp_path / "store"
    if what == "a file":
        store.write_text("not a folder")
        reason = f"[storage] dir {store}: cannot make it a folder"
    elif what == "a corrupt database":
        store.mkdir()
        (store / "history.sqlite3").write_bytes(b"garbage " * 4096)
        reason = "file is not a database"
    else:
        reason = "address already in use"
    config = tmp_path / "logcast.toml"
    config.write_text(f'[storage]\ndir = "{store}"\n[process.t]\ncommand = {_marking(marks)}\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] if what == "a port in use" else free_port()
        done = _serve_once(config, port)
    assert done.returncode == 1, done.stderr
    assert reason in done.stderr.lower() if what == "a port in use" else reason in done.stderr
    assert "Traceback" not in done.stderr and "[Errno" not in done.stderr
    assert list(marks.iterdir()) == []


def test_under_nohup_a_closed_terminal_leaves_logcast_running(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`nohup logcast serve &` ignores SIGHUP, and logcast must not take it back: a
    review found the closed terminal stopping it once SIGHUP stopped serve in order."""
    marks = tmp_path / "marks"
    marks.mkdir()
    config = tmp_path / "logcast.toml"
    config.write_text(f"[process.t]\ncommand = {_marking(marks)}\n")
    port = free_port()
    nohup = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])",
            sys.executable,
            "-m",
            "logcast",
            "serve",
            "-c",
            str(config),
            "--port",
            str(port),
        ],
        env=clean_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz") is not None, what="the server")
        wait_for(lambda: len(list(marks.iterdir())) == 1, what="its child")
        os.kill(nohup.pid, signal.SIGHUP)
        time.sleep(1.0)  # a stop would have begun by now (the listener closes first)
        assert nohup.poll() is None and _get(f"http://127.0.0.1:{port}/healthz") is not None
    finally:
        stop_group(nohup)


def test_a_stop_signal_while_the_engine_opens_stops_it_in_order() -> None:
    """The engine opens before uvicorn catches signals: one that comes meanwhile is noted,
    and the engine that opened is stopped in order (not left to the children's guards)."""
    from logcast.config import ServerSettings, Settings
    from logcast.web import server as web_server
    from logcast.web.app import create_app

    stopped: list[bool] = []

    class Opened:
        async def stop(self) -> None:
            stopped.append(True)

    async def open_engine() -> Opened:
        os.kill(os.getpid(), signal.SIGTERM)  # as if it came while the store opened
        await asyncio.sleep(0.05)
        return Opened()

    served = web_server.run(
        create_app(Settings()),
        ServerSettings(port=free_port()),
        open_engine=open_engine,  # type: ignore[arg-type]
    )
    assert served and stopped == [True]


def test_localhost_is_served_on_each_of_its_addresses() -> None:
    from logcast.web.server import listen

    port = free_port()
    sockets = listen("localhost", port)
    try:
        families = {sock.family for sock in sockets}
        wanted = {info[0] for info in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)}
        assert families == wanted
        for sock in sockets:
            if sock.family == socket.AF_INET6:
                assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        for sock in sockets:
            sock.close()
