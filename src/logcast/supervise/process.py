"""One supervised process: its lifecycle on asyncio, restarts with backoff, stop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, cast

from logcast.capture.reader import PipeReader
from logcast.config import ProcessSettings, RestartPolicy
from logcast.loop import running_loop
from logcast.models import ModelState, ModelWatcher, Phase, make_watcher
from logcast.secrets import mask_command
from logcast.supervise.adopt import gone as all_gone
from logcast.supervise.depends import Gate, Waiting
from logcast.supervise.exits import (
    ERROR_TEXT,
    LAST_ERRORS,
    SUMMARY_TEXT,
    LastExit,
    OomCounter,
    RunHistory,
    cgroup_oom_counter,
    duration,
    how_it_ended,
)
from logcast.supervise.readiness import ReadinessProbe
from logcast.supervise.spawn import Child, Spawner, SpawnError
from logcast.supervise.states import check_transition
from logcast.types import HoldingSink, Level, Lines, LineSink, ProcessState, Stream

__all__ = ["ManagedProcess", "describe_exit"]

logger = logging.getLogger(__name__)

DRAIN = 0.5  # after the leader exits, time for the readers to finish before leftovers are signalled
KILL_WAIT = 5.0  # after SIGKILL, how long stop() waits before reporting a child that will not die


class Reader(Protocol):
    def start(self) -> None: ...

    async def eof(self) -> None:
        """Every byte of the fd is read."""
        ...

    async def wait(self) -> None:
        """...and every line is handed on."""
        ...


OnLines = Callable[[float, Lines], None]


class ReaderFactory(Protocol):
    """Makes the reader of one fd: `on_lines` may block (the store holds capture while
    it catches up); `on_lines_now` never does, and `may_wait()` tells whether `on_lines`
    might block now (see `PipeReader`)."""

    def __call__(
        self,
        fd: int,
        on_lines: OnLines,
        name: str,
        *,
        on_lines_now: OnLines | None,
        may_wait: Callable[[], bool] | None,
        loop_busy: Callable[[], bool] | None = None,
        on_loss: Callable[[str], None] | None = None,
    ) -> Reader: ...


def pipe_readers(spill_dir: Path | None = None) -> ReaderFactory:
    """Pipe readers; with `spill_dir`, readers that hold a flood far ahead of framing in
    a file there. Made on the event loop, they read ordinary output there (`PipeReader`)."""

    def make(
        fd: int,
        on_lines: OnLines,
        name: str,
        *,
        on_lines_now: OnLines | None,
        may_wait: Callable[[], bool] | None,
        loop_busy: Callable[[], bool] | None = None,
        on_loss: Callable[[str], None] | None = None,
    ) -> Reader:
        return PipeReader(
            fd,
            on_lines,
            name=name,
            spill_dir=spill_dir,
            on_lines_now=on_lines_now,
            may_wait=may_wait,
            loop=running_loop(),
            loop_busy=loop_busy,
            on_loss=on_loss,
        )

    return make


def describe_exit(code: int) -> str:
    """`exited with code 1`, `killed by SIGKILL` (negative codes are signals, as in Popen)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"


def _seconds(value: float) -> str:
    return f"{value:.0f}s" if value == int(value) else f"{value:.3g}s"


async def _wait_all(tasks: set[asyncio.Future[None]], within: float) -> set[asyncio.Future[None]]:
    """Wait up to `within` seconds for every task; return those still pending."""
    if not tasks:
        return tasks
    _, pending = await asyncio.wait(tasks, timeout=max(within, 0.0))
    return pending


