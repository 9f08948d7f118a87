"""What the client sends: definitions from files, JSON-ready inputs, run statuses."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

from pydantic_core import to_jsonable_python

from dagnats import strict_json
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.state import RunStatus
from dagnats.dag.validate import parse_definition
from dagnats.errors import InvalidInput


class _OriginalInput:
    """The default input of `rerun`: the input of the run being rerun."""

    def __repr__(self) -> str:
        return "ORIGINAL_INPUT"


ORIGINAL_INPUT: Any = _OriginalInput()

DefinitionSource = Union[WorkflowDefinition, Mapping[str, Any], str, "os.PathLike[str]"]


def load_definition(source: DefinitionSource) -> WorkflowDefinition:
    """A checked definition from a model, decoded JSON, or the path of a JSON file.

    Raises InvalidDefinition (one line, with line and column for malformed JSON) or
    InvalidInput when the file cannot be read.
    """
    if isinstance(source, WorkflowDefinition):
        return source
    if isinstance(source, Mapping):
        return parse_definition(source)
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_definition(data, origin=str(path))


def jsonable(value: Any, what: str) -> Any:
    """`value` as JSON-ready data, or one InvalidInput line naming `what`.

    Strict, as every edge is (`dagnats.strict_json`): NaN, infinities, lone surrogates and
    nesting deeper than `limits.JSON_MAX_DEPTH` are refused, not turned into null.
    """
    try:
        return strict_json.check(to_jsonable_python(value))
    except strict_json.JsonRefused as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    except Exception as exc:
        try:  # say what is wrong in JSON's terms when it is that (a lone surrogate, ...)
            strict_json.check(value)
        except strict_json.JsonRefused as refused:
            raise InvalidInput(f"{what} is not valid JSON: {refused}") from None
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"{what} is not JSON-serialisable: {detail}") from None


def run_status(value: RunStatus | str) -> RunStatus:
    """A run status from its name, or one InvalidInput line listing the known ones."""
    try:
        return RunStatus(value)
    except ValueError:
        known = ", ".join(status.value for status in RunStatus)
        raise InvalidInput(f"unknown run status {value!r}; use one of {known}") from None
