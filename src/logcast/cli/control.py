"""`logcast ps`, `logcast start|stop|restart NAME…`: control over the HTTP API.

Each prints what the server answered; a failure (unknown process, server unreachable,
wrong token) is one readable line on stderr and exit code 1.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from logcast.cli import render
from logcast.cli.options import TokenOption, UrlOption
from logcast.client import Client, ProcessInfo
from logcast.client._common import CONTROL_TIMEOUT
from logcast.errors import ClientError
from logcast.secrets import mask_argv, mask_env
from logcast.types import ProcessState

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

ANSWER_DEADLINE_FACTOR = 3.0  # a whole answer, its head included, within this many client timeouts


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False).print(Text(f"error: {render.plain(message)}", style="red"))
    return typer.Exit(1)


def _json(value: Any) -> str:
    """A line of JSON to print (`render.safe_json`)."""
    return render.safe_json(orjson.dumps(value)).decode() + "\n"


def _words(value: Any) -> str:
    """A command word or environment value as text; anything but a scalar (a server's
    odd answer, lists nested deep) as `?`, never `str()` of it."""
    return str(value) if isinstance(value, str | int | float | bool) or value is None else "?"


def masked(raw: dict[str, Any]) -> dict[str, Any]:
    """A process as the server described it, with its command and environment masked
    (again: a server of an older version did not mask them)."""
    out = dict(raw)
    command = out.get("command")
    if isinstance(command, list):
        out["command"] = mask_argv(_words(word) for word in command)
    env = out.get("env")
    if isinstance(env, dict):
        out["env"] = mask_env({_words(name): _words(value) for name, value in env.items()})
    return out


@contextlib.contextmanager
def _answered_within(seconds: float) -> Iterator[None]:
    """Raise `ClientError` if the block (one call to the server) takes over `seconds`.

    httpx bounds each read by the timeout, not an answer: a server (or a proxy) that sends
    a byte of its head every few seconds held `ps` forever. The block is cut short by
    SIGALRM, so only on the main thread (a command's). An interval timer already set (a
    test runner's) keeps its due time: its alarm goes to its handler, and it is set again
    after the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    deadline = time.monotonic() + seconds
    earlier_due: float | None = None  # when the timer set before ours is due

    def alarm(signum: int, frame: FrameType | None) -> None:
        nonlocal earlier_due
        now = time.monotonic()
        if earlier_due is not None and now >= earlier_due:  # the earlier timer's alarm
            earlier_due = now + interval if interval else None
            signal.setitimer(signal.ITIMER_REAL, max(min(deadline, earlier_due or deadline) - now, 0.001))
            if callable(previous):
                previous(signum, frame)
            return
        if now >= deadline:
            raise ClientError(f"the server did not answer within {seconds:g} s")
        signal.setitimer(signal.ITIMER_REAL, deadline - now)

    previous = signal.signal(signal.SIGALRM, alarm)
    earlier, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    if earlier:
        earlier_due = time.monotonic() + earlier
        if earlier < seconds:
            signal.setitimer(signal.ITIMER_REAL, earlier)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if earlier_due is not None:
            signal.setitimer(signal.ITIMER_REAL, max(earlier_due - time.monotonic(), 0.001), interval)


def _answer(client: Client, call: Callable[[], Any], *, within: float | None = None) -> Any:
    """`call()` of `client`, its whole answer within `within` s (`ANSWER_DEADLINE_FACTOR`
    timeouts by default)."""
    with _answered_within(ANSWER_DEADLINE_FACTOR * client.timeout if within is None else within):
        return call()


def _client(url: str | None, token: str | None) -> Client:
    try:
        return Client(url, token)
    except ClientError as exc:
        raise _fail(str(exc)) from None


def state_text(info: ProcessInfo, *, detail: bool = False) -> Text:
    """The state as one word (a table's column), or with `detail` what it waits for."""
    style = render.STATE_STYLE.get(info.state, "")
    label = info.state.value
    if info.waiting_for and not info.state.is_alive:  # started, its dependency not there yet
        return Text(f"waiting for {render.plain(info.waiting_for)}" if detail else "waiting", style="yellow")
    if info.exit_code is not None and not info.state.is_alive and info.state is not ProcessState.UNKNOWN:
        label += f" ({info.exit_code})"
        if info.exit_code != 0:
            style = "red"
    return Text(label, style=style)


def process_table(processes: list[ProcessInfo]) -> Table:
    """NAME … LINES as before, then HOST, CPU, MEM and MODEL (new columns go last, so a
    script that reads the columns by position still finds them where they were). A process
    whose host is lost (`unknown`) shows no pid."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in (
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RUN",
        "RESTARTS",
        "LINES",
        "HOST",
        "CPU",
        "MEM",
        "MODEL",
    ):
        table.add_column(column, justify="left" if column in ("NAME", "STATE", "HOST", "MODEL") else "right")
    for info in processes:
        unknown = info.state is ProcessState.UNKNOWN
        used = info.resources
        table.add_row(
            Text(render.plain(info.name)),
            state_text(info),
            str(info.pid) if info.pid and not unknown else "-",
            render.duration(info.uptime) if info.state.is_alive else "-",
            str(info.run),
            str(info.restarts),
            str(info.lines),
            Text(render.plain(info.host or "-"), style="dim" if unknown else ""),
            f"{used.cpu_percent:.0f}%" if used is not None else "-",
            render.size(used.rss_bytes) if used is not None else "-",
            model_text(info),
        )
    return table


def model_text(info: ProcessInfo) -> Text:
    """`loading 42%`, `serving 35 tok/s`, `ready`, `failed`; `-` for no model server."""
    model = info.model
    if model is None:
        return Text("-")
    label = render.plain(model.phase)
    if model.phase == "loading" and model.load_progress is not None:
        label += f" {model.load_progress:.0%}"
    elif model.phase == "serving" and model.gen_tokens_per_s is not None:
        label += f" {model.gen_tokens_per_s:.0f}tok/s"
    return Text(label, style="red" if model.phase == "failed" else "")


def ps(url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """List the processes and their states."""
    with _client(url, token) as client:
        try:
            processes = _answer(client, client.processes)
        except ClientError as exc:
            raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(_json({"processes": [masked(p.raw) for p in processes]}))
        return
    if not processes:
        Console(stderr=True).print("no processes configured")
        return
    Console(highlight=False).print(process_table(processes))


def _summary(info: ProcessInfo) -> Text:
    text = Text(f"{render.plain(info.name)}: ")
    text.append_text(state_text(info, detail=True))
    if info.pid and info.state.is_alive:
        text.append(f" (pid {info.pid}, run {info.run})")
    return text


def _act(action: str, names: list[str], url: str | None, token: str | None, as_json: bool) -> None:
    failed = False
    results = []
    console = Console(highlight=False)
    with _client(url, token) as client:
        call: Callable[[str], ProcessInfo] = getattr(client, action)
        for name in names:
            try:
                # the server answers once the action is done: a stop waits for the process
                info = _answer(client, lambda: call(name), within=CONTROL_TIMEOUT)  # noqa: B023 (called at once)
            except ClientError as exc:
                failed = True
                Console(stderr=True, highlight=False).print(
                    Text(f"error: {render.plain(f'{name}: {exc}')}", style="red")
                )
                if exc.status is None or exc.status == 401:  # unreachable or unauthorised: stop here
                    break
                continue
            results.append(masked(info.raw))
            if not as_json:
                console.print(_summary(info))
            why = _failed_at_once(info) if action in ("start", "restart") else None
            if why is not None:  # the server did what it was asked; the process did not start
                failed = True
                Console(stderr=True, highlight=False).print(
                    Text(f"error: {render.plain(f'{name}: {why}')}", style="red")
                )
    if as_json:
        sys.stdout.write(_json({"processes": results}))
    if failed:
        raise typer.Exit(1)


def _failed_at_once(info: ProcessInfo) -> str | None:
    """How the run a start or restart just made ended, if it already did in failure
    (a command not found, a crash at once); None while it runs, waits or exited 0."""
    last = info.last_exit
    if last is None or last.run != info.run or info.waiting_for:  # waiting: no run began yet
        return None
    if info.state in (ProcessState.CRASHED, ProcessState.BACKOFF):
        return last.reason
    return None


NamesArgument = Annotated[list[str], typer.Argument(metavar="NAME...", help="Process names.")]


def start(
    names: NamesArgument, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Start processes; prints their state once spawned."""
    _act("start", names, url, token, as_json)


def stop(
    names: NamesArgument, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Stop processes; prints their state once stopped."""
    _act("stop", names, url, token, as_json)


def restart(
    names: NamesArgument, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Restart processes; prints their new state."""
    _act("restart", names, url, token, as_json)


def register(app: typer.Typer) -> None:
    app.command("ps")(ps)
    app.command("start")(start)
    app.command("stop")(stop)
    app.command("restart")(restart)
