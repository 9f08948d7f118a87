"""Strict JSON where input enters dagnats: the CLI, the Python client, the API, definitions.

Python's `json` accepts `NaN`, `Infinity` and numbers that overflow to infinity (`1e999`),
which then silently become `null`; it decodes `"\\ud800"` into a string that cannot be
encoded again; and deep nesting raises RecursionError. Here each of these is refused with a
`JsonRefused` (a ValueError) whose message is one line, so every edge reports it the same
way. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from dagnats.limits import JSON_MAX_DEPTH


class JsonRefused(ValueError):
    """JSON that dagnats does not accept; the message says why, in one line."""


def loads(text: str | bytes) -> Any:
    """Decode strict JSON: no NaN or Infinity, finite numbers, valid Unicode, bounded depth.

    The depth is measured on the text before parsing (so nothing recurses too deep), and
    strings are looked at only when the text could hold a lone surrogate: a large input
    costs little more than `json.loads`.
    """
    if isinstance(text, bytes):
        encoding = json.detect_encoding(text)  # UTF-8, with or without a BOM; UTF-16/32
        try:
            text = text.decode(encoding)
        except UnicodeDecodeError as exc:
            raise JsonRefused(f"not {encoding.upper().removesuffix('-SIG')} text "
                              f"({exc.reason})") from None
    if _depth(text) > JSON_MAX_DEPTH:
        raise JsonRefused(_too_deep())
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except JsonRefused:
        raise
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise JsonRefused(_too_deep()) from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise JsonRefused(f"a number is too long ({str(exc).split(':')[0]})") from None
    if _SURROGATE_ESCAPE.search(text) or not _encodable(text):
        check(value)
    return value


#: A \u escape of a surrogate: the only way (besides raw surrogates in a Python str) JSON
#: text can decode into a lone surrogate. Valid pairs match too; `check` tells them apart.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}


def _depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text (brackets inside strings do
    not count); malformed text gives some number, and the parser reports the problem."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check(value: Any) -> Any:
    """`value` (decoded JSON) unchanged, or JsonRefused for a non-finite number, a string
    that is not valid Unicode (a lone surrogate) or nesting deeper than JSON_MAX_DEPTH."""
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise JsonRefused(f"{item} is not a JSON number (JSON has no NaN or Infinity)")
        elif isinstance(item, dict | list | tuple):
            if depth >= JSON_MAX_DEPTH:
                raise JsonRefused(_too_deep())
            if isinstance(item, dict):
                for key in item:
                    if isinstance(key, str):
                        _check_text(key)
                todo.extend((child, depth + 1) for child in item.values())
            else:
                todo.extend((child, depth + 1) for child in item)
    return value


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        raise JsonRefused(f"a string holds a lone surrogate (\\u{code:04x}), which is not "
                          "valid Unicode") from None


def _too_deep() -> str:
    return f"nested deeper than {JSON_MAX_DEPTH} levels of arrays and objects (the limit)"


def _no_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JsonRefused(f"{text} is out of range for a number (it would be infinite)")
    return number
