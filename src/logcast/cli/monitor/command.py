"""`logcast monitor [NAME…]`: the command that starts the Textual monitor."""

from __future__ import annotations

from typing import Annotated

import typer

from logcast.cli.monitor.app import MonitorApp
from logcast.cli.options import TokenOption, UrlOption
from logcast.errors import ClientError


def monitor(
    names: Annotated[
        list[str] | None, typer.Argument(metavar="[NAME]...", help="Processes to show (all).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Interactive terminal monitor: states, live logs, stats, start/stop/restart/clear."""
    try:
        app = MonitorApp(names, url, token)
    except ClientError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    app.run()


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
