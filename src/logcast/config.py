"""`logcast.toml` → typed, validated, frozen settings.

Why it is built this way:

- The file is read once, at start, and every mistake is refused then, with the file,
  the line and the dotted key (`logcast.toml:12: process.qwen3.restrat: unknown key
  (did you mean 'restart'?)`): a supervisor that starts with half a configuration is
  worse than one that does not start.
- `tomllib` parses but keeps no positions. `_Locator` scans the text once for table
  headers and `key =` lines (skipping multi-line strings) and maps each dotted key to
  its line; a key it cannot place (inside an inline table) falls back to its nearest
  placed parent, which is on the same line in TOML 1.0.
- Settings are frozen dataclasses: every other room reads them, none changes them.
  `ServerSettings` checks itself in `__post_init__` too, so that a CLI override built
  with `dataclasses.replace(server, host="0.0.0.0")` cannot bypass "no public bind
  without a token".
- Relative paths (`storage.dir`, a process's `cwd`) are relative to the folder of the
  configuration file, not to wherever logcast happened to be started.
- `command` is a list of strings, or one string split with `shlex.split`; it is never
  handed to a shell.
"""

from __future__ import annotations

import ast
import difflib
import enum
import ipaddress
import math
import os
import re
import shlex
import signal
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from logcast.errors import ConfigError

__all__ = [
    "NAME_RE",
    "ProcessSettings",
    "ReadySettings",
    "RestartPolicy",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "is_loopback",
    "load",
    "name_for",
    "parse",
    "parse_signal",
    "single_process",
]

NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""A process name: it is used in URLs, so only these characters, 1 to 64 of them."""

TOKEN_ENV = "LOGCAST_TOKEN"
MiB = 1024 * 1024


class RestartPolicy(enum.StrEnum):
    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env_token() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None  # None: falls back to $LOGCAST_TOKEN
    allowed_hosts: tuple[str, ...] = ()  # extra Host header names accepted (reverse proxies)
    max_streams: int = 1000  # open SSE/WebSocket log streams at once; more are refused with 503
    session_ttl: float = 12 * 3600.0  # seconds a dashboard login stays valid

    def __post_init__(self) -> None:
        if self.token is None:
            object.__setattr__(self, "token", _env_token())
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} out of range 1-65535", key="server.port")
        if not self.token and not is_loopback(self.host):
            raise ConfigError(_no_token_message(self.host), key="server.host")


def _no_token_message(host: str) -> str:
    return f"refusing to bind {host} without a token: set server.token or {TOKEN_ENV}"


@dataclass(frozen=True)
class StorageSettings:
    dir: Path = Path(".logcast")
    memory_lines: int = 100_000
    memory_bytes: int = 64 * MiB
    retain_lines: int = 5_000_000
    engine: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str | None = None


@dataclass(frozen=True)
class ReadySettings:
    """How to tell that a process is ready: exactly one of `log` and `http`."""

    log: re.Pattern[str] | None = None
    http: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class ProcessSettings:
    name: str
    command: tuple[str, ...]
    aliases: tuple[str, ...] = ()  # other names that address this process in every route
    cwd: Path = Path(".")
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    autostart: bool = True
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    pty: bool = False
    ready: ReadySettings | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 10.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    min_uptime: float = 10.0  # a run that stayed up this long resets the backoff


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    processes: dict[str, ProcessSettings] = field(default_factory=dict)  # in config order
    path: Path | None = None  # the file it was read from


# --------------------------------------------------------------------------- locating keys

Key = tuple[str, ...]
_BARE = re.compile(r"[A-Za-z0-9_-]+")
_LOCATION = re.compile(r"\s*\(at (?:line (\d+), column \d+|end of document)\)\s*$")


def _parse_key(s: str, i: int) -> tuple[Key, int] | None:
    """Parse a dotted TOML key at `s[i:]`; return its parts and the index after it."""
    parts: list[str] = []
    n = len(s)
    while True:
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            return None
        c = s[i]
        if c == '"' or c == "'":
            j = i + 1
            buf: list[str] = []
            while j < n and s[j] != c:
                if c == '"' and s[j] == "\\" and j + 1 < n:
                    buf.append(s[j : j + 2])
                    j += 2
                    continue
                buf.append(s[j])
                j += 1
            if j >= n:
                return None
            raw = "".join(buf)
            if c == '"':
                try:
                    raw = tomllib.loads(f'k = "{raw}"')["k"]
                except tomllib.TOMLDecodeError:
                    pass
            parts.append(raw)
            i = j + 1
        else:
            m = _BARE.match(s, i)
            if not m:
                return None
            parts.append(m.group())
            i = m.end()
        while i < n and s[i] in " \t":
            i += 1
        if i < n and s[i] == ".":
            i += 1
            continue
        return tuple(parts), i


class _Locator:
    """Maps dotted keys to the (1-based) line where they are written."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Key, int] = {}  # first line of each key
        self.by_line: dict[int, Key] = {}  # the full key written on each line
        table: Key = ()
        closing: str | None = None  # inside a multi-line string ending with this
        for number, line in enumerate(text.splitlines(), start=1):
            if closing is not None:
                if closing in line:
                    closing = None
                continue
            stripped = line.lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("["):
                array = stripped.startswith("[[")
                parsed = _parse_key(stripped, 2 if array else 1)
                if parsed is not None:
                    table = parsed[0]
                    self._note(table, number)
                    self.by_line[number] = table
                continue
            parsed = _parse_key(stripped, 0)
            if parsed is None:
                continue
            key, end = parsed
            if end >= len(stripped) or stripped[end] != "=":
                continue
            self._note(table + key, number)
            self.by_line[number] = table + key
            value = stripped[end + 1 :].lstrip()
            for quote in ('"""', "'''"):
                if value.startswith(quote) and quote not in value[3:]:
                    closing = quote

    def _note(self, key: Key, line: int) -> None:
        for k in range(1, len(key) + 1):
            self.lines.setdefault(key[:k], line)

    def line_of(self, key: Key) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None

    def key_at(self, line: int) -> Key | None:
        """The key (or table header) written on that line."""
        return self.by_line.get(line)


