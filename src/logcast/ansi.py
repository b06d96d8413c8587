"""Escape sequences and control characters in log text.

Lines are kept as the child wrote them, colours included; these views stop log text from
driving a reader's terminal (retitling it, clearing it, moving the cursor, OSC 8 links, OSC 52).
"""

from __future__ import annotations

import re

__all__ = ["sanitize_for_terminal", "strip_ansi"]

_PLACEHOLDER = "\ufffd"  # shows the reader that a control character was there

# The bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069):
# a terminal that obeys them shows a line's characters in another order than they were
# written ("Trojan Source", CVE-2021-42574), so log text could pass for other text.
_BIDI = "\u202a-\u202e\u2066-\u2069"
# Anything that is not plain printable text; a line without it needs no work. C1
# (U+0080–U+009F) counts too: some terminals obey it as 8-bit controls.
_SPECIAL = re.compile(f"[\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f{_BIDI}]")

# ECMA-48. An OSC/DCS/SOS/PM/APC string that is not terminated within the line runs to
# its end, as a terminal would swallow it.
_SEQUENCE = re.compile(
    r"(?P<sgr>\x1b\[[0-9;:]*m)"  # SGR: colours and attributes
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # any other CSI: cursor, erase, modes (ESC[2J, ESC[?1049h)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    # OSC, DCS, SOS, PM, APC (7-bit and 8-bit introducers), up to BEL or ST
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c|(?=\x1b)|\Z)"
    r"|\x1b[ -/]*[0-~]"  # other escape sequences: ESC 7, ESC c, ESC ( B
    rf"|(?P<ctl>[\x00-\x08\x0a-\x1f\x7f-\x9f{_BIDI}])"  # a control on its own (a lone ESC too)
)


_CONCEAL = "8"  # SGR 8 hides the text that follows: the lines after it too, in a terminal
_COLOR_ARGS = {"5": 1, "2": 3}  # after 38/48/58: a palette index, or r;g;b


def _sgr(sequence: str) -> str:
    """An SGR sequence without its conceal attribute (`ESC[8m`, `ESC[1;8;31m`); colour
    arguments that happen to be 8 (`ESC[38;5;8m`) are colours and stay."""
    if "8" not in sequence:
        return sequence
    params = sequence[2:-1].split(";")
    kept: list[str] = []
    i = 0
    while i < len(params):
        param = params[i]
        if param in ("38", "48", "58") and i + 1 < len(params) and params[i + 1] in _COLOR_ARGS:
            take = 2 + _COLOR_ARGS[params[i + 1]]
            kept += params[i : i + take]
            i += take
            continue
        if param.lstrip("0") != _CONCEAL:
            kept.append(param)
        i += 1
    if len(kept) == len(params):
        return sequence
    return f"\x1b[{';'.join(kept)}m" if kept else ""


def _sanitize(match: re.Match[str]) -> str:
    if match.lastgroup == "sgr":
        return _sgr(match[0])
    if match.lastgroup == "ctl":
        return _PLACEHOLDER
    return ""


def strip_ansi(text: str) -> str:
    """Plain text: every escape sequence and control character (but tab) removed, and
    the bidirectional controls."""
    if _SPECIAL.search(text) is None:
        return text
    return _SEQUENCE.sub("", text)


def sanitize_for_terminal(text: str) -> str:
    """Text a terminal may print: colours kept (but the attribute that hides text), other
    sequences removed, lone controls (the bidirectional ones too) → U+FFFD."""
    if _SPECIAL.search(text) is None:
        return text
    return _SEQUENCE.sub(_sanitize, text)
