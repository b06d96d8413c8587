"""History in Redis Streams, shared by several hosts.

The stream id is the seq (`0-{seq}`), so `XRANGE`, `XREVRANGE`, `XTRIM MINID` and
`XREAD BLOCK` are reads after a seq, tails, clears and following from any seq.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import orjson
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import RedisError, ResponseError, WatchError
from redis.retry import Retry

from logcast.errors import FencedOff, StoreError
from logcast.jsonobj import json_object
from logcast.loop import raise_if_cancelled
from logcast.query import Query
from logcast.rarely import Rarely
from logcast.secrets import mask_text
from logcast.store.base import ProcessMeta, StoreStats
from logcast.store.reserve import ReservationError, Reservations
from logcast.types import MAX_SEQ, Level, LogRecord, ProcessState, Stream, line_bytes, whole_number

__all__ = ["Fence", "NewEntries", "RedisStore", "check_fence", "fenced"]

log = logging.getLogger(__name__)

_SCAN_CHUNK = 2_000  # entries per XRANGE when a filter may reject most of them
_MEND_LOOK = 256  # entries at the top of a stream looked at for another writer's (`stored_upto`)
_MEND_ROUNDS = 64  # ...this many times at most
_CONNECT_TIMEOUT = 5.0
_SOCKET_TIMEOUT = 30.0  # above any XREAD BLOCK this module issues

# Who may write (several hosts): for the processes a write touches, keys and the epoch of
# the writer (`cluster.redis`). A key holding a higher epoch is another agent's that took
# the host id or a name from this one while it was away: `check_fence` refuses the write.
Fence = Callable[[Iterable[str]], dict[str, int]]
EPOCH_MAX = 2**53 - 1  # the highest epoch: exact in the doubles of Redis's Lua
FENCE_ATTEMPTS = 3  # a fence key changed during an idempotent write (WATCH): looked at again this often

# A stream entry: its id and one field `r`, the record as the wire protocol's dict in
# JSON, so that every host decodes it without knowing this module's layout.
Entry = tuple[bytes, dict[bytes, bytes]]


def _encode(record: LogRecord) -> bytes:
    fields = record.as_dict()
    try:
        return orjson.dumps(fields)
    except orjson.JSONEncodeError:  # lone surrogates: keep the line, replace what cannot be encoded
        fields["message"] = record.message.encode("utf-8", "replace").decode("utf-8")
        return orjson.dumps(fields)


def _id_seq(entry_id: bytes) -> int | None:
    """The seq an entry's id names (`0-{seq}`), or None for an id logcast does not write."""
    ms, dash, seq = entry_id.partition(b"-")
    if ms != b"0" or not dash or not seq.isdigit() or len(seq) > 19:
        return None
    value = int(seq)
    return value if 0 < value <= MAX_SEQ else None


def _decode(entry: Entry, process: str) -> LogRecord | None:
    """The record of a stream entry of `process`, or None when it is not one: another
    writer than logcast (a newer version, a peer gone wrong, a hand in `redis-cli`) may
    have put anything there. Its seq must be its id's, its process the stream's, and each
    field of the type the wire protocol gives it."""
    seq = _id_seq(entry[0])
    raw = entry[1].get(b"r")
    if seq is None or raw is None:
        return None
    d = json_object(raw)
    if d is None:
        return None
    message, timestamp, run, level, stream, state = (
        d.get(key) for key in ("message", "timestamp", "run", "level", "stream", "state")
    )
    if (
        d.get("seq") != seq
        or d.get("process") != process
        or type(message) is not str
        or not isinstance(timestamp, float | int)
        or isinstance(timestamp, bool)
        or not math.isfinite(timestamp)
        or type(run) is not int
        or not 0 <= run <= MAX_SEQ
        or type(level) is not str
        or type(stream) is not str
        or not (state is None or type(state) is str)
    ):
        return None
    try:
        return LogRecord(
            seq,
            float(timestamp),
            Level(level),
            message,
            Stream(stream),
            process,
            run,
            d.get("partial") is True,
            ProcessState(state) if state else None,
        )
    except ValueError:  # a level, stream or state this version does not know
        return None


def _int(value: bytes | str | None, what: str) -> int:
    """A counter of a meta hash; StoreError if another writer put something else there."""
    try:
        number = int(value or 0)
    except ValueError:
        raise StoreError(f"redis: {what} is not a number") from None
    if not 0 <= number <= MAX_SEQ:
        raise StoreError(f"redis: {what} is out of range")
    return number