def _dotted(key: Key) -> str:
    return ".".join(p if _BARE.fullmatch(p) else f'"{p}"' for p in key)


# --------------------------------------------------------------------------- value checks


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _shown(value: object) -> str:
    """`string '80'`, `boolean true`, `array [1, 2]`: what was found, briefly."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        return "table"
    else:
        text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{_type_name(value)} {text}"


class _Reader:
    """Validation helpers bound to one text: every error knows its line."""

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.locator = _Locator(text)

    def error(self, key: Key, message: str) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.locator.line_of(key), key=_dotted(key) or None)

    def expected(self, key: Key, what: str, value: object) -> ConfigError:
        return self.error(key, f"expected {what}, got {_shown(value)}")

    def keys(self, table: Mapping[str, Any], key: Key, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for k in table:
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(allowed)})"
                raise self.error((*key, k), "unknown key" + hint)

    def table(self, value: object, key: Key) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.expected(key, "a table", value)
        return value

    def string(self, table: Mapping[str, Any], key: Key, default: str, *, empty: bool = False) -> str:
        value = table.get(key[-1], default)
        if not isinstance(value, str):
            raise self.expected(key, "a string", value)
        if not empty and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def optional_string(self, table: Mapping[str, Any], key: Key) -> str | None:
        if key[-1] not in table:
            return None
        return self.string(table, key, "")

    def boolean(self, table: Mapping[str, Any], key: Key, default: bool) -> bool:
        value = table.get(key[-1], default)
        if not isinstance(value, bool):
            raise self.expected(key, "a boolean (true or false)", value)
        return value

    def integer(self, table: Mapping[str, Any], key: Key, default: int, *, minimum: int = 1) -> int:
        value = table.get(key[-1], default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.expected(key, "an integer", value)
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def seconds(self, table: Mapping[str, Any], key: Key, default: float, *, positive: bool = False) -> float:
        value = table.get(key[-1], default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.expected(key, "a number of seconds", value)
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {value}")
        if value < 0 or (positive and value == 0):
            raise self.error(key, f"must be {'greater than 0' if positive else 'at least 0'}, got {value}")
        return float(value)


# --------------------------------------------------------------------------- sections

_TOP_KEYS = ("server", "storage", "process")
_SERVER_KEYS = ("host", "port", "token", "allowed_hosts", "max_streams", "session_ttl")
_STORAGE_KEYS = ("dir", "memory_lines", "memory_bytes", "retain_lines", "engine", "redis_url")
_PROCESS_KEYS = (
    "command",
    "aliases",
    "cwd",
    "env",
    "autostart",
    "restart",
    "pty",
    "ready",
    "stop_signal",
    "stop_timeout",
    "backoff_initial",
    "backoff_max",
    "min_uptime",
)
_READY_KEYS = ("log", "http", "timeout")


def _server(r: _Reader, raw: dict[str, Any]) -> ServerSettings:
    k: Key = ("server",)
    r.keys(raw, k, _SERVER_KEYS)
    host = r.string(raw, (*k, "host"), "127.0.0.1").strip()
    port = r.integer(raw, (*k, "port"), 8080, minimum=-(2**63))
    if not 0 < port < 65536:
        raise r.error((*k, "port"), f"port {port} out of range 1-65535")
    token = r.optional_string(raw, (*k, "token")) or _env_token()
    hosts = raw.get("allowed_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h.strip() for h in hosts):
        raise r.expected((*k, "allowed_hosts"), "a list of host names", hosts)
    if not token and not is_loopback(host):
        raise r.error((*k, "host"), _no_token_message(host))
    return ServerSettings(
        host=host,
        port=port,
        token=token,
        allowed_hosts=tuple(h.strip() for h in hosts),
        max_streams=r.integer(raw, (*k, "max_streams"), ServerSettings.max_streams),
        session_ttl=r.seconds(raw, (*k, "session_ttl"), ServerSettings.session_ttl, positive=True),
    )


def _storage(r: _Reader, raw: dict[str, Any], base: Path) -> StorageSettings:
    k: Key = ("storage",)
    r.keys(raw, k, _STORAGE_KEYS)
    directory = r.string(raw, (*k, "dir"), ".logcast")
    engine = r.string(raw, (*k, "engine"), "sqlite")
    if engine not in ("sqlite", "redis"):
        raise r.error((*k, "engine"), f"unknown engine {engine!r} (expected 'sqlite' or 'redis')")
    redis_url = r.optional_string(raw, (*k, "redis_url"))
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise r.error((*k, "redis_url"), f"expected a redis://, rediss:// or unix:// URL, got {redis_url!r}")
    if engine == "redis" and redis_url is None:
        raise r.error((*k, "engine"), "engine 'redis' needs storage.redis_url")
    return StorageSettings(
        dir=base / Path(directory).expanduser(),
        memory_lines=r.integer(raw, (*k, "memory_lines"), StorageSettings.memory_lines),
        memory_bytes=r.integer(raw, (*k, "memory_bytes"), StorageSettings.memory_bytes),
        retain_lines=r.integer(raw, (*k, "retain_lines"), StorageSettings.retain_lines),
        engine="redis" if engine == "redis" else "sqlite",
        redis_url=redis_url,
    )


def _command(r: _Reader, raw: dict[str, Any], key: Key) -> tuple[str, ...]:
    if "command" not in raw:
        raise r.error(key[:-1], "missing key 'command'")
    value = raw["command"]
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise r.error(key, f"cannot split command: {exc}") from None
    elif isinstance(value, list):
        if not all(isinstance(p, str) for p in value):
            raise r.expected(key, "a string or a list of strings", value)
        parts = list(value)
    else:
        raise r.expected(key, "a string or a list of strings", value)
    if not parts or not parts[0].strip():
        raise r.error(key, "command is empty")
    if any("\0" in p for p in parts):
        raise r.error(key, "command contains a NUL character")
    return tuple(parts)


def _aliases(r: _Reader, raw: dict[str, Any], key: Key) -> tuple[str, ...]:
    value = raw.get("aliases", [])
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise r.expected(key, "a list of names", value)
    for alias in value:
        if not NAME_RE.fullmatch(alias) or alias in (".", ".."):
            raise r.error(key, f"invalid alias {alias!r}: use 1-64 of A-Z a-z 0-9 _ . - (it appears in URLs)")
    return tuple(dict.fromkeys(value))


def _env(r: _Reader, raw: dict[str, Any], key: Key) -> Mapping[str, str]:
    table = r.table(raw.get("env", {}), key)
    env: dict[str, str] = {}
    for name, value in table.items():
        if not name or "=" in name or "\0" in name:
            raise r.error((*key, name), "invalid environment variable name")
        if not isinstance(value, str):
            raise r.expected((*key, name), "a string (environment values are strings)", value)
        if "\0" in value:
            raise r.error((*key, name), "value contains a NUL character")
        env[name] = value
    return MappingProxyType(env)


def parse_signal(value: object) -> signal.Signals:
    """`"TERM"`, `"SIGTERM"`, `"term"` or `15` → `signal.SIGTERM`; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return signal.Signals(value)
    if isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            return signal.Signals[name]
        except KeyError:
            pass
    raise ValueError(f"unknown signal {value!r}")


