"""Level detection on a corpus of real-looking lines, and the batch agreeing with it."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logcast.capture.levels as levels_module
from logcast.capture.levels import WINDOW, detect_level, detect_levels
from logcast.types import Level

CORPUS_FILE = Path(__file__).parent / "data" / "level_corpus.txt"


def load_corpus() -> list[tuple[Level | None, str]]:
    cases: list[tuple[Level | None, str]] = []
    for raw in CORPUS_FILE.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        expected, _, line = raw.partition(" ")
        line = line.replace("\\t", "\t").replace("\\x1b", "\x1b")
        cases.append((None if expected == "none" else Level(expected), line))
    return cases


CORPUS = load_corpus()


def test_corpus_is_large_and_covers_every_level() -> None:
    assert len(CORPUS) >= 60
    assert {expected for expected, _ in CORPUS} == {*Level, None}


@pytest.mark.parametrize(("expected", "line"), CORPUS, ids=[line[:60] for _, line in CORPUS])
def test_corpus_line(expected: Level | None, line: str) -> None:
    assert detect_level(line) == expected


def test_batch_agrees_with_single_lines_on_the_corpus() -> None:
    lines = [line for _, line in CORPUS]
    assert detect_levels(lines) == [detect_level(line) or Level.INFO for line in lines]


def test_batch_of_nothing() -> None:
    assert detect_levels([]) == []


@pytest.mark.parametrize(
    "line",
    [
        "",
        "hello world",
        "Listening on :8080",
        "loss=0.12 step=400",
        "see /var/log/error.log and /tmp/ERROR_dump.bin",
        "Critical section done",
        "debug mode is off",
        "WARNINGS: none",
        "errors=0 warnings=0",
        '"ERROR" is the name of the enum member',
    ],
)
def test_unsure_lines_say_none(line: str) -> None:
    assert detect_level(line) is None
    assert detect_levels([line]) == [Level.INFO]


def test_front_token_beats_words_in_the_body() -> None:
    assert detect_level("INFO: 0 errors found, Traceback printing disabled") == Level.INFO
    assert detect_level("DEBUG retry failed once, will retry") == Level.DEBUG
    assert detect_level("WARNING: the previous run failed") == Level.WARNING


def test_token_beyond_the_window_does_not_count() -> None:
    line = "x" * WINDOW + " ERROR something"
    assert detect_level(line) is None
    assert detect_level("x" * (WINDOW - 20) + " ERROR something") == Level.ERROR


def test_json_key_beyond_the_window_still_counts() -> None:
    line = '{"msg": "' + "a" * 300 + '", "level": "error"}'
    assert detect_level(line) == Level.ERROR


def test_token_inside_a_word_or_path_does_not_count() -> None:
    assert detect_level("INFORMATION_SCHEMA ready") is None
    assert detect_level("GET /static/WARN/icon.png 200") is None
    assert detect_level("XERROR mode") is None


# Fragments that exercise every branch, glued together at random: the batch and the
# single-line function must agree on whatever comes out, whatever the neighbours.
FRAGMENTS = [line for _, line in CORPUS] + [
    " ",
    ":",
    "error:",
    "Err:",
    "warn:",
    "failed",
    "Exception",
    "deprecated",
    "panic:",
    "fatal:",
    "[",
    "]",
    "\t",
    "level=",
    '"level":',
    "{",
    "\x1b[31m",
    "INFO",
    "ERROR",
    "E0101 12:00:00.000001 1 a.cc:1]",
    "0.00.000.001 W ",
]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(FRAGMENTS), max_size=6).map("".join), max_size=30))
def test_batch_agrees_with_single_lines(lines: list[str]) -> None:
    assert detect_levels(lines) == [detect_level(line) or Level.INFO for line in lines]


@pytest.mark.parametrize("form", ["[{}]", "[ {} ]", "\t{}\t", "level={}", 'lvl="{}"', '{{"level": "{}"}}'])
def test_every_spelling_of_every_word_in_every_form(form: str) -> None:
    """The words are alternatives grouped by first letter in the pattern: each must still
    win over its shorter spellings (`error` over `err`, `warning` over `warn`)."""
    for word, level in levels_module._WORDS.items():
        for spelling in (word, word.upper(), word.capitalize()):
            line = "app " + form.format(spelling) + " rest"
            if form.startswith("{"):
                line = form.format(spelling)
            assert detect_level(line) is level, line
            assert detect_levels([line]) == [level], line


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join))
def test_every_tier1_match_begins_with_a_character_the_batch_prefilter_looks_for(line: str) -> None:
    """A batch whose windows hold none of `_TIER1_FIRST`'s characters skips tier 1: that
    is right only if every tier-1 match begins with one of them."""
    match = levels_module._TIER1.search(line, 0, WINDOW)
    if match is not None:
        assert line[match.start()] in levels_module._TIER1_FIRST, line


def test_a_batch_of_plain_text_still_finds_its_tier2_words_and_json_levels() -> None:
    plain = [f"{i:09d} 1764961234.123456 " + "x" * 71 for i in range(50)]
    batch = [*plain, "something failed here", '{"msg": "' + "y" * 200 + '", "level": "warning"}', *plain]
    assert detect_levels(batch) == [detect_level(line) or Level.INFO for line in batch]
    assert detect_levels(batch)[50:52] == [Level.ERROR, Level.WARNING]


def test_a_plain_batch_reads_json_and_tier2_words_on_its_first_and_last_lines() -> None:
    """The silent batch joins its lines without a leading newline: a JSON line or a
    strong word at offset 0 of the joined text is still found, as at its end."""
    plain = [f"{i:09d} 1764961234.123456 " + "x" * 71 for i in range(20)]
    for edge, level in [
        ('{"msg": "' + "y" * 200 + '", "level": "error"}', Level.ERROR),
        ("error: the disk is full", Level.ERROR),
        ("Exception in thread main", Level.ERROR),
        ("this is deprecated", Level.WARNING),
    ]:
        for batch in ([edge, *plain], [*plain, edge]):
            assert detect_levels(batch) == [detect_level(line) or Level.INFO for line in batch]
            assert level in detect_levels(batch), edge


# Batches of one shape: a program's front (its numbers changed from line to line), what
# stands right before the level token, the token, what follows. `detect_levels` reads such
# a batch by shape, not by a search per line (`_same_shape`); it must still agree with
# each line read alone, whatever stands around the token.
FRONTS = [
    "",
    "2026-12-06 12:00:00,123 - app - ",
    "2026-12-06T12:00:00.123456Z  ",
    'time="2026-12-06T12:00:00Z" ',
    "[2026-12-06 12:00:00] ",
    "I1206 12:00:00.123456 1234 ",
    "E1206 ",
    "0.00.035.060 ",
    '{"msg": "x", "level": "error"} ',
    "x" * 100,
    "x" * 115,
    "é ",
    "٣ ",
]
BEFORE = [
    "",
    " ",
    "[",
    "[ ",
    "\t",
    "level=",
    "lvl='",
    '"level": ',
    '"level":\t',
    "x",
    "m",
    "\x1b[32m",
    ":",
    "ERR",
    "E",
]
TOKENS = [
    "INFO",
    "WARN",
    "WARNING",
    "ERROR",
    "ERR",
    "level=info",
    "lvl=warn",
    "severity=error",
    "[info]",
    "[ warn ]",
    "\tERROR\t",
    '"level": "error"',
    '"level": 30',
    '"lvl":70 ',
    "[ſuccess]",
    "[ınfo]",
    "I",
    "W ",
    "info:",
    "Traceback",
]
AFTERS = [
    "",
    " ",
    ":",
    "x",
    "]",
    " ]",
    "\t",
    "\x1b[0m",
    "\x1bX",
    "\n",
    "/",
    "ING",
    "-",
    "=1",
    ":12] ok",
    " error: no",
]


def _vary_digits(text: str, rnd: random.Random) -> str:
    return "".join(rnd.choice("0123456789") if c in "0123456789" else c for c in text)


@st.composite
def one_shape_batches(draw: st.DrawFn) -> list[str]:
    front = draw(st.lists(st.sampled_from(FRONTS), max_size=2).map("".join)) + draw(st.sampled_from(BEFORE))
    token = draw(st.sampled_from(TOKENS))
    after = st.lists(st.sampled_from(AFTERS + FRAGMENTS[-12:]), max_size=3).map("".join)
    rnd = draw(st.randoms(use_true_random=False))  # the digits: one draw, not one per character
    lines = []
    for _ in range(draw(st.sampled_from([2, 5, levels_module.SHAPE_MIN, levels_module.SHAPE_MIN + 7]))):
        if draw(st.integers(0, 5)):  # mostly the batch's shape, its numbers changed
            line = _vary_digits(front + token, rnd) + draw(after)
        else:
            line = (
                draw(st.sampled_from(FRONTS)) + draw(st.sampled_from(BEFORE)) + draw(st.sampled_from(TOKENS))
            )
        lines.append(line)
    return lines


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=1000)
@given(one_shape_batches())
def test_a_batch_read_by_its_shape_agrees_with_single_lines(lines: list[str]) -> None:
    assert detect_levels(lines) == [detect_level(line) or Level.INFO for line in lines]


@pytest.mark.parametrize(
    "batch",
    [
        # glog's header at the start is read up to its `]`, far past a token inside it
        ["I1206 12:00:00.123456 1234 WARN:12 x"] * 3 + ["I1206 12:00:00.123456 1234 WARN:12] x"],
        # a one-letter level's look-ahead reads the whole header
        ["E1206 12:00:00.123456 1234 main.cc:12] boom"] * 3 + ["E1206 nothing to see"],
        # a JSON line is read by its key, wherever it stands
        ['{"msg": "x INFO y", "level": "error"}'] * 3 + ['{"msg": "x INFO z", "level": "warn"}'],
        # a JSON level's number after a prefix: 30 and 50 differ only in a digit
        [f'2026-12-06 12:00:0{i} app {{"level": {(30, 30, 50)[i % 3]}, "msg": "m{i}"}}' for i in range(9)],
        # ...and a number that is no level (70) before a token
        ['"level": 70 INFO x'] * 3 + ['"level": 40 INFO x'],
        # a newline inside a line must not shift the lines after it
        ["INFO", "INFO", "INFO", "a\nINFO", "ERROR here", "INFO", "INFO", "INFO"],
        # a token that names no level (`ſ` is `s` to `(?i)`): tier 2 reads the line
        ["[ſuccess] failed"] * 3 + ["[ſuccess] done"],
    ],
    ids=["glog header", "glog letter", "json", "json number", "json number before", "newline", "no level"],
)
def test_lines_alike_in_front_but_read_differently_are_told_apart(batch: list[str]) -> None:
    expected = [detect_level(line) or Level.INFO for line in batch]
    assert len(set(expected)) == 2, expected  # the case means something
    for lines in (batch, batch * (levels_module.SHAPE_MIN // len(batch) + 1)):  # small and large
        assert detect_levels(lines) == [detect_level(line) or Level.INFO for line in lines]


def test_a_batch_of_one_shape_is_read_without_a_search_per_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shape path is taken (a search per line would be counted), and lines of another
    shape among them are still read one by one."""
    lines = [f"2026-12-06 12:00:{i % 60:02d},{i:03d} - app - INFO - request {i} done" for i in range(200)]
    lines[7] = "2026-12-06 12:00:07,007 - app - ERROR - request 7 failed"
    lines[9] = "something else entirely"
    searched: list[str] = []
    each = levels_module._search_each

    def counting(texts: list[str]) -> list[Level]:
        searched.extend(texts)
        return each(texts)

    monkeypatch.setattr(levels_module, "_search_each", counting)
    result = detect_levels(lines)
    assert result == [detect_level(line) or Level.INFO for line in lines]
    assert result[7] is Level.ERROR and result.count(Level.INFO) == 199
    assert len(searched) <= 2


