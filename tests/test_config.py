"""config: TOML → validated settings; every refusal names the file, the line and the key."""

from __future__ import annotations

import dataclasses
import re
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcast.config import (
    Condition,
    ProcessSettings,
    RestartPolicy,
    ServerSettings,
    Settings,
    load,
    parse,
    single_process,
    start_order,
)
from logcast.errors import ConfigError

FULL = """\
[server]
host = "127.0.0.1"
port = 9090
token = "s3cret"
allowed_hosts = ["logs.example.org"]

[storage]
dir = "history"
memory_lines = 1000
memory_bytes = 1048576
retain_lines = 20000

# an LLM server
[process.qwen3]
command = ["llama-server", "-m", "qwen3.gguf", "--port", "8081"]
cwd = "models"
env = { CUDA_VISIBLE_DEVICES = "0" }
autostart = false
restart = "always"
pty = true
ready = { log = "server is listening", timeout = 120 }
stop_signal = "INT"
stop_timeout = 30
backoff_initial = 2
backoff_max = 30.5
min_uptime = 5

[process.web]
command = "uvicorn app:app --port '8000'"
ready = { http = "http://127.0.0.1:8000/health" }
"""


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGCAST_TOKEN", raising=False)


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "logcast.toml"
    path.write_text(FULL)
    s = load(path)
    assert s.path == path
    assert s.server == ServerSettings("127.0.0.1", 9090, "s3cret", ("logs.example.org",))
    assert s.storage.dir == tmp_path / "history"
    assert (s.storage.memory_lines, s.storage.memory_bytes, s.storage.retain_lines) == (1000, 1048576, 20000)
    assert s.storage.engine == "sqlite"
    assert list(s.processes) == ["qwen3", "web"]  # config order
    q = s.processes["qwen3"]
    assert q.command == ("llama-server", "-m", "qwen3.gguf", "--port", "8081")
    assert q.cwd == tmp_path / "models"
    assert dict(q.env) == {"CUDA_VISIBLE_DEVICES": "0"}
    assert (q.autostart, q.restart, q.pty) == (False, RestartPolicy.ALWAYS, True)
    assert q.ready is not None and q.ready.log is not None and q.ready.http is None
    assert q.ready.log.search("main: server is listening on 8081")
    assert q.ready.timeout == 120.0
    assert q.stop_signal is signal.SIGINT
    assert (q.stop_timeout, q.backoff_initial, q.backoff_max, q.min_uptime) == (30.0, 2.0, 30.5, 5.0)
    w = s.processes["web"]
    assert w.command == ("uvicorn", "app:app", "--port", "8000")  # shlex, never a shell
    assert w.cwd == tmp_path
    assert w.ready is not None and w.ready.http == "http://127.0.0.1:8000/health" and w.ready.log is None
    assert w.ready.timeout == 60.0


def test_defaults() -> None:
    s = parse('[process.a]\ncommand = ["x"]\n')
    assert s.path is None
    assert s.server == ServerSettings()
    assert s.storage.dir == Path.cwd() / ".logcast"
    assert (s.storage.memory_lines, s.storage.memory_bytes) == (100_000, 64 * 1024 * 1024)
    a = s.processes["a"]
    assert a == ProcessSettings(name="a", command=("x",), cwd=Path.cwd())
    assert (a.autostart, a.restart, a.pty, a.ready) == (True, RestartPolicy.ON_FAILURE, False, None)
    assert (a.stop_signal, a.stop_timeout) == (signal.SIGTERM, 10.0)
    assert (a.backoff_initial, a.backoff_max, a.min_uptime) == (1.0, 60.0, 10.0)
    assert parse("").processes == {}
    assert parse("").server == Settings().server


@pytest.mark.parametrize(
    ("value", "expected"),
    [('"TERM"', signal.SIGTERM), ('"SIGTERM"', signal.SIGTERM), ('"int"', signal.SIGINT),
     ('"HUP"', signal.SIGHUP), ('"SIGKILL"', signal.SIGKILL), ("15", signal.SIGTERM)],
)  # fmt: skip
def test_signal_names(value: str, expected: signal.Signals) -> None:
    s = parse(f'[process.a]\ncommand = "x"\nstop_signal = {value}\n')
    assert s.processes["a"].stop_signal is expected


