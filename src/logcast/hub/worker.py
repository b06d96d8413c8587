"""One background thread of the hub (the store writer, the reserver): woken by `poke`,
stopped by `request_stop`, waited for by `join`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from logcast.hub.journal import Journal
from logcast.store.base import Store


class Worker:
    name = "logcast-worker"

    def __init__(
        self,
        store: Store,
        journals: Callable[[], list[Journal]],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._journals = journals
        self._monotonic = monotonic
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def poke(self) -> None:
        """There is something to do."""
        self._wanted.set()

    def request_stop(self) -> None:
        """Finish what is due, then end the thread (it does not wait for that)."""
        self._stopping.set()
        self._wanted.set()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end; False if it is still busy after `timeout`."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        raise NotImplementedError