def _ready(r: _Reader, raw: dict[str, Any], key: Key) -> ReadySettings | None:
    if "ready" not in raw:
        return None
    table = r.table(raw["ready"], key)
    r.keys(table, key, _READY_KEYS)
    has_log, has_http = "log" in table, "http" in table
    if has_log == has_http:
        which = "both" if has_log else "neither"
        raise r.error(key, f"needs exactly one of 'log' and 'http', got {which}")
    timeout = r.seconds(table, (*key, "timeout"), ReadySettings.timeout, positive=True)
    if has_log:
        pattern = r.string(table, (*key, "log"), "")
        try:
            return ReadySettings(log=re.compile(pattern), timeout=timeout)
        except re.error as exc:
            raise r.error((*key, "log"), f"invalid regular expression: {exc}") from None
    url = r.string(table, (*key, "http"), "")
    if not url.startswith(("http://", "https://")):
        raise r.error((*key, "http"), f"expected an http:// or https:// URL, got {url!r}")
    return ReadySettings(http=url, timeout=timeout)


def _process(r: _Reader, name: str, value: object, base: Path) -> ProcessSettings:
    k: Key = ("process", name)
    if not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise r.error(k, f"invalid process name {name!r}: use 1-64 of A-Z a-z 0-9 _ . - (it appears in URLs)")
    raw = r.table(value, k)
    r.keys(raw, k, _PROCESS_KEYS)
    restart = r.string(raw, (*k, "restart"), RestartPolicy.ON_FAILURE.value)
    try:
        policy = RestartPolicy(restart)
    except ValueError:
        choices = ", ".join(p.value for p in RestartPolicy)
        raise r.error(
            (*k, "restart"), f"unknown restart policy {restart!r} (expected one of: {choices})"
        ) from None
    stop_signal = raw.get("stop_signal", "TERM")
    try:
        sig = parse_signal(stop_signal)
    except ValueError:
        if not isinstance(stop_signal, str | int) or isinstance(stop_signal, bool):
            raise r.expected((*k, "stop_signal"), "a signal name such as 'TERM'", stop_signal) from None
        raise r.error((*k, "stop_signal"), f"unknown signal {stop_signal!r} (e.g. 'TERM', 'INT')") from None
    backoff_initial = r.seconds(raw, (*k, "backoff_initial"), 1.0, positive=True)
    backoff_max = r.seconds(raw, (*k, "backoff_max"), max(60.0, backoff_initial), positive=True)
    if backoff_max < backoff_initial:
        raise r.error((*k, "backoff_max"), f"must be at least backoff_initial ({backoff_initial}s)")
    cwd = r.string(raw, (*k, "cwd"), ".")
    return ProcessSettings(
        name=name,
        command=_command(r, raw, (*k, "command")),
        aliases=_aliases(r, raw, (*k, "aliases")),
        cwd=base / Path(cwd).expanduser(),
        env=_env(r, raw, (*k, "env")),
        autostart=r.boolean(raw, (*k, "autostart"), True),
        restart=policy,
        pty=r.boolean(raw, (*k, "pty"), False),
        ready=_ready(r, raw, (*k, "ready")),
        stop_signal=sig,
        stop_timeout=r.seconds(raw, (*k, "stop_timeout"), 10.0),
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        min_uptime=r.seconds(raw, (*k, "min_uptime"), 10.0),
    )