def test_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGCAST_TOKEN", "from-env")
    s = parse('[server]\nhost = "0.0.0.0"\n')
    assert s.server.token == "from-env"
    assert parse('[server]\ntoken = "file"\n').server.token == "file"


def test_public_bind_with_token() -> None:
    assert parse('[server]\nhost = "0.0.0.0"\ntoken = "t"\n').server.host == "0.0.0.0"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"])
def test_loopback_needs_no_token(host: str) -> None:
    assert parse(f'[server]\nhost = "{host}"\n').server.token is None


def test_server_settings_check_themselves() -> None:
    """A CLI override cannot bypass the token rule."""
    with pytest.raises(ConfigError, match=r"refusing to bind 0\.0\.0\.0 without a token"):
        dataclasses.replace(ServerSettings(), host="0.0.0.0")
    with pytest.raises(ConfigError, match="out of range"):
        ServerSettings(port=70000)


# (text, line, key, message pattern)
ERRORS = [
    ('[process.qwen3]\ncommand = "x"\nrestrat = "never"\n', 3, "process.qwen3.restrat",
     r"unknown key \(did you mean 'restart'\?\)"),
    ('[processes.a]\ncommand = "x"\n', 1, "processes", r"unknown key \(did you mean 'process'\?\)"),
    ("[server]\nprot = 1\n", 2, "server.prot", r"did you mean 'port'"),
    ("[server]\nzzz = 1\n", 2, "server.zzz", r"unknown key \(known keys: host, port"),
    ('[storage]\nmemory_line = 5\n', 2, "storage.memory_line", r"did you mean 'memory_lines'"),
    ('[process.a]\ncommand = "x"\nready = { log = "x", tiemout = 3 }\n', 3, "process.a.ready.tiemout",
     r"did you mean 'timeout'"),
    ('[server]\nport = "80"\n', 2, "server.port", r"expected an integer, got string '80'"),
    ("[server]\nport = 80.5\n", 2, "server.port", r"expected an integer, got float 80.5"),
    ("[server]\nport = true\n", 2, "server.port", r"expected an integer, got boolean true"),
    ("[server]\nport = 0\n", 2, "server.port", r"port 0 out of range 1-65535"),
    ("[server]\nport = 65536\n", 2, "server.port", r"out of range"),
    ("[server]\nport = -1\n", 2, "server.port", r"out of range"),
    ('[server]\nhost = "0.0.0.0"\n', 2, "server.host",
     r": refusing to bind 0\.0\.0\.0 without a token: set server\.token or LOGCAST_TOKEN$"),
    ('[server]\nhost = "192.168.1.5"\n', 2, "server.host", r"refusing to bind 192\.168\.1\.5"),
    ('[server]\ntoken = ""\n', 2, "server.token", r"must not be empty"),
    ("[server]\nallowed_hosts = [1]\n", 2, "server.allowed_hosts", r"expected a list of host names"),
    ("server = 5\n", 1, "server", r"expected a table, got integer 5"),
    ('[storage]\nengine = "mysql"\n', 2, "storage.engine", r"unknown engine 'mysql'"),
    ('[storage]\nengine = "redis"\n', 2, "storage.engine", r"needs storage\.redis_url"),
    ('[storage]\nredis_url = "http://x"\n', 2, "storage.redis_url", r"redis://"),
    ("[storage]\nmemory_lines = 0\n", 2, "storage.memory_lines", r"at least 1"),
    ("[process.a]\ncwd = \"/\"\n", 1, "process.a", r"missing key 'command'"),
    ("[process.a]\ncommand = []\n", 2, "process.a.command", r"command is empty"),
    ('[process.a]\ncommand = ""\n', 2, "process.a.command", r"command is empty"),
    ('[process.a]\ncommand = "   "\n', 2, "process.a.command", r"command is empty"),
    ('[process.a]\ncommand = ["x", 1]\n', 2, "process.a.command", r"expected a string or a list of strings"),
    ("[process.a]\ncommand = 5\n", 2, "process.a.command", r"expected a string or a list of strings"),
    ("[process.a]\ncommand = \"echo 'unclosed\"\n", 2, "process.a.command", r"cannot split command"),
    ('[process.a]\ncommand = "x"\n\n[process.a]\ncommand = "y"\n', 4, "process.a",
     r"duplicate process name 'a'"),
    ('[process."a b"]\ncommand = "x"\n', 1, 'process."a b"', r"invalid process name 'a b'"),
    ('[process."a/b"]\ncommand = "x"\n', 1, 'process."a/b"', r"invalid process name"),
    ('[process.".."]\ncommand = "x"\n', 1, 'process.".."', r"invalid process name"),
    (f'[process.{"a" * 65}]\ncommand = "x"\n', 1, f"process.{'a' * 65}", r"invalid process name"),
    ('process = 3\n', 1, "process", r"expected a table"),
    ('[process]\na = 3\n', 2, "process.a", r"expected a table, got integer 3"),
    ('[process.a]\ncommand = "x"\nrestart = "sometimes"\n', 3, "process.a.restart",
     r"unknown restart policy 'sometimes' \(expected one of: never, on-failure, always\)"),
    ('[process.a]\ncommand = "x"\nstop_signal = "TERMINATE"\n', 3, "process.a.stop_signal",
     r"unknown signal 'TERMINATE'"),
    ('[process.a]\ncommand = "x"\nstop_signal = 999\n', 3, "process.a.stop_signal", r"unknown signal 999"),
    ('[process.a]\ncommand = "x"\nstop_signal = "CHLD"\n', 3, "process.a.stop_signal", r"SIGCHLD does not stop"),
    ('[process.a]\ncommand = "x"\nstop_signal = "cont"\n', 3, "process.a.stop_signal", r"SIGCONT does not stop"),
    ('[process.a]\ncommand = "x"\nstop_signal = 20\n', 3, "process.a.stop_signal", r"SIGTSTP does not stop"),
    ('[process.a]\ncommand = "x"\nstop_signal = true\n', 3, "process.a.stop_signal",
     r"expected a signal name"),
    ('[process.a]\ncommand = "x"\nstop_timeout = -1\n', 3, "process.a.stop_timeout",
     r"must be at least 0, got -1"),
    ('[process.a]\ncommand = "x"\nstop_timeout = "10s"\n', 3, "process.a.stop_timeout",
     r"expected a number of seconds, got string '10s'"),
    ('[process.a]\ncommand = "x"\nstop_timeout = inf\n', 3, "process.a.stop_timeout", r"finite"),
    ('[process.a]\ncommand = "x"\nmin_uptime = -0.5\n', 3, "process.a.min_uptime", r"at least 0"),
    ('[process.a]\ncommand = "x"\nbackoff_initial = 0\n', 3, "process.a.backoff_initial", r"greater than 0"),
    ('[process.a]\ncommand = "x"\nbackoff_initial = 5\nbackoff_max = 2\n', 4, "process.a.backoff_max",
     r"at least backoff_initial"),
    ('[process.a]\ncommand = "x"\nautostart = "yes"\n', 3, "process.a.autostart",
     r"expected a boolean \(true or false\), got string 'yes'"),
    ('[process.a]\ncommand = "x"\npty = 1\n', 3, "process.a.pty", r"expected a boolean"),
    ('[process.a]\ncommand = "x"\ncwd = 3\n', 3, "process.a.cwd", r"expected a string"),
    ('[process.a]\ncommand = "x"\nenv = { PORT = 8080 }\n', 3, "process.a.env.PORT",
     r"expected a string \(environment values are strings\), got integer 8080"),
    ('[process.a]\ncommand = "x"\nenv = ["A=1"]\n', 3, "process.a.env", r"expected a table"),
    ('[process.a]\ncommand = "x"\nready = { log = "(unclosed" }\n', 3, "process.a.ready.log",
     r"invalid regular expression: missing \), unterminated subpattern"),
    ('[process.a]\ncommand = "x"\nready = { log = "a", http = "http://x/" }\n', 3, "process.a.ready",
     r"exactly one of 'log' and 'http', got both"),
    ('[process.a]\ncommand = "x"\nready = { timeout = 5 }\n', 3, "process.a.ready",
     r"exactly one of 'log' and 'http', got neither"),
    ('[process.a]\ncommand = "x"\nready = { http = "localhost:80" }\n', 3, "process.a.ready.http",
     r"expected an http:// or https:// URL"),
    ('[process.a]\ncommand = "x"\nready = { http = "http://[::1:8081/health" }\n', 3, "process.a.ready.http",
     r"invalid URL 'http://\[::1:8081/health': Invalid IPv6 URL"),
    ('[process.a]\ncommand = "x"\nready = { http = "http://localhost:99999/" }\n', 3, "process.a.ready.http",
     r"invalid URL .*: Port out of range"),
    ('[process.a]\ncommand = "x"\nready = { http = "http:///health" }\n', 3, "process.a.ready.http",
     r"invalid URL 'http:///health': no host"),
    ('[process.a]\ncommand = "x"\ncwd = "~nosuchuser-logcast/app"\n', 3, "process.a.cwd",
     r"cannot expand '~nosuchuser-logcast/app': no such user"),
    ('[storage]\ndir = "~nosuchuser-logcast/data"\n', 2, "storage.dir", r"cannot expand"),
    ('[process.a]\ncommand = "x"\nready = { log = "x", timeout = -5 }\n', 3, "process.a.ready.timeout",
     r"greater than 0"),
    ('[process.a]\ncommand = "x"\nready = { log = "x", timeout = 0 }\n', 3, "process.a.ready.timeout",
     r"greater than 0"),
    ('[process.a]\ncommand = "x"\nready = "listening"\n', 3, "process.a.ready", r"expected a table"),
    # keys found across layouts: inline tables, dotted keys, sub-tables
    ('process = { a = { command = "x", bad = 1 } }\n', 1, "process.a.bad", r"unknown key"),
    ('[process]\na.command = "x"\na.restrt = "never"\n', 3, "process.a.restrt", r"did you mean 'restart'"),
    ('[process.a]\ncommand = "x"\n\n[process.a.env]\nPORT = 1\n', 5, "process.a.env.PORT",
     r"expected a string"),
    # a key-like line inside a multi-line string is not a key
    ('[process.a]\ncommand = """\nrestrat = 1\n"""\nrestrat = "x"\n', 5, "process.a.restrat", r"unknown key"),
    # TOML syntax errors keep tomllib's line
    ('[process.a]\ncommand = "x\n', 2, "process.a.command", r"invalid TOML: illegal character"),
    ('[process.a]\ncommand = ["x",\n', None, None, r"invalid TOML: "),
    ('[server]\nport = 1\nport = 2\n', 3, "server.port", r"duplicate key"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "key", "message"), ERRORS)
