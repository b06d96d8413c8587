"""The settings every part of logcast reads, with their defaults.

Frozen dataclasses: every other room reads them, none changes them.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from logcast.errors import ConfigError

NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""A process name: it is used in URLs, so only these characters, 1 to 64 of them."""

TOKEN_ENV = "LOGCAST_TOKEN"
MiB = 1024 * 1024


class RestartPolicy(enum.StrEnum):
    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class Condition(enum.StrEnum):
    """What a process waits for in a dependency (`depends_on = { db = "ready" }`)."""

    STARTED = "started"  # its child was spawned (running or ready)
    READY = "ready"  # its readiness probe passed (it needs one)
    EXITED_OK = "exited_ok"  # its last run exited with code 0 (a migration, a download)


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def env_token() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


def no_token_message(host: str) -> str:
    return f"refusing to bind {host} without a token: set server.token or {TOKEN_ENV}"


@dataclass(frozen=True)
class ServerSettings:
    """Checks itself in `__post_init__` too, so that a CLI override built with
    `dataclasses.replace(server, host="0.0.0.0")` cannot bypass "no public bind without a token"."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None  # None: falls back to $LOGCAST_TOKEN
    allowed_hosts: tuple[str, ...] = ()  # extra Host header names accepted (reverse proxies)
    max_streams: int = 1000  # open SSE/WebSocket log streams at once; more are refused with 503
    session_ttl: float = 12 * 3600.0  # seconds a dashboard login stays valid

    def __post_init__(self) -> None:
        if self.token is None:
            object.__setattr__(self, "token", env_token())
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} out of range 1-65535", key="server.port")
        if not self.token and not is_loopback(self.host):
            raise ConfigError(no_token_message(self.host), key="server.host")


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
    # processes this one starts after, each once it reached its condition (config order)
    depends_on: Mapping[str, Condition] = field(default_factory=lambda: MappingProxyType({}))
    restart_with: bool = False  # restart this process when a dependency restarts
    parse: str | None = None  # which model server's output to read: llamacpp, vllm, sglang, none; None: guess


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    processes: dict[str, ProcessSettings] = field(default_factory=dict)  # in config order
    path: Path | None = None  # the file it was read from


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
