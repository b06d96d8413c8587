"""`tomllib`'s syntax errors as located ConfigErrors: its text says only "at line N", so the
key is looked up on that line and duplicates are reworded in the user's terms."""

from __future__ import annotations

import ast
import re
import tomllib

from logcast.config.locate import KeyLocator, dotted
from logcast.errors import ConfigError

_POSITION = re.compile(r"\s*\(at (?:line (\d+), column \d+|end of document)\)\s*$")


def decode_error(exc: tomllib.TOMLDecodeError, path: str, locator: KeyLocator) -> ConfigError:
    text = str(exc)
    position = _POSITION.search(text)
    line = int(position.group(1)) if position and position.group(1) else None
    message = text[: position.start()] if position else text
    key = locator.key_at(line) if line else None
    twice = re.match(r"Cannot declare \((.*)\) twice", message)
    if twice:
        try:
            parts = tuple(str(p) for p in ast.literal_eval(f"({twice.group(1)},)"))
        except (ValueError, SyntaxError):
            parts = ()
        if len(parts) == 2 and parts[0] == "process":
            message = f"duplicate process name {parts[1]!r}"
        else:
            message = "duplicate table"
        key = parts or key
    elif message.startswith("Cannot overwrite a value"):
        message = "duplicate key"
    else:
        message = f"invalid TOML: {message[:1].lower()}{message[1:]}"
    return ConfigError(message, path=path, line=line, key=dotted(key) if key else None)
