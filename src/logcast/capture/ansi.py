"""Escape sequences and control characters in log text.

Capture keeps a line exactly as the child wrote it, colour codes included (SPEC: ANSI
is kept intact), because the dashboard and the terminal clients render colours. Log
text is data, though, and a child (or whoever controls what it logs) must not be able
to drive the terminal of someone tailing it: retitle the window, clear the screen,
switch to the alternate screen, move the cursor over earlier lines, plant an OSC 8
hyperlink or an OSC 52 clipboard write. So there are two views:

* `strip_ansi` — plain text for search and download: every escape sequence and every
  control character except tab is removed.
* `sanitize_for_terminal` — what a terminal may print: SGR sequences (`ESC [ … m`,
  colours and text attributes) are kept; every other escape sequence is removed whole;
  a control character standing alone (C0 other than tab, DEL, and the C1 range
  U+0080–U+009F, which some terminals obey as 8-bit controls) is replaced by U+FFFD, so
  the reader sees that something was there. The 8-bit forms of CSI (U+009B) and of the
  string sequences (U+0090 DCS, U+009D OSC, U+0098 SOS, U+009E PM, U+009F APC) are
  removed whole, like their 7-bit forms.

Sequences follow ECMA-48: CSI is `ESC [`, parameter bytes 0x30–0x3F, intermediate bytes
0x20–0x2F and a final byte 0x40–0x7E; OSC, DCS, SOS, PM and APC run to BEL or ST
(`ESC \\` or U+009C) — one that is not terminated within the line runs to its end, as a
terminal would swallow it; any other `ESC` takes intermediates 0x20–0x2F and one final
byte 0x30–0x7E. Text without ESC or control characters is returned as is after one scan.
"""

from __future__ import annotations

import re

__all__ = ["sanitize_for_terminal", "strip_ansi"]

_PLACEHOLDER = "\ufffd"

# Anything that is not plain printable text; a line without it needs no work.
_SPECIAL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")

_SEQUENCE = re.compile(
    r"(?P<sgr>\x1b\[[0-9;:]*m)"  # SGR: colours and attributes
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # any other CSI: cursor, erase, modes (ESC[2J, ESC[?1049h)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    # OSC, DCS, SOS, PM, APC (7-bit and 8-bit introducers), up to BEL or ST
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c|(?=\x1b)|\Z)"
    r"|\x1b[ -/]*[0-~]"  # other escape sequences: ESC 7, ESC c, ESC ( B
    r"|(?P<ctl>[\x00-\x08\x0a-\x1f\x7f-\x9f])"  # a control character on its own (a lone ESC too)
)


def _sanitize(m: re.Match[str]) -> str:
    if m.lastgroup == "sgr":
        return m[0]
    if m.lastgroup == "ctl":
        return _PLACEHOLDER
    return ""


def strip_ansi(text: str) -> str:
    """Plain text: every escape sequence and control character (but tab) removed."""
    if _SPECIAL.search(text) is None:
        return text
    return _SEQUENCE.sub("", text)


def sanitize_for_terminal(text: str) -> str:
    """Text a terminal may print: colours kept, other sequences removed, lone controls → U+FFFD."""
    if _SPECIAL.search(text) is None:
        return text
    return _SEQUENCE.sub(_sanitize, text)