def _check_aliases(r: _Reader, processes: Mapping[str, ProcessSettings]) -> None:
    """Every name and alias addresses exactly one process: an alias may not be another
    process's name, nor an alias of another process (its own name is allowed)."""
    owner: dict[str, str] = {}
    for name, p in processes.items():
        for alias in p.aliases:
            if alias != name and alias in processes:
                raise r.error(
                    ("process", name, "aliases"), f"alias {alias!r} is the name of process {alias!r}"
                )
            other = owner.setdefault(alias, name)
            if other != name:
                raise r.error(
                    ("process", name, "aliases"), f"alias {alias!r} is already an alias of process {other!r}"
                )


def _decode_error(r: _Reader, exc: tomllib.TOMLDecodeError) -> ConfigError:
    text = str(exc)
    m = _LOCATION.search(text)
    line = int(m.group(1)) if m and m.group(1) else None
    message = text[: m.start()] if m else text
    key = r.locator.key_at(line) if line else None
    twice = re.match(r"Cannot declare \((.*)\) twice", message)
    if twice:
        try:
            parts = tuple(str(p) for p in ast.literal_eval(f"({twice.group(1)},)"))
        except (ValueError, SyntaxError):
            parts = ()
        if len(parts) == 2 and parts[0] == "process":
            message = f"duplicate process name {parts[1]!r}"
        else:
            message = "duplicate table"
        key = parts or key
    elif message.startswith("Cannot overwrite a value"):
        message = "duplicate key"
    else:
        message = f"invalid TOML: {message[:1].lower()}{message[1:]}"
    return ConfigError(message, path=r.path, line=line, key=_dotted(key) if key else None)