def test_errors_name_file_line_and_key(text: str, line: int | None, key: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, "logcast.toml")
    err = info.value
    assert (err.path, err.line, err.key) == ("logcast.toml", line, key)
    assert re.search(message, str(err)), str(err)
    prefix = "logcast.toml" + (f":{line}" if line else "") + ": " + (f"{key}: " if key else "")
    assert str(err).startswith(prefix), str(err)


def test_error_message_names_file_line_and_key() -> None:
    text = "\n".join(["# comment"] * 10) + '\n[process.qwen3]\ncommand = "x"\nrestrat = 1\n'
    with pytest.raises(ConfigError) as info:
        parse(text, "logcast.toml")
    assert str(info.value) == "logcast.toml:13: process.qwen3.restrat: unknown key (did you mean 'restart'?)"


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[process.a]\ncommand = "x"\nautostart = 1\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:3: process\.a\.autostart: "):
        load(path)
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(tmp_path / "latin1.toml")


def test_paths_relative_to_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    (sub / "logcast.toml").write_text(
        '[storage]\ndir = "../data"\n[process.a]\ncommand = "x"\ncwd = "work"\n'
    )
    s = load(sub / "logcast.toml")
    assert s.storage.dir == sub / "../data"
    assert s.processes["a"].cwd == sub / "work"
    s = parse('[process.a]\ncommand = "x"\ncwd = "/srv/app"\n')
    assert s.processes["a"].cwd == Path("/srv/app")


