"""History stores: the `Store` protocol and its two engines.

`open_store` picks the engine from the configuration. It only builds the store;
the caller awaits `store.open()` before use and `store.close()` at shutdown (both are
coroutines, which a plain factory cannot await).
"""

from __future__ import annotations

from pathlib import Path

from logcast.store.base import ProcessMeta, Store, StoreStats
from logcast.store.redis_streams import RedisStore
from logcast.store.sqlite import SqliteStore

__all__ = ["ENGINES", "ProcessMeta", "RedisStore", "SqliteStore", "Store", "StoreStats", "open_store"]

ENGINES = ("sqlite", "redis")
SQLITE_FILE = "history.sqlite3"


def open_store(engine: str, *, dir: Path, redis_url: str | None, retain_lines: int) -> Store:
    """Build the store named by `engine`: `sqlite` keeps `dir / "history.sqlite3"`
    (creating `dir`), `redis` needs `redis_url`. Raises ValueError for anything else."""
    if engine == "sqlite":
        dir.mkdir(parents=True, exist_ok=True)
        return SqliteStore(dir / SQLITE_FILE, retain_lines=retain_lines)
    if engine == "redis":
        if not redis_url:
            raise ValueError("the redis store needs a redis URL")
        return RedisStore(redis_url, retain_lines=retain_lines)
    raise ValueError(f"unknown store engine {engine!r}; valid engines: {', '.join(ENGINES)}")
