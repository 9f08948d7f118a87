"""Durations as users write them ("30s", "1m30s", "500ms", or integer nanoseconds) and back."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: object) -> float:
    """Seconds in a duration string such as "1m30s"; an int is nanoseconds (as in Go).

    Raises ValueError with a message saying what is accepted.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use a string such as \"30s\"")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid duration {value}: must not be negative")
        return value / 1e9
    if isinstance(value, float):
        raise ValueError(f"invalid duration {value!r}: use a string such as \"1.5s\"")
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: use a string such as \"30s\"")
    text = value.strip()
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS_S[match.group(2)]
        position = match.end()
    if position != len(text) or not text or not math.isfinite(total):
        raise ValueError(
            f"invalid duration {value!r}: use a number with a unit (ms, s, m, h), "
            "such as \"500ms\", \"30s\" or \"1m30s\""
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest usual spelling of a duration: 0.5 -> "500ms", 90 -> "1m30s"."""
    if seconds < 1 and seconds != 0:
        millis = seconds * 1000
        return f"{millis:g}ms"
    whole_h, rest = divmod(seconds, 3600)
    whole_m, secs = divmod(rest, 60)
    parts = []
    if whole_h:
        parts.append(f"{int(whole_h)}h")
    if whole_m:
        parts.append(f"{int(whole_m)}m")
    if secs or not parts:
        parts.append(f"{round(secs, 3):g}s")
    return "".join(parts)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""Seconds inside; "30s"-style strings (or integer nanoseconds) at the JSON edge."""