def test_a_small_batch_is_searched_line_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below `SHAPE_MIN` lines the shape costs more than it saves (what a program writing
    a few lines at a time hands over)."""
    lines = [
        f"2026-12-06 12:00:00,{i:03d} - app - INFO - request {i}" for i in range(levels_module.SHAPE_MIN - 1)
    ]
    calls: list[int] = []
    same_shape = levels_module._same_shape

    def counting(texts: list[str], first: re.Match[str]) -> list[Level] | None:
        calls.append(len(texts))
        return same_shape(texts, first)

    monkeypatch.setattr(levels_module, "_same_shape", counting)
    assert detect_levels(lines) == [Level.INFO] * len(lines)
    assert calls == []
    assert detect_levels([*lines, lines[0]]) == [Level.INFO] * (len(lines) + 1)
    assert calls == [levels_module.SHAPE_MIN]


class _Watched:
    """A compiled scan that records the span of text each call is given."""

    def __init__(self, pattern: re.Pattern[str], spans: list[int]) -> None:
        self.pattern = pattern
        self.spans = spans

    def finditer(self, text: str, pos: int = 0, endpos: int | None = None):  # type: ignore[no-untyped-def]
        end = len(text) if endpos is None else endpos
        self.spans.append(end - pos)
        return self.pattern.finditer(text, pos, end)

    def search(self, text: str, *args: int) -> re.Match[str] | None:
        return self.pattern.search(text, *args)


def test_a_batch_is_scanned_in_pieces_and_finds_words_across_their_seams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A review: a megabyte of "r:" lines held the GIL 156 ms in one scan (the colon scan
    checks the word before every colon), and the event loop waited as long; a line of
    braces cost a Python step per brace. Scans take `SCAN_PIECE` characters a call, and
    what stands across two pieces is still found."""
    spans: list[int] = []
    monkeypatch.setattr(levels_module, "_T2_COLON", _Watched(levels_module._T2_COLON, spans))
    piece = levels_module.SCAN_PIECE
    filler = "r:" * 999 + "x"  # 1,999 characters of colons that say nothing; 2,000 with its newline
    for seam in (piece, 2 * piece):
        line_no, column = divmod(seam, 2000)
        for shift in range(-8, 3):  # "disk error: full" with its colon around the seam
            lines = [filler] * (3 * piece // 2000)
            colon = column + shift
            # a word before the colon (looked behind), and one after it (looked ahead)
            for said in ("disk error: full", "disk: error full"):
                at = said.index(":")
                lines[line_no] = "x" * (colon - at) + said + "x" * (1999 - colon + at - len(said))
                assert lines[line_no][colon] == ":" and len(lines[line_no]) == 1999
                levels = detect_levels(lines)
                assert levels == [detect_level(t) or Level.INFO for t in lines]
                assert levels[line_no] is Level.ERROR, (seam, shift, said)
    assert spans and max(spans) <= piece + 64
    braces = ["{" * 1000] * 2000
    assert detect_levels(braces) == [Level.INFO] * 2000
