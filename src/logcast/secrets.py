"""Masking credentials in command lines and environments before anyone sees them.

Whatever logcast shows of a command or an environment goes through here. The value is
replaced by `MASK` and the name stays, so a reader still sees *which* credential is set.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping

MASK = "••••••"

_SECRET_LAST = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "apikey",
        "credential",
        "credentials",
        "cookie",
        "auth",
        "authorization",
        "signature",  # a presigned URL's X-Amz-Signature, a webhook's signature
    }
)
# a last word that ends in one of these is a credential too (PGPASSWORD, HFTOKEN)
_SECRET_ENDINGS = ("password", "passwd", "passphrase", "secret", "apikey", "token")
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("access", "key"),
        ("private", "key"),
        ("secret", "key"),
        ("signing", "key"),
        ("master", "key"),
        ("encryption", "key"),
        ("license", "key"),
        ("session", "key"),
        ("auth", "key"),
        ("session", "id"),
    }
)
_MAX_NAME = 128  # longer "names" are not names

# Every pattern is anchored or bounded: they run on untrusted text and must stay linear.
_HUMP = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[-_.]+")
# NAME=value, --name=value, name: value (an HTTP header given as one word)
_ASSIGNED = re.compile(r"^(-{0,2}([A-Za-z][\w.-]{0,127})(?:=|:\s*))(.+)$", re.DOTALL)
_LONG_FLAG = re.compile(r"^--?([A-Za-z][\w.-]{0,127})$")
_STARTS_LIKE_A_FLAG = re.compile(r"^--[A-Za-z]")
# scheme://user:password@host
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,20}://[^\s:/@]{0,200}:)([^\s@/]{1,200})(@)")
# Authorization: Bearer X / Basic X inside one word or a message
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{8,})")
# keys of a well-known shape: OpenAI/Anthropic (sk-…), Hugging Face (hf_…), GitHub (ghp_…),
# Slack (xoxb-…), GitLab (glpat-…)
_KNOWN_KEY = re.compile(
    r"\b(sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{8,}"
    r"|xox[abposr]-[A-Za-z0-9-]{8,}|glpat-[A-Za-z0-9_-]{8,})"
)
_SPACE = re.compile(r"(\s+)")
# a URL's query parameter: ?api_key=X, &token=X (masked when its name is a credential's)
_QUERY_PARAM = re.compile(r"([?&])([A-Za-z][\w.-]{0,127})=([^&#\s'\"]+)")


def _words(name: str) -> list[str]:
    name = _HUMP.sub(r"\1_\2", name.lstrip("-"))
    return [w for w in _SEPARATORS.split(name.lower()) if w]


def is_secret_name(name: str) -> bool:
    """True for a flag, option or variable name that names a credential.

    Only the last word counts (words are cut at `-`, `_`, `.` and camelCase humps): it is
    one of `_SECRET_LAST` (`--hf-token`, `DB_PASSWORD`, `authToken`) or ends in one of
    `_SECRET_ENDINGS` (`PGPASSWORD`), or the last two are one of `_SECRET_PAIRS`
    (`--api-key`, `AWS_SECRET_ACCESS_KEY`). So `--max-tokens`, `tokens_per_s`,
    `--token-limit` and `--sort-key` stay readable: the secret-sounding word is not the
    last, or is a plural, or is `key` alone, too common to mean a secret.
    """
    if len(name) > _MAX_NAME:
        return False
    words = _words(name)
    if not words:
        return False
    last = words[-1]
    if last in _SECRET_LAST or last.endswith(_SECRET_ENDINGS):
        return True
    return len(words) >= 2 and (words[-2], last) in _SECRET_PAIRS


def mask_text(text: str) -> str:
    """`text` with URL passwords and credential query parameters (`?token=X`), bearer
    tokens and keys of a known shape masked."""
    text = _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text)
    if "=" in text:
        text = _QUERY_PARAM.sub(_masked_param, text)
    text = _BEARER.sub(rf"\g<1>\g<2>{MASK}", text)
    return _KNOWN_KEY.sub(MASK, text)


def _masked_param(match: re.Match[str]) -> str:
    if is_secret_name(match.group(2)):
        return f"{match.group(1)}{match.group(2)}={MASK}"
    return match.group(0)


# Short flags that carry a password in the programs that take one on the command line:
# `mysql -phunter2` (attached only: `-p` alone asks, and the next word is a database),
# `redis-cli -a pw`, `sshpass -p pw`, and curl's `-u user:password`.
_ATTACHED, _NEXT, _USER = "attached", "next", "user"
_MYSQL = ("mysql", "mysqldump", "mysqladmin", "mysqlimport", "mariadb", "mariadb-dump")
_SHORT_SECRETS: dict[str, dict[str, str]] = {
    **{program: {"-p": _ATTACHED} for program in _MYSQL},
    "redis-cli": {"-a": _NEXT},
    "sshpass": {"-p": _NEXT},
    "curl": {"-u": _USER, "--user": _USER},
}
# words after which the next one names a program: what runs another command, and a shell's
# separators (a status line or `sh -c` string is masked word by word too)
_RUNS_THE_NEXT = frozenset({"sudo", "env", "exec", "nohup", "nice", "command", "time", "sshpass"})
_COMMAND_BREAKS = frozenset({"&&", "||", ";", "|", "then", "do"})


def mask_argv(argv: Iterable[str]) -> list[str]:
    """A command line with the value of every credential-like argument masked.

    Not masked, on purpose: short flags (`-p X` means a port as often as a password),
    but for the programs known to take a password in one (`_SHORT_SECRETS`), and a value
    after a flag that is itself a long flag (`--no-auth --port 8080`).
    """
    out: list[str] = []
    hide_next: str | None = None  # the next word is the value of a flag of this kind
    shorts: dict[str, str] = {}
    program_next = True  # the next word that is no option or assignment names a program
    for word in argv:
        if hide_next:
            kind, hide_next = hide_next, None
            if not _STARTS_LIKE_A_FLAG.match(word):
                if kind == _USER:  # `curl -u bob:pw`: bob stays (`-u bob` asks)
                    user, colon, _ = word.partition(":")
                    out.append(f"{user}:{MASK}" if colon else word)
                else:
                    out.append(MASK)
                continue
        if word in _COMMAND_BREAKS:  # `cd /app && curl -u …`
            program_next, shorts = True, {}
        elif program_next and not word.startswith("-") and not _ASSIGNED.match(word):
            program = word.rsplit("/", 1)[-1]
            shorts = _SHORT_SECRETS.get(program, {})
            program_next = program in _RUNS_THE_NEXT  # `sudo mysql -p…`, `sshpass -p pw ssh …`
            out.append(mask_text(word))
            continue
        short = _short_secret(word, shorts, out) if shorts else None
        if short is not None:
            hide_next = short or None
            continue
        assigned = _ASSIGNED.match(word)
        if assigned is not None and is_secret_name(assigned.group(2)):
            rest = _SPACE.split(assigned.group(3), maxsplit=1)
            if (
                assigned.group(1).endswith("=") and len(rest) == 3
            ):  # `PW=x ./run …` in one word: go on after it
                out.append(assigned.group(1) + MASK + rest[1] + mask_line(rest[2]))
            else:
                out.append(assigned.group(1) + MASK)
            continue
        inner = _ASSIGNED.match(assigned.group(3)) if assigned is not None else None
        if assigned is not None and inner is not None and is_secret_name(inner.group(2)):
            # a header or variable as an option's value, in one word: wget's
            # `--header=X-Api-Key: PW`, docker's `--env=API_KEY=PW`
            out.append(assigned.group(1) + inner.group(1) + MASK)
            continue
        if _SPACE.search(word):  # a whole command in one word (`sh -c "server --api-key X"`)
            out.append(mask_line(word))
            continue
        flag = _LONG_FLAG.match(word)
        if flag is not None and is_secret_name(flag.group(1)):
            hide_next = _NEXT
        out.append(mask_text(word))
    return out


def _short_secret(word: str, shorts: Mapping[str, str], out: list[str]) -> str | None:
    """`word` as a short flag of `shorts` (put in `out`, its value masked): the kind of
    value the next word is, or "" when the value was in `word`; None when it is no such flag."""
    for flag, kind in shorts.items():
        if word == flag and kind != _ATTACHED:
            out.append(word)
            return kind  # `curl -u user:pw`, `redis-cli -a pw`: the value is the next word
        glued = flag + "=" if flag.startswith("--") else flag  # `--user=bob:pw`, `-pSECRET`
        if kind == _USER and not flag.startswith("--"):
            glued = _after_cluster(word, flag[1]) or glued  # `curl -su bob:pw`, `-sSubob:pw`
            if glued == word:
                out.append(word)
                return kind
        if word.startswith(glued) and len(word) > len(glued):
            value = word[len(glued) :]
            if kind == _USER:
                user, colon, _ = value.partition(":")
                out.append(f"{glued}{user}:{MASK}" if colon else word)
            else:
                out.append(glued + MASK)
            return ""
    return None


def _after_cluster(word: str, letter: str) -> str | None:
    """`-sSu` of `-sSubob:pw`: the cluster of one-letter switches up to and with `letter`,
    when `word` is one (`-su`: the whole word, its value the next one); else None."""
    if not word.startswith("-") or word.startswith("--"):
        return None
    at = word.find(letter, 1)
    if at <= 1 or not word[1:at].isalpha() or not word[1:at].isascii():
        return None
    return word[: at + 1]


def mask_command(argv: Iterable[str]) -> str:
    """A command line as one shell-like line for display, credentials masked.

    Words are quoted as `shlex.join` would; the mask itself is left bare, so that
    `--api-key=••••••` does not turn into `'--api-key=••••••'`.
    """
    return " ".join(
        MASK.join(shlex.quote(part) if part else "" for part in word.split(MASK))
        if MASK in word
        else shlex.quote(word)
        for word in mask_argv(argv)
    )


def mask_line(text: str) -> str:
    """Free text that may carry a command line (a status line), credentials masked.

    The text is cut into words at white space, masked like an argument list, and put
    back together with its white space unchanged.
    """
    parts = _SPACE.split(text)
    masked = mask_argv(parts[0::2])
    parts[0::2] = masked
    return "".join(parts)


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """An environment with credential variables masked (and URL passwords in any value)."""
    return {name: (MASK if is_secret_name(name) else mask_text(value)) for name, value in env.items()}
