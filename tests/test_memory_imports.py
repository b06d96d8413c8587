"""What `logcast serve` imports on a host that is no replica (issue #14: every module
imported is resident for the server's life)."""

from __future__ import annotations

import subprocess
import sys


def test_serve_imports_no_redis_until_asked_to_be_a_replica() -> None:
    code = (
        "import sys, logcast.cli.serve, logcast.engine, logcast.web.app; "
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith(('redis.', 'logcast.cluster'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_serve_imports_no_http_client_until_a_process_has_an_http_probe() -> None:
    code = (
        "import sys, logcast.cli.serve, logcast.engine, logcast.web.app; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'httpcore')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
