"""The blocking twin of `AsyncClient`: `with Client() as c: for event in c.stream("web"): …`.

Same methods, same behaviour (the decisions live in `_common`); `stream()` is a generator.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterator
from types import TracebackType
from typing import Any

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
from logcast.client.bounds import bound
from logcast.client.events import ConnectionState, Event
from logcast.client.sse import SSEDecoder
from logcast.errors import ClientError
from logcast.schemas import Host
from logcast.types import LogRecord, ProcessState


class Client:
    """The logcast HTTP API over httpx.Client (blocking).

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
        self._http = httpx.Client(
            base_url=self.url,
            headers=base_headers(self.token),
            timeout=timeout,
            event_hooks={"response": [bound]},
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except ANSWER_ERRORS as exc:
            raise unreachable(self.url, exc) from None
        return decode_json(response)

    # -- processes --------------------------------------------------------------------

    def processes(self) -> list[ProcessInfo]:
        body = self._call("GET", "/api/processes")
        return process_list(body)

    def process(self, name: str) -> ProcessInfo:
        return ProcessInfo.from_dict(self._call("GET", process_path(name)))

    def start(self, name: str) -> ProcessInfo:
        return self._control(name, "start")

    def stop(self, name: str) -> ProcessInfo:
        return self._control(name, "stop")

    def restart(self, name: str) -> ProcessInfo:
        return self._control(name, "restart")

    def _control(self, name: str, action: str) -> ProcessInfo:
        """POST the action and wait for its answer, which comes once it is done: up to
        `CONTROL_TIMEOUT` s, not the client's timeout (a stop waits for the process)."""
        limit = control_timeout(self.timeout)
        return ProcessInfo.from_dict(self._call("POST", process_path(name, f"/{action}"), timeout=limit))

    def hosts(self) -> list[Host]:
        """The hosts that run the processes (`GET /api/hosts`): this machine alone on one host,
        one per agent on several, each `alive` or lost."""
        return host_list(self._call("GET", "/api/hosts"))

    # -- history ----------------------------------------------------------------------

    def logs(
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
        return log_page(self._call("GET", process_path(name, "/logs"), params=params))

    def iter_logs(
        self, name: str, after: int | None = None, *, limit: int = 1000, **filters: Any
    ) -> Iterator[LogRecord]:
        """Every history record after `after`, page by page."""
        while True:
            page = self.logs(name, after=after, limit=limit, **filters)
            yield from page.logs
            if page.next is None or not page.logs:
                return
            after = page.next

    def clear(self, name: str) -> dict[str, Any]:
        """The JSON of `POST /api/logs/{name}/clear` as a dict; `logcast.schemas.Cleared`
        is its shape (`Cleared.model_validate(...)` for typed access)."""
        result: dict[str, Any] = self._call("POST", clear_path(name))
        return result

    def stats(self) -> dict[str, Any]:
        """The JSON of `GET /api/logs/stats` as a dict; `logcast.schemas.Stats`
        is its shape (`Stats.model_validate(...)` for typed access)."""
        result: dict[str, Any] = self._call("GET", "/api/logs/stats")
        return result

    def config(self) -> dict[str, Any]:
        """The JSON of `GET /api/config` as a dict; `logcast.schemas.Config`
        is its shape (`Config.model_validate(...)` for typed access)."""
        result: dict[str, Any] = self._call("GET", "/api/config")
        return result

    def healthz(self) -> bool:
        """True when the server answers; raises ClientError otherwise."""
        try:
            response = self._http.get("/healthz")
        except ANSWER_ERRORS as exc:
            raise unreachable(self.url, exc) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return True

    # -- streaming --------------------------------------------------------------------

    def _running(self, name: str, timeout: float | None = None) -> ProcessState | None:
        """The process's state, or None when the server cannot say right now (within
        `timeout` seconds, the client's own by default)."""
        response = self._http.get(process_path(name), timeout=self.timeout if timeout is None else timeout)
        if is_waitable(response.status_code):
            return None
        return ProcessInfo.from_dict(decode_json(response)).state

    def _until_running(self, name: str, seconds: float) -> None:
        """Wait `seconds`, or only until a status event says `name` runs (see
        `RunWatch`); a wait under `WATCH_MIN`, or a watch that fails, is slept."""
        deadline = time.monotonic() + seconds
        if seconds >= WATCH_MIN:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                while (rest := deadline - time.monotonic()) > 0:
                    watch = RunWatch(name)
                    path, params, headers = watch.request()
                    # no step waits past what is left (a read, the connect, asking the state);
                    # after a ping (every 15 s) the watch opens again with what is left then
                    limit = httpx.Timeout(min(self.timeout, rest), read=rest)
                    with self._http.stream(
                        "GET", path, params=params, headers=headers, timeout=limit
                    ) as response:
                        if response.status_code != 200:
                            break
                        for chunk in response.iter_bytes():
                            seen = watch.feed(chunk)
                            if seen is Watch.RUNS:
                                return
                            if seen is Watch.OPEN:
                                state = self._running(name, timeout=max(deadline - time.monotonic(), 0.001))
                                if state is not None and state.is_alive:
                                    return
                            elif watch.open:
                                break  # a ping: open again with what is left
                        else:
                            break  # the server ended the stream
        rest = deadline - time.monotonic()
        if rest > 0:
            time.sleep(rest)

    def stream(
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
    ) -> Generator[Event, None, None]:
        """Follow a process's log: history, then realtime, across reconnects.

        Yields server events and `connection` events. `after`: start after this seq;
        `lines`: how much history (server default when None, 0 for none). With
        `reconnect`, a broken link or a server restart is retried (every `interval`
        while the process is not running, with backoff doubling up to 10 s while the
        server is unreachable; `max_attempts` failed attempts in a row, 0 = forever) and
        resumed with `Last-Event-ID`. `model_route` uses `/api/models/{name}/logs/stream`,
        which answers 503 while the process does not run; `wait_running` waits for the
        process to run before opening the native route. Raises ClientError on 401, 404,
        other client errors, and once it gives up. Close it (`contextlib.closing`) when
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
        with contextlib.closing(batches):
            for batch in batches:
                yield from batch

    def stream_batches(
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
    ) -> Generator[list[Event], None, None]:
        """`stream()`, a list of events at a time: every event that arrived in one read
        from the network, handed on at once (a list is never held back to grow), never
        empty; a `connection` event comes in a list of its own."""
        cursor = StreamCursor(name, after=after, lines=lines, level=level, q=q, model_route=model_route)
        attempts = Attempts(name, max_attempts if reconnect else 1, interval, self._clock)
        while True:
            yield [attempts.connecting()]
            failure: Event | None = None
            live = waiting = False
            decoder = SSEDecoder()  # its `heard`: how often the server spoke on this connection
            at_open = cursor.last_seq  # the stream was of use if this moved
            try:
                if wait_running:
                    state = self._running(name)
                    if state is None or not state.is_alive:
                        reason = f"{name} is {state.value}" if state else "the server is not ready"
                        failure = attempts.failed(ConnectionState.NOT_RUNNING, reason)
                        waiting = state is not None
                if failure is None:
                    params, headers = cursor.request()
                    with self._http.stream(
                        "GET",
                        cursor.path,
                        params=params,
                        headers=headers,
                        timeout=stream_timeout(self.timeout),
                    ) as response:
                        if is_waitable(response.status_code):
                            response.read()
                            failure = waited_out(attempts, response, model_route=cursor.model_route)
                        elif response.status_code >= 400:
                            response.read()
                            if cursor.refused_columns(response):
                                continue  # a server before `batch=columns`: ask again for batches
                            raise error_from_response(response)
                        else:
                            cursor.opened(response)
                            live = True
                            yield [attempts.connected()]
                            for chunk in response.iter_bytes():
                                messages = decoder.feed(chunk)
                                if not messages:
                                    continue
                                batch = cursor.events_of(messages)
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
                self._until_running(name, failure.retry_in)
            else:
                time.sleep(failure.retry_in)
