"""Dashboard sessions: a random id per login, a deadline, and an end at logout.

The id is random, never derived from the token: a copied cookie stops working at its
deadline or at logout, and tells nothing about the token or other sessions.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

CAPACITY = 1024
ID_BYTES = 32  # 256 random bits, 43 characters of URL-safe base64


def _key(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()


class Sessions:
    """Live sessions by id, each with its deadline on `clock`.

    In this process's memory: a restart ends every session, and behind several
    `serve --redis` replicas a session is known only to the replica that created it (the
    bearer token works everywhere). Past `capacity` a login evicts the oldest session.
    Only a hash of each id is kept, so a lookup's timing says nothing about the ids.
    """

    def __init__(self, *, capacity: int = CAPACITY, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._clock = clock
        self._deadlines: dict[bytes, float] = {}  # creation order: the first is the oldest

    def __len__(self) -> int:
        self._expire()
        return len(self._deadlines)

    def create(self, ttl: float) -> str:
        """A new session valid for `ttl` seconds; returns its id."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._expire()
        while len(self._deadlines) >= self.capacity:
            del self._deadlines[next(iter(self._deadlines))]
        session_id = secrets.token_urlsafe(ID_BYTES)
        self._deadlines[_key(session_id)] = self._clock() + ttl
        return session_id

    def valid(self, session_id: str) -> bool:
        """True while the session exists and its deadline has not passed."""
        if not session_id:
            return False
        key = _key(session_id)
        deadline = self._deadlines.get(key)
        if deadline is None:
            return False
        if self._clock() >= deadline:
            del self._deadlines[key]
            return False
        return True

    def end(self, session_id: str) -> bool:
        """End a session (logout); False when it did not exist or had expired."""
        if not session_id:
            return False
        deadline = self._deadlines.pop(_key(session_id), None)
        return deadline is not None and self._clock() < deadline

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, deadline in self._deadlines.items() if deadline <= now]:
            del self._deadlines[key]
