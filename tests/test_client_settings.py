"""URL and token resolution: argument → environment → ./logcast.toml → default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from logcast.client.settings import DEFAULT_URL, normalize_url, resolve, resolve_token, resolve_url
from logcast.errors import ClientError


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "logcast.toml").write_text(text)
    return tmp_path


def test_default_without_anything(tmp_path: Path) -> None:
    settings = resolve(env={}, cwd=tmp_path)
    assert settings.url == DEFAULT_URL == "http://127.0.0.1:8080"
    assert settings.token is None


def test_explicit_beats_environment_beats_file(tmp_path: Path) -> None:
    write(tmp_path, '[server]\nhost = "10.0.0.5"\nport = 9000\ntoken = "from-file"\n')
    env = {"LOGCAST_URL": "http://env:1234", "LOGCAST_TOKEN": "from-env"}
    assert resolve("http://arg:1", "from-arg", env=env, cwd=tmp_path) == resolve(
        "http://arg:1/", "from-arg", env={}, cwd=tmp_path
    )
    assert resolve("http://arg:1", "from-arg", env=env, cwd=tmp_path).url == "http://arg:1"
    assert resolve(env=env, cwd=tmp_path).url == "http://env:1234"
    assert resolve(env=env, cwd=tmp_path).token == "from-env"
    assert resolve(env={}, cwd=tmp_path).url == "http://10.0.0.5:9000"
    assert resolve(env={}, cwd=tmp_path).token == "from-file"


def test_url_and_token_resolve_independently(tmp_path: Path) -> None:
    write(tmp_path, '[server]\nport = 9001\ntoken = "t"\n')
    assert resolve_url("http://x:1", env={}, cwd=tmp_path) == "http://x:1"
    assert resolve_token(env={"LOGCAST_URL": "http://y:2"}, cwd=tmp_path) == "t"
    assert resolve_url(env={"LOGCAST_TOKEN": "e"}, cwd=tmp_path) == "http://127.0.0.1:9001"


def test_file_without_server_table_gives_default(tmp_path: Path) -> None:
    write(tmp_path, '[process.web]\ncommand = "true"\n')
    assert resolve(env={}, cwd=tmp_path) == resolve(env={}, cwd=tmp_path / "missing")
    assert resolve(env={}, cwd=tmp_path).url == DEFAULT_URL


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("::", "http://[::1]:8080"),
        ("::1", "http://[::1]:8080"),
        ("example.org", "http://example.org:8080"),
    ],
)
def test_host_from_file(tmp_path: Path, host: str, url: str) -> None:
    write(tmp_path, f'[server]\nhost = "{host}"\n')
    assert resolve_url(env={}, cwd=tmp_path) == url


def test_empty_environment_values_are_ignored(tmp_path: Path) -> None:
    assert resolve(env={"LOGCAST_URL": "", "LOGCAST_TOKEN": ""}, cwd=tmp_path) == resolve(
        env={}, cwd=tmp_path
    )


def test_broken_file_is_an_error_only_when_needed(tmp_path: Path) -> None:
    write(tmp_path, "[server\nport = ")
    with pytest.raises(ClientError, match=r"logcast\.toml"):
        resolve(env={}, cwd=tmp_path)
    settings = resolve("http://a:1", "tok", env={}, cwd=tmp_path)
    assert (settings.url, settings.token) == ("http://a:1", "tok")


def test_wrong_types_in_file(tmp_path: Path) -> None:
    write(tmp_path, '[server]\nport = "eighty"\n')
    with pytest.raises(ClientError, match="port"):
        resolve_url(env={}, cwd=tmp_path)
    write(tmp_path, "[server]\ntoken = 5\n")
    with pytest.raises(ClientError, match="token"):
        resolve_token(env={}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("localhost:8080", "http://localhost:8080"),
        (" http://h:1/ ", "http://h:1"),
        ("https://logs.example.org/base/", "https://logs.example.org/base"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_empty_url_is_refused() -> None:
    with pytest.raises(ClientError):
        normalize_url("  ")


def test_environment_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGCAST_URL", "http://from-os:5")
    monkeypatch.setenv("LOGCAST_TOKEN", "os-token")
    assert resolve(cwd=tmp_path).url == "http://from-os:5"
    assert resolve(cwd=tmp_path).token == "os-token"


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("http://127.0.0.1:abc", "Invalid port"),
        ("http://[::1", "Invalid port"),
        ("ftp://host", "must be http:// or https://"),
        ("http://:8080", "name a host"),
    ],
)
def test_a_url_that_is_none_says_why_without_its_password(given: str, why: str) -> None:
    with pytest.raises(ClientError, match=why) as refused:
        normalize_url(given.replace("://", "://u:hunter2@", 1))
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("command", [["ps"], ["stop", "web"], ["tail", "web"], ["monitor"]])
@pytest.mark.parametrize("where", ["--url", "LOGCAST_URL"])
def test_a_bad_url_is_a_usage_error_not_a_traceback(command: list[str], where: str, tmp_path: Path) -> None:
    """A review: `logcast ps --url http://127.0.0.1:abc` printed httpx's traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCAST_")}
    args = [sys.executable, "-m", "logcast", *command]
    if where == "--url":
        args += ["--url", "http://127.0.0.1:abc"]
    else:
        env["LOGCAST_URL"] = "http://127.0.0.1:abc"
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "invalid server URL" in done.stderr and "Traceback" not in done.stderr
    assert ("$LOGCAST_URL" in done.stderr) == (where == "LOGCAST_URL")
