"""Out-of-line values (the claim check), as the pure core sees them.

A value dagnats carries (a run's input, a step's input or output, a run's output) stays
inline when its compact JSON is small, and goes into the payloads object store when it is
not (`dagnats.store.payloads`). Wherever a value is carried, a field `<name>_refs` beside
`<name>` says which parts of it are out of line: a map from a dot-path into the value
("" for the whole value) to a `PayloadRef`; the value holds null at those places. User data
itself never holds a reference, so nothing a user sends can be mistaken for one.

Only dagnats composes values (a step's input from several dependencies' outputs, a
compensation's input, a run's output from several final steps, by key; a map step's output
from its instances' outputs, by index), so the paths are ones it built. This module only
describes references; fetching is the engine's, the worker's and the client's job
(`materialize` fills in values they fetched).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from dagnats.limits import PAYLOAD_MAX_BYTES

#: Bytes in a MB as errors count them (so 32 * 1024 * 1024 bytes is "32 MB").
MB = 1024 * 1024


class PayloadRef(BaseModel):
    """Where an out-of-line value is: the sha256 (hex) of its compact JSON, and its size."""

    model_config = ConfigDict(frozen=True)

    digest: str
    size: int


#: The out-of-line parts of a value, by dot-path ("" for the whole value).
Refs = dict[str, PayloadRef]


def encode(value: Any) -> bytes:
    """A value's compact JSON: what is measured, hashed and stored."""
    return json.dumps(value, separators=(",", ":")).encode()


def ref_for(data: bytes) -> PayloadRef:
    """The reference to a value whose compact JSON is `data`."""
    return PayloadRef(digest=hashlib.sha256(data).hexdigest(), size=len(data))


def size_text(size: int) -> str:
    """A size as errors show it: "40.0 MB"."""
    return f"{size / MB:.1f} MB"


def limit_text() -> str:
    """The payload limit as errors show it: "32 MB"."""
    return f"{PAYLOAD_MAX_BYTES / MB:g} MB"


def too_large(what: str, size: int) -> str | None:
    """Why a value of `size` bytes cannot be carried (`what` names it), or None if it can."""
    if size <= PAYLOAD_MAX_BYTES:
        return None
    return f"{what} is {size_text(size)}; the limit is {limit_text()}"


def nest(parts: Mapping[str, tuple[Any, Refs]]) -> tuple[dict[str, Any], Refs]:
    """A dict of parts by key, with each part's out-of-line places under its key."""
    value: dict[str, Any] = {}
    refs: Refs = {}
    for key, (part, part_refs) in parts.items():
        value[key] = part
        for path, ref in part_refs.items():
            refs[f"{key}.{path}" if path else key] = ref
    return value, refs


def nest_list(parts: list[tuple[Any, Refs]]) -> tuple[list[Any], Refs]:
    """A list of parts in order, with each part's out-of-line places under its index (a
    map step's output)."""
    value: list[Any] = []
    refs: Refs = {}
    for index, (part, part_refs) in enumerate(parts):
        value.append(part)
        for path, ref in part_refs.items():
            refs[f"{index}.{path}" if path else str(index)] = ref
    return value, refs


def materialize(value: Any, refs: Mapping[str, PayloadRef], found: Mapping[str, Any]) -> Any:
    """`value` with each out-of-line part whose digest is in `found` filled in (a copy
    along the paths it changes; parts not found stay null)."""
    for path, ref in sorted(refs.items(), key=lambda item: len(item[0])):
        if ref.digest in found:
            value = _place(value, path.split(".") if path else [], found[ref.digest])
    return value


def _place(value: Any, path: list[str], part: Any) -> Any:
    if not path:
        return part
    if isinstance(value, list) and path[0].isdigit() and int(path[0]) < len(value):
        index = int(path[0])  # a place in a map step's output
        return [*value[:index], _place(value[index], path[1:], part), *value[index + 1:]]
    if not isinstance(value, dict):
        return value  # not a place dagnats built: leave it
    return {**value, path[0]: _place(value.get(path[0]), path[1:], part)}


def refs_of(data: Mapping[str, Any], name: str) -> Refs:
    """The `<name>_refs` of an event's data or a task, as references ({} when none)."""
    raw = data.get(f"{name}_refs")
    if not raw:
        return {}
    return {path: ref if isinstance(ref, PayloadRef) else PayloadRef.model_validate(ref)
            for path, ref in raw.items()}


def refs_json(refs: Refs) -> dict[str, Any]:
    """References as JSON for an event's data."""
    return {path: ref.model_dump() for path, ref in refs.items()}
