"""What a broken or hostile server sends never reaches the user's terminal as control
sequences, markup or a traceback: `logcast tail`, `ps`/`start`/`stop`, the monitor and the
client's parsing of odd answers (times no clock shows, seqs past 64 bits, odd charsets,
a process list that is not one)."""

from __future__ import annotations

import io
import math
from typing import Any

import httpx
import orjson
import pytest
from rich.console import Console

from logcast.cli import control, render
from logcast.cli.monitor import ConfirmScreen, MonitorApp
from logcast.cli.monitor.app import COLUMNS
from logcast.cli.tail import Printer
from logcast.client import ConnectionState, ProcessInfo
from logcast.client._common import error_from_response, process_list
from logcast.client.events import Event, parse_events, record_of
from logcast.errors import ClientError
from logcast.types import EventType
from tests.conftest import free_port

EVIL = "\x1b]0;PWNED\x07\x1b[2J\x1b[31mRED[/nope]"
CONTROL = ("\x1b", "\x07")


def clean(text: str) -> bool:
    return not any(c in text for c in CONTROL)


def info(**fields: Any) -> ProcessInfo:
    base: dict[str, Any] = {
        "name": "web", "state": "running", "host": "h", "pid": 7, "run": 1, "restarts": 0,
        "lines": 3, "bytes": 30, "lines_per_s": 0.0, "warnings": 0, "errors": 0, "last_error": None,
        "subscribers": 0, "last_seq": 3,
    }  # fmt: skip
    return ProcessInfo.from_dict({**base, **fields})


# -- logcast tail ----------------------------------------------------------------------


def test_the_tails_failures_and_gap_reasons_are_printed_without_controls() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = Printer(["web"], out, err)
    printer.failure(f"web: gave up after 2 attempts ({EVIL})")
    gap = Event(EventType.GAP, "web", seq=5, gap_from=1, gap_to=5, reason=EVIL)
    printer.event(gap)
    assert "RED" in err.getvalue() and clean(err.getvalue())
    assert "lines missed" in out.getvalue() and clean(out.getvalue())
    bare = Printer(["web"], out, err, bare=True)
    bare.event(gap)  # with --bare the notice goes to stderr
    assert clean(err.getvalue())


@pytest.mark.parametrize("timestamp", [math.inf, -math.inf, math.nan, 1e300, 10.0**20, -1.0, 0.0])
def test_a_time_no_clock_shows_is_dashes_not_a_crash(timestamp: float) -> None:
    assert render.clock(timestamp) == "--:--:--.---"
    assert render.clocks([timestamp, 1.5]) == ["--:--:--.---", render.clock(1.5)]
    assert render.duration(timestamp) in ("-", "0s")


def test_a_line_with_an_infinite_time_is_printed() -> None:
    data = b'{"type":"realtime","log":{"seq":5,"timestamp":"inf","level":"info","message":"m","stream":"stdout","process":"web","run":1}}'
    out = io.StringIO()
    Printer(["web"], out, io.StringIO()).events(parse_events(data, "5", "web"))
    assert "--:--:--.--- INFO" in out.getvalue() and out.getvalue().endswith("m\n")


# -- ps, start, stop -------------------------------------------------------------------


def rendered(renderable: Any) -> str:
    console = Console(file=io.StringIO(), width=300, color_system=None)
    console.print(renderable)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def test_ps_and_control_print_the_servers_words_without_controls(capsys: pytest.CaptureFixture[str]) -> None:
    model = {"kind": "vllm", "phase": f"ph{EVIL}", "load_progress": None, "ready_after_s": None,
             "requests": 0, "prompt_tokens_per_s": None, "gen_tokens_per_s": None,
             "last_request_at": None, "marked": []}  # fmt: skip
    hostile = info(name=f"web{EVIL}", host=f"h{EVIL}", model=model)
    table = rendered(control.process_table([hostile]))
    assert "RED" in table and clean(table)
    assert clean(rendered(control._summary(hostile)))
    control._fail(f"unexpected answer {EVIL}")
    err = capsys.readouterr().err
    assert "RED" in err and clean(err)


def test_json_output_masks_odd_commands_without_recursing() -> None:
    deep = orjson.loads("[" * 1000 + "]" * 1000)
    out = control.masked(
        {"command": ["python", deep, 3, "--token=s3cret"], "env": {"A": deep, "API_KEY": "x"}}
    )
    assert out["command"][:3] == ["python", "?", "3"] and "s3cret" not in str(out["command"])
    assert out["env"]["A"] == "?" and out["env"]["API_KEY"] != "x"