class ManagedProcess:
    """The lifecycle of one configured process.

    `start`, `stop` and `restart` take one lock per process, as does the automatic
    restart after a backoff, so concurrent requests serialise: a start that arrives
    during a stop waits for it, then starts. Every state change goes through
    `check_transition` and writes one status record to the sink.

    With a `gate` (its `depends_on`), a start whose dependencies have not reached their
    condition waits for them instead (`waiting_for`, a status record) in a task, like a
    backoff; a stop cancels it. `on_change` is called after every state change and every
    change of `waiting_for` (on the loop), so that the supervisor can wake waiters.
    `history` tells the seqs of a run for `last_exit`; `oom_counter` reads the child's
    cgroup OOM-kill counter (injected by tests).
    """

    def __init__(
        self,
        settings: ProcessSettings,
        sink: LineSink,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        spawner: Spawner | None = None,
        run: int = 0,
        reader_factory: ReaderFactory | None = None,
        reader_grace: float = 2.0,
        gate: Gate | None = None,
        on_change: Callable[[ManagedProcess], None] | None = None,
        history: RunHistory | None = None,
        oom_counter: OomCounter = cgroup_oom_counter,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._sink = sink
        self._clock = clock
        self._sleep = sleep  # waits out the backoff before an automatic restart
        self._spawner = spawner or Spawner()
        self._reader_factory = reader_factory or pipe_readers()
        self._reader_grace = reader_grace
        self.state = ProcessState.STOPPED
        self.pid: int | None = None
        self.started_at: float | None = None  # Unix time of the current/last start
        self.exit_code: int | None = None  # of the last run; negative = killed by that signal
        self.run = run  # starts, over the whole history
        self.restarts = 0  # automatic and requested restarts since logcast started
        self._lock = asyncio.Lock()
        self._child: Child | None = None
        self._done: asyncio.Event | None = None  # set when the current run has fully ended
        self._watcher: asyncio.Task[None] | None = None
        self._probe: ReadinessProbe | None = None
        self._backoff_task: asyncio.Task[None] | None = None
        self._backoff_delay = settings.backoff_initial
        self._started_mono = 0.0
        self._stopping = False  # a stop was requested for the current run
        self._hurried = False  # logcast is shutting down and was told not to wait (`hurry`)
        self._closing = False  # logcast is shutting down: no run ends in a restart (`closing`)
        self._killed = False  # ... and it needed SIGKILL
        self._stop_deadline = 0.0  # loop time
        self._gate = gate
        self._on_change = on_change
        self._history = history
        self._oom_counter = oom_counter
        self.waiting_for: str | None = None  # "db (ready)" while a start waits for dependencies
        self._waiting_message: str | None = None  # the status record that said so
        self._wait_task: asyncio.Task[None] | None = None
        self.dependency_runs: dict[str, int] = {}  # each dependency's run when this run started
        self.last_exit: LastExit | None = None  # the last run that ended in failure
        self._errors: deque[str] = deque(maxlen=LAST_ERRORS)  # error lines of the current run
        self._model: _Model | None = None  # what the current run's output says of its model server
        self._first_seq: int | None = None  # seq of the current run's "starting" record
        self._oom_read: Callable[[], int | None] | None = None
        self._oom_before: int | None = None
        self._sent_kill = False  # logcast SIGKILLed this run outside a stop (output unreadable)

    # ------------------------------------------------------------------ reading

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "pid": self.pid,
            "started_at": self.started_at,
            "exit_code": self.exit_code,
            "run": self.run,
            "restarts": self.restarts,
            "waiting_for": self.waiting_for,
            "last_exit": self.last_exit.as_dict() if self.last_exit is not None else None,
            "model": self._model.describe(time.time()) if self._model is not None else None,
            "adopted": self._child.adopted() if self._child is not None else [],
        }

    @property
    def not_ready(self) -> bool:
        """The readiness probe of the current run timed out and has not passed since."""
        probe = self._probe
        return probe is not None and probe.timed_out and not probe.ready

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} {self.state.value} pid={self.pid} run={self.run}>"

    # ------------------------------------------------------------------ control

    async def start(self) -> bool:
        """Start the process; False (and nothing done) if it is already running. During a
        backoff it starts at once."""
        async with self._lock:
            await self._settle()
            if self.state.is_alive or self._wait_task is not None:
                logger.debug("%s: start ignored, already %s", self.name, self.waiting_for or self.state.value)
                return False
            if self._cancel_backoff():
                self.restarts += 1
            self._backoff_delay = self.settings.backoff_initial
            self._launch_or_wait()
            return True

    async def stop(self) -> bool:
        """Stop the process, or cancel its pending restart (it ends `stopped`); False if there
        was nothing to stop. It only signals; the run's watcher makes the final state change."""
        async with self._lock:
            return await self._stop_locked()

    async def restart(self, because: str | None = None) -> bool:
        """Stop the process if it runs, then start it again (once its dependencies are
        there). `because` (`restart_with`): only if it still runs (False otherwise, say
        after a stop that came first), with a status record saying why."""
        async with self._lock:
            if because is not None:
                if self.state not in (ProcessState.RUNNING, ProcessState.READY):
                    return False
                self._status(because, Level.INFO)
            elif self._wait_task is not None:  # not started yet: the start it waits for is the restart
                return True
            if not self._cancel_backoff():
                await self._stop_locked()
                await self._settle()
            self.restarts += 1
            self._backoff_delay = self.settings.backoff_initial
            self._launch_or_wait()
            return True

    async def _settle(self) -> None:
        """If a stop gave up on a child that would not die, wait until it is gone."""
        if self.state is ProcessState.STOPPING and self._done is not None:
            await self._done.wait()

    def _cancel_backoff(self) -> bool:
        task, self._backoff_task = self._backoff_task, None
        if task is None:
            return False
        task.cancel()
        return True

    def _cancel_wait(self) -> bool:
        task, self._wait_task = self._wait_task, None
        if task is None:
            return False
        task.cancel()
        return True

    async def _stop_locked(self) -> bool:
        if self._cancel_wait():
            message = f"stopped (no longer waiting for {self.waiting_for})"
            self._set_waiting(None)
            if self.state is ProcessState.STOPPED:
                self._status(message, Level.INFO)
            else:
                self._set_state(ProcessState.STOPPED, message)
            return True
        if self._cancel_backoff():
            self._set_state(ProcessState.STOPPED, "stopped (restart cancelled)")
            return True
        if self.state is ProcessState.STOPPING:
            # what a leader that ended by itself left is being stopped: the run ends stopped,
            # not restarted (and at once when told not to wait)
            self._stopping = True
            if self._hurried and self._child is not None and self._child.signal_group(signal.SIGKILL):
                self._killed = True
            await self._settle()
            return True
        if not self.state.is_alive:
            return False
        child, done = self._child, self._done
        assert child is not None and done is not None
        stop_signal = signal.SIGKILL if self._hurried else self.settings.stop_signal
        timeout = 0.0 if self._hurried else self.settings.stop_timeout
        self._stopping = True
        self._stop_deadline = asyncio.get_running_loop().time() + timeout
        if self._probe is not None:
            self._probe.cancel()
        self._set_state(
            ProcessState.STOPPING, f"stopping ({stop_signal.name}, SIGKILL after {_seconds(timeout)})"
        )
        _ask_to_stop(child, stop_signal)
        if await self._wait_done(done, timeout):
            return True
        self._killed = True
        if child.signal_group(signal.SIGKILL):
            logger.info(
                "%s: pid %d still running %ss after %s: SIGKILL",
                self.name,
                child.pid,
                timeout,
                stop_signal.name,
            )
        if await self._wait_done(done, KILL_WAIT):
            return True
        self._status(
            f"pid {child.pid} has not exited {_seconds(KILL_WAIT)} after SIGKILL; still waiting", Level.ERROR
        )
        return False

    def closing(self) -> None:
        """logcast is shutting down: a run that ends from now on is not restarted by its
        policy (the new child would outlive the shutdown, or be stopped at once)."""
        self._closing = True

    def hurry(self) -> None:
        """Do not wait for this process to stop in order (a second Ctrl-C during a
        shutdown): its group is SIGKILLed now if it is stopping, and at once when its stop
        comes (after the processes that depend on it)."""
        self._hurried = True
        child = self._child
        # stopping: asked to, or what a leader that ended by itself left (`_watch`)
        stopping = self._stopping or self.state is ProcessState.STOPPING
        if child is not None and stopping and child.signal_group(signal.SIGKILL):
            self._killed = True
            logger.info("%s: told not to wait: SIGKILL", self.name)

    @staticmethod
    async def _wait_done(done: asyncio.Event, within: float) -> bool:
        try:  # not asyncio.wait_for, which can lose a cancel on Python 3.11 (see logcast.loop)
            async with asyncio.timeout(within):
                await done.wait()
        except TimeoutError:
            return done.is_set()
        return True

    # ------------------------------------------------------------------ one run

    def _set_state(self, new: ProcessState, message: str, level: Level = Level.INFO) -> None:
        check_transition(self.state, new)
        self.state = new
        self._sink.status(self.name, self.run, new, message, level)
        self._notify()

    def _notify(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change(self)
            except Exception:  # a bug there must not break this process's lifecycle
                logger.exception("%s: state change callback failed", self.name)

    def _last_seq(self) -> int | None:
        """The seq of the last record of this process, if the history is known."""
        if self._history is None:
            return None
        try:
            return self._history.get(self.name).last_seq
        except Exception:
            logger.exception("%s: cannot read the last seq", self.name)
            return None

    # ------------------------------------------------------------------ dependencies

    def _launch_or_wait(self) -> None:
        """Start a run now if the dependencies are there, else wait for them in a task (lock held)."""
        waiting = self._gate.unmet() if self._gate is not None else None
        if waiting is None:
            self._set_waiting(None)
            self._launch()
            return
        self._set_waiting(waiting)
        self._wait_task = asyncio.create_task(self._wait_then_launch(), name=f"wait {self.name}")

    async def _wait_then_launch(self) -> None:
        gate = self._gate
        assert gate is not None
        while True:
            # Checked under the lock; then no await comes before `changed()` starts
            # listening, so no change between the check and the wait is missed.
            async with self._lock:
                if self._wait_task is not asyncio.current_task():
                    return
                waiting = gate.unmet()
                if waiting is None:
                    self._wait_task = None
                    self._set_waiting(None)
                    self._launch()
                    return
                self._set_waiting(waiting)
            await gate.changed()

    def _set_waiting(self, waiting: Waiting | None) -> None:
        """Show what a start waits for; a status record each time the reason changes."""
        if waiting is None:
            if self.waiting_for is not None:
                self.waiting_for = self._waiting_message = None
                self._notify()
            return
        if waiting.message == self._waiting_message:
            return
        self.waiting_for, self._waiting_message = waiting.short, waiting.message
        self._status(waiting.message, Level.WARNING if waiting.failed else Level.INFO)
        self._notify()

    def _status(self, message: str, level: Level) -> None:
        """A status record that is not a state change (a warning about the current state)."""
        self._sink.status(self.name, self.run, self.state, message, level)

    def _launch(self) -> None:
        """Spawn a new run (lock held). On the event-loop thread, never a worker thread,
        because PR_SET_PDEATHSIG is tied to the thread that forks."""
        self.run += 1
        run = self.run
        self._stopping = self._killed = self._sent_kill = False
        self.exit_code = None
        self._probe = None
        errors: deque[str] = deque(maxlen=LAST_ERRORS)
        self._errors = errors
        model = self._model = _Model(make_watcher(self.settings.parse, start=time.time()))
        loop = asyncio.get_running_loop()
        self._oom_read = None
        self._oom_before = None
        self.dependency_runs = self._gate.runs() if self._gate is not None else {}
        # one short line: a `-c` script's source or a long argument list is cut;
        # credentials are masked first (status records reach every viewer and the store)
        command = " ".join(mask_command(self.settings.command).split())
        if len(command) > 120:
            command = command[:117] + "..."
        self._set_state(ProcessState.STARTING, f"starting {command} (run {run})")
        self._first_seq = self._last_seq()
        self._started_mono = self._clock()
        try:
            child = self._spawner.spawn(self.settings)
        except Exception as exc:  # a SpawnError says why; anything else must not leave it `starting`
            if not isinstance(exc, SpawnError):
                logger.exception("%s: spawning failed", self.name)
            message = f"failed to start: {exc}"
            self.last_exit = LastExit(run, time.time(), None, None, False, message, (), self._first_seq, None)
            self._set_state(ProcessState.CRASHED, message, Level.ERROR)
            self.last_exit = dataclasses.replace(self.last_exit, last_seq=self._last_seq())
            self._schedule_restart(crashed=True, uptime=0.0)
            return
        try:
            self._oom_read = self._oom_counter(child.pid)
            self._oom_before = self._oom_read()
        except Exception:
            logger.exception("%s: cannot read the OOM-kill counter", self.name)
        self._child = child
        self.pid = child.pid
        self.started_at = time.time()
        done = self._done = asyncio.Event()
        self._set_state(ProcessState.RUNNING, f"started pid {child.pid} (run {run})")
        probe = None
        if self.settings.ready is not None:
            probe = self._probe = ReadinessProbe(
                self.settings.ready,
                on_ready=lambda late: self._on_ready(run, late),
                on_timeout=lambda: self._on_not_ready(run),
            )
            probe.start()
        streams = [(child.stdout, Stream.STDOUT)]
        if child.stderr is not None:
            streams.append((child.stderr, Stream.STDERR))
        readers: list[Reader] = []
        # A sink that can hold capture (the hub) says when it might, and takes lines
        # without holding when asked: then ordinary output is handed on by the reader
        # thread itself, which must never wait.
        holding = self._sink if callable(getattr(self._sink, "would_hold", None)) else None
        may_wait = functools.partial(cast(HoldingSink, holding).would_hold, self.name) if holding else None
        try:
            for fd, stream in streams:
                on_model = lambda run=run: loop.call_soon_threadsafe(self._model_changed, run)  # noqa: E731
                handler = functools.partial(self._line_handler, run, stream, probe, errors, model, on_model)
                reader = self._reader_factory(
                    fd,
                    handler(),
                    f"{self.name}-{stream}",
                    on_lines_now=handler(hold=False) if holding else None,
                    may_wait=may_wait,
                    loop_busy=getattr(holding, "loop_busy", None),
                    on_loss=functools.partial(self._output_lost, loop, run, stream),
                )
                reader.start()  # from here on the reader owns (and closes) fd
                readers.append(reader)
        except Exception as exc:  # cannot read its output: do not let it run unseen
            logger.exception("%s: cannot start output readers", self.name)
            self._status(f"cannot read output ({exc}); killing pid {child.pid}", Level.ERROR)
            self._sent_kill = True
            child.signal_group(signal.SIGKILL)
            for fd, _ in streams[len(readers) :]:
                os.close(fd)
        self._watcher = asyncio.create_task(
            self._watch(child, run, readers, probe, done), name=f"watch {self.name}"
        )

    def _output_lost(self, loop: asyncio.AbstractEventLoop, run: int, stream: Stream, message: str) -> None:
        """(A reader's thread) Output of `run` was lost before it had seqs: an error status
        record says so, written on the loop, where the state is."""

        def say() -> None:
            self._sink.status(self.name, run, self.state, f"{stream}: {message}", Level.ERROR)

        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is left to tell
            loop.call_soon_threadsafe(say)

    def _line_handler(
        self,
        run: int,
        stream: Stream,
        probe: ReadinessProbe | None,
        errors: deque[str],
        model: _Model,
        on_model: Callable[[], object],
        *,
        hold: bool = True,
    ) -> OnLines:
        """What a reader hands its lines to; with `hold=False` (a `HoldingSink` only) it
        never waits for the store."""
        name = self.name
        take = (
            self._sink.lines if hold else functools.partial(cast(HoldingSink, self._sink).lines, hold=False)
        )
        error, critical = Level.ERROR, Level.CRITICAL

        def on_lines(timestamp: float, lines: Lines) -> None:  # reader thread
            first = take(name, run, stream, timestamp, lines)
            if model.feed(lines, timestamp, first):
                on_model()
            if probe is not None:
                probe.feed(lines)
            levels = lines.levels
            if error in levels or critical in levels:  # the run's last error lines, for `last_exit`
                for text, level in zip(lines.texts, levels, strict=True):
                    if level is error or level is critical:
                        errors.append(text[:ERROR_TEXT])  # a deque's append is thread-safe

        return on_lines

    def _model_changed(self, run: int) -> None:
        """The model's phase may have changed: a status record for loading, ready, failed
        (serving and idle alternate with every request: the API shows them, the history not)."""
        model = self._model
        if run != self.run or model is None:
            return
        phase, state = model.phase_change()
        if phase is Phase.LOADING:
            self._status(f"model loading ({model.watcher.kind})", Level.INFO)
        elif phase is Phase.READY:
            took = f" after {state.ready_after_s:.1f}s" if state.ready_after_s is not None else ""
            self._status(f"model ready{took}", Level.INFO)
        elif phase is Phase.FAILED:
            self._status("model failed (see the error lines above)", Level.ERROR)

    def _model_ended(self, run: int) -> None:
        """The run is over: a model still loading failed to load (its status record before
        the one that says how the process ended)."""
        model = self._model
        if model is None:
            return
        with model.lock:
            changed = model.watcher.ended(time.time())
        if changed:
            self._model_changed(run)

    def _on_ready(self, run: int, late: bool) -> None:
        if run != self.run or self.state is not ProcessState.RUNNING:
            return
        took = _seconds(round(self._clock() - self._started_mono, 1))
        assert self.settings.ready is not None
        note = f" (later than the {_seconds(self.settings.ready.timeout)} timeout)" if late else ""
        self._set_state(ProcessState.READY, f"ready after {took}{note}", Level.SUCCESS)

    def _on_not_ready(self, run: int) -> None:
        if run != self.run or self.state is not ProcessState.RUNNING or self._probe is None:
            return
        assert self.settings.ready is not None
        self._status(
            f"not ready after {_seconds(self.settings.ready.timeout)} "
            f"(no {self._probe.describe} yet); still running and waiting",
            Level.WARNING,
        )
        self._notify()  # processes waiting for it to be ready say why

    async def _watch(
        self, child: Child, run: int, readers: list[Reader], probe: ReadinessProbe | None, done: asyncio.Event
    ) -> None:
        """Own the end of one run, whoever caused it, so that "exited with code 1" always
        comes after the run's last line.

        Wait for the leader to exit (a zombie, so its pgid stays ours), let the readers
        drain, ask leftovers of the group to stop (`stop_signal`, then SIGKILL after
        `stop_timeout`, like systemd's control-group kill mode: a crashed server's
        workers must not keep its port), SIGKILL the group, give the readers a bounded
        grace (a process that left the group may hold the pipe forever), then reap and
        make the one final state change.
        """
        code = 255
        cancelled = False
        ended: float | None = None  # when the leader exited: what follows is no uptime
        try:
            code = await child.wait_exit()
            ended = self._clock()
            self.exit_code = code
            if probe is not None:
                await probe.aclose()
            # The deadlines are for the pipes to close (a grandchild may hold them open),
            # not for framing what was read: that waits in the readers' spools and is
            # handed on in full below, before the exit is recorded.
            eofs: dict[asyncio.Future[None], Reader] = {
                asyncio.ensure_future(reader.eof()): reader for reader in readers
            }
            waits = set(eofs)
            pending = await _wait_all(waits, DRAIN)
            # descendants that left the group and were adopted are leftovers too
            escaped = child.escaped()
            gone = {asyncio.ensure_future(all_gone(escaped))} if escaped else set()
            if (pending or gone) and not self._stopping:  # leftovers of a leader that ended by itself
                if _ask_to_stop(child, self.settings.stop_signal):
                    also = f" and {len(escaped)} that left it" if escaped else ""
                    # the process is stopping until they are gone (then it exited or crashed)
                    self._set_state(
                        ProcessState.STOPPING,
                        f"pid {child.pid} {describe_exit(code)}; stopping what is left of its group{also}"
                        f" ({self.settings.stop_signal.name}, SIGKILL after"
                        f" {_seconds(self.settings.stop_timeout)})",
                        Level.WARNING,
                    )
                pending = await _wait_all(pending | gone, self.settings.stop_timeout) - gone
            elif pending or gone:
                # those adopted since the stop began (their parent was in the group) get it now
                child.signal_escaped(signal.SIGKILL if self._hurried else self.settings.stop_signal)
                child.signal_escaped(signal.SIGCONT)
                within = self._stop_deadline - asyncio.get_running_loop().time()
                pending = await _wait_all(pending | gone, within) - gone
            for watch in gone:
                watch.cancel()  # what did not go is SIGKILLed now, and at the run's end (release)
            child.signal_group(signal.SIGKILL)
            pending = await _wait_all(pending, self._reader_grace)
            if pending:
                logger.warning(
                    "%s: output of run %d still open %ss after its group was killed "
                    "(a process left the group?); not waiting for it",
                    self.name,
                    run,
                    self._reader_grace,
                )
                for task in pending:
                    task.cancel()
            for task in waits - pending:
                if not task.cancelled() and task.exception() is not None:
                    logger.error("%s: reader failed", self.name, exc_info=task.exception())
            await asyncio.gather(*(eofs[task].wait() for task in waits - pending), return_exceptions=True)
        except asyncio.CancelledError:  # the loop is going away: leave nothing behind
            cancelled = True
            child.signal_group(signal.SIGKILL)
            raise
        except Exception:
            logger.exception("%s: error while ending run %d", self.name, self.run)
            child.signal_group(signal.SIGKILL)
        finally:
            self._spawner.release(child)
            self._child = None
            self.pid = None
            if not cancelled:
                self._model_ended(run)
                self._finish(child, run, code, self._clock() if ended is None else ended)
            done.set()

    def _finish(self, child: Child, run: int, code: int, ended: float) -> None:
        """The final state change of a run (on the loop, child reaped) whose leader
        exited at `ended` (the clock's time; its leftovers may have taken longer)."""
        if child.exit_code is not None:
            code = child.exit_code
        self.exit_code = code
        uptime = ended - self._started_mono
        if self._stopping:
            if self._hurried:
                self._set_state(ProcessState.STOPPED, f"stopped ({describe_exit(code)}: told not to wait)")
            elif self._killed:
                timeout = _seconds(self.settings.stop_timeout)
                # the leader itself needed the SIGKILL, or it obeyed and others of its group did not
                how = (
                    f"{describe_exit(code)} after {timeout}"
                    if code == -signal.SIGKILL
                    else f"{describe_exit(code)}; the rest of its group was SIGKILLed after {timeout}"
                )
                self._set_state(ProcessState.STOPPED, f"stopped ({how})", Level.WARNING)
            else:
                self._set_state(ProcessState.STOPPED, f"stopped ({describe_exit(code)})")
            return
        if code == 0:
            self._set_state(ProcessState.EXITED, describe_exit(code))
        else:
            self._crashed(run, code, uptime)
        self._schedule_restart(crashed=code != 0, uptime=uptime)

    def _crashed(self, run: int, code: int, uptime: float) -> None:
        """Record a failed run: `last_exit`, and a status record that says how it died,
        after how long, whether it ever became ready, and its last error."""
        oom_kills = 0
        if self._oom_read is not None and self._oom_before is not None:
            try:
                after = self._oom_read()
            except Exception:
                logger.exception("%s: cannot read the OOM-kill counter", self.name)
                after = None
            oom_kills = max(0, after - self._oom_before) if after is not None else 0
        how, signal_name, oom = how_it_ended(code, killed_by_logcast=self._sent_kill, oom_kills=oom_kills)
        notes: list[str] = []
        if self.not_ready and self._probe is not None and self.settings.ready is not None:
            timeout = _seconds(self.settings.ready.timeout)
            notes.append(f"it never became ready (no {self._probe.describe} within {timeout})")
        reason = "; ".join([how, *notes])
        errors = tuple(self._errors)
        if errors:
            last = errors[-1] if len(errors[-1]) <= SUMMARY_TEXT else errors[-1][: SUMMARY_TEXT - 3] + "..."
            notes.append(f"last error: {last}")
        message = "; ".join([f"{how} after {duration(uptime)}", *notes])
        self.last_exit = LastExit(
            run, time.time(), code, signal_name, oom, reason, errors, self._first_seq, None
        )
        self._set_state(ProcessState.CRASHED, message, Level.ERROR)
        self.last_exit = dataclasses.replace(self.last_exit, last_seq=self._last_seq())

    def _schedule_restart(self, *, crashed: bool, uptime: float) -> None:
        """Apply the restart policy (`crashed`: a non-zero exit or a signal logcast did not
        send). The delay doubles from `backoff_initial` up to `backoff_max`; a run that
        stayed up `min_uptime` resets it, as does a manual start. Restarts never give up
        (no supervisord FATAL): a model server whose GPU is busy should come up once it
        is free, and the capped delay keeps the cost small."""
        policy = self.settings.restart
        if policy is RestartPolicy.NEVER or (policy is RestartPolicy.ON_FAILURE and not crashed):
            return
        if self._closing:
            return
        if uptime >= self.settings.min_uptime:
            self._backoff_delay = self.settings.backoff_initial
        delay = self._backoff_delay
        self._backoff_delay = min(delay * 2, self.settings.backoff_max)
        self._set_state(ProcessState.BACKOFF, f"restarting in {_seconds(delay)} (backoff)", Level.WARNING)
        self._backoff_task = asyncio.create_task(self._restart_after(delay), name=f"backoff {self.name}")

    async def _restart_after(self, delay: float) -> None:
        await self._sleep(delay)
        async with self._lock:
            if self._backoff_task is not asyncio.current_task() or self.state is not ProcessState.BACKOFF:
                return
            self._backoff_task = None
            self.restarts += 1
            self._launch_or_wait()


def _ask_to_stop(child: Child, sig: signal.Signals) -> bool:
    """`sig` to the child's group, then SIGCONT, as systemd does: a stopped process
    (SIGSTOP, a terminal's Ctrl-Z) keeps any other signal pending, and would only ever
    get its SIGKILL. False when nobody is left."""
    sent = child.signal_group(sig)
    if sent and sig not in (signal.SIGKILL, signal.SIGCONT):
        child.signal_group(signal.SIGCONT)
    return sent


MARKS = 200  # seqs of the lines the model parser read, kept per run for the viewer


class _Model:
    """One run's model watcher, fed from both pipes' reader threads (hence the lock)."""

    def __init__(self, watcher: ModelWatcher) -> None:
        self.watcher = watcher
        self.lock = threading.Lock()
        self.marks: deque[int] = deque(maxlen=MARKS)
        self.reported: Phase | None = None  # the phase last told in a status record

    def feed(self, lines: Lines, timestamp: float, first_seq: int | None) -> bool:
        """Read a chunk; True if the state changed."""
        with self.lock:
            changed = self.watcher.feed(lines.texts, lines.partial, timestamp)
            marked = self.watcher.last_marked
        if marked and first_seq:
            self.marks.extend(first_seq + i for i in marked)
        return changed

    def phase_change(self) -> tuple[Phase | None, ModelState]:
        """The phase to report now (loading, ready, failed: once each as it is entered), and the state."""
        with self.lock:
            state = self.watcher.state
        phase = state.phase
        if phase in (None, Phase.SERVING, Phase.IDLE) or phase is self.reported:
            return None, state
        self.reported = phase
        return phase, state

    def describe(self, now: float) -> dict[str, Any] | None:
        """The API's `model`, or None while the output is not a model server's."""
        with self.lock:
            self.watcher.tick(now)
            kind, state = self.watcher.kind, self.watcher.state
        if kind in (None, "none") or state.phase is None:
            return None
        return {**state.as_dict(), "kind": kind, "marked": list(self.marks)}
