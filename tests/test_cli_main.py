"""The `logcast` command imports only the module of the command it runs: `logcast tail`
must not pay for the server's and the monitor's imports at every start."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
sys.argv = ["logcast", *sys.argv[1:]]
from logcast.cli.main import main
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in ("logcast.cli.serve", "logcast.cli.monitor", "fastapi", "textual") if m in sys.modules)
print("HEAVY", ",".join(heavy), file=sys.stderr)
"""


def heavy_imports(*args: str) -> tuple[str, str]:
    run = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    line = next(ln for ln in run.stderr.splitlines() if ln.startswith("HEAVY"))
    return line.removeprefix("HEAVY").strip(), run.stdout


@pytest.mark.parametrize("command", ["tail", "ps", "start"])
def test_a_client_command_does_not_import_the_server_or_the_monitor(command: str) -> None:
    heavy, out = heavy_imports(command, "--help")
    assert heavy == ""
    assert f"logcast {command}" in out


def test_the_overview_and_an_unknown_command_still_see_every_command() -> None:
    _, out = heavy_imports("--help")
    for command in ("serve", "run", "agent", "ps", "start", "stop", "restart", "tail", "monitor"):
        assert command in out
    heavy, _ = heavy_imports("bogus")
    assert "logcast.cli.serve" in heavy
