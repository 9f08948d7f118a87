"""JSON values given on the command line: inline, `@FILE`, or `-` (standard input), as curl.

`run start`, `run rerun`, `run signal` and `event publish` take their JSON argument through
`parse_input`. Reading a file or standard input has no argv limit (about 128 KB inline).
Everything is decoded strictly (`dagnats.strict_json`); every problem is one InvalidInput
line (exit 2).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dagnats.errors import InvalidInput
from dagnats.strict_json import JsonRefused, loads

#: What reads standard input, alone or after `@` (`@-`, as curl spells it).
STDIN = "-"


def parse_input(text: str | None, what: str = "INPUT") -> Any:
    """The JSON value of an argument (absent: null): inline JSON, `@FILE`, or `-` for
    standard input. `what` names the argument in messages."""
    if text is None:
        return None
    if text == STDIN or text == "@" + STDIN:
        return _decode(_read_stdin(what), f"{what} (from standard input)", inline=False)
    if text.startswith("@"):
        return _decode(_read_file(text[1:], what), f"{what} (from {text[1:]})", inline=False)
    return _decode(text, what, inline=True)


def _read_file(name: str, what: str) -> bytes:
    if not name:
        raise InvalidInput(f"{what}: '@' needs a file name, such as @input.json (or - for "
                           "standard input)")
    path = Path(name).expanduser()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} from {path}: {exc.strerror or exc}") from None


def _read_stdin(what: str) -> bytes:
    try:
        return sys.stdin.buffer.read()
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} from standard input: "
                           f"{exc.strerror or exc}") from None


def _decode(text: str | bytes, what: str, inline: bool) -> Any:
    try:
        return loads(text)
    except JsonRefused as exc:
        hint = ("; a string needs JSON quotes, such as '\"World\"' (or give @FILE, or - for "
                "standard input)") if inline and str(exc).startswith("line ") else ""
        raise InvalidInput(f"{what} is not valid JSON ({exc}){hint}") from None
