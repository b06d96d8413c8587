"""Readiness probes: a log pattern, or an HTTP URL that answers 2xx."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable

from logcast.config import ReadySettings
from logcast.query import shown
from logcast.types import Lines

__all__ = ["ReadinessProbe"]

logger = logging.getLogger(__name__)

HTTP_INTERVAL = 0.5
HTTP_REQUEST_TIMEOUT = 2.0


class ReadinessProbe:
    """Waits for one run to become ready; calls back on the event loop.

    `on_ready(late)` runs once, `late` telling whether the timeout had passed;
    `on_timeout()` runs at most once. Neither runs after `cancel()`.

    After the timeout the probe keeps probing and the process keeps running. Model
    servers load for as long as the model, disk and GPU take; killing one that is merely
    slow (supervisord's "failed start") would turn a too-short timeout into a restart
    loop. A stuck one stays visible: `running`, not `ready`, with a warning in its history.
    """

    def __init__(
        self,
        settings: ReadySettings,
        *,
        on_ready: Callable[[bool], None],
        on_timeout: Callable[[], None],
        interval: float = HTTP_INTERVAL,
    ) -> None:
        self.settings = settings
        self._on_ready = on_ready
        self._on_timeout = on_timeout
        self._interval = interval
        self._pattern: re.Pattern[str] | None = settings.log
        self._matched = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.ready = False
        self.timed_out = False

    @property
    def describe(self) -> str:
        if self.settings.log is not None:
            return f"log line matching {self.settings.log.pattern!r}"
        return f"2xx from {self.settings.http}"

    def start(self) -> None:
        """Start probing (call on the event loop, before any line is fed)."""
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"ready-probe {self.describe}")
        self._task.add_done_callback(_log_failure)

    def cancel(self) -> None:
        """Stop probing now (no callback runs after this)."""
        self._pattern = None
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        """Stop probing and wait until the probe (and its HTTP client) is closed."""
        self.cancel()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.wait({task})

    def feed(self, lines: Lines) -> None:
        """Check captured lines against the log pattern (called from reader threads; nothing
        to do after the first match)."""
        pattern = self._pattern
        if pattern is None or self._matched.is_set():
            return
        for text in lines.texts:
            if pattern.search(shown(text)):  # as shown: a coloured "INFO:" is "INFO:"
                self._matched.set()
                loop, event = self._loop, self._event
                if loop is not None and event is not None:
                    with contextlib.suppress(RuntimeError):  # loop closed
                        loop.call_soon_threadsafe(event.set)
                return

    async def _run(self) -> None:
        if self.settings.http is not None:
            await self._wait(self._poll(self.settings.http))
        else:
            assert self._event is not None
            await self._wait(self._event.wait())

    async def _wait(self, probe: Awaitable[object]) -> None:
        task = asyncio.ensure_future(probe)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.settings.timeout)
            if not done:
                self.timed_out = True
                self._on_timeout()
                await task
            else:
                task.result()
            self.ready = True
            self._on_ready(self.timed_out)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self, url: str) -> None:
        # Imported here: only processes with an HTTP probe need it, and every module
        # `serve` imports is resident for the server's life (about 5 MB for this one).
        import httpx

        # trust_env=False: a health URL is local, proxies from the environment do not apply.
        async with httpx.AsyncClient(
            timeout=HTTP_REQUEST_TIMEOUT, trust_env=False, follow_redirects=False
        ) as client:
            while True:
                try:
                    response = await client.get(url)
                    if 200 <= response.status_code < 300:
                        return
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    logger.debug("readiness probe %s: %s", url, exc)
                await asyncio.sleep(self._interval)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("readiness probe failed", exc_info=task.exception())
