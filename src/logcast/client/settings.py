"""Where the server is and which token to send: explicit value, environment, `./logcast.toml`.

URL: the explicit argument, then `$LOGCAST_URL`, then the `[server]` host and port of
`./logcast.toml`, then `http://127.0.0.1:8080`. Token: the explicit argument, then
`$LOGCAST_TOKEN`, then `server.token` of `./logcast.toml`.

The configuration file is only read when something is still missing, so a broken
`logcast.toml` does not get in the way of `--url U --token T`. A server bound to every
interface (`0.0.0.0`, `::`) is reached over loopback.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from logcast.errors import ClientError
from logcast.secrets import mask_text

DEFAULT_URL = "http://127.0.0.1:8080"
CONFIG_NAME = "logcast.toml"

_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True, slots=True)
class Settings:
    url: str
    token: str | None


def normalize_url(url: str) -> str:
    """`localhost:8080/` → `http://localhost:8080`. Raises ClientError on an empty URL or
    one that is no http(s) URL of a host (`http://host:abc`, `http://[::1`)."""
    url = url.strip()
    if not url:
        raise ClientError("empty server URL")
    if "://" not in url:
        url = "http://" + url
    url = url.rstrip("/")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ClientError(f"invalid server URL {mask_text(url)!r}: {mask_text(str(exc))}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ClientError(
            f"invalid server URL {mask_text(url)!r}: it must be http:// or https:// and name a host"
        )
    return url


def _server_table(config: Path) -> dict[str, Any] | None:
    """The `[server]` table of the file, None when there is no file."""
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClientError(f"cannot read {config}: {exc}") from None
    server = data.get("server", {})
    if not isinstance(server, dict):
        raise ClientError(f"{config}: [server] must be a table")
    return server


def _url_from_server(server: Mapping[str, Any], config: Path) -> str:
    host = server.get("host", "127.0.0.1")
    port = server.get("port", 8080)
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
        raise ClientError(f"{config}: server.host must be a string and server.port an integer")
    host = _ANY_ADDRESS.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


class _ConfigFile:
    """`./logcast.toml`, read at most once and only if asked."""

    def __init__(self, path: Path):
        self.path = path
        self._server: dict[str, Any] | None = None
        self._loaded = False

    def server(self) -> dict[str, Any] | None:
        if not self._loaded:
            self._server, self._loaded = _server_table(self.path), True
        return self._server


def _config(cwd: Path | None) -> _ConfigFile:
    return _ConfigFile((Path.cwd() if cwd is None else cwd) / CONFIG_NAME)


def _resolve_url(url: str | None, env: Mapping[str, str], config: _ConfigFile) -> str:
    if url:
        return normalize_url(url)
    if env.get("LOGCAST_URL"):
        return normalize_url(env["LOGCAST_URL"])
    server = config.server()
    return _url_from_server(server, config.path) if server is not None else DEFAULT_URL


def _resolve_token(token: str | None, env: Mapping[str, str], config: _ConfigFile) -> str | None:
    if token:
        return token
    if env.get("LOGCAST_TOKEN"):
        return env["LOGCAST_TOKEN"]
    server = config.server()
    value = server.get("token") if server is not None else None
    if value is not None and not isinstance(value, str):
        raise ClientError(f"{config.path}: server.token must be a string")
    return value or None


def resolve_url(
    url: str | None = None, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> str:
    """The server URL. Raises ClientError if `logcast.toml` is needed and unreadable."""
    return _resolve_url(url, os.environ if env is None else env, _config(cwd))


def resolve_token(
    token: str | None = None, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> str | None:
    """The token, None when there is none. Raises ClientError like `resolve_url`."""
    return _resolve_token(token, os.environ if env is None else env, _config(cwd))


def resolve(
    url: str | None = None,
    token: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Both at once, reading `logcast.toml` at most once."""
    env = os.environ if env is None else env
    config = _config(cwd)
    return Settings(_resolve_url(url, env, config), _resolve_token(token, env, config))
