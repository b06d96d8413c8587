"""The rooms import one way, as docs/architecture.md draws them (capture → hub → store,
composed by the engine, served by web; client → cli; `types` shared by all).
Read from the source, so a new import against the grain fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "logcast"

# room -> rooms it must never import (directly)
FORBIDDEN: dict[str, set[str]] = {
    "types": {"*"},
    "models": {"*"},
    "samples": {"*"},  # reading model servers' lines: plain functions over text
    "errors": {"*"},
    "ansi": {"*"},  # escape sequences in log text: searched (query), served (web), printed (cli)
    "capture": {"hub", "store", "web", "supervise", "engine", "client", "cli", "config"},
    "query": {"hub", "store", "web", "supervise", "engine", "client", "cli", "capture"},
    "store": {"hub", "web", "supervise", "engine", "client", "cli", "capture"},
    "hub": {"web", "supervise", "engine", "client", "cli", "capture"},
    "supervise": {"hub", "store", "web", "engine", "client", "cli", "cluster"},
    "config": {"hub", "store", "web", "supervise", "engine", "client", "cli", "capture"},
    "engine": {"web", "client", "cli", "cluster"},
    "web": {"supervise", "client", "cli", "cluster"},
    "cluster": {"web", "client", "cli", "supervise", "capture"},
    "client": {"hub", "store", "web", "supervise", "engine", "capture", "cli"},
    "cli": {"hub", "store", "supervise"},  # serve starts an engine and the web; nothing reaches further in
}
# schemas, the API's shapes, is a leaf that any room may import: it imports no room but types and errors
FORBIDDEN["schemas"] = {
    path.name.removesuffix(".py")
    for path in SRC.iterdir()
    if (path.is_dir() or path.suffix == ".py") and not path.name.startswith("_")
} - {"types", "errors", "schemas"}


def _room(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    rooms: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        rooms |= {name.split(".")[1] for name in names if name.startswith("logcast.")}
    return rooms


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_run_one_way(path: Path) -> None:
    room = _room(path)
    forbidden = FORBIDDEN.get(room, set())
    imported = _imports(path) - {room}
    wrong = imported if "*" in forbidden else imported & forbidden
    assert not wrong, f"{path.relative_to(SRC)} ({room}) imports {sorted(wrong)}"


def test_the_rule_catches_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from logcast.supervise.supervisor import Supervisor\nimport logcast.hub\n")
    assert _imports(module) == {"supervise", "hub"}
