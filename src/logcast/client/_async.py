"""The asyncio client: `async with AsyncClient() as c: async for event in c.stream("web"): …`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from types import TracebackType
from typing import Any, cast

import httpx

from logcast.client import settings
from logcast.client._common import (
    ANSWER_ERRORS,
    WATCH_MIN,
    Attempts,
    LogPage,
    ProcessInfo,
    RunWatch,
    StreamCursor,
    Watch,
    base_headers,
    clear_path,
    control_timeout,
    decode_json,
    error_from_response,
    host_list,
    is_waitable,
    log_page,
    logs_params,
    process_list,
    process_path,
    stream_timeout,
    unreachable,
    waited_out,
)
from logcast.client.bounds import DEADLINE_FACTOR, bound_async
from logcast.client.events import ConnectionState, Event, LineRun
from logcast.client.sse import SSEDecoder
from logcast.client.transport import open_stream, streams_here
from logcast.errors import ClientError
from logcast.schemas import Host
from logcast.secrets import mask_text
from logcast.types import LogRecord, ProcessState


class AsyncClient:
    """The logcast HTTP API over httpx.AsyncClient.

    `url` and `token` default as `logcast.client.settings.resolve` says. Every method
    raises `ClientError` (with `status` when the server answered) on failure.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        resolved = settings.resolve(url, token)
        self.url = resolved.url
        self.token = resolved.token
        self.timeout = timeout
        self._clock = clock  # monotonic seconds: how long a stream stayed open
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=base_headers(self.token),
            timeout=timeout,
            event_hooks={"response": [bound_async]},
        )
        self._own_http = self._http
        self._streams_here = streams_here(self.url)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, deadline: float | None = None, **kwargs: Any) -> Any:
        if deadline is None:
            deadline = DEADLINE_FACTOR * self.timeout  # the whole answer, its head too (a byte now and then)
        try:
            async with asyncio.timeout(deadline):
                response = await self._http.request(method, path, **kwargs)
        except ANSWER_ERRORS as exc:
            raise unreachable(self.url, exc) from None
        except TimeoutError:
            raise ClientError(
                f"logcast at {mask_text(self.url)} did not answer within {deadline:g} s"
            ) from None
        return decode_json(response)

    # -- processes --------------------------------------------------------------------

    async def processes(self) -> list[ProcessInfo]:
        body = await self._call("GET", "/api/processes")
        return process_list(body)

    async def process(self, name: str) -> ProcessInfo:
        return ProcessInfo.from_dict(await self._call("GET", process_path(name)))

    async def start(self, name: str) -> ProcessInfo:
        return await self._control(name, "start")

    async def stop(self, name: str) -> ProcessInfo:
        return await self._control(name, "stop")

    async def restart(self, name: str) -> ProcessInfo:
        return await self._control(name, "restart")

    async def _control(self, name: str, action: str) -> ProcessInfo:
        """POST the action and wait for its answer, which comes once it is done: up to
        `CONTROL_TIMEOUT` s, not the client's timeout (a stop waits for the process)."""
        limit = control_timeout(self.timeout)
        path = process_path(name, f"/{action}")
        return ProcessInfo.from_dict(await self._call("POST", path, timeout=limit, deadline=limit.read))

    async def hosts(self) -> list[Host]:
        """The hosts that run the processes (`GET /api/hosts`): this machine alone on one host,
        one per agent on several, each `alive` or lost."""
        return host_list(await self._call("GET", "/api/hosts"))

    # -- history ----------------------------------------------------------------------

    async def logs(
        self,
        name: str,
        after: int | None = None,
        limit: int = 1000,
        level: str | None = None,
        q: str | None = None,
        regex: str | None = None,
        since: float | None = None,
        until: float | None = None,
        tail: int | None = None,
        before: int | None = None,
    ) -> LogPage:
        """A page of history, oldest first. `tail=N`: the last N matching lines (before `before`)."""
        params = logs_params(
            after=after,
            limit=limit,
            level=level,
            q=q,
            regex=regex,
            since=since,
            until=until,
            tail=tail,
            before=before,
        )
        return log_page(await self._call("GET", process_path(name, "/logs"), params=params))

    async def iter_logs(
        self, name: str, after: int | None = None, *, limit: int = 1000, **filters: Any
    ) -> AsyncIterator[LogRecord]:
        """Every history record after `after`, page by page."""
        while True:
            page = await self.logs(name, after=after, limit=limit, **filters)
            for record in page.logs:
                yield record
            if page.next is None or not page.logs:
                return
            after = page.next

    async def clear(self, name: str) -> dict[str, Any]:
        """The JSON of `POST /api/logs/{name}/clear` as a dict; `logcast.schemas.Cleared`
        is its shape (`Cleared.model_validate(...)` for typed access)."""
        result: dict[str, Any] = await self._call("POST", clear_path(name))
        return result

    async def stats(self) -> dict[str, Any]:
        """The JSON of `GET /api/logs/stats` as a dict; `logcast.schemas.Stats`
        is its shape (`Stats.model_validate(...)` for typed access)."""
        result: dict[str, Any] = await self._call("GET", "/api/logs/stats")
        return result

    async def config(self) -> dict[str, Any]:
        """The JSON of `GET /api/config` as a dict; `logcast.schemas.Config`
        is its shape (`Config.model_validate(...)` for typed access)."""
        result: dict[str, Any] = await self._call("GET", "/api/config")
        return result

    async def healthz(self) -> bool:
        """True when the server answers; raises ClientError otherwise."""
        try:
            response = await self._http.get("/healthz")
        except ANSWER_ERRORS as exc:
            raise unreachable(self.url, exc) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return True

    # -- streaming --------------------------------------------------------------------

    async def _running(self, name: str) -> ProcessState | None:
        """The process's state, or None when the server cannot say right now (nor within
        `DEADLINE_FACTOR` read timeouts: a server that answers a byte at a time)."""
        try:
            async with asyncio.timeout(DEADLINE_FACTOR * self.timeout):
                response = await self._http.get(process_path(name))
        except TimeoutError:
            return None
        if is_waitable(response.status_code):
            return None
        return ProcessInfo.from_dict(decode_json(response)).state

    async def _until_running(self, name: str, seconds: float) -> None:
        """Wait `seconds`, or only until a status event says `name` runs (see
        `RunWatch`); a wait under `WATCH_MIN`, or a watch that fails, is slept."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        if seconds >= WATCH_MIN and await self._watch(name, seconds):
            return
        rest = deadline - loop.time()
        if rest > 0:
            await asyncio.sleep(rest)

    async def _watch(self, name: str, seconds: float) -> bool:
        """Whether `name` runs, or a status event says it started, within `seconds`."""
        watch = RunWatch(name)
        path, params, headers = watch.request()
        with contextlib.suppress(TimeoutError, httpx.HTTPError, ValueError):
            async with (
                asyncio.timeout(seconds),
                self._http.stream(
                    "GET", path, params=params, headers=headers, timeout=stream_timeout(self.timeout)
                ) as response,
            ):
                if response.status_code == 200:
                    async for chunk in response.aiter_bytes():
                        seen = watch.feed(chunk)
                        if seen is Watch.RUNS:
                            return True
                        if seen is Watch.OPEN:
                            state = await self._running(name)
                            if state is not None and state.is_alive:
                                return True
        return False

    async def stream(
        self,
        name: str,
        *,
        after: int | None = None,
        lines: int | None = None,
        level: str | None = None,
        q: str | None = None,
        reconnect: bool = True,
        max_attempts: int = 0,
        interval: float = 1.0,
        model_route: bool = False,
        wait_running: bool = False,
    ) -> AsyncGenerator[Event, None]:
        """Follow a process's log: history, then realtime, across reconnects.

        Yields server events and `connection` events. `after`: start after this seq;
        `lines`: how much history (server default when None, 0 for none). With
        `reconnect`, a broken link or a server restart is retried (every `interval`
        while the process is not running, with backoff doubling up to 10 s while the
        server is unreachable; `max_attempts` failed attempts in a row, 0 = forever) and
        resumed with `Last-Event-ID`. `model_route` uses `/api/models/{name}/logs/stream`,
        which answers 503 while the process does not run; `wait_running` waits for the
        process to run before opening the native route. Raises ClientError on 401, 404,
        other client errors, and once it gives up. Close it (`contextlib.aclosing`) when
        leaving early.
        """
        batches = self.stream_batches(
            name,
            after=after,
            lines=lines,
            level=level,
            q=q,
            reconnect=reconnect,
            max_attempts=max_attempts,
            interval=interval,
            model_route=model_route,
            wait_running=wait_running,
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for event in batch:
                    yield event

    async def stream_batches(
        self,
        name: str,
        *,
        after: int | None = None,
        lines: int | None = None,
        level: str | None = None,
        q: str | None = None,
        reconnect: bool = True,
        max_attempts: int = 0,
        interval: float = 1.0,
        model_route: bool = False,
        wait_running: bool = False,
    ) -> AsyncGenerator[list[Event], None]:
        """`stream()`, a list of events at a time: every event that arrived in one read
        from the network, handed on at once (a list is never held back to grow), never
        empty; a `connection` event comes in a list of its own. For a program that
        keeps up with a flood: a million lines come in a few hundred lists."""
        cursor = StreamCursor(name, after=after, lines=lines, level=level, q=q, model_route=model_route)
        batches = self._follow(cursor, reconnect, max_attempts, interval, wait_running, runs=False)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield cast("list[Event]", batch)  # without runs, events only

    async def stream_runs(
        self,
        name: str,
        *,
        after: int | None = None,
        lines: int | None = None,
        level: str | None = None,
        q: str | None = None,
        reconnect: bool = True,
        max_attempts: int = 0,
        interval: float = 1.0,
        wait_running: bool = False,
    ) -> AsyncGenerator[list[Event | LineRun], None]:
        """`stream_batches()`, with each run of lines of one process and run as one
        `LineRun` (a list per field) instead of an `Event` per line: the stream asks for
        `batch=columns` (docs/api.md), so neither the server nor this client builds
        anything per line but its text. Against a server without it, the lines come as
        events. What `logcast tail` reads a flood with."""
        cursor = StreamCursor(name, after=after, lines=lines, level=level, q=q, model_route=False)
        batches = self._follow(cursor, reconnect, max_attempts, interval, wait_running, runs=True)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield batch

    def _open_stream(
        self, path: str, params: dict[str, str | int], headers: dict[str, str]
    ) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        """The GET of a stream: through `transport.open_stream` where it applies (a plain
        http server, no proxy, and this client's own httpx client, which tests replace),
        else through httpx. Either way an `httpx.Response` and httpx's errors."""
        timeout = stream_timeout(self.timeout)
        if self._streams_here and self._http is self._own_http:
            request = self._http.build_request("GET", path, params=params, headers=headers)
            return open_stream(request, timeout)
        return self._http.stream("GET", path, params=params, headers=headers, timeout=timeout)

    async def _follow(
        self,
        cursor: StreamCursor,
        reconnect: bool,
        max_attempts: int,
        interval: float,
        wait_running: bool,
        *,
        runs: bool,
    ) -> AsyncGenerator[list[Event | LineRun], None]:
        """The stream of `cursor`'s process, across reconnects (see `stream`); with `runs`,
        a run of lines is one `LineRun`, else its events."""
        name = cursor.process
        attempts = Attempts(name, max_attempts if reconnect else 1, interval, self._clock)
        while True:
            yield [attempts.connecting()]
            failure: Event | None = None
            live = waiting = False
            decoder = SSEDecoder()  # its `heard`: how often the server spoke on this connection
            at_open = cursor.last_seq  # the stream was of use if this moved
            try:
                if wait_running:
                    state = await self._running(name)
                    if state is None or not state.is_alive:
                        reason = f"{name} is {state.value}" if state else "the server is not ready"
                        failure = attempts.failed(ConnectionState.NOT_RUNNING, reason)
                        waiting = state is not None
                if failure is None:
                    params, headers = cursor.request()
                    async with self._open_stream(cursor.path, params, headers) as response:
                        if is_waitable(response.status_code):
                            await response.aread()
                            failure = waited_out(attempts, response, model_route=cursor.model_route)
                        elif response.status_code >= 400:
                            await response.aread()
                            if cursor.refused_columns(response):
                                continue  # a server before `batch=columns`: ask again for events
                            raise error_from_response(response)
                        else:
                            cursor.opened(response)
                            live = True
                            yield [attempts.connected()]
                            async for chunk in response.aiter_bytes():
                                messages = decoder.feed(chunk)
                                if not messages:
                                    continue
                                batch: list[Event | LineRun] = (
                                    cursor.items_of(messages)
                                    if runs
                                    else cast("list[Event | LineRun]", cursor.events_of(messages))
                                )
                                notice = cursor.behind_notice()  # before the lines that follow it
                                if notice is not None:
                                    yield [notice]
                                if batch:
                                    yield batch
                            failure = attempts.dropped(
                                "the server closed the stream",
                                heard=decoder.heard,
                                progressed=cursor.last_seq != at_open,
                            )
            except (httpx.TransportError, httpx.DecodingError) as exc:
                if live:
                    progressed = cursor.last_seq != at_open
                    failure = attempts.dropped(
                        str(exc) or type(exc).__name__, heard=decoder.heard, progressed=progressed
                    )
                else:
                    failure = attempts.failed(ConnectionState.DISCONNECTED, str(unreachable(self.url, exc)))
            assert failure is not None
            yield [failure]
            if live and not reconnect:
                return
            if not reconnect:
                raise ClientError(failure.reason or "stream failed")
            if failure.retry_in is None:
                raise attempts.give_up()
            if waiting:
                await self._until_running(name, failure.retry_in)
            else:
                await asyncio.sleep(failure.retry_in)
