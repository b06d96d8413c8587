"""The `logcast` command: one typer app, each command group in its own module.

Exit codes: 0 ok, 1 runtime failure, 2 usage error.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="logcast",
    help="Run processes and watch their logs live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app)`; kept as names so a broken optional module
# (the Textual monitor) shows its error only when its command runs.
_COMMAND_MODULES = ("serve", "agent", "control", "tail", "monitor")

for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"logcast.cli.{_name}")
    except ModuleNotFoundError as exc:  # a command still being built in this tree
        if exc.name != f"logcast.cli.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    app()
