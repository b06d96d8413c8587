"""`logcast.toml` → typed, validated, frozen settings, read once at start. Every mistake is refused
then, naming the file, the line and the dotted key: a supervisor that starts with half a
configuration is worse than one that does not start."""

from logcast.config.depends import start_order
from logcast.config.loader import load, parse, parse_signal
from logcast.config.settings import (
    NAME_RE,
    Condition,
    ProcessSettings,
    ReadySettings,
    RestartPolicy,
    ServerSettings,
    Settings,
    StorageSettings,
    is_loopback,
    name_for,
    single_process,
)

__all__ = [
    "NAME_RE",
    "Condition",
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
    "start_order",
]