def test_single_process() -> None:
    s = single_process(["/usr/bin/llama-server", "-m", "x.gguf"])
    assert list(s.processes) == ["llama-server"]
    p = s.processes["llama-server"]
    assert p.command == ("/usr/bin/llama-server", "-m", "x.gguf")
    assert p.cwd == Path.cwd()
    assert s.server == ServerSettings()
    assert single_process(["python3", "app.py"], "web", port=9000).processes["web"].name == "web"
    assert list(single_process(["./my tool!"]).processes) == ["my-tool"]
    with pytest.raises(ConfigError, match="command is empty"):
        single_process([])
    with pytest.raises(ConfigError, match="invalid process name"):
        single_process(["x"], "a/b")
    with pytest.raises(ConfigError, match="refusing to bind"):
        single_process(["x"], host="0.0.0.0")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('[]."=\n abc{}#,0-_'), max_size=80))
def test_any_text_gives_settings_or_config_error(text: str) -> None:
    try:
        parse(text, "f.toml")
    except ConfigError as err:
        assert str(err).startswith("f.toml")


# -- aliases: every name and alias addresses exactly one process --------------------------


def test_aliases_are_parsed_in_order_without_repeats() -> None:
    s = parse('[process.qwen3]\ncommand = "x"\naliases = ["Qwen3-8B", "qwen", "Qwen3-8B", "qwen3"]\n')
    assert s.processes["qwen3"].aliases == ("Qwen3-8B", "qwen", "qwen3")  # its own name is allowed


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # an alias that is another process's name
        ('[process.a]\ncommand = "x"\n\n[process.b]\ncommand = "y"\naliases = ["ok", "a"]\n', 6,
         r"alias 'a' is the name of process 'a'"),
        # the same, when the alias comes first in the file
        ('[process.b]\ncommand = "y"\naliases = ["a"]\n\n[process.a]\ncommand = "x"\n', 3,
         r"alias 'a' is the name of process 'a'"),
        # an alias that two processes claim
        ('[process.a]\ncommand = "x"\naliases = ["m"]\n\n[process.b]\ncommand = "y"\n'
         'aliases = ["n", "m"]\n', 7, r"alias 'm' is already an alias of process 'a'"),
        # an alias that is not a name a URL can carry
        ('[process.a]\ncommand = "x"\naliases = ["a/b"]\n', 3, r"invalid alias 'a/b'"),
        ('[process.a]\ncommand = "x"\naliases = "m"\n', 3, r"expected a list of names"),
    ],
)  # fmt: skip
def test_conflicting_aliases_are_refused_with_file_line_and_key(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, "logcast.toml")
    err = info.value
    key = err.key or ""
    assert (err.path, err.line) == ("logcast.toml", line)
    assert key.startswith("process.") and key.endswith(".aliases"), key
    assert re.search(message, str(err)), str(err)
    assert str(err).startswith(f"logcast.toml:{line}: {key}: ")


