"""Level detection on a corpus of real-looking lines, and the batch agreeing with it."""

from __future__ import annotations

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