@pytest.mark.parametrize("body", [[], {}, {"processes": 3}, {"processes": [1]}, {"processes": {"a": {}}}])
def test_a_process_list_that_is_not_one_is_a_clear_error(body: Any) -> None:
    with pytest.raises(ClientError, match="unexpected process"):
        process_list(body)


@pytest.mark.parametrize("charset", ["rot13", "hex", "base64", "no-such-codec"])
def test_an_error_in_an_odd_charset_is_read_as_utf8(charset: str) -> None:
    response = httpx.Response(
        503,
        headers={"content-type": f"text/plain; charset={charset}"},
        content="the server is down ✗".encode(),
        request=httpx.Request("GET", "http://x/"),
    )
    assert "the server is down ✗" in str(error_from_response(response))


# -- seqs -------------------------------------------------------------------------------


@pytest.mark.parametrize("seq", ["9" * 25, str(2**63), -1, 2**63 + 5])
def test_a_seq_past_64_bits_or_below_zero_is_refused(seq: Any) -> None:
    record = {"seq": seq, "timestamp": 1.0, "level": "info", "message": "m", "stream": "stdout"}
    with pytest.raises(ValueError, match="seq"):
        record_of({**record, "process": "web", "run": 1})
    data = orjson.dumps({"type": "gap", "from": 1, "to": seq})
    [gap] = parse_events(data, None, "web")
    assert gap.gap_to is None  # not a number this client keeps


@pytest.mark.parametrize("digits", ["²", "١٢", "１２", "3²"])
def test_an_id_or_seq_in_digits_that_are_not_ascii_is_no_number(digits: str) -> None:
    """`str.isdigit` says yes to these and `int` refuses them: the id is left out, the
    message is read, no ValueError."""
    [status] = parse_events(orjson.dumps({"type": "status", "message": "up"}), digits, "web")
    assert status.seq is None and status.message == "up"
    [gap] = parse_events(orjson.dumps({"type": "gap", "from": 1, "to": digits}), "7", "web")
    assert gap.gap_to is None and gap.seq == 7


# -- the monitor --------------------------------------------------------------------------


def test_the_monitors_rows_show_the_servers_words_without_controls() -> None:
    app = MonitorApp(url="http://localhost.test")
    hostile = info(name=f"web{EVIL}", host=f"h{EVIL}")
    cells = dict(zip((key for key, _ in COLUMNS), app._cells(hostile), strict=True))
    for key in ("name", "host"):
        text = getattr(cells[key], "plain", cells[key])
        assert "RED" in text and clean(text)


async def test_the_monitor_says_markup_and_controls_as_text_and_keeps_running() -> None:
    app = MonitorApp(url=f"http://127.0.0.1:{free_port()}")
    async with app.run_test(size=(150, 45)) as pilot:
        app.say(f"stop web: {EVIL}", severity="error")  # `[/nope]` would end the app as markup
        await app.push_screen(ConfirmScreen(f"Stop web{EVIL}?"))
        await pilot.pause()
        assert app.is_running
        messages = [n.message for n in app._notifications]
        assert any("RED" in m and clean(m) for m in messages)


def test_the_tail_keeps_few_names_a_server_makes_up() -> None:
    printer = Printer(["web"], io.StringIO(), io.StringIO())
    for n in range(500):
        record = {"seq": n + 1, "timestamp": 1.0, "level": "info", "message": "m", "stream": "stdout",
                  "process": f"made-up-{n}", "run": 1}  # fmt: skip
        data = orjson.dumps({"type": "realtime", "log": record})
        printer.events(parse_events(data, str(n + 1), "web"), "web")
    assert len(printer.follows) <= 1 + 64


async def test_a_monitor_stream_that_fails_oddly_is_shown_disconnected() -> None:
    app = MonitorApp(url=f"http://127.0.0.1:{free_port()}")

    async def broken(name: str, **options: Any) -> Any:
        raise ValueError(f"odd answer {EVIL}")
        yield  # an async generator

    async with app.run_test(size=(150, 45)) as pilot:
        app.client.stream = broken  # type: ignore[method-assign]
        await app._follow("web")
        await pilot.pause()
        assert app.is_running and app.streams["web"] is ConnectionState.DISCONNECTED
        assert any("odd answer" in n.message and clean(n.message) for n in app._notifications)
