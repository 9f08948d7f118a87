"""Dot-paths into JSON values, and the references steps use to name run data.

`lookup(data, "a.b.0")` walks objects by key and lists by index. A reference is
`input.<path>` (the run's input) or `step.<id>.output.<path>` (a finished step's output);
templates such as "Ship order {{input.order_id}}?" substitute references into text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

MISSING: Any = object()
"""What `lookup` returns when the path leads nowhere."""

_TEMPLATE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def lookup(data: Any, path: str) -> Any:
    """The value at a dot-path (empty path: `data` itself), or MISSING."""
    node = data
    for part in path.split(".") if path else ():
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def check_reference(ref: str) -> tuple[str, str | None, str]:
    """(source, step id or None, path) of `input.<path>` or `step.<id>.output.<path>`.

    Raises ValueError naming the accepted forms.
    """
    if ref == "input" or ref.startswith("input."):
        return "input", None, ref[len("input."):] if ref != "input" else ""
    parts = ref.split(".")
    if len(parts) >= 3 and parts[0] == "step" and parts[2] == "output" and parts[1]:
        return "step", parts[1], ".".join(parts[3:])
    raise ValueError(f"{ref!r} is not a reference: use input.<path> or "
                     "step.<id>.output.<path>")


def resolve(ref: str, run_input: Any, outputs: Mapping[str, Any]) -> Any:
    """The value a reference names (MISSING when it leads nowhere)."""
    source, step_id, path = check_reference(ref)
    if source == "input":
        return lookup(run_input, path)
    if step_id is None or step_id not in outputs:
        return MISSING
    return lookup(outputs[step_id], path)


def render(template: str, run_input: Any, outputs: Mapping[str, Any]) -> str:
    """The template with each {{reference}} replaced by its value (strings as they are,
    other values as JSON, missing ones left as written)."""
    def substitute(match: re.Match[str]) -> str:
        try:
            value = resolve(match.group(1), run_input, outputs)
        except ValueError:
            return match.group(0)
        if value is MISSING:
            return match.group(0)
        return value if isinstance(value, str) else json.dumps(value)
    return _TEMPLATE.sub(substitute, template)


def template_references(template: str) -> list[str]:
    """The references a template names."""
    return [match.group(1) for match in _TEMPLATE.finditer(template)]
