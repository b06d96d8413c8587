"""docs/architecture.md names the tests that guard each promise: they must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_the_architecture_page_names_exists() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", page)
    assert len(named) >= 10
    missing = []
    for path, test in named:
        source = ROOT / path
        if not source.is_file():
            missing.append(path)
        elif test and not re.search(rf"^(async )?def {test}\(", source.read_text(encoding="utf-8"), re.M):
            missing.append(f"{path}::{test}")
    assert not missing, f"docs/architecture.md names tests that do not exist: {missing}"


def test_every_module_the_architecture_page_names_exists() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    src = ROOT / "src" / "logcast"
    named = set(re.findall(r"`((?:hub|capture|store|supervise|web|cli|client)/[\w/]+\.py)`", page))
    hub_table = page.split("### Inside the hub", 1)[1].split("##", 1)[0]
    named |= {f"hub/{m}" for m in re.findall(r"^\| `(\w+\.py)` \|", hub_table, re.M)}
    missing = sorted(p for p in named if not (src / p).is_file())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
