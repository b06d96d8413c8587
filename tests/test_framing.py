"""Bytes → records: the framing rules of SPEC ("Stream events" → Framing)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logcast.capture.framing import MAX_LINE, LineFramer, frame_all

F, T = False, True


def feed_all(framer: LineFramer, *chunks: bytes) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk).records())
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def rebuild(records: list[tuple[str, bool]]) -> str:
    """Partials joined to their line, complete lines ended by "\\n"."""
    out, current = [], ""
    for text, partial in records:
        current += text
        if not partial:
            out.append(current + "\n")
            current = ""
    return "".join(out) + current


# -- line ends ---------------------------------------------------------------------------


def test_lf_ends_lines_and_text_excludes_the_terminator() -> None:
    framer = LineFramer()
    assert framer.feed(b"one\ntwo\n").records() == [("one", F), ("two", F)]
    assert not framer.pending


def test_empty_lines_are_records() -> None:
    assert frame_all([b"\n\na\n\n"]) == [("", F), ("", F), ("a", F), ("", F)]


def test_crlf_ends_a_line_once() -> None:
    assert frame_all([b"a\r\nb\r\n\r\n"]) == [("a", F), ("b", F), ("", F)]


def test_crlf_split_across_chunks() -> None:
    framer = LineFramer()
    # The line is over at "\r" whatever follows: it is handed on at once ...
    assert framer.feed(b"first\r").records() == [("first", F)]
    assert not framer.pending
    # ... and the "\n" that completes "\r\n" is not a second, empty line.
    assert framer.feed(b"\nsecond\r").records() == [("second", F)]
    assert framer.feed(b"\n").records() == []
    assert framer.feed(b"third\n").records() == [("third", F)]


def test_cr_at_chunk_end_followed_by_text() -> None:
    framer = LineFramer()
    assert feed_all(framer, b"a\r", b"b\n") == [("a", F), ("b", F)]


def test_empty_feed_keeps_a_pending_crlf() -> None:
    framer = LineFramer()
    assert feed_all(framer, b"a\r", b"", b"\nb\n") == [("a", F), ("b", F)]


def test_idle_flush_keeps_a_pending_crlf() -> None:
    framer = LineFramer()
    assert framer.feed(b"a\r").records() == [("a", F)]
    assert framer.flush(idle=True).records() == []
    assert framer.feed(b"\nb\n").records() == [("b", F)]


def test_lone_cr_progress_bar() -> None:
    data = b"  0%|          |\r 50%|#####     |\r100%|##########|\ndone\n"
    assert frame_all([data]) == [
        ("  0%|          |", F),
        (" 50%|#####     |", F),
        ("100%|##########|", F),
        ("done", F),
    ]


def test_tqdm_style_leading_cr() -> None:
    framer = LineFramer()
    assert framer.feed(b"\r 10%").records() == [("", F)]
    assert framer.flush(idle=True).records() == [(" 10%", T)]
    # the next redraw ends the redrawn line; its text continues the flushed partial
    assert framer.feed(b"\r 20%").records() == [("", F)]
    assert framer.flush().records() == [(" 20%", T)]


def test_mixed_terminators_in_one_chunk() -> None:
    assert frame_all([b"a\nb\r\nc\rd\n\re"]) == [("a", F), ("b", F), ("c", F), ("d", F), ("", F), ("e", T)]


# -- pending bytes and flush ---------------------------------------------------------------


def test_unfinished_line_waits_for_its_end() -> None:
    framer = LineFramer()
    assert framer.feed(b"abc").records() == []
    assert framer.pending
    assert framer.feed(b"def\n").records() == [("abcdef", F)]
    assert not framer.pending


def test_flush_hands_on_pending_as_partial() -> None:
    framer = LineFramer()
    framer.feed(b"prompt> ")
    assert framer.flush().records() == [("prompt> ", T)]
    assert not framer.pending
    assert framer.flush().records() == []


def test_flush_without_pending_is_empty() -> None:
    framer = LineFramer()
    assert framer.flush().records() == []
    framer.feed(b"x\n")
    assert framer.flush().records() == []


def test_line_continued_after_idle_flush() -> None:
    framer = LineFramer()
    framer.feed(b"Loading")
    assert framer.flush(idle=True).records() == [("Loading", T)]
    assert framer.feed(b"... done\n").records() == [("... done", F)]
    assert rebuild([("Loading", T), ("... done", F)]) == "Loading... done\n"


# -- overlong lines ------------------------------------------------------------------------


def test_line_of_exactly_max_line_is_one_record() -> None:
    assert frame_all([b"x" * MAX_LINE + b"\n"]) == [("x" * MAX_LINE, F)]


def test_line_one_byte_over_max_line() -> None:
    assert frame_all([b"x" * (MAX_LINE + 1) + b"\n"]) == [("x" * MAX_LINE, T), ("x", F)]


def test_64k_split_with_partial_flags() -> None:
    line = b"a" * MAX_LINE + b"b" * MAX_LINE + b"c" * 10
    records = frame_all([line + b"\nnext\n"])
    assert records == [("a" * MAX_LINE, T), ("b" * MAX_LINE, T), ("c" * 10, F), ("next", F)]


def test_overlong_pending_line_is_split_before_its_end() -> None:
    framer = LineFramer()
    assert framer.feed(b"x" * (MAX_LINE + 5)).records() == [("x" * MAX_LINE, T)]
    assert framer.pending
    assert framer.flush().records() == [("xxxxx", T)]


@pytest.mark.parametrize("chunk", [65536, 10_000_000, 4096 + 7])
def test_ten_megabyte_line(chunk: int) -> None:
    size = 10_000_000
    data = bytes(range(97, 123)) * (size // 26) + b"z" * (size % 26) + b"\nafter\n"
    framer = LineFramer()
    records = feed_all(framer, *(data[i : i + chunk] for i in range(0, len(data), chunk)))
    pieces, tail = records[:-1], records[-1]
    assert tail == ("after", F)
    assert all(len(text) == MAX_LINE and partial for text, partial in pieces[:-1])
    assert pieces[-1][1] is F
    assert len(pieces) == size // MAX_LINE + 1
    assert "".join(text for text, _ in pieces).encode() == data[:size]


def test_split_backs_up_to_a_character_boundary() -> None:
    # 7 ASCII bytes then a 3-byte character: a cut at 8 bytes would break the "€"
    assert frame_all(["aaaaaaa€b\n".encode()], max_line=8) == [("aaaaaaa", T), ("€b", F)]


def test_split_of_four_byte_characters() -> None:
    text = "😀" * 10
    records = frame_all([text.encode() + b"\n"], max_line=10)
    assert all(len(t.encode()) <= 10 for t, _ in records)
    assert "".join(t for t, _ in records) == text
    assert [p for _, p in records] == [T] * 4 + [F]


def test_max_line_must_hold_a_character() -> None:
    with pytest.raises(ValueError):
        LineFramer(max_line=3)


# -- UTF-8 -----------------------------------------------------------------------------------


SAMPLE = "héllo wörld — 😀 ok ✓\n".encode()


@pytest.mark.parametrize("cut", range(1, len(SAMPLE)))
def test_multibyte_split_at_every_position(cut: int) -> None:
    assert frame_all([SAMPLE[:cut], SAMPLE[cut:]]) == [("héllo wörld — 😀 ok ✓", F)]


def test_multibyte_fed_byte_by_byte() -> None:
    framer = LineFramer()
    records = feed_all(framer, *(SAMPLE[i : i + 1] for i in range(len(SAMPLE))))
    assert records == [("héllo wörld — 😀 ok ✓", F)]


def test_invalid_bytes_become_replacement_characters() -> None:
    assert frame_all([b"a\xffb\n\xc3\nok\n"]) == [("a\ufffdb", F), ("\ufffd", F), ("ok", F)]


def test_truncated_character_at_eof_is_replaced() -> None:
    assert frame_all([b"ab\xe2\x82"]) == [("ab\ufffd", T)]


def test_idle_flush_keeps_an_incomplete_character() -> None:
    framer = LineFramer()
    assert framer.feed(b"price: 5\xe2\x82").records() == []
    assert framer.flush(idle=True).records() == [("price: 5", T)]
    assert framer.pending
    assert framer.flush(idle=True).records() == []
    assert framer.feed(b"\xac\n").records() == [("€", F)]


def test_ansi_sequences_are_kept() -> None:
    assert frame_all([b"\x1b[31mred\x1b[0m plain\n"]) == [("\x1b[31mred\x1b[0m plain", F)]


# -- properties ------------------------------------------------------------------------------


PIECES = [
    b"a",
    b"bc",
    b" ",
    b"\n",
    b"\r",
    b"\r\n",
    "é".encode(),
    "€".encode(),
    "😀".encode(),
    b"\xff",
    b"\xe2\x82",
    b"\x1b[0m",
]
noisy_bytes = st.one_of(st.binary(max_size=200), st.lists(st.sampled_from(PIECES), max_size=80).map(b"".join))
lf_text = st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=200)


@given(
    data=noisy_bytes,
    cuts=st.lists(st.integers(0, 400), max_size=12),
    max_line=st.sampled_from([4, 5, 7, 16, MAX_LINE]),
)
def test_read_boundaries_do_not_matter(data: bytes, cuts: list[int], max_line: int) -> None:
    assert frame_all(split_at(data, cuts), max_line) == frame_all([data], max_line)


@given(
    text=lf_text,
    cuts=st.lists(st.integers(0, 900), max_size=12),
    max_line=st.sampled_from([4, 6, 9, 64, MAX_LINE]),
)
def test_records_join_back_to_the_text(text: str, cuts: list[int], max_line: int) -> None:
    records = frame_all(split_at(text.encode(), cuts), max_line)
    assert rebuild(records) == text
    assert all(len(t.encode()) <= max_line for t, _ in records)
    assert "\ufffd" not in "".join(t for t, _ in records) or "\ufffd" in text