def check_fence(fence: Mapping[str, int], held: Sequence[bytes | str | None]) -> None:
    """Raise FencedOff if a key of `fence` holds a higher epoch than its own (`held`, from
    MGET). Missing or lower is Redis having lost it, and what is no epoch (digits up to
    EPOCH_MAX) no agent wrote: the writer's heartbeat puts its own back, and writing
    meanwhile takes nothing from anyone (as `cluster.redis` reads them)."""
    for (key, mine), value in zip(fence.items(), held, strict=True):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        epoch = whole_number(text) if text is not None and len(text) <= 16 else None
        if epoch is not None and mine < epoch <= EPOCH_MAX:
            raise FencedOff(
                f"{key} holds {text!r}, above this agent's epoch {mine}: another agent took it,"
                " nothing is written over its work"
            )


async def fenced(client: aioredis.Redis, fence: Mapping[str, int], queue: Callable[[Any], None]) -> None:
    """The commands `queue` puts in a pipeline (idempotent ones: they may be sent again), as
    one MULTI/EXEC, applied only while `fence` holds (`check_fence`, WATCHed: a change
    between the look and EXEC is seen); FencedOff otherwise. (`RedisStore._transaction` is
    the same for the writer's thread.)"""
    for _ in range(FENCE_ATTEMPTS):
        pipe: Any  # redis-py's WATCH and MULTI are untyped
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch(*fence)
            check_fence(fence, await pipe.mget(list(fence)))
            pipe.multi()
            queue(pipe)
            try:
                await pipe.execute()
                return
            except WatchError:
                continue
    raise FencedOff(f"the keys of {sorted(fence)} kept changing: another agent is taking them")


class NewEntries(NamedTuple):
    """What `RedisStore.read_new` read of one process: its records (an entry that is not
    one is skipped), the id of the last entry (where to read on from, past what was
    skipped), the seq that id names (None if it names none: not logcast's) and the
    entries' mean size in bytes."""

    process: str
    records: list[LogRecord]
    last_id: str
    upto: int | None
    entry_bytes: int


