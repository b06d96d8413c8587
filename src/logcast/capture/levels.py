"""Level detection: what a log line says about its own severity.

Pure and table-driven: it answers `None` ("unsure") rather than guess, and callers show
that as `Level.INFO`. Tier 1 reads a level token near the front of the line; only when
it is silent does tier 2 look for strong words (`Traceback`, `error:`, `failed`).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate, compress, count, repeat
from operator import add, getitem, itemgetter
from typing import cast

from logcast.types import Level

__all__ = ["WINDOW", "detect_level", "detect_levels"]

WINDOW = 120  # characters at the front of a line where a tier-1 token may stand

# Plain names, because `Level.INFO` is a descriptor lookup and the batch uses them per line.
_DEBUG, _INFO, _SUCCESS = Level.DEBUG, Level.INFO, Level.SUCCESS
_WARNING, _ERROR, _CRITICAL = Level.WARNING, Level.ERROR, Level.CRITICAL

# The vocabulary of level words, lower case.
_WORDS: dict[str, Level] = {
    "trace": _DEBUG,
    "trac": _DEBUG,  # logrus on a terminal: TRAC DEBU INFO WARN ERRO FATA PANI
    "trc": _DEBUG,
    "debug": _DEBUG,
    "debu": _DEBUG,
    "dbg": _DEBUG,
    "verbose": _DEBUG,
    "info": _INFO,
    "inf": _INFO,
    "notice": _INFO,
    "success": _SUCCESS,
    "warn": _WARNING,
    "warning": _WARNING,
    "wrn": _WARNING,
    "error": _ERROR,
    "err": _ERROR,
    "erro": _ERROR,
    "severe": _ERROR,
    "critical": _CRITICAL,
    "crit": _CRITICAL,
    "fatal": _CRITICAL,
    "fata": _CRITICAL,
    "ftl": _CRITICAL,
    "panic": _CRITICAL,
    "pani": _CRITICAL,
    "emerg": _CRITICAL,
    "emergency": _CRITICAL,
    "alert": _CRITICAL,
}
# glog's and llama.cpp's one-letter levels, and pino/bunyan's numbers.
_LETTERS: dict[str, Level] = {"D": _DEBUG, "I": _INFO, "W": _WARNING, "E": _ERROR, "F": _CRITICAL}
_NUMBERS: dict[str, Level] = {
    "10": _DEBUG,
    "20": _DEBUG,
    "30": _INFO,
    "40": _WARNING,
    "50": _ERROR,
    "60": _CRITICAL,
}

# Every spelling tier 1 can capture, mapped once, so the hot path is one dict lookup.
_TOKENS: dict[str, Level] = {}
for _word, _level in _WORDS.items():
    _TOKENS[_word] = _TOKENS[_word.upper()] = _TOKENS[_word.capitalize()] = _level
_TOKENS.update(_LETTERS)
_TOKENS.update(_NUMBERS)


def _word_alternatives() -> str:
    """Every level word, grouped under its first letter and longest first within it
    (`e(?:mergency|merg|rror|rro|rr)|f(?:atal|ata|tl)|…`): a word is tried against the
    few of its letter, not all thirty, and matches what the longest-first list would."""
    groups: dict[str, list[str]] = {}
    for word in sorted(_WORDS, key=lambda w: (-len(w), w)):
        groups.setdefault(word[0], []).append(re.escape(word[1:]))
    return "|".join(f"{first}(?:{'|'.join(rest)})" for first, rest in sorted(groups.items()))


_ALT = _word_alternatives()
_JSON_KEY = r'"(?:level|levelname|severity|lvl|loglevel|log\.level|@l)"\s*:\s*'
_JSON_VALUE = rf'(?:"(?P<j>(?i:{_ALT}))"|(?P<n>[1-6]0)(?!\d))'


def _tier1_pattern() -> str:
    """Tier 1: a level token in the first `WINDOW` characters; the earliest match wins.

    It finds an upper-case token standing alone (`INFO`, `WARNING`, `ERR`, … after the
    start, a delimiter or a colour code: Python logging, uvicorn, vLLM, loguru, Rust
    tracing, log4j/logback/Spring, zerolog); a token of any case in brackets (`[error]`:
    nginx, gunicorn), between tabs (zap's console encoder), after `level=`/`lvl=`/
    `severity=` (logfmt) or as a JSON level value (numbers are pino's); glog's and
    llama.cpp's one-letter levels. Lower-case words count only in those delimited places,
    so `Critical section` or `/var/log/error.log` say nothing.

    Every top-level alternative starts with a literal character, so that CPython's regex
    engine skips ahead to candidate characters instead of trying every position, and
    alternatives sharing a first character are nested under it. Hence an upper-case
    token's left delimiter is checked by a look-behind after the token. Upper-case
    tokens and one-letter levels capture no group: the match itself is the token.
    """
    before = r"[^\s\[(<|:,;m]"
    after = r"(?=[\s\]:)|>,;!/\x1b\[]|$)"
    tails: dict[str, list[str]] = {}
    for word in sorted(_WORDS, key=lambda w: (-len(w), w)):
        token = word.upper()
        tails.setdefault(token[0], []).append(rf"{token[1:]}(?<!{before}{token}){after}")
    for letter in "IWEF":  # glog: I0101 12:00:00.123456 1234 file.cc:12] msg, at the start only
        tails.setdefault(letter, []).append(
            rf"(?<![\s\S]{letter})(?=\d{{4}} \d\d:\d\d:\d\d\.\d+ +\d+ [^\s\]]+:\d+\])"
        )
    for letter in "DIWE":  # llama.cpp with --log-prefix --log-timestamps: 0.00.035.060 I llama_...
        tails.setdefault(letter, []).append(rf"(?<=\d\.\d\d\.\d\d\d\.\d\d\d {letter})(?= )")
    alternatives = [f"{first}(?:{'|'.join(group)})" for first, group in sorted(tails.items())]
    alternatives += [
        rf"\[ ?(?P<b>(?i:{_ALT})) ?\]",
        rf"\t(?P<t>(?i:{_ALT}))(?=\t)",
        rf"=(?<=[ly]=)(?:(?<=level=)|(?<=lvl=)|(?<=severity=))[\"']?(?P<k>(?i:{_ALT}))(?![\w-])",
        _JSON_KEY + _JSON_VALUE,
    ]
    return "|".join(alternatives)


_TIER1 = re.compile(_tier1_pattern())
# Every character a tier-1 match can begin with (each alternative starts with a literal):
# a batch whose windows hold none of them, a flood of plain text, has no tier-1 token,
# and one pass in C over the joined windows tells so: the bytes of their UTF-8 lose none
# when these are deleted (ASCII characters stand for themselves in UTF-8). `bytes.translate`
# takes a fifth of the time the regex engine takes to look for a class of characters.
_TIER1_FIRST = "".join(sorted({w[0].upper() for w in _WORDS} | set(_LETTERS) | set('[\t="')))
_TIER1_FIRST_BYTES = _TIER1_FIRST.encode("ascii")
_WINDOW_SLICE = slice(0, WINDOW)
# A JSON line is read by its key, even when the key stands beyond the window.
_JSON = re.compile(_JSON_KEY + _JSON_VALUE)
_JSON_SPAN = 4096

# Tier 2, when tier 1 is silent: a level word opening the line with a colon (`error: …`,
# `Warning: …`), then strong words anywhere (`Traceback …`, `…Exception`, `error:`, rustc's
# `error[E0308]:`, `failed`, `panic:`; `warning:`, `deprecated`). Case-sensitive
# spellings, literal first characters. So `INFO: 0 errors found` is info.
_FRONT_WORD = re.compile(
    r"\s*(?:\x1b\[[0-9;]*m)*(err|Err|error|Error|warn|Warn|warning|Warning|fatal|Fatal):"
)
_T2_ERROR = re.compile(
    r"Traceback \(most recent call last\):"
    r"|Exception(?![\w./])"
    r"|:(?<=rror:)|:(?<=RROR:)|:(?<=rror\[E\d{4}\]:)|:(?= [Ee]rror(?!\w))"
    r"|failed(?<!\wfailed)(?!\w)|Failed(?<!\wFailed)(?!\w)"
    r"|panic:"
)
_T2_WARNING = re.compile(r":(?<=arning:)|:(?<=ARNING:)|deprecat(?:ed|ion)|Deprecat(?:ed|ion)")
# Scans over the joined silent lines of a batch: whatever `_FRONT_WORD`, `_T2_ERROR`
# or `_T2_WARNING` can match contains a hit of one of them, so only the lines with a
# hit are looked at closely. Each scan starts with a literal character, which the
# regex engine finds fast; the colon scan then checks the word before each colon
# (one character class first, which turns the colons of timestamps away at once).
_T2_COLON = re.compile(
    r":(?:(?<=[rRgGnlc)\]]:)(?:(?<=rror:)|(?<=[Ee]rr:)|(?<=RROR:)|(?<=arning:)|(?<=ARNING:)|(?<=[Ww]arn:)"
    r"|(?<=anic:)|(?<=atal:)|(?<=last\):)|(?<=rror\[E\d{4}\]:))|(?= [Ee]rror(?!\w)))"
)
_T2_WORDS = (re.compile("Exception"), re.compile("ailed"), re.compile("eprecat"))

# Tier 3, single lines only (the batch maps "unsure" to info anyway): programs that log
# without a level (llama.cpp and ggml) are info rather than unsure.
_KNOWN_INFO = re.compile(
    r"(?:llama|llm|ggml|gguf|clip|common|load_tensors|print_info|srv|slot|main|build|system_info)\w*:? "
)

# What the batch resolves with one dict lookup on the matched text: plain tokens,
# one-letter levels, and the bracketed, tabbed and `level=` forms of every spelling.
_FAST: dict[str, Level] = {w: lv for w, lv in _TOKENS.items() if not w.isdigit()}
for _spelling, _level in list(_FAST.items()):
    if len(_spelling) > 1:
        for _form in ("[{}]", "\t{}", "={}", '="{}'):
            _FAST[_form.format(_spelling)] = _level


_WHOLE = itemgetter(0)  # the whole match of a `re.Match`


def _tier1(text: str, match: re.Match[str] | None) -> Level | None:
    """The level tier 1 reads from a line, given the first `match` of `_TIER1`."""
    if text[:1] == "{":
        json_match = _JSON.search(text, 0, _JSON_SPAN)
        if json_match is not None:
            return _token_level(json_match[json_match.lastgroup or 0])
    if match is None:
        return None
    group = match.lastgroup
    return _token_level(match[group] if group is not None else match[0])


def _token_level(token: str) -> Level | None:
    level = _TOKENS.get(token)
    return level if level is not None else _WORDS.get(token.lower())


def _tier2(text: str) -> Level | None:
    front = _FRONT_WORD.match(text)
    if front is not None:
        return _WORDS[front[1].lower()]
    if _T2_ERROR.search(text) is not None:
        return _ERROR
    if _T2_WARNING.search(text) is not None:
        return _WARNING
    return None


def detect_level(text: str) -> Level | None:
    """The level a line states, or `None` when it does not say (callers use info)."""
    level = _tier1(text, _TIER1.search(text, 0, WINDOW))
    if level is None:
        level = _tier2(text)
        if level is None and _KNOWN_INFO.match(text) is not None:
            level = _INFO
    return level


def detect_levels(texts: list[str]) -> list[Level]:
    """The level of every line, `Level.INFO` when unsure; must agree with `detect_level`.

    The tier-1 search runs over the batch through `map` (a loop in C). When every line
    has a match whose text alone names the level and no line is JSON (the usual batch
    of a program with a logging library), that is all; the other lines are looked at
    one by one, and those without a match go on to tier 2 together.
    """
    size = len(texts)
    if size > 1:
        first = _TIER1.search(texts[0], 0, WINDOW)
        if first is None:
            windows = "".join(map(getitem, texts, repeat(_WINDOW_SLICE, size))).encode(
                "utf-8", "surrogatepass"
            )
            if len(windows.translate(None, _TIER1_FIRST_BYTES)) == len(windows):
                quiet = [_INFO] * size
                _silent_batch(texts, range(size), quiet)
                return quiet
        elif size >= SHAPE_MIN:
            shaped = _same_shape(texts, first)
            if shaped is not None:
                return shaped
    return _search_each(texts)


def _search_each(texts: list[str]) -> list[Level]:
    """`detect_levels` with a tier-1 search of every line."""
    size = len(texts)
    matches = list(map(_TIER1.search, texts, repeat(0, size), repeat(WINDOW, size)))
    if None in matches:
        return _detect_each(texts, matches)
    found = cast("list[re.Match[str]]", matches)
    levels: list[Level | None] = list(map(_FAST.get, map(_WHOLE, found)))
    if None in levels or any(map(str.startswith, texts, repeat("{", size))):
        silent: list[int] = []  # a match that names no level (`[ſuccess]`): tier 2 reads it
        for index, text in enumerate(texts):
            if levels[index] is None or text[:1] == "{":
                level = _tier1(text, found[index])
                if level is None:
                    silent.append(index)
                levels[index] = _INFO if level is None else level
        if silent:
            _silent_batch(texts, silent, levels)  # type: ignore[arg-type]  # no None is left
    return levels  # type: ignore[return-value]  # no None is left


# A line's shape, for `_same_shape`: its characters with every digit made "0", so that
# lines differing only in their numbers (timestamps, counters, pids) have one shape. The
# pattern tells digits apart only in a JSON level value (pino's 30): lines with a JSON
# level key in the part that counts are not shaped.
_SHAPE = bytes.maketrans(b"123456789", b"000000000")
_JSON_KEY_NAME = re.compile(_JSON_KEY.partition("\\s")[0])  # the quoted key alone
SHAPE_MIN = 32  # lines: a smaller batch is searched line by line (the shape costs more)
SHAPE_SAMPLE = 8  # lines looked at before a pass: more than half must have the shape


def _same_shape(texts: list[str], first: re.Match[str]) -> list[Level] | None:
    """The levels of a batch most of whose lines share one shape, without a search per
    line; None when searching each line is the way.

    A program's lines mostly share their front up to the level token, differing only in
    numbers (a timestamp, a pid). Every attempt the regex engine makes before a line's
    first tier-1 match, and the match itself, reads only its first `stop` characters
    (`_front`). So each line whose first `stop` characters have the shape of the
    first line's (or, if few lines share that, a middle line's) finds the same first
    match, hence the same level. The other lines are a batch of their own (another
    format, another level), shaped in turn while they are the fewer half: a batch costs
    at most about two passes.
    """
    size = len(texts)
    front = _sampled_front(texts, 0, first)
    if front is None:  # the first line may be the odd one out: try one from the middle
        match = _TIER1.search(texts[size // 2], 0, WINDOW)
        front = None if match is None else _sampled_front(texts, size // 2, match)
        if front is None:
            return None
    stop, shape, level = front
    joined = "\n".join(map(getitem, texts, repeat(slice(0, stop), size)))
    if joined.count("\n") != size - 1:
        return None  # a newline inside a line: `$` may match before it
    # UTF-8 has no newline byte inside a character: the shapes split where the lines do
    shapes = joined.encode("utf-8", "surrogatepass").translate(_SHAPE)
    if shapes == b"\n".join(repeat(shape, size)):
        return [level] * size
    others = list(compress(range(size), map(shape.__ne__, shapes.split(b"\n"))))
    rest = list(map(texts.__getitem__, others))
    levels = [level] * size
    for index, other in zip(
        others, detect_levels(rest) if 2 * len(rest) <= size else _search_each(rest), strict=True
    ):
        levels[index] = other
    return levels


def _sampled_front(texts: list[str], index: int, match: re.Match[str]) -> tuple[int, bytes, Level] | None:
    """`_front` of line `index` (whose first match is `match`) if more than half of
    `SHAPE_SAMPLE` lines spread over the batch have its shape: that tells a batch of
    mostly one shape from interleaved formats before a pass over it (which would cost
    more than it saves)."""
    front = _front(texts[index], match)
    if front is None:
        return None
    stop, shape, _ = front
    size = len(texts)
    step = size / (SHAPE_SAMPLE + 1)
    alike = sum(_shape(texts[round(step * (i + 1))][:stop]) == shape for i in range(SHAPE_SAMPLE))
    return front if 2 * alike > SHAPE_SAMPLE else None


def _front(text: str, first: re.Match[str]) -> tuple[int, bytes, Level] | None:
    """For `_same_shape`: how many characters of `text` its first tier-1 match (`first`)
    depends on, their shape, and the level; None if that cannot be bounded.

    The match reads one character past its end, and so far at most reads any attempt
    the engine made before it: a token stands after a delimiter or begins with one,
    which no level word and no tabbed, `level=` or JSON form reads on through. (A
    bracketed word right before it, `[INFO x`, reads one further, for its `]`; where
    that is there the bracket matches the same word: the same level.) Look-behinds stay
    in the line. Unbounded are glog's header (a letter at the start, read on to its `]`)
    and llama.cpp's letter; JSON lines are read by their key, beyond the window; a JSON
    level's number is told apart by its digits (pino's 30 and 40): those lines are not
    shaped, nor a match that names no level (tier 2 reads it)."""
    start, end = first.span()
    token = first[0]
    if text[:1] == "{" or len(token) < 2:
        return None  # JSON lines; one-letter levels (glog, llama.cpp)
    if start and text[0] in "IWEF" and text[1:2].isdigit():
        return None  # an attempt at glog's header reads on to its end
    stop = end + 1
    if _JSON_KEY_NAME.search(text, 0, stop) is not None:
        return None
    level = _FAST.get(token)
    if level is None:
        level = _tier1(text, first)
        if level is None:
            return None
    return stop, _shape(text[:stop]), level


def _shape(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass").translate(_SHAPE)


def _detect_each(texts: list[str], matches: list[re.Match[str] | None]) -> list[Level]:
    """`detect_levels` for a batch where some lines have no tier-1 match."""
    fast = _FAST.get
    info = _INFO
    levels: list[Level] = []
    append = levels.append
    silent: list[int] = []  # lines tier 1 read no level in (JSON lines are read later)
    for text, match in zip(texts, matches, strict=True):
        if match is None:
            silent.append(len(levels))
            append(info)
            continue
        level = fast(match[0])
        if level is None or (match.start() and text[0] == "{"):
            level = _tier1(text, match)
            if level is None:  # a match that names no level (`[ſuccess]`): as if silent
                silent.append(len(levels))
        append(info if level is None else level)
    if silent:
        _silent_batch(texts, silent, levels)
    return levels


# A scan looks at this many characters in one call at most: the regex engine holds the
# GIL through a call, and the colon scan checks the word before every colon (a megabyte of
# "r:" held it 156 ms: the event loop waited as long). Pieces overlap by the longest match.
SCAN_PIECE = 1 << 16
_SCAN_OVERLAP = 64


def _scan(scan: re.Pattern[str], joined: str) -> list[int]:
    """Where `scan` matches in `joined`, in pieces of `SCAN_PIECE` characters."""
    size = len(joined)
    if size <= SCAN_PIECE:
        return [hit.start() for hit in scan.finditer(joined)]
    out: list[int] = []
    for start in range(0, size, SCAN_PIECE):
        end = start + SCAN_PIECE
        out += [hit.start() for hit in scan.finditer(joined, start, min(size, end + _SCAN_OVERLAP))]
    return out


def _silent_batch(texts: list[str], silent: Sequence[int], levels: list[Level]) -> None:
    """JSON keys beyond the window, then tier 2, for the lines at `silent`.

    The lines are joined once; scans over the whole batch find the JSON lines (a "{"
    after a newline) and the tier-2 candidates, and only those lines are read.
    """
    lines = texts if len(silent) == len(texts) else [texts[i] for i in silent]
    joined = "\n".join(lines)
    # the JSON lines, by a loop in C over the lines (not one step per "{": a line of
    # braces was a step each)
    json_lines = list(compress(count(), map(str.startswith, lines, repeat("{")))) if "{" in joined else []
    hits: list[int] = []
    if ":" in joined:  # a memchr; the scan's own search for its colon is a loop in the engine
        hits += _scan(_T2_COLON, joined)
    for scan in _T2_WORDS:
        if scan.search(joined) is not None:
            hits += _scan(scan, joined)
    if not json_lines and not hits:
        return
    # starts[line_no] is that line's offset in `joined`: the lengths before it, plus line_no.
    starts = list(map(add, accumulate(map(len, lines), initial=0), count()))
    done: set[int] = set()
    for line_no in json_lines:
        done.add(line_no)
        level = _tier1(lines[line_no], None)
        if level is None:
            level = _tier2(lines[line_no])
        if level is not None:
            levels[silent[line_no]] = level
    for pos in hits:
        line_no = bisect_right(starts, pos) - 1
        if line_no not in done:
            done.add(line_no)
            level = _tier2(lines[line_no])
            if level is not None:
                levels[silent[line_no]] = level
