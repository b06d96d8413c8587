"""Store pages shared by the readers that have fallen behind the memory tail.

When a burst outruns the ring, every live reader falls behind it at about the same
time and reads on from the store over the same ranges: one query and one encoding per
page serves them all, so catching up costs what keeping up costs. The pages that every
reader behind the memory tail is past, and that end before the tail begins, go when the
next page is read, when a reader catches up with the tail, and when one leaves (but the
page it was at, where it would resume). A lone reader catching up holds a page or two,
not the cache's bound (`bench/burst.py --sse 1`, runs that fell behind: 132-135 MB peak
RSS against 147-151); the page reaching into the tail stays for a reader at its edge."""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable

from logcast.hub.encodings import Encoder, filled
from logcast.store.base import Store
from logcast.types import MESSAGE_OF, STREAM_OF, LogRecord, Stream

PAGE = 2000  # records per page
KEPT = 48  # pages kept (least recently used go first): readers spread over up to ~100,000 lines...
KEPT_BYTES = 16 << 20  # ...in at most about this much memory, encodings included (~30,000 lines of 100 bytes)
# A page keeps its encodings while it is at most about this large: every reader behind
# shares them where lines are of a usual length (2,000 lines of 3 KB), none is kept for a
# page of long lines (2,000 of 64 KiB are 128 MB of text).
ENCODED_BYTES = KEPT_BYTES // 2
RECORD_OVERHEAD = 230  # bytes of a record besides its text (tuple, seq, timestamp, str header)

# process, its clear mark (a page read before a clear is never served after it), block
Key = tuple[str, int, int]


def _seq(record: LogRecord) -> int:
    return record.seq


class Page:
    """Records of one block (`PAGE` seqs, aligned) as the store held them, with their
    encodings per format. A short page (the block is where the writer is) serves only
    readers before its last record; a reader at its end reads the block again."""

    __slots__ = ("encodings", "full", "records", "size", "statuses")

    def __init__(self, records: list[LogRecord]) -> None:
        self.records = records
        self.full = len(records) == PAGE
        system = Stream.SYSTEM
        self.statuses = (
            [r for r in records if r.stream is system] if system in map(STREAM_OF, records) else []
        )
        self.encodings: dict[str, list[bytes | None]] = {}
        self.size = sum(map(len, map(MESSAGE_OF, records))) + RECORD_OVERHEAD * len(records)  # estimated

    def serves(self, after: int) -> bool:
        """Whether this page answers a reader at `after` (it holds what follows, or the
        whole block)."""
        return self.full or (bool(self.records) and self.records[-1].seq > after)

    def index(self, after: int) -> int:
        """Position of the first record with seq > after."""
        return bisect_right(self.records, after, key=_seq)

    def encoded(self, fmt: str, encode: Encoder, start: int, stop: int) -> list[bytes]:
        """The `fmt` encodings of `records[start:stop]`, made when first asked for. They are
        kept for the readers that follow while the page stays under `ENCODED_BYTES`; past
        that (long lines, text that JSON escapes six times over) each reader encodes what
        it takes, and the page holds no more than its records."""
        records = self.records[start:stop]
        enc = self.encodings.get(fmt)
        if enc is None:
            if self.size > ENCODED_BYTES:
                return encode(records)
            enc = self.encodings[fmt] = [None] * len(self.records)
        part = enc[start:stop]
        if None not in part:
            return part  # type: ignore[return-value]
        out, made = filled(records, part, encode)
        if self.size <= ENCODED_BYTES:
            enc[start:stop] = out
            self.size += sum(map(len, made)) + 33 * len(made)
        return out


class PageCache:
    """The last pages read from `store` (at most `kept` of them and about `kept_bytes`),
    shared by every reader."""

    def __init__(
        self,
        store: Store,
        *,
        kept: int = KEPT,
        kept_bytes: int = KEPT_BYTES,
        passed: Callable[[str, int], int] | None = None,
    ) -> None:
        """`passed(process, floor)`: the seq up to which no reader of `process` needs its
        pages (it may stop at any value below `floor`, when nothing can go); pages that end
        there go first. None: pages go by the bounds alone."""
        self.store = store
        self.kept = kept
        self.kept_bytes = kept_bytes
        self._passed = passed
        self._pages: OrderedDict[Key, Page] = OrderedDict()
        self._loading: dict[Key, tuple[int, asyncio.Future[Page]]] = {}  # key -> (load number, result)
        self._loads = 0  # loads begun so far

    def __len__(self) -> int:
        return len(self._pages)

    async def page(self, process: str, cleared_upto: int, after: int) -> Page:
        """The page holding the records that follow `after` (read or shared).

        A load that began after this call is as fresh as a read of our own, so its page
        is returned even when it ends before `after` (the store has nothing more yet);
        an older one that does not serve this reader is waited out and the question
        asked again, so a crowd of readers at the writer's edge makes one new query,
        not one each.
        """
        key = self.key(process, cleared_upto, after)
        asked = self._loads
        while True:
            page = self._pages.get(key)
            if page is not None and page.serves(after):
                self._pages.move_to_end(key)
                return page
            loading = self._loading.get(key)
            if loading is None:
                break
            epoch, future = loading
            await asyncio.wait({future})
            if not future.cancelled() and (epoch > asked or future.result().serves(after)):
                return future.result()
            # That load failed, or it was older than this call and ends before this
            # reader's cursor (this reader may have taken newer lines from the ring).
        self._loads += 1
        future = asyncio.get_running_loop().create_future()
        self._loading[key] = (self._loads, future)
        try:
            records = await self.store.read(process, after=key[2] * PAGE, limit=PAGE)
        except BaseException:
            future.cancel()  # whoever waits for it asks again
            raise
        finally:
            if self._loading.get(key, (0, None))[1] is future:
                del self._loading[key]
        page = Page(records)
        try:
            if records:
                self._pages[key] = page
                self._pages.move_to_end(key)
                self.drop_passed(process, keep=key)
                self._evict()
        finally:
            future.set_result(page)  # whatever the upkeep did, the waiters have their page
        return page

    @property
    def bytes(self) -> int:
        """Estimated memory of the pages kept, encodings included."""
        return sum(page.size for page in self._pages.values())

    def drop_passed(self, process: str, keep: Key | None = None) -> None:
        """Drop the pages of `process` (but `keep`) that every one of its readers is past:
        nobody reading now asks for them again (a reader that comes later reads them
        anew). Call on the event loop, where the readers' cursors move."""
        if self._passed is None:
            return
        ends = {k: page.records[-1].seq for k, page in self._pages.items() if k[0] == process and k != keep}
        if not ends:
            return
        passed = self._passed(process, min(ends.values()))
        gone = [k for k, end in ends.items() if end <= passed]
        for key in gone:
            del self._pages[key]

    def _evict(self) -> None:
        """Least recently used pages go until both bounds hold (the newest always stays).
        The pages' sizes are summed once, not once per page that goes."""
        pages = self._pages
        size = self.bytes
        while len(pages) > 1 and (len(pages) > self.kept or size > self.kept_bytes):
            _, page = pages.popitem(last=False)
            size -= page.size

    @staticmethod
    def key(process: str, cleared_upto: int, after: int) -> Key:
        """The key of the page that serves a reader at `after`."""
        return (process, cleared_upto, after // PAGE)

    def forget(self, process: str) -> None:
        """Drop the pages of `process` (after a clear)."""
        for key in [k for k in self._pages if k[0] == process]:
            del self._pages[key]
