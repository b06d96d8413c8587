"""Masking credentials in command lines and environments before anyone sees them.

A model server's command line often carries its key (`--api-key sk-…`), a worker's
its database URL with a password in it. Whatever logcast shows of a command or an
environment (status records, the config page, every API answer, `logcast ps`) goes
through here first. The value is replaced by `MASK`; the name of the flag or variable
stays, so a reader still sees *which* credential is set.

What counts as a credential is decided by the name: a flag, a `key=value` word or
an environment variable whose name contains one of the words in `_SECRET_WORDS`
(`--api-key`, `--hf-token`, `password=`, `DB_PASSWORD`…); and the password part of a
URL (`redis://user:pw@host`). All patterns are anchored or bounded: they run on
untrusted text and must stay linear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "••••••"

_SECRET_WORDS = r"(?:api[-_]?key|apikey|token|secret|passw(?:or)?d?|pwd|passphrase|auth|credential|cookie|session|private[-_]?key|access[-_]?key)"
_SECRET_NAME = re.compile(rf"(?i){_SECRET_WORDS}")
# --api-key=X, -token=X, password=X, api_key:X (one word of a command line)
_ASSIGNED = re.compile(rf"(?i)^(-{{0,2}}[\w.-]*{_SECRET_WORDS}[\w.-]*[=:])(.+)$")
# a flag whose next word is its value: --api-key X, -p is too short to guess
_FLAG = re.compile(rf"(?i)^--?[\w.-]*{_SECRET_WORDS}[\w.-]*$")
# scheme://user:password@host
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,20}://[^\s:/@]{0,200}:)([^\s@/]{1,200})(@)")
# Authorization: Bearer X / Basic X inside one word or a message
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{8,})")
# keys with a well-known shape: OpenAI/Anthropic (sk-…), Hugging Face (hf_…), GitHub (ghp_…)
_KNOWN_KEY = re.compile(r"\b(sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{8,})")


def is_secret_name(name: str) -> bool:
    """True for a flag, option or variable name that names a credential."""
    return _SECRET_NAME.search(name) is not None


def mask_text(text: str) -> str:
    """`text` with URL passwords, bearer tokens and keys of a known shape masked."""
    text = _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text)
    text = _BEARER.sub(rf"\g<1>\g<2>{MASK}", text)
    return _KNOWN_KEY.sub(MASK, text)


def mask_argv(argv: Iterable[str]) -> list[str]:
    """A command line with the value of every credential-like argument masked."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        m = _ASSIGNED.match(word)
        if m is not None:
            out.append(m.group(1) + MASK)
            continue
        if _FLAG.match(word):
            hide_next = True
        out.append(mask_text(word))
    return out


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """An environment with credential variables masked (and URL passwords in any value)."""
    return {k: (MASK if is_secret_name(k) else mask_text(v)) for k, v in env.items()}
