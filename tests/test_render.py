"""Terminal rendering: a batch is made safe exactly as its lines one by one; the clock."""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logcast.cli import render
from tests.test_ansi import HOSTILE

ESC = "\x1b"
PIECES = [
    *HOSTILE.values(),
    f"{ESC}[31m",
    f"{ESC}[0m",
    f"{ESC}[1;32mgreen{ESC}[0m",
    f"{ESC}[31",  # an SGR cut short
    f"{ESC}]0;unterminated title",
    ESC,
    "\x07",
    "\x00",
    "\x7f",
    "\x85",
    "\r",
    "\t",
    "plain text",
    "日本語",
    "\u202e",  # a bidirectional override
    "\u2068",  # an isolate
    "עברית\u200f",  # right-to-left text and its mark: kept
    " ",
    "",
]

texts = st.lists(st.lists(st.sampled_from(PIECES), max_size=6).map("".join), max_size=12)


@given(texts, st.booleans())
def test_a_batch_is_made_safe_as_each_of_its_texts(batch: list[str], color: bool) -> None:
    assert render.safe_texts(batch, color=color) == [render.safe_text(t, color=color) for t in batch]


@pytest.mark.parametrize("color", [True, False])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_one_hostile_text_among_plain_ones(name: str, color: bool) -> None:
    batch = ["before", f"x {HOSTILE[name]} y", "after"]
    cleaned = render.safe_texts(batch, color=color)
    assert cleaned == [render.safe_text(t, color=color) for t in batch]
    assert ESC not in cleaned[1] and "\x07" not in cleaned[1]


def test_a_bidirectional_override_in_a_batch_is_shown_as_a_placeholder() -> None:
    batch = ["a.txt", "b\u202etxt.exe", "עברית"]
    assert render.safe_texts(batch) == ["a.txt", "b\ufffdtxt.exe", "עברית"]
    assert render.safe_texts(batch, color=False) == ["a.txt", "btxt.exe", "עברית"]


@given(st.text(st.characters(max_codepoint=0x7F)) | st.text())
def test_the_printable_check_is_pythons(text: str) -> None:
    """Its ASCII shortcut says what `str.isprintable` says, controls and DEL included."""
    assert render._printable(text) is text.isprintable()


@pytest.mark.parametrize("char", [chr(c) for c in (*range(0x20), 0x7F)])
def test_every_ascii_control_makes_a_batch_unprintable(char: str) -> None:
    assert not render._printable(f"plain {char} text")
    assert render._printable("plain text ~")


def test_colours_kept_for_a_terminal_and_removed_for_a_pipe() -> None:
    batch = [f"{ESC}[31mred{ESC}[0m", "plain"]
    assert render.safe_texts(batch, color=True) == batch
    assert render.safe_texts(batch, color=False) == ["red", "plain"]


def test_raw_and_clean_batches_come_back_as_they_are() -> None:
    hostile = [f"{ESC}]0;pwned\x07", "x"]
    assert render.safe_texts(hostile, raw=True) is hostile
    clean = ["a line", "another\twith a tab", "ünïcode"]
    assert render.safe_texts(clean) is clean
    assert render.safe_texts([]) == []


@given(st.floats(min_value=1.0, max_value=4_000_000_000.0, allow_nan=False))
def test_clock(timestamp: float) -> None:
    whole = int(timestamp)
    expected = time.strftime("%H:%M:%S", time.localtime(whole)) + f".{int((timestamp - whole) * 1000):03d}"
    assert render.clock(timestamp) == expected


def test_clock_across_seconds_and_unknown_time() -> None:
    start = 1_763_800_000.0
    stamps = [start + i * 0.25 for i in range(12)]
    assert [render.clock(t) for t in stamps] == [
        time.strftime("%H:%M:%S", time.localtime(int(t))) + f".{int((t - int(t)) * 1000):03d}" for t in stamps
    ]
    assert render.clock(0) == "--:--:--.---"


@given(st.lists(st.one_of(st.just(0.0), st.floats(min_value=-5.0, max_value=4_000_000_000.0)), max_size=30))
def test_clocks_of_a_batch_are_the_clock_of_each(stamps: list[float]) -> None:
    assert render.clocks(stamps) == [render.clock(t) for t in stamps]


UNSAFE = {chr(c) for c in (0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


@given(st.text() | st.text(st.sampled_from([*sorted(UNSAFE), "é", "\u200f", "a", "\u2028"])))
def test_json_to_print_is_the_same_json_without_what_a_terminal_obeys(text: str) -> None:
    """`tail --json` and `ps --json`: orjson escapes the C0 controls, not DEL, C1 (0x9B is
    CSI to some terminals) or the bidirectional controls; these become escapes."""
    data = orjson.dumps({"message": text})
    safe = render.safe_json(data)
    assert orjson.loads(safe) == {"message": text}
    assert not UNSAFE & set(safe.decode("utf-8"))
    if not UNSAFE & set(text):
        assert safe is data  # nothing to do: the same bytes


def test_json_escapes_are_lowercase_json_escapes() -> None:
    assert render.safe_json(orjson.dumps("a\u202eb\x9b\x7f")) == b'"a\\u202eb\\u009b\\u007f"'