# --------------------------------------------------------------------------- entry points


def parse(text: str, path: str = "<string>") -> Settings:
    """Parse and validate the text of a `logcast.toml`.

    `path` names the file in error messages; relative paths in the file are relative to
    its folder (to the current directory for `"<string>"`, and `Settings.path` is None).
    """
    r = _Reader(text, path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _decode_error(r, exc) from None
    real_path = None if path == "<string>" else Path(path)
    base = real_path.absolute().parent if real_path else Path.cwd()
    r.keys(raw, (), _TOP_KEYS)
    server = _server(r, r.table(raw.get("server", {}), ("server",)))
    storage = _storage(r, r.table(raw.get("storage", {}), ("storage",)), base)
    processes = {
        name: _process(r, name, value, base)
        for name, value in r.table(raw.get("process", {}), ("process",)).items()
    }
    _check_aliases(r, processes)
    return Settings(server=server, storage=storage, processes=processes, path=real_path)


def load(path: str | Path) -> Settings:
    """Read and validate a `logcast.toml`; ConfigError if it cannot be read or is invalid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration: {exc.strerror or exc}", path=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason}", path=str(path)) from None
    return parse(text, str(path))


def name_for(command: list[str] | tuple[str, ...]) -> str:
    """A valid process name from a command's basename (`/usr/bin/llama-server` → `llama-server`)."""
    base = os.path.basename(command[0]) if command else ""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-")[:64]
    return name if name and name not in (".", "..") else "process"


def single_process(
    command: list[str] | tuple[str, ...],
    name: str | None = None,
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    pty: bool = False,
    restart: RestartPolicy | str = RestartPolicy.ON_FAILURE,
    ready: ReadySettings | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    storage_dir: str | Path | None = None,
) -> Settings:
    """Settings for `logcast run -- CMD`: one process, named after the command unless given."""
    command = tuple(command)
    if not command or not command[0].strip():
        raise ConfigError("command is empty", key="command")
    if name is None:
        name = name_for(command)
    elif not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"invalid process name {name!r}: use 1-64 of A-Z a-z 0-9 _ . -", key="name")
    try:
        policy = RestartPolicy(restart)
    except ValueError:
        raise ConfigError(f"unknown restart policy {restart!r}", key="restart") from None
    here = Path.cwd()
    process = ProcessSettings(
        name=name,
        command=command,
        cwd=here / Path(cwd) if cwd is not None else here,
        env=MappingProxyType(dict(env or {})),
        pty=pty,
        restart=policy,
        ready=ready,
    )
    return Settings(
        server=ServerSettings(host=host, port=port, token=token),
        storage=StorageSettings(dir=here / Path(storage_dir or ".logcast")),
        processes={name: process},
    )
