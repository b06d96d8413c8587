"""History stores: the `Store` protocol and its two engines (SQLite, Redis Streams)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logcast.errors import StoreError
from logcast.store.base import ProcessMeta, Store, StoreStats
from logcast.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from logcast.store.redis_streams import Fence, RedisStore

__all__ = ["ENGINES", "ProcessMeta", "RedisStore", "SqliteStore", "Store", "StoreStats", "open_store"]

ENGINES = ("sqlite", "redis")
SQLITE_FILE = "history.sqlite3"


def redis_seq_file(host: str) -> str:
    """The name of the file in the storage folder that keeps the reservations of the
    processes `host` writes to Redis (one per host id: two agents may share a folder)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", host)[:48]
    return f"redis-{slug}-{hashlib.sha256(host.encode()).hexdigest()[:8]}.seq"


def open_store(
    engine: str,
    *,
    dir: Path,
    redis_url: str | None,
    retain_lines: int,
    host: str = "",
    fence: Fence | None = None,
) -> Store:
    """Build the store named by `engine`: `sqlite` keeps `dir / "history.sqlite3"`
    (creating `dir`), `redis` needs `redis_url`, keeps the reservations of `host` in `dir`
    too (`redis_seq_file`) and takes an agent's `fence`. Raises ValueError for anything else,
    StoreError for a folder that cannot be made.

    It only builds the store: the caller awaits `store.open()` before use and
    `store.close()` at shutdown."""
    if engine == "sqlite":
        try:
            dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"[storage] dir {dir}: cannot make it a folder: {exc.strerror or exc}") from exc
        return SqliteStore(dir / SQLITE_FILE, retain_lines=retain_lines)
    if engine == "redis":
        if not redis_url:
            raise ValueError("the redis store needs a redis URL")
        from logcast.store.redis_streams import RedisStore

        return RedisStore(
            redis_url, retain_lines=retain_lines, fence=fence, local_seq=dir / redis_seq_file(host)
        )
    raise ValueError(f"unknown store engine {engine!r}; valid engines: {', '.join(ENGINES)}")


def __getattr__(name: str) -> Any:
    # redis-py is imported on first use only: a logcast that keeps its history in SQLite
    # should not pay its start-up time and memory.
    if name == "RedisStore":
        from logcast.store.redis_streams import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
