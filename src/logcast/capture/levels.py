"""Level detection: what a log line says about its own severity.

Pure and table-driven, in tiers; it answers `None` ("unsure") rather than guess, and
callers show that as `Level.INFO`.

Tier 1 — a level token at the front of the line. One compiled pattern is searched in
the first `WINDOW` characters only, so a word deep in a message never counts, and the
earliest match wins. It finds:

* an upper-case token (`INFO`, `WARNING`, `ERR`, `FATAL`, `SEVERE`, …) standing alone:
  preceded by the start, a space, `[`, `(`, `<`, `|`, `:`, `,`, `;` or the end of a
  colour code, and followed by a space, `:`, `]`, `)`, `|`, `!`, … This one rule covers
  Python logging, uvicorn, vLLM, loguru, Rust tracing, log4j/logback/Spring, zerolog
  and most plain formats, with or without a timestamp, thread or logger name before
  the token, because none of those contains a standalone upper-case level word;
* a token of any case in brackets (`[error]`: nginx, gunicorn), between tabs (zap's
  console encoder), after `level=`/`lvl=`/`severity=` (logfmt), or as the value of a
  JSON key `"level"`, `"levelname"`, `"severity"`, … (numbers are pino's levels). A
  line that starts with `{` is read by its key first, even beyond the window;
* glog's `I0101 12:00:00.123456 …` letter at the start, and llama.cpp's
  `0.00.035.060 W …` letter after its timestamp.

Lower-case and capitalised tokens count only in those delimited places, so `Critical
section`, `debug mode` or `/var/log/error.log` say nothing, and nor does `/WARN/` or
`INFORMATION`.

Tier 2 — only when tier 1 is silent: a level word opening the line with a colon
(`error: …`, `Warning: …`, `fatal: …`), then strong words anywhere: `Traceback (most
recent call last):`, `…Exception`, `error:` (`ValueError:` too, rustc's
`error[E0308]:`, llama.cpp's `func: error loading …`), `failed`, `panic:` mean error;
`warning:`, `deprecated` mean warning. So `INFO: 0 errors found` is info (tier 1 wins).

Tier 3 (single lines only) — a line of a program known to log without levels, such as
llama.cpp's `llama_model_loader: …`, is info rather than unsure. The batch version
maps "unsure" to info anyway, so it skips this tier.

Speed. `detect_levels` runs on the hot path, so every pattern is shaped for CPython's
regex engine: it jumps quickly to a literal first character, but tries a character
class or an alternation position by position, about ten times slower. Hence each
top-level alternative of tier 1 starts with a literal (upper-case tokens are spelled
out, grouped by first letter, and checked for their left delimiter by a look-behind
after the token), and one dict lookup on the matched text resolves the common case.
Tier 2 does not search line by line: the lines left silent are joined, a few scans
with a literal first character (a colon checked by look-behinds for the word before
it, `Exception`, `ailed`, `eprecat`) run over the whole batch, and only the lines they
hit are looked at closely. A test checks that the batch agrees with `detect_level`.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate, count, repeat
from operator import add, itemgetter
from typing import cast

from logcast.types import Level

__all__ = ["WINDOW", "detect_level", "detect_levels"]

WINDOW = 120  # characters at the front of a line where a tier-1 token may stand

_D, _I, _S, _W, _E, _C = Level.DEBUG, Level.INFO, Level.SUCCESS, Level.WARNING, Level.ERROR, Level.CRITICAL

# The vocabulary of level words, lower case.
_WORDS: dict[str, Level] = {
    "trace": _D,
    "trac": _D,  # logrus on a terminal: TRAC DEBU INFO WARN ERRO FATA PANI
    "trc": _D,
    "debug": _D,
    "debu": _D,
    "dbg": _D,
    "verbose": _D,
    "info": _I,
    "inf": _I,
    "notice": _I,
    "success": _S,
    "warn": _W,
    "warning": _W,
    "wrn": _W,
    "error": _E,
    "err": _E,
    "erro": _E,
    "severe": _E,
    "critical": _C,
    "crit": _C,
    "fatal": _C,
    "fata": _C,
    "ftl": _C,
    "panic": _C,
    "pani": _C,
    "emerg": _C,
    "emergency": _C,
    "alert": _C,
}
# glog's and llama.cpp's one-letter levels, and pino/bunyan's numbers.
_LETTERS: dict[str, Level] = {"D": _D, "I": _I, "W": _W, "E": _E, "F": _C}
_NUMBERS: dict[str, Level] = {"10": _D, "20": _D, "30": _I, "40": _W, "50": _E, "60": _C}

# Every spelling tier 1 can capture, mapped once, so the hot path is one dict lookup.
_TOKENS: dict[str, Level] = {}
for _word, _level in _WORDS.items():
    _TOKENS[_word] = _TOKENS[_word.upper()] = _TOKENS[_word.capitalize()] = _level
_TOKENS.update(_LETTERS)
_TOKENS.update(_NUMBERS)


def _word_alternatives() -> str:
    """Every level word, as alternatives grouped under their first letter and longest
    first within it (`e(?:mergency|merg|rror|rro|rr)|f(?:atal|ata|tl)|…`): a word is
    then tried against the few of its letter, not all thirty (a fifth of the time of a
    search on a logfmt line), and matches what the longest-first list would."""
    groups: dict[str, list[str]] = {}
    for word in sorted(_WORDS, key=lambda w: (-len(w), w)):
        groups.setdefault(word[0], []).append(re.escape(word[1:]))
    return "|".join(f"{c}(?:{'|'.join(rest)})" for c, rest in sorted(groups.items()))


_ALT = _word_alternatives()
_JSON_KEY = r'"(?:level|levelname|severity|lvl|loglevel|log\.level|@l)"\s*:\s*'
_JSON_VALUE = rf'(?:"(?P<j>(?i:{_ALT}))"|(?P<n>[1-6]0)(?!\d))'


def _tier1_pattern() -> str:
    """The alternatives of tier 1, grouped by their first character.

    Every top-level alternative starts with a literal character: only then can the
    regex engine skip ahead to the few candidate characters instead of trying the
    pattern at every position (about ten times faster). Alternatives that share a
    first character are nested under it, so a candidate is tried against a dozen
    alternatives, not fifty. Upper-case tokens and one-letter levels capture no group:
    for them the match itself is the token. An upper-case token must be preceded by
    the start of the line, a delimiter or the `m` that ends a colour code (checked by
    a look-behind, after the token, so the literal stays first).
    """
    before = r"[^\s\[(<|:,;m]"
    after = r"(?=[\s\]:)|>,;!/\x1b\[]|$)"
    tails: dict[str, list[str]] = {}
    for word in sorted(_WORDS, key=lambda w: (-len(w), w)):
        token = word.upper()
        tails.setdefault(token[0], []).append(rf"{token[1:]}(?<!{before}{token}){after}")
    for c in "IWEF":  # glog: I0101 12:00:00.123456 1234 file.cc:12] msg, at the start only
        tails.setdefault(c, []).append(rf"(?<![\s\S]{c})(?=\d{{4}} \d\d:\d\d:\d\d\.\d+ +\d+ [^\s\]]+:\d+\])")
    for c in "DIWE":  # llama.cpp with --log-prefix --log-timestamps: 0.00.035.060 I llama_...
        tails.setdefault(c, []).append(rf"(?<=\d\.\d\d\.\d\d\d\.\d\d\d {c})(?= )")
    alternatives = [f"{c}(?:{'|'.join(t)})" for c, t in sorted(tails.items())]
    alternatives += [
        rf"\[ ?(?P<b>(?i:{_ALT})) ?\]",
        rf"\t(?P<t>(?i:{_ALT}))(?=\t)",
        rf"=(?<=[ly]=)(?:(?<=level=)|(?<=lvl=)|(?<=severity=))[\"']?(?P<k>(?i:{_ALT}))(?![\w-])",
        _JSON_KEY + _JSON_VALUE,
    ]
    return "|".join(alternatives)


_TIER1 = re.compile(_tier1_pattern())
# A JSON line is read by its key, even when the key stands beyond the window.
_JSON = re.compile(_JSON_KEY + _JSON_VALUE)
_JSON_SPAN = 4096

# Tier 2: case-sensitive spellings, literal first characters.
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
_T2_SCANS = (
    re.compile(
        r":(?:(?<=[rRgGnlc)\]]:)(?:(?<=rror:)|(?<=[Ee]rr:)|(?<=RROR:)|(?<=arning:)|(?<=ARNING:)|(?<=[Ww]arn:)"
        r"|(?<=anic:)|(?<=atal:)|(?<=last\):)|(?<=rror\[E\d{4}\]:))|(?= [Ee]rror(?!\w)))"
    ),
    re.compile("Exception"),
    re.compile("ailed"),
    re.compile("eprecat"),
)

# Tier 3: programs that log without a level (llama.cpp and ggml).
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


def _tier1(text: str, m: re.Match[str] | None) -> Level | None:
    """The level tier 1 reads from a line, given the first match `m` of `_TIER1`."""
    if text[:1] == "{":
        j = _JSON.search(text, 0, _JSON_SPAN)
        if j is not None:
            return _token_level(j[j.lastgroup or 0])
    if m is None:
        return None
    group = m.lastgroup
    return _token_level(m[group] if group is not None else m[0])


def _token_level(token: str) -> Level | None:
    level = _TOKENS.get(token)
    return level if level is not None else _WORDS.get(token.lower())


def _tier2(text: str) -> Level | None:
    front = _FRONT_WORD.match(text)
    if front is not None:
        return _WORDS[front[1].lower()]
    if _T2_ERROR.search(text) is not None:
        return _E
    if _T2_WARNING.search(text) is not None:
        return _W
    return None


def detect_level(text: str) -> Level | None:
    """The level a line states, or `None` when it does not say (callers use info)."""
    level = _tier1(text, _TIER1.search(text, 0, WINDOW))
    if level is None:
        level = _tier2(text)
        if level is None and _KNOWN_INFO.match(text) is not None:
            level = _I
    return level


def detect_levels(texts: list[str]) -> list[Level]:
    """The level of every line, `Level.INFO` when unsure; the hot path's batch version.

    The tier-1 search runs over the batch through `map` (a loop in C). When every line
    has a match whose text alone names the level and no line is JSON (the usual batch
    of a program with a logging library), that is all; the other lines are looked at
    one by one, and those without a match go on to tier 2 together.
    """
    n = len(texts)
    matches = list(map(_TIER1.search, texts, repeat(0, n), repeat(WINDOW, n)))
    if None in matches:
        return _detect_each(texts, matches)
    found = cast("list[re.Match[str]]", matches)
    levels: list[Level | None] = list(map(_FAST.get, map(_WHOLE, found)))
    if None in levels or any(map(str.startswith, texts, repeat("{", n))):
        for i, text in enumerate(texts):
            if levels[i] is None or text[:1] == "{":
                level = _tier1(text, found[i])
                levels[i] = _I if level is None else level
    return levels  # type: ignore[return-value]  # no None is left


def _detect_each(texts: list[str], matches: list[re.Match[str] | None]) -> list[Level]:
    """`detect_levels` for a batch where some lines have no tier-1 match."""
    fast = _FAST.get
    info = _I
    levels: list[Level] = []
    append = levels.append
    silent: list[int] = []  # lines tier 1 found nothing in (JSON lines are read later)
    for text, m in zip(texts, matches, strict=True):
        if m is None:
            silent.append(len(levels))
            append(info)
            continue
        level = fast(m[0])
        if level is None or (m.start() and text[0] == "{"):
            level = _tier1(text, m)
        append(info if level is None else level)
    if silent:
        _silent_batch(texts, silent, levels)
    return levels


def _silent_batch(texts: list[str], silent: list[int], levels: list[Level]) -> None:
    """JSON keys beyond the window, then tier 2, for the lines at `silent`.

    The lines are joined once; scans over the whole batch find the JSON lines (a "{"
    after a newline) and the tier-2 candidates, and only those lines are read.
    """
    lines = [texts[i] for i in silent]
    joined = "\n" + "\n".join(lines)  # every line starts after a "\n"
    json_starts: list[int] = []
    pos = joined.find("{")  # one character: a memchr, where "\n{" would stop at every line
    while pos >= 0:
        if joined[pos - 1] == "\n":
            json_starts.append(pos)
        pos = joined.find("{", pos + 1)
    hits: list[int] = []
    for scan in _T2_SCANS:
        if scan.search(joined) is not None:
            hits.extend(m.start() for m in scan.finditer(joined))
    if not json_starts and not hits:
        return
    # starts[k] is the offset of line k in `joined`: the lengths before it, plus k + 1.
    starts = list(map(add, accumulate(map(len, lines), initial=0), count(1)))
    done: set[int] = set()
    for pos in json_starts:
        k = bisect_right(starts, pos) - 1
        done.add(k)
        level = _tier1(lines[k], None)
        if level is None:
            level = _tier2(lines[k])
        if level is not None:
            levels[silent[k]] = level
    for pos in hits:
        k = bisect_right(starts, pos) - 1
        if k not in done:
            done.add(k)
            level = _tier2(lines[k])
            if level is not None:
                levels[silent[k]] = level
