"""The store interface: one protocol, two engines (SQLite embedded, Redis Streams).

Every method that takes a process name works for a process the store has never seen
(empty answers, seq 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from logcast.query import Query
from logcast.types import LogRecord


@dataclass(frozen=True, slots=True)
class ProcessMeta:
    """What the store knows of one process's whole life.

    `last_seq` and `reserved` outlive `clear` and restarts, so that numbering resumes
    above every seq ever handed out, stored or not.
    """

    last_seq: int = 0  # highest seq ever written, cleared or not
    first_seq: int = 0  # lowest seq still retained (0 when nothing is)
    lines: int = 0  # output lines ever written (status records not counted)
    bytes: int = 0  # UTF-8 bytes of those lines
    last_run: int = 0  # highest run ever written
    reserved: int = 0  # highest seq reserved for handing out (>= every seq ever handed out)


@dataclass(slots=True)
class StoreStats:
    written: int = 0  # records written since open
    errors: int = 0  # failed write attempts since open
    last_error: str | None = None


class Store(Protocol):
    stats: StoreStats
    # Whether a commit survives a power cut; when not, the hub shows a line only once the
    # store's synced reservation covers its seq (a store without the attribute: durable).
    commits_durable: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def write(self, records: Sequence[LogRecord]) -> None:
        """Persist a batch (any mix of processes, seq ascending per process) and apply
        retention. Called from the hub's one writer thread only, never on the event
        loop: it may block on disk or network. Raises StoreError on failure; the caller
        retries the same batch later. Writing a seq that is already stored is a no-op
        (so a retried batch never duplicates)."""
        ...

    def idle(self) -> None:
        """The writer has had nothing to write for a while: a moment for upkeep put off
        while it was busy (SQLite checkpoints its WAL). Called from the writer thread only;
        never raises for that upkeep, whose data is already stored."""
        ...

    def stored_upto(self, process: str) -> int:
        """The highest seq of `process` the store holds (0: none). Called from the writer
        thread after a failed write, whose outcome can be unknown: a server may have
        applied it and then lost the connection before answering. Raises StoreError."""
        ...

    async def read(
        self,
        process: str,
        *,
        after: int = 0,
        limit: int = 1000,
        query: Query | None = None,
        upto: int | None = None,
        search: bool = False,
    ) -> list[LogRecord]:
        """Records with after < seq <= upto (no upper bound when None) that match
        `query`, oldest first, at most `limit`. A filtered read looks at no record
        outside those bounds: that is how callers bound the work of a search. `search`:
        the read is part of a search even if `query` filters nothing here (the caller
        applies a regex itself): it waits its turn with the searches, not with pages."""
        ...

    async def tail(
        self,
        process: str,
        n: int,
        *,
        before: int | None = None,
        query: Query | None = None,
        after: int | None = None,
        search: bool = False,
    ) -> list[LogRecord]:
        """The last `n` matching records with after < seq <= before (no bound when
        None), oldest first. `search` as for `read`."""
        ...

    def reserve(self, marks: Mapping[str, int]) -> None:
        """Durably record `marks`: per process, the highest seq that may be handed out
        (`ProcessMeta.reserved`); called from the hub's reserver thread, never on the
        event loop. Must work when records cannot be written (a full disk). Raises
        StoreError."""
        ...

    async def meta(self, process: str) -> ProcessMeta: ...

    async def processes(self) -> list[str]:
        """Every process name the store holds anything for."""
        ...

    async def clear(self, process: str, upto: int) -> None:
        """Remove the records of `process` with seq <= upto; `meta().last_seq` stays."""
        ...
