"""`logcast.toml` text → Settings: each table is checked against its known keys and value
types here, so that a typo is refused at start rather than silently ignored."""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from logcast.config.depends import check_dependencies, parse_depends_on
from logcast.config.locate import Key
from logcast.config.reader import Reader
from logcast.config.settings import (
    NAME_RE,
    ProcessSettings,
    ReadySettings,
    RestartPolicy,
    ServerSettings,
    Settings,
    StorageSettings,
    env_token,
    is_loopback,
    no_token_message,
)
from logcast.config.toml_errors import decode_error
from logcast.errors import ConfigError

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
    "depends_on",
    "restart_with",
    "parse",
)
PARSE_CHOICES = ("llamacpp", "vllm", "sglang", "none")  # logcast.models.CHOICES (a test keeps them equal)
_READY_KEYS = ("log", "http", "timeout")


def _server(reader: Reader, raw: dict[str, Any]) -> ServerSettings:
    section: Key = ("server",)
    reader.keys(raw, section, _SERVER_KEYS)
    host = reader.string(raw, (*section, "host"), "127.0.0.1").strip()
    port = reader.integer(raw, (*section, "port"), 8080, minimum=-(2**63))
    if not 0 < port < 65536:
        raise reader.error((*section, "port"), f"port {port} out of range 1-65535")
    token = reader.optional_string(raw, (*section, "token")) or env_token()
    hosts = raw.get("allowed_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h.strip() for h in hosts):
        raise reader.expected((*section, "allowed_hosts"), "a list of host names", hosts)
    if not token and not is_loopback(host):
        raise reader.error((*section, "host"), no_token_message(host))
    return ServerSettings(
        host=host,
        port=port,
        token=token,
        allowed_hosts=tuple(h.strip() for h in hosts),
        max_streams=reader.integer(raw, (*section, "max_streams"), ServerSettings.max_streams),
        session_ttl=reader.seconds(raw, (*section, "session_ttl"), ServerSettings.session_ttl, positive=True),
    )


def _storage(reader: Reader, raw: dict[str, Any], base: Path) -> StorageSettings:
    section: Key = ("storage",)
    reader.keys(raw, section, _STORAGE_KEYS)
    directory = reader.string(raw, (*section, "dir"), ".logcast")
    engine = reader.string(raw, (*section, "engine"), "sqlite")
    if engine not in ("sqlite", "redis"):
        raise reader.error((*section, "engine"), f"unknown engine {engine!r} (expected 'sqlite' or 'redis')")
    redis_url = reader.optional_string(raw, (*section, "redis_url"))
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise reader.error(
            (*section, "redis_url"), f"expected a redis://, rediss:// or unix:// URL, got {redis_url!r}"
        )
    if engine == "redis" and redis_url is None:
        raise reader.error((*section, "engine"), "engine 'redis' needs storage.redis_url")
    return StorageSettings(
        dir=_path(reader, (*section, "dir"), directory, base),
        memory_lines=reader.integer(raw, (*section, "memory_lines"), StorageSettings.memory_lines),
        memory_bytes=reader.integer(raw, (*section, "memory_bytes"), StorageSettings.memory_bytes),
        retain_lines=reader.integer(raw, (*section, "retain_lines"), StorageSettings.retain_lines),
        engine="redis" if engine == "redis" else "sqlite",
        redis_url=redis_url,
    )


def _command(reader: Reader, raw: dict[str, Any], key: Key) -> tuple[str, ...]:
    """A list of strings, or one string split with `shlex.split`: it is never handed to a shell."""
    if "command" not in raw:
        raise reader.error(key[:-1], "missing key 'command'")
    value = raw["command"]
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise reader.error(key, f"cannot split command: {exc}") from None
    elif isinstance(value, list):
        if not all(isinstance(p, str) for p in value):
            raise reader.expected(key, "a string or a list of strings", value)
        parts = list(value)
    else:
        raise reader.expected(key, "a string or a list of strings", value)
    if not parts or not parts[0].strip():
        raise reader.error(key, "command is empty")
    if any("\0" in p for p in parts):
        raise reader.error(key, "command contains a NUL character")
    return tuple(parts)


def _aliases(reader: Reader, raw: dict[str, Any], key: Key) -> tuple[str, ...]:
    value = raw.get("aliases", [])
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise reader.expected(key, "a list of names", value)
    for alias in value:
        if not NAME_RE.fullmatch(alias) or alias in (".", ".."):
            raise reader.error(
                key, f"invalid alias {alias!r}: use 1-64 of A-Z a-z 0-9 _ . - (it appears in URLs)"
            )
    return tuple(dict.fromkeys(value))


def _env(reader: Reader, raw: dict[str, Any], key: Key) -> Mapping[str, str]:
    table = reader.table(raw.get("env", {}), key)
    env: dict[str, str] = {}
    for name, value in table.items():
        if not name or "=" in name or "\0" in name:
            raise reader.error((*key, name), "invalid environment variable name")
        if not isinstance(value, str):
            raise reader.expected((*key, name), "a string (environment values are strings)", value)
        if "\0" in value:
            raise reader.error((*key, name), "value contains a NUL character")
        env[name] = value
    return MappingProxyType(env)


# Signals that by default neither end a process nor may be caught to end it in order: as
# a stop signal, each would leave every stop to the SIGKILL after `stop_timeout`.
_NOT_STOPPING = frozenset(
    {
        signal.SIGCHLD,
        signal.SIGCONT,
        signal.SIGURG,
        signal.SIGWINCH,
        signal.SIGSTOP,
        signal.SIGTSTP,
        signal.SIGTTIN,
        signal.SIGTTOU,
    }
)


def parse_signal(value: object) -> signal.Signals:
    """`"TERM"`, `"SIGTERM"`, `"term"` or `15` → `signal.SIGTERM`; ValueError for an unknown
    signal or one that stops nothing (`_NOT_STOPPING`)."""
    found: signal.Signals | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            found = signal.Signals(value)
    elif isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        found = signal.Signals.__members__.get(name)
    if found is None:
        raise ValueError(f"unknown signal {value!r} (e.g. 'TERM', 'INT')")
    if found in _NOT_STOPPING:
        raise ValueError(
            f"{found.name} does not stop a process (it is ignored or pauses it by default);"
            " use TERM, INT, QUIT, HUP, USR1, USR2 or KILL"
        )
    return found


def _ready(reader: Reader, raw: dict[str, Any], key: Key) -> ReadySettings | None:
    if "ready" not in raw:
        return None
    table = reader.table(raw["ready"], key)
    reader.keys(table, key, _READY_KEYS)
    has_log, has_http = "log" in table, "http" in table
    if has_log == has_http:
        which = "both" if has_log else "neither"
        raise reader.error(key, f"needs exactly one of 'log' and 'http', got {which}")
    timeout = reader.seconds(table, (*key, "timeout"), ReadySettings.timeout, positive=True)
    if has_log:
        pattern = reader.string(table, (*key, "log"), "")
        try:
            return ReadySettings(log=re.compile(pattern), timeout=timeout)
        except re.error as exc:
            raise reader.error((*key, "log"), f"invalid regular expression: {exc}") from None
    url = reader.string(table, (*key, "http"), "")
    if not url.startswith(("http://", "https://")):
        raise reader.error((*key, "http"), f"expected an http:// or https:// URL, got {url!r}")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # a bad port raises here
    except ValueError as exc:
        raise reader.error((*key, "http"), f"invalid URL {url!r}: {exc}") from None
    if not host:
        raise reader.error((*key, "http"), f"invalid URL {url!r}: no host")
    return ReadySettings(http=url, timeout=timeout)


def _path(reader: Reader, key: Key, value: str, base: Path) -> Path:
    """`value` (`~` and `~user` expanded) against `base`."""
    try:
        return base / Path(value).expanduser()
    except RuntimeError:  # `~user` of no such user, or no home directory
        raise reader.error(key, f"cannot expand {value!r}: no such user or home directory") from None


def _process(reader: Reader, name: str, value: object, base: Path) -> ProcessSettings:
    section: Key = ("process", name)
    if not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise reader.error(
            section, f"invalid process name {name!r}: use 1-64 of A-Z a-z 0-9 _ . - (it appears in URLs)"
        )
    raw = reader.table(value, section)
    reader.keys(raw, section, _PROCESS_KEYS)
    restart = reader.string(raw, (*section, "restart"), RestartPolicy.ON_FAILURE.value)
    try:
        policy = RestartPolicy(restart)
    except ValueError:
        choices = ", ".join(p.value for p in RestartPolicy)
        raise reader.error(
            (*section, "restart"), f"unknown restart policy {restart!r} (expected one of: {choices})"
        ) from None
    raw_signal = raw.get("stop_signal", "TERM")
    try:
        stop_signal = parse_signal(raw_signal)
    except ValueError as exc:
        if not isinstance(raw_signal, str | int) or isinstance(raw_signal, bool):
            raise reader.expected(
                (*section, "stop_signal"), "a signal name such as 'TERM'", raw_signal
            ) from None
        raise reader.error((*section, "stop_signal"), str(exc)) from None
    backoff_initial = reader.seconds(raw, (*section, "backoff_initial"), 1.0, positive=True)
    backoff_max = reader.seconds(raw, (*section, "backoff_max"), max(60.0, backoff_initial), positive=True)
    if backoff_max < backoff_initial:
        raise reader.error(
            (*section, "backoff_max"), f"must be at least backoff_initial ({backoff_initial}s)"
        )
    cwd = reader.string(raw, (*section, "cwd"), ".")
    parse = reader.string(raw, (*section, "parse"), "auto")
    if parse not in (*PARSE_CHOICES, "auto"):
        raise reader.error(
            (*section, "parse"),
            f"unknown model server {parse!r} (expected one of: {', '.join(PARSE_CHOICES)})",
        )
    return ProcessSettings(
        name=name,
        command=_command(reader, raw, (*section, "command")),
        aliases=_aliases(reader, raw, (*section, "aliases")),
        cwd=_path(reader, (*section, "cwd"), cwd, base),
        env=_env(reader, raw, (*section, "env")),
        autostart=reader.boolean(raw, (*section, "autostart"), True),
        restart=policy,
        pty=reader.boolean(raw, (*section, "pty"), False),
        ready=_ready(reader, raw, (*section, "ready")),
        stop_signal=stop_signal,
        stop_timeout=reader.seconds(raw, (*section, "stop_timeout"), 10.0),
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        min_uptime=reader.seconds(raw, (*section, "min_uptime"), 10.0),
        depends_on=parse_depends_on(reader, raw, (*section, "depends_on")),
        restart_with=reader.boolean(raw, (*section, "restart_with"), False),
        parse=None if parse == "auto" else parse,
    )


def _check_aliases(reader: Reader, processes: Mapping[str, ProcessSettings]) -> None:
    """Every name and alias addresses exactly one process: an alias may not be another
    process's name, nor an alias of another process (its own name is allowed)."""
    owner: dict[str, str] = {}
    for name, process in processes.items():
        for alias in process.aliases:
            if alias != name and alias in processes:
                raise reader.error(
                    ("process", name, "aliases"), f"alias {alias!r} is the name of process {alias!r}"
                )
            other = owner.setdefault(alias, name)
            if other != name:
                raise reader.error(
                    ("process", name, "aliases"), f"alias {alias!r} is already an alias of process {other!r}"
                )


def parse(text: str, path: str = "<string>") -> Settings:
    """Parse and validate the text of a `logcast.toml`.

    `path` names the file in error messages; relative paths in the file are relative to
    its folder (to the current directory for `"<string>"`, and `Settings.path` is None).
    """
    reader = Reader(text, path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise decode_error(exc, reader.path, reader.locator) from None
    real_path = None if path == "<string>" else Path(path)
    base = real_path.absolute().parent if real_path else Path.cwd()
    reader.keys(raw, (), _TOP_KEYS)
    server = _server(reader, reader.table(raw.get("server", {}), ("server",)))
    storage = _storage(reader, reader.table(raw.get("storage", {}), ("storage",)), base)
    processes = {
        name: _process(reader, name, value, base)
        for name, value in reader.table(raw.get("process", {}), ("process",)).items()
    }
    _check_aliases(reader, processes)
    check_dependencies(reader, processes)
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
