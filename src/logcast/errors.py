"""The few exceptions logcast raises. Libraries raise; the app decides what to log."""

from __future__ import annotations


class LogcastError(Exception):
    """Base of every error logcast raises on purpose."""


class ConfigError(LogcastError):
    """The configuration is invalid; the message names the file, line and key."""

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, key: str | None = None
    ):
        self.path = path
        self.line = line
        self.key = key
        where = ""
        if path:
            where = path + (f":{line}" if line else "") + ": "
        super().__init__(where + (f"{key}: " if key else "") + message)


class UnknownProcess(LogcastError):
    """No process of that name is configured."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown process {name!r}")


class InvalidTransition(LogcastError):
    """A process state change that the transition table does not allow."""


class StoreError(LogcastError):
    """The history store failed (disk full, database locked, Redis unreachable).

    `unsure`: a write whose outcome is unknown (the connection dropped after the request
    went out): the store may hold it anyway."""

    def __init__(self, message: str, *, unsure: bool = False) -> None:
        super().__init__(message)
        self.unsure = unsure


class FencedOff(StoreError):
    """Several hosts: this agent no longer holds what it writes for. Another agent took its
    process names or its host id while it was away (paused, cut off from Redis past its
    heartbeat), and nothing of this one's is written over theirs."""


class ControlTimeout(LogcastError):
    """The host that runs a process did not act on a command in time (several hosts)."""


class ControlRefused(LogcastError):
    """The host that runs a process refused or failed a command; the message says why."""


class ClientError(LogcastError):
    """The server answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None):
        self.status = status
        super().__init__(message)
