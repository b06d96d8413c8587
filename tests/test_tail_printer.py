"""`logcast tail`'s printer, a batch at a time: what stdout and stderr get, marked or bare."""

from __future__ import annotations

import io
import json
import os
import time

from logcast.cli import render
from logcast.cli.tail import Printer
from logcast.client.events import ConnectionState, Event, connection_event
from logcast.query import compile_regex
from logcast.types import EventType, Level, LogRecord, ProcessState, Stream

T = 1_763_800_000.25


def line(seq: int, message: str, kind: EventType = EventType.REALTIME, **kw: object) -> Event:
    fields: dict[str, object] = {
        "seq": seq,
        "timestamp": T + seq,
        "level": Level.INFO,
        "message": message,
        "stream": Stream.STDOUT,
        "process": "web",
        "run": 1,
    }
    fields.update(kw)
    log = LogRecord(**fields)  # type: ignore[arg-type]
    return Event(kind, str(fields["process"]), log=log, seq=seq)


def status(seq: int, message: str, state: ProcessState, kind: EventType = EventType.STATUS) -> Event:
    log = LogRecord(seq, T + seq, Level.INFO, message, Stream.SYSTEM, "web", 1, state=state)
    return Event(kind, "web", log=log, seq=seq)


def printer(names: tuple[str, ...] = ("web",), **kw: object) -> tuple[Printer, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Printer(list(names), out, err, **kw), out, err  # type: ignore[arg-type]


def hms(seq: int) -> str:
    return render.clock(T + seq)


def test_history_then_live_marked_with_time_and_level() -> None:
    p, out, err = printer()
    p.events([connection_event("web", ConnectionState.CONNECTED)])
    p.events(
        [
            status(1, "started pid 7 (run 1)", ProcessState.RUNNING, EventType.HISTORICAL),
            line(2, "one", EventType.HISTORICAL),
            line(3, "two", EventType.HISTORICAL, level=Level.WARNING),
            Event(EventType.HISTORICAL_COMPLETE, "web", seq=3),
            line(4, "three", level=Level.ERROR),
            Event(EventType.GAP, "web", seq=9, gap_from=5, gap_to=9, reason="slow"),
            line(10, ""),
            status(11, "exited with code 1", ProcessState.CRASHED),
        ]
    )
    assert out.getvalue().splitlines() == [
        "[history] [logcast] web: started pid 7 (run 1)",
        f"[history] {hms(2)} INFO     one",
        f"[history] {hms(3)} WARNING  two",
        f"[live] {hms(4)} ERROR    three",
        "[live] … 5 lines missed (5–9, slow)",
        f"[live] {hms(10)} INFO     ",
        "[live] [logcast] web: exited with code 1",
    ]
    assert err.getvalue() == "🟢 web: connected\n"


def test_colours_on_a_terminal() -> None:
    p, out, _ = printer(color=True)
    p.events([line(1, "bad", level=Level.ERROR), line(2, "", level=Level.ERROR), line(3, "ok")])
    red = "\x1b[31m"
    assert out.getvalue().splitlines() == [
        f"[live] {hms(1)} {red}ERROR   \x1b[0m {red}bad\x1b[0m",
        f"[live] {hms(2)} {red}ERROR   \x1b[0m ",
        f"[live] {hms(3)} INFO     ok",
    ]


def test_a_line_s_own_colours_end_with_it() -> None:
    """A line that leaves its colour on (no reset) must not paint the lines after it (a
    review: an INFO line's red, and stderr's, ran on to every later line)."""
    p, out, _ = printer(color=True)
    p.events([line(1, "\x1b[31mred, never reset"), line(2, "plain"), line(3, "\x1b[8m\x1b[32mhidden?")])
    assert out.getvalue().splitlines() == [
        f"[live] {hms(1)} INFO     \x1b[31mred, never reset\x1b[0m",
        f"[live] {hms(2)} INFO     plain",
        f"[live] {hms(3)} INFO     \x1b[32mhidden?\x1b[0m",
    ]


def test_several_processes_prefixed_in_one_batch() -> None:
    p, out, _ = printer(("api", "worker"))
    p.events([line(1, "a", process="api"), line(1, "w", process="worker"), line(2, "b", process="api")])
    assert out.getvalue().splitlines() == [
        f"api    | [live] {hms(1)} INFO     a",
        f"worker | [live] {hms(1)} INFO     w",
        f"api    | [live] {hms(2)} INFO     b",
    ]


def test_a_process_followed_by_an_alias_is_shown_under_that_alias() -> None:
    p, out, _ = printer(("api", "qwen"))  # `qwen`: an alias of the process `qwen3`
    p.events([line(1, "a", process="api")], "api")
    p.events([line(7, "loaded", process="qwen3"), line(8, "ready", process="qwen3")], "qwen")
    assert out.getvalue().splitlines() == [
        f"api  | [live] {hms(1)} INFO     a",
        f"qwen | [live] {hms(7)} INFO     loaded",
        f"qwen | [live] {hms(8)} INFO     ready",
    ]


def test_bare_prints_the_lines_alone_and_logcasts_words_on_stderr() -> None:
    p, out, err = printer(bare=True)
    p.events(
        [
            status(1, "started --api-key ••••••", ProcessState.RUNNING, EventType.HISTORICAL),
            line(2, "one", EventType.HISTORICAL),
            Event(EventType.HISTORICAL_COMPLETE, "web", seq=2),
            line(3, "\x1b[31mred\x1b[0m \x1b]0;title\x07\x1b[2Jafter", level=Level.ERROR),
            Event(EventType.GAP, "web", seq=9, gap_from=4, gap_to=9, reason="slow"),
            line(10, "last"),
            Event(EventType.STREAM_END, "web", message="web exited"),
        ]
    )
    assert out.getvalue() == "one\nred after\nlast\n"
    assert err.getvalue().splitlines() == [
        "[logcast] web: started --api-key ••••••",
        "[logcast] web: … 6 lines missed (4–9, slow)",
        "[logcast] web: web exited",
    ]


def test_bare_without_colours_even_when_asked_and_raw_untouched() -> None:
    text = "\x1b[31mred\x1b[0m \x1b]0;title\x07"
    p, out, _ = printer(bare=True, color=True)
    p.events([line(1, text)])
    assert out.getvalue() == "red \n"
    p, out, _ = printer(bare=True, raw=True)
    p.events([line(1, text)])
    assert out.getvalue() == text + "\n"


def test_bare_partial_records_continue_their_line() -> None:
    p, out, _ = printer(bare=True)
    p.events([line(1, "loading"), line(2, "… ", partial=True)])
    p.events([line(3, "done")])  # the rest of the line, in the next batch
    p.events([line(4, "x" * 3, partial=True), line(5, "yyy", partial=True)])
    p.events([line(6, "new run", run=2)])  # the process restarted: its line ended there
    assert out.getvalue() == "loading\n… done\nxxxyyy\nnew run\n"


def test_bare_grep_ends_a_long_line_whose_rest_it_left_out() -> None:
    """A line of over 64 KiB comes in pieces; `--grep` matched its first and left out the
    rest, and the next match was glued to it (a review)."""
    p, out, _ = printer(bare=True, grep=compile_regex("big|after"))
    p.events([line(1, "big:AAA", partial=True), line(2, "AAA", partial=True), line(3, "AAA")])
    p.events([line(4, "after-big")])
    p.events([line(5, "big again", partial=True)])
    p.events([line(6, "rest, left out"), line(7, "after, its own line")])
    p.events([line(8, "big", partial=True), line(9, "big", partial=True)])  # both kept: one line
    p.events([line(10, "after the end")])
    assert out.getvalue().splitlines() == [
        "big:AAA",
        "after-big",
        "big again",
        "after, its own line",
        "bigbigafter the end",
    ]


def test_grep_looks_at_the_text_as_shown() -> None:
    p, out, _ = printer(bare=True, grep=compile_regex("INFO: +GET"))
    p.events([line(1, "\x1b[32mINFO\x1b[0m:  GET /"), line(2, "\x1b[32mINFO\x1b[0m:  POST /")])
    assert out.getvalue() == "INFO:  GET /\n"


def test_grep_leaves_lines_out_but_never_logcasts_words() -> None:
    p, out, _ = printer(grep=compile_regex("b[ao]d"))
    p.events(
        [
            line(1, "good"),
            line(2, "bad one"),
            status(3, "exited", ProcessState.EXITED),
            line(4, "BOD"),
            line(5, "fine"),
        ]
    )
    assert out.getvalue().splitlines() == [
        f"[live] {hms(2)} INFO     bad one",
        "[live] [logcast] web: exited",
        f"[live] {hms(4)} INFO     BOD",
    ]


def test_json_one_event_per_line() -> None:
    p, out, err = printer(json=True)
    p.events([connection_event("web", ConnectionState.CONNECTED)])
    p.events([line(1, "a"), Event(EventType.GAP, "web", seq=3, gap_from=2, gap_to=3, reason="slow")])
    events = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [e["type"] for e in events] == ["realtime", "gap"]
    assert events[0]["log"]["message"] == "a" and events[0]["process"] == "web"
    assert "connected" in err.getvalue()


def test_a_batch_goes_straight_to_the_descriptor() -> None:
    read, write = os.pipe()
    with os.fdopen(write, "w", encoding="utf-8") as out:
        p = Printer(["web"], out, io.StringIO(), bare=True)
        p.events([line(i, f"n {i} é") for i in range(2000)])
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"\n") < 2000 and time.monotonic() < deadline:
            data += os.read(read, 1 << 20)
    os.close(read)
    assert data.decode().splitlines() == [f"n {i} é" for i in range(2000)]


def test_a_word_on_the_connection_made_is_printed_with_it() -> None:
    """The client's `behind_notice` (the server's history ends before the last seq seen)
    is a `connected` event with a reason: printed, each time, on stderr."""
    p, out, err = printer()
    p.events([connection_event("web", ConnectionState.CONNECTED)])
    why = "the server's history ends at seq 10, before seq 94 seen already"
    p.events([connection_event("web", ConnectionState.CONNECTED, reason=why)])
    p.events([line(11, "after")])
    lines = err.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].endswith(f"connected ({why})")
    assert "after" in out.getvalue()