def test_distinct_aliases_of_several_processes_are_accepted() -> None:
    s = parse(
        '[process.a]\ncommand = "x"\naliases = ["A"]\n[process.b]\ncommand = "y"\naliases = ["B", "b2"]\n'
    )
    assert {n: p.aliases for n, p in s.processes.items()} == {"a": ("A",), "b": ("B", "b2")}


# -- depends_on: names, conditions, probes and cycles, refused at load time ----------------


def test_depends_on_is_parsed_in_order_with_restart_with() -> None:
    s = parse(
        '[process.db]\ncommand = "x"\nready = { log = "up" }\n\n'
        '[process.migrate]\ncommand = "m"\ndepends_on = { db = "ready" }\n\n'
        '[process.web]\ncommand = "w"\ndepends_on = { migrate = "exited_ok", db = "started" }\n'
        "restart_with = true\n"
    )
    web = s.processes["web"]
    assert list(web.depends_on.items()) == [("migrate", Condition.EXITED_OK), ("db", Condition.STARTED)]
    assert web.restart_with is True
    assert s.processes["migrate"].restart_with is False
    assert dict(s.processes["db"].depends_on) == {}


def test_depends_on_as_a_sub_table() -> None:
    s = parse(
        '[process.a]\ncommand = "x"\n\n[process.b]\ncommand = "y"\n[process.b.depends_on]\na = "started"\n'
    )
    assert dict(s.processes["b"].depends_on) == {"a": Condition.STARTED}


def test_start_order_puts_dependencies_first_and_keeps_config_order_otherwise() -> None:
    s = parse(
        '[process.web]\ncommand = "w"\ndepends_on = { api = "started" }\n'
        '[process.other]\ncommand = "o"\n'
        '[process.api]\ncommand = "a"\ndepends_on = { db = "started" }\n'
        '[process.db]\ncommand = "d"\n'
    )
    assert start_order(s.processes) == ["db", "api", "web", "other"]


