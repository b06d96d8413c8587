"""Options shared by the commands that talk to a server (ps/start/stop/restart, tail, monitor)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from logcast.client.settings import normalize_url
from logcast.errors import ClientError


def _checked_url(value: str | None) -> str | None:
    """A URL given with --url or $LOGCAST_URL that is none (`http://host:abc`) is a usage
    error (exit 2) saying so, not a traceback."""
    given, where = (value, "--url") if value is not None else (os.environ.get("LOGCAST_URL"), "$LOGCAST_URL")
    if given:
        try:
            normalize_url(given)
        except ClientError as exc:
            raise typer.BadParameter(str(exc) if value is not None else f"{where}: {exc}") from None
    return value


UrlOption = Annotated[
    str | None,
    typer.Option(
        help="Server URL (default: $LOGCAST_URL, then ./logcast.toml, then http://127.0.0.1:8080).",
        callback=_checked_url,
    ),
]
TokenOption = Annotated[
    str | None, typer.Option(help="API token (default: $LOGCAST_TOKEN, then ./logcast.toml).")
]

__all__ = ["TokenOption", "UrlOption"]
