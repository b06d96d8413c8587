"""Options shared by the commands that talk to a server (ps/start/stop/restart, tail, monitor)."""

from __future__ import annotations

from typing import Annotated

import typer

UrlOption = Annotated[
    str | None,
    typer.Option(help="Server URL (default: $LOGCAST_URL, then ./logcast.toml, then http://127.0.0.1:8080)."),
]
TokenOption = Annotated[
    str | None, typer.Option(help="API token (default: $LOGCAST_TOKEN, then ./logcast.toml).")
]

__all__ = ["TokenOption", "UrlOption"]
