"""The `logcast` command: one typer app, each command group in its own module.

Exit codes: 0 ok, 1 runtime failure, 2 usage error.
"""

from __future__ import annotations

import importlib
import sys

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
# Which module registers each command: a run of one command imports only its module (the
# server's and the monitor's pull in FastAPI, uvicorn and Textual, about 0.9 s of CPU at
# every `logcast tail`). `logcast --help` and anything unknown import them all.
_MODULE_OF = {
    "serve": "serve",
    "run": "serve",
    "agent": "agent",
    "ps": "control",
    "start": "control",
    "stop": "control",
    "restart": "control",
    "tail": "tail",
    "monitor": "monitor",
}


@app.callback()
def _group() -> None:
    """Run processes and watch their logs live."""  # a group even with one command registered


def _modules(argv: list[str]) -> tuple[str, ...]:
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    module = _MODULE_OF.get(command) if command is not None else None
    return (module,) if module is not None else _COMMAND_MODULES


def _register(argv: list[str]) -> None:
    for name in _modules(argv):
        try:
            module = importlib.import_module(f"logcast.cli.{name}")
        except ModuleNotFoundError as exc:  # a command still being built in this tree
            if exc.name != f"logcast.cli.{name}":
                raise
            continue
        module.register(app)


def main() -> None:
    _register(sys.argv[1:])
    app()