DEPENDS_ERRORS = [
    # an unknown process, with a near name, without one, and an alias
    ('[process.db]\ncommand = "x"\n[process.web]\ncommand = "y"\ndepends_on = { dbb = "started" }\n',
     "logcast.toml:5: process.web.depends_on.dbb: unknown process 'dbb' (did you mean 'db'?)"),
    ('[process.web]\ncommand = "y"\ndepends_on = { redis = "started" }\n',
     "logcast.toml:3: process.web.depends_on.redis: unknown process 'redis'"),
    ('[process.db]\ncommand = "x"\naliases = ["pg"]\n[process.web]\ncommand = "y"\n'
     'depends_on = { pg = "started" }\n',
     "logcast.toml:6: process.web.depends_on.pg: unknown process 'pg': it is an alias of process 'db', "
     "depend on that name"),
    # an unknown condition, a value that is not one, a depends_on that is not a table
    ('[process.db]\ncommand = "x"\n[process.web]\ncommand = "y"\ndepends_on = { db = "up" }\n',
     "logcast.toml:5: process.web.depends_on.db: unknown condition 'up' "
     "(expected one of: started, ready, exited_ok)"),
    ('[process.db]\ncommand = "x"\n[process.web]\ncommand = "y"\ndepends_on = { db = true }\n',
     "logcast.toml:5: process.web.depends_on.db: expected a condition (started, ready, exited_ok), "
     "got boolean true"),
    ('[process.db]\ncommand = "x"\n[process.web]\ncommand = "y"\ndepends_on = ["db"]\n',
     "logcast.toml:5: process.web.depends_on: expected a table of process names and conditions, "
     "such as { db = \"ready\" }, got array ['db']"),
    # ready on a process without a readiness probe
    ('[process.db]\ncommand = "x"\n\n[process.web]\ncommand = "y"\ndepends_on = { db = "ready" }\n',
     "logcast.toml:6: process.web.depends_on.db: process 'db' has no readiness probe "
     "(ready = { log = ... } or { http = ... }), so it never becomes ready: give it one, "
     'or depend on it with "started"'),
    # itself
    ('[process.web]\ncommand = "y"\ndepends_on = { web = "started" }\n',
     "logcast.toml:3: process.web.depends_on.web: process 'web' cannot depend on itself"),
    # cycles, named from the member written first
    ('[process.a]\ncommand = "x"\ndepends_on = { b = "started" }\n'
     '[process.b]\ncommand = "y"\ndepends_on = { a = "started" }\n',
     "logcast.toml:3: process.a.depends_on.b: dependency cycle: a → b → a"),
    ('[process.c]\ncommand = "z"\ndepends_on = { a = "started" }\n'
     '[process.a]\ncommand = "x"\ndepends_on = { b = "started" }\n'
     '[process.b]\ncommand = "y"\ndepends_on = { c = "exited_ok" }\n',
     "logcast.toml:3: process.c.depends_on.a: dependency cycle: c → a → b → c"),
    ('[process.d]\ncommand = "x"\n[process.a]\ncommand = "x"\ndepends_on = { d = "started" }\n'
     '[process.b]\ncommand = "y"\ndepends_on = { a = "started", c = "started" }\n'
     '[process.c]\ncommand = "z"\ndepends_on = { b = "started" }\n',
     "logcast.toml:8: process.b.depends_on.c: dependency cycle: b → c → b"),
    # restart_with: a boolean, and only with a dependency
    ('[process.db]\ncommand = "x"\n[process.web]\ncommand = "y"\ndepends_on = { db = "started" }\n'
     'restart_with = "yes"\n',
     "logcast.toml:6: process.web.restart_with: expected a boolean (true or false), got string 'yes'"),
    ('[process.web]\ncommand = "y"\nrestart_with = true\n',
     "logcast.toml:3: process.web.restart_with: restart_with = true needs depends_on (it has no dependency)"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), DEPENDS_ERRORS)
def test_depends_on_refusals_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, "logcast.toml")
    assert str(info.value) == message


def test_parse_names_a_model_server_the_parsers_know() -> None:
    from logcast.config.loader import PARSE_CHOICES
    from logcast.models import CHOICES

    assert PARSE_CHOICES == CHOICES
    assert parse('[process.m]\ncommand = ["x"]\nparse = "vllm"\n').processes["m"].parse == "vllm"
    assert parse('[process.m]\ncommand = ["x"]\n').processes["m"].parse is None  # guessed from the output
    with pytest.raises(ConfigError) as info:
        parse('[process.m]\ncommand = ["x"]\nparse = "ollama"\n', "logcast.toml")
    assert str(info.value) == (
        "logcast.toml:3: process.m.parse: unknown model server 'ollama' (expected one of: llamacpp, vllm, sglang, none)"
    )
