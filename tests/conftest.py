"""Fixtures shared by every test: free ports, a real redis-server, child scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.util import free_port, stop_group, wait_for, wait_port

__all__ = ["free_port", "stop_group", "wait_for", "wait_port"]

PYTHON = sys.executable


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, stopped by its pid at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: apt-get install redis-server")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_group(proc)


@pytest.fixture
def write_script(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a small Python child program and return the command that runs it."""

    def make(source: str, name: str = "child.py") -> list[str]:
        path = tmp_path / name
        path.write_text(source)
        return [PYTHON, "-u", str(path)]

    return make
