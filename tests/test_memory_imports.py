"""What `logcast serve` imports on a host that is no replica (issue #14: every module
imported is resident for the server's life)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "packages",
    [
        ("redis", "logcast.cluster"),  # until it is asked to be a replica (--redis)
        ("httpx", "httpcore"),  # until a process has an HTTP readiness probe
    ],
)
def test_serve_imports_only_what_its_configuration_needs(packages: tuple[str, ...]) -> None:
    code = (
        "import sys, logcast.cli.serve, logcast.engine, logcast.web.app; "
        f"print(sorted(m for m in sys.modules if m in {packages!r} or m.startswith({tuple(p + '.' for p in packages)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