class RedisStore:
    """History in Redis Streams: `{prefix}:log:{process}` per process, its meta in the hash
    `{prefix}:meta:{process}` (`last_seq` survives `XTRIM`) and the names in the set
    `{prefix}:processes` (a process is listed even when its history was cleared).

    Retention is `XADD … MAXLEN ~`: a little more than `retain_lines` may be kept, never
    less. Filters are applied client-side with `Query.matches` (Redis cannot search inside
    entries), reading in chunks, so memory stays bounded however selective the filter is.
    """

    commits_durable = True  # as far as the numbering goes: the reservation lives in Redis too

    def __init__(
        self,
        url: str,
        *,
        retain_lines: int = 5_000_000,
        prefix: str = "logcast",
        fence: Fence | None = None,
        local_seq: Path | None = None,
    ) -> None:
        """`fence`: every write (records, reservations, clears) is applied only while the
        fence holds (`FencedOff` otherwise: a failed write, nothing applied).

        `local_seq`: a file of this host's (`store.reserve.Reservations`) that keeps the
        reservations too, so that numbering resumes above every seq handed out even after
        Redis lost its data (a restart from an old snapshot, or none)."""
        if retain_lines < 1:
            raise ValueError("retain_lines must be at least 1")
        self.url = url
        self.shown_url = mask_text(url)  # in messages: no password
        self.retain_lines = retain_lines
        self.prefix = prefix
        self.stats = StoreStats()
        self._closed = False
        self._write_lock = threading.Lock()
        self._sync: redis.Redis | None = None
        self._async: aioredis.Redis | None = None
        self._known: dict[str, tuple[int, int]] = {}  # process -> (last_seq, last_run) in Redis
        self.skipped = Rarely()  # entries read that were not logcast's records
        self._fence = fence
        self._local = Reservations(local_seq) if local_seq is not None else None

    # -- keys ------------------------------------------------------------------------------

    def stream_key(self, process: str) -> str:
        return f"{self.prefix}:log:{process}"

    def meta_key(self, process: str) -> str:
        return f"{self.prefix}:meta:{process}"

    @property
    def processes_key(self) -> str:
        return f"{self.prefix}:processes"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Check that the server answers, so that a wrong URL fails at start."""
        try:
            await self._client().ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis at {self.shown_url}: {exc}") from exc
        if self._local is not None:
            try:
                await asyncio.to_thread(self._open_local, self._local)
            except OSError as exc:  # a folder this user may not write (an older deployment's)
                log.warning(
                    "cannot keep the reserved sequence numbers in %s (%s): after Redis loses its data,"
                    " numbering rests on what Redis kept; give [storage] dir a folder this user can write",
                    self._local.path,
                    exc,
                )
                self._local = None

    @staticmethod
    def _open_local(local: Reservations) -> None:
        local.path.parent.mkdir(parents=True, exist_ok=True)
        local.open()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._async is not None:
            client, self._async = self._async, None
            await client.aclose()
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        with self._write_lock:  # a batch in flight finishes first
            if self._sync is not None:
                self._sync.close()
                self._sync = None
            if self._local is not None:
                self._local.close()

    def _client(self) -> aioredis.Redis:
        if self._closed:
            raise StoreError("store is closed")
        if self._async is None:
            self._async = aioredis.Redis.from_url(
                self.url,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                socket_timeout=_SOCKET_TIMEOUT,
                retry=AsyncRetry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 2),
            )
        return self._async

    def _sync_client(self) -> redis.Redis:
        if self._sync is None:
            self._sync = redis.Redis.from_url(
                self.url,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                socket_timeout=_SOCKET_TIMEOUT,
                retry=Retry(NoBackoff(), 0),  # the hub retries whole batches (see `write`)
            )
        return self._sync

    # -- writing (the writer thread) -------------------------------------------------------

    def write(self, records: Sequence[LogRecord]) -> None:
        """Persist a batch atomically; see `Store.write`.

        The whole batch is one `MULTI`/`EXEC` of the `XADD`s and the meta updates, so a
        stream and its meta move together, and a failed batch left nothing behind: the hub
        counts as lost what it could not write, so a batch written in part would have its
        written part counted lost too. Redis refuses an `XADD` whose id is not above the
        top of the stream, so records at or below the last seq known per process are
        skipped; after a failure that knowledge is forgotten and asked of Redis again.
        """
        if not records:
            return
        with self._write_lock:
            if self._closed:
                raise StoreError("store is closed")
            try:
                client = self._sync_client()
                self._learn(client, records)
                written = self._write_chunk(client, records)
            except (FencedOff, RedisError, OSError) as exc:
                self._known.clear()  # ask Redis again next time
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, FencedOff):
                    raise  # refused whole, before anything was applied: sure
                log.debug("redis write of %d records failed: %s", len(records), exc)
                raise StoreError(  # the answer to EXEC may be what was lost, not the write
                    f"writing {len(records)} records to redis at {self.shown_url}: {exc}", unsure=True
                ) from exc
        self.stats.written += written

    def idle(self) -> None:
        """Nothing is put off: each write is whole when it returns."""

    def stored_upto(self, process: str) -> int:
        """The last seq Redis holds: a batch whose answer was lost may have been applied.
        Fenced, only while the fence holds: past it, that last seq may be another's.

        Asked after a failed write, it is also where the stream is mended, as no `XADD`
        of logcast's could go on otherwise: entries another writer put at its top (an
        `XADD *` by hand: ids above every `0-{seq}`) are removed and the stream's last id
        set back to logcast's last record; a meta `last_seq` above that record (a
        `MULTI`/`EXEC` that Redis applied in part: it does not roll back) is set back too,
        so that nothing unwritten is taken for written."""
        with self._write_lock:
            try:
                client = self._sync_client()
                for _ in range(_MEND_ROUNDS):
                    fence = self._fence([process]) if self._fence is not None else {}
                    pipe = client.pipeline(transaction=True)
                    if fence:
                        pipe.mget(list(fence))
                    pipe.hget(self.meta_key(process), "last_seq")
                    pipe.xrevrange(self.stream_key(process), count=_MEND_LOOK)
                    answers = pipe.execute()
                    if fence:
                        check_fence(fence, answers[0])
                    last_seq = int(cast(bytes | None, answers[-2]) or 0)
                    top = cast(list[Entry], answers[-1])
                    foreign = []
                    for entry in top:
                        if _decode(entry, process) is not None:
                            own = cast(int, _id_seq(entry[0]))
                            break
                        foreign.append(entry[0])
                    else:
                        own = None  # no record of ours among them (or the stream is empty)
                    if not foreign and (own is None or own >= last_seq):
                        return last_seq if own is None else own
                    # a window of nothing but another writer's: more may be below, where
                    # the last id cannot be set back yet
                    more = own is None and len(top) == _MEND_LOOK
                    self._mend(client, process, foreign, own, last_seq, set_id=not more)
            except (RedisError, OSError) as exc:
                raise StoreError(f"reading from redis at {self.shown_url}: {exc}") from exc
            self._known.pop(process, None)
        raise StoreError(
            f"redis at {self.shown_url}: the stream of {process} kept getting entries of another writer"
        )

    def _mend(
        self,
        client: redis.Redis,
        process: str,
        foreign: list[bytes],
        own: int | None,
        last_seq: int,
        *,
        set_id: bool = True,
    ) -> None:
        """Remove `foreign` entries from the top of a process's stream and set its last id
        and meta `last_seq` back to `own`, logcast's last record there (fenced). With no
        record of logcast's left in the stream (cleared, trimmed), the meta's `last_seq`
        is what it held (`_put_right` keeps it true when a batch is applied in part)."""
        key, meta = self.stream_key(process), self.meta_key(process)
        back_to = own if own is not None else last_seq
        meta_ahead = own is not None and own < last_seq  # a batch applied in part moved it

        def queue(pipe: Any) -> None:
            if foreign:
                pipe.xdel(key, *foreign)
                if set_id:
                    pipe.execute_command("XSETID", key, f"0-{back_to}")  # redis-py has no xsetid
            if meta_ahead:
                pipe.hset(meta, "last_seq", back_to)

        self._applied(client, [process], queue)
        self._known.pop(process, None)
        if foreign:
            log.warning(
                "redis: removed %d entries at the top of %s that logcast did not write (the first %s):"
                " its writes go on after seq %d",
                len(foreign),
                key,
                foreign[-1][:40].decode("ascii", "replace"),
                back_to,
            )
        if meta_ahead:
            log.warning(
                "redis: %s said last_seq %d, its stream ends at %d (a write applied in part): set back",
                meta,
                last_seq,
                back_to,
            )

    def reserve(self, marks: Mapping[str, int]) -> None:
        """A `reserved` field in each process's meta hash (Redis persists it as it persists
        the rest), and in the local file first where there is one."""
        if self._local is not None:
            try:
                self._local.set(marks)
            except ReservationError as exc:  # more names than its fixed size holds: Redis alone
                log.warning("%s; numbering after Redis loses its data rests on what Redis kept", exc)
                self._local.close()
                self._local = None
            except OSError as exc:
                raise StoreError(f"reserving sequence numbers in {self._local.path}: {exc}") from exc

        def queue(pipe: Any) -> None:
            for name, reserved_upto in marks.items():
                pipe.hset(self.meta_key(name), "reserved", reserved_upto)
                pipe.sadd(self.processes_key, name)

        try:
            self._applied(self._sync_client(), marks, queue)
        except (RedisError, OSError) as exc:
            raise StoreError(f"reserving sequence numbers in redis at {self.shown_url}: {exc}") from exc

    def _learn(self, client: redis.Redis, records: Sequence[LogRecord]) -> None:
        """Read last_seq and last_run of the processes this writer has not met yet."""
        unknown = list({record.process for record in records if record.process not in self._known})
        if not unknown:
            return
        pipe = client.pipeline(transaction=False)
        for name in unknown:
            pipe.hmget(self.meta_key(name), ["last_seq", "last_run"])
        for name, (last_seq, last_run) in zip(unknown, pipe.execute(), strict=True):
            self._known[name] = (int(last_seq or 0), int(last_run or 0))

    def _transaction(
        self, client: redis.Redis, processes: Iterable[str], queue: Callable[[Any], None]
    ) -> list[Any]:
        """The commands `queue` puts in a pipeline, as one MULTI/EXEC, applied only while the
        fence of `processes` holds (WATCHed: a change between the look and EXEC is seen).
        Their answers, an exception for each command Redis refused: it applies the others
        (a transaction is not rolled back), and the caller must look."""
        pipe: Any  # redis-py's WATCH and MULTI are untyped
        if self._fence is None:
            pipe = client.pipeline(transaction=True)
            queue(pipe)
            return cast(list[Any], pipe.execute(raise_on_error=False))
        fence = self._fence(processes)
        with client.pipeline(transaction=True) as pipe:
            pipe.watch(*fence)
            check_fence(fence, pipe.mget(list(fence)))
            pipe.multi()
            queue(pipe)
            # WatchError: a fence key changed before EXEC (the next write looks again), or
            # the connection failed while watching (redis-py says WatchError then too) and
            # EXEC may have been applied. Not sent again here (its HINCRBYs would count
            # twice): the caller's failure, unsure for a write.
            return cast(list[Any], pipe.execute(raise_on_error=False))

    def _applied(self, client: redis.Redis, processes: Iterable[str], queue: Callable[[Any], None]) -> None:
        """`_transaction`, raising the first refusal (nothing is left to put right)."""
        for answer in self._transaction(client, processes, queue):
            if isinstance(answer, Exception):
                raise answer

    def _write_chunk(self, client: redis.Redis, records: Sequence[LogRecord]) -> int:
        known = self._known
        touched: dict[str, list[int]] = {}  # process -> [last_seq, last_run, lines, bytes]
        adds: list[tuple[str, bytes, int]] = []  # stream key, record, seq
        sizes: list[tuple[str, int, int]] = []  # each add's process, and the line and bytes it counts
        before = {name: known[name] for name in {record.process for record in records}}
        count = 0
        for record in records:
            totals = touched.get(record.process)
            if totals is None:
                last_seq, last_run = known[record.process]
                totals = touched[record.process] = [last_seq, last_run, 0, 0]
            if record.seq <= totals[0]:
                continue  # written before: a retried batch
            totals[0] = record.seq
            if record.run > totals[1]:
                totals[1] = record.run
            line = record.stream is not Stream.SYSTEM
            size = line_bytes(record.message, record.partial) if line else 0
            totals[2] += line
            totals[3] += size
            adds.append((self.stream_key(record.process), _encode(record), record.seq))
            sizes.append((record.process, line, size))
            count += 1
        if not count and self._fence is None:
            return 0  # fenced, even a batch written before is looked at: its "before" may be another's

        def queue(pipe: Any) -> None:
            for key, encoded, seq in adds:
                pipe.xadd(key, {"r": encoded}, id=f"0-{seq}", maxlen=self.retain_lines, approximate=True)
            for name, (last_seq, last_run, lines, size) in touched.items():
                key = self.meta_key(name)
                pipe.hset(key, mapping={"last_seq": last_seq, "last_run": last_run})
                if lines:
                    pipe.hincrby(key, "lines", lines)
                    pipe.hincrby(key, "bytes", size)
            pipe.sadd(self.processes_key, *touched)

        answers = self._transaction(client, touched, queue)
        refused = next((a for a in answers if isinstance(a, Exception)), None)
        if refused is not None:
            self._put_right(client, before, adds, sizes, answers[: len(adds)])
            raise refused
        for name, (last_seq, last_run, _, _) in touched.items():
            known[name] = (last_seq, last_run)
        return count

    def _put_right(
        self,
        client: redis.Redis,
        before: dict[str, tuple[int, int]],
        adds: list[tuple[str, bytes, int]],
        sizes: list[tuple[str, int, int]],
        answers: list[Any],
    ) -> None:
        """A batch Redis applied in part (an XADD refused: another writer's entry above the
        seq, a full memory): the meta was moved as if all were written. Put its `last_seq`
        back to the last record the stream took, and take back the counts of the others,
        so that no line unwritten is taken for written (`stored_upto`, `_learn`)."""
        last = {name: seq for name, (seq, _) in before.items()}
        lines: dict[str, int] = dict.fromkeys(before, 0)
        size: dict[str, int] = dict.fromkeys(before, 0)
        for (_, _, seq), (name, line, nbytes), answer in zip(adds, sizes, answers, strict=True):
            if isinstance(answer, Exception):
                lines[name] += line
                size[name] += nbytes
            elif seq > last[name]:
                last[name] = seq

        def queue(pipe: Any) -> None:
            for name in before:
                key = self.meta_key(name)
                pipe.hset(key, "last_seq", last[name])
                if lines[name]:
                    pipe.hincrby(key, "lines", -lines[name])
                    pipe.hincrby(key, "bytes", -size[name])

        try:
            self._applied(client, before, queue)
        except (RedisError, OSError, FencedOff) as exc:  # `stored_upto` looks at the stream itself
            log.warning("redis: could not put the meta back after a write applied in part: %s", exc)

    # -- reading (the event loop) ----------------------------------------------------------

    def _records(self, process: str, entries: list[Entry]) -> list[LogRecord]:
        """The records among `entries`; what is not one is skipped (and said in the log)."""
        out = []
        for entry in entries:
            record = _decode(entry, process)
            if record is not None:
                out.append(record)
            elif self.skipped():
                log.warning(
                    "redis: skipped an entry of %s that is not a logcast record (id %s; %d so far): "
                    "its seq reaches readers as a gap",
                    process,
                    entry[0][:40].decode("ascii", "replace"),
                    self.skipped.count,
                )
        return out

    async def read(
        self,
        process: str,
        *,
        after: int = 0,
        limit: int = 1000,
        query: Query | None = None,
        upto: int | None = None,
        search: bool = False,  # reads wait for Redis, not for a thread
    ) -> list[LogRecord]:
        if limit <= 0 or (upto is not None and upto <= after):
            return []
        key = self.stream_key(process)
        count = limit if query is None else max(limit, _SCAN_CHUNK)
        start = f"(0-{after}" if after > 0 else "-"
        stop = "+" if upto is None else f"0-{upto}"
        out: list[LogRecord] = []
        try:
            client = self._client()
            while True:
                entries = cast(list[Entry], await client.xrange(key, min=start, max=stop, count=count))
                for record in self._records(process, entries):
                    if query is None or query.matches(record):
                        out.append(record)
                        if len(out) >= limit:
                            return out
                if len(entries) < count:
                    return out
                start = "(" + entries[-1][0].decode()
                raise_if_cancelled()  # between two reads, not before the first (see logcast.loop)
        except (RedisError, OSError) as exc:
            raise StoreError(f"read from redis at {self.shown_url}: {exc}") from exc

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
        if n <= 0:
            return []
        key = self.stream_key(process)
        count = n if query is None else max(n, _SCAN_CHUNK)
        end = "+" if before is None else f"0-{max(before, 0)}"
        floor = "-" if not after else f"(0-{after}"
        out: list[LogRecord] = []
        try:
            client = self._client()
            while len(out) < n:
                entries = cast(list[Entry], await client.xrevrange(key, max=end, min=floor, count=count))
                for record in self._records(process, entries):
                    if query is None or query.matches(record):
                        out.append(record)
                        if len(out) >= n:
                            break
                if len(entries) < count:
                    break
                end = "(" + entries[-1][0].decode()
                raise_if_cancelled()
        except (RedisError, OSError) as exc:
            raise StoreError(f"tail from redis at {self.shown_url}: {exc}") from exc
        out.reverse()
        return out

    async def meta(self, process: str) -> ProcessMeta:
        try:
            pipe = self._client().pipeline(transaction=True)
            pipe.hmget(self.meta_key(process), ["last_seq", "lines", "bytes", "last_run", "reserved"])
            pipe.xrange(self.stream_key(process), min="-", max="+", count=1)
            fields, first = cast(tuple[list[bytes | None], list[Entry]], await pipe.execute())
        except (RedisError, OSError) as exc:
            raise StoreError(f"meta from redis at {self.shown_url}: {exc}") from exc
        last_seq, lines, size, last_run, reserved = (
            _int(value, f"{name} of {process}")
            for name, value in zip(
                ("last_seq", "lines", "bytes", "last_run", "reserved"), fields, strict=True
            )
        )
        first_seq = (_id_seq(first[0][0]) or 0) if first else 0
        return ProcessMeta(
            last_seq=last_seq,
            first_seq=first_seq,
            lines=lines,
            bytes=size,
            last_run=last_run,
            reserved=max(reserved, self._local.reserved_upto(process) if self._local is not None else 0),
        )

    async def processes(self) -> list[str]:
        try:
            names = cast(set[bytes], await self._client().smembers(self.processes_key))
        except (RedisError, OSError) as exc:
            raise StoreError(f"processes from redis at {self.shown_url}: {exc}") from exc
        out = []
        for name in names:
            try:
                out.append(name.decode())
            except UnicodeDecodeError:  # not a name logcast writes: not a process of its
                log.warning("redis: %s holds a name that is not UTF-8: left out", self.processes_key)
        return sorted(out)

    async def clear(self, process: str, upto: int) -> None:
        if upto < 1:
            return
        key = self.stream_key(process)
        try:
            if self._fence is None:
                await self._client().xtrim(key, minid=f"0-{upto + 1}", approximate=False)
            else:
                await fenced(
                    self._client(),
                    self._fence([process]),
                    lambda pipe: pipe.xtrim(key, minid=f"0-{upto + 1}", approximate=False),
                )
        except (RedisError, OSError) as exc:
            raise StoreError(f"clear on redis at {self.shown_url}: {exc}") from exc

    async def follow(
        self, process: str, after: int = 0, *, block_ms: int = 5_000, count: int = 1_000
    ) -> AsyncIterator[list[LogRecord]]:
        """Yield the records of `process` with seq > after as they arrive, in batches, forever.

        For hosts that did not write them (multi-host serving): `XREAD BLOCK` from the
        last id seen. Records trimmed before they were read are simply not seen; callers
        compare seqs to notice such a gap. Raises StoreError when Redis fails."""
        key = self.stream_key(process)
        last = f"0-{max(after, 0)}"
        while True:
            try:
                response = cast(
                    list[tuple[bytes, list[Entry]]],
                    await self._client().xread({key: last}, count=count, block=block_ms),
                )
            except (RedisError, OSError) as exc:
                raise StoreError(f"follow on redis at {self.shown_url}: {exc}") from exc
            for _key, entries in response or ():
                if entries:
                    last = entries[-1][0].decode("ascii", "replace")
                    if records := self._records(process, entries):
                        yield records
            raise_if_cancelled()

    async def _xread(
        self, streams: dict[str, str], count: int, block_ms: int
    ) -> list[tuple[bytes, list[Entry]]]:
        return cast(
            list[tuple[bytes, list[Entry]]],
            await self._client().xread(streams, count=count, block=block_ms),  # type: ignore[arg-type]
        )

    async def _only_streams(self, streams: dict[str, str]) -> dict[str, str]:
        """`streams` without the keys that hold something else than a stream."""
        pipe = self._client().pipeline(transaction=False)
        for key in streams:
            pipe.type(key)
        kinds = await pipe.execute()
        wrong = [key for key, kind in zip(streams, kinds, strict=True) if kind not in (b"stream", b"none")]
        if wrong and self.skipped():
            log.warning(
                "redis: %s hold no stream (another writer's; %d so far): their processes are not read",
                ", ".join(wrong[:5]),
                self.skipped.count,
            )
        return {key: after for key, after in streams.items() if key not in wrong}

    async def read_new(
        self, positions: Mapping[str, str], *, block_ms: int = 1_000, count: int = 2_000
    ) -> list[NewEntries]:
        """What follows each process's position (a stream id: `0-{seq}` after a seq, or the
        id read last), waiting up to `block_ms` for any: one `XREAD BLOCK` for every
        process at once (a replica's one read of them all); see `NewEntries`."""
        if not positions:
            return []
        names = {self.stream_key(name).encode(): name for name in positions}
        streams = {self.stream_key(name): after for name, after in positions.items()}
        try:
            try:
                response = await self._xread(streams, count, block_ms)
            except ResponseError as exc:
                if not str(exc).startswith("WRONGTYPE"):
                    raise
                # A key that is no stream (a hand again) fails the read of them all: the
                # others are read without it, and it is said in the log.
                streams = await self._only_streams(streams)
                if not streams:
                    await asyncio.sleep(block_ms / 1000)  # as the read would have waited
                    return []
                response = await self._xread(streams, count, block_ms)
        except (RedisError, OSError) as exc:
            raise StoreError(f"read from redis at {self.shown_url}: {exc}") from exc
        out = []
        for key, entries in response or ():
            name = names.get(key)
            if name is None or not entries:
                continue
            last_id = entries[-1][0]
            size = sum(len(value) for _, fields in entries for value in fields.values())
            out.append(
                NewEntries(
                    name,
                    self._records(name, entries),
                    last_id.decode("ascii", "replace"),
                    _id_seq(last_id),
                    size // len(entries),
                )
            )
        return out
