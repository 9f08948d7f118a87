"""Turning user JSON into a checked WorkflowDefinition: shape, then graph (Kahn's algorithm).

Every problem becomes one InvalidDefinition line that says where and what.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from dagnats.dag.model import Step, WorkflowDefinition
from dagnats.errors import InvalidDefinition

IGNORED_KEYS = ("$schema",)


def parse_json_text(text: str | bytes, origin: str) -> Any:
    """Decode JSON, turning a syntax error into one line with its line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidDefinition(
            f"{origin}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidDefinition(f"{origin}: not UTF-8 text ({exc.reason})") from None


def parse_definition(source: str | bytes | Mapping[str, Any], origin: str = "definition"
                     ) -> WorkflowDefinition:
    """Parse and fully validate a workflow definition from JSON text or decoded data."""
    data = parse_json_text(source, origin) if isinstance(source, (str, bytes)) else source
    if not isinstance(data, Mapping):
        raise InvalidDefinition(f"{origin}: a workflow definition must be a JSON object")
    cleaned = {key: value for key, value in data.items() if key not in IGNORED_KEYS}
    try:
        definition = WorkflowDefinition.model_validate(cleaned)
    except ValidationError as exc:
        raise InvalidDefinition(f"{origin}: {describe_validation_error(exc, cleaned)}") from None
    check_graph(definition, origin)
    return definition


def describe_validation_error(exc: ValidationError, data: Mapping[str, Any]) -> str:
    """One line for the first pydantic error: the JSON path, then the problem."""
    error = exc.errors()[0]
    path = _json_path(error["loc"], data)
    if error["type"] in ("extra_forbidden", "missing") and error["loc"]:
        parent = _json_path(error["loc"][:-1], data)
        where = f" in {parent}" if error["loc"][:-1] else ""
        field = error["loc"][-1]
        if error["type"] == "extra_forbidden":
            return f"unknown field '{field}'{where} (a typo?)"
        return f"missing required field '{field}'{where}"
    message = error["msg"].removeprefix("Value error, ")
    count = exc.error_count()
    more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
    return f"{path}: {message}{more}"


def _json_path(loc: Iterable[int | str], data: Mapping[str, Any]) -> str:
    """Render a pydantic location as steps[1].retry.strategy, naming steps by id when known."""
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            step_id = node[item].get("id") if _indexable(node, item) else None
            parts[-1] += f"[{step_id!r}]" if isinstance(step_id, str) and step_id else f"[{item}]"
            node = node[item] if _indexable(node, item) else None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, Mapping) else None
    return ".".join(parts) or "definition"


def _indexable(node: Any, index: int) -> bool:
    return isinstance(node, list) and 0 <= index < len(node) and isinstance(node[index], Mapping)


def check_graph(definition: WorkflowDefinition, origin: str = "definition") -> None:
    """Refuse duplicate ids, unknown dependencies and cycles."""
    seen: set[str] = set()
    for step in definition.steps:
        if step.id in seen:
            raise InvalidDefinition(f"{origin}: duplicate step id {step.id!r}")
        seen.add(step.id)
    for step in definition.steps:
        for dep in step.depends_on:
            if dep not in seen:
                raise InvalidDefinition(
                    f"{origin}: step {step.id!r} depends on unknown step {dep!r}"
                )
    check_auxiliary(definition, origin)
    topological_order(definition.steps, origin)


def check_auxiliary(definition: WorkflowDefinition, origin: str = "definition") -> None:
    """on_failure and compensate must name existing, otherwise unused steps."""
    ids = {step.id for step in definition.steps}
    claimed: dict[str, str] = {}
    for step in definition.steps:
        for field, target in (("on_failure", step.on_failure), ("compensate", step.compensate)):
            if target is None:
                continue
            if target not in ids:
                raise InvalidDefinition(
                    f"{origin}: step {step.id!r} names unknown step {target!r} as {field}")
            if target == step.id:
                raise InvalidDefinition(f"{origin}: step {step.id!r} names itself as {field}")
            if target in claimed:
                raise InvalidDefinition(
                    f"{origin}: step {target!r} is named by both {claimed[target]!r} and "
                    f"{step.id!r}; give each its own on_failure or compensate step")
            claimed[target] = step.id
    auxiliary = definition.auxiliary_ids()
    for step in definition.steps:
        if step.id in auxiliary and (step.depends_on or step.on_failure or step.compensate):
            raise InvalidDefinition(
                f"{origin}: auxiliary step {step.id!r} (named by {claimed[step.id]!r}) cannot "
                "have depends_on, on_failure or compensate of its own")
        for dep in step.depends_on:
            if dep in auxiliary:
                raise InvalidDefinition(
                    f"{origin}: step {step.id!r} depends on auxiliary step {dep!r}, "
                    "which runs only on failure")
    if not definition.main_steps():
        raise InvalidDefinition(f"{origin}: every step is auxiliary; nothing would run")


def topological_order(steps: Iterable[Step], origin: str = "definition") -> list[str]:
    """Step ids in dependency order (Kahn's algorithm), stable in declaration order.

    A cycle raises InvalidDefinition naming the steps on it.
    """
    steps = list(steps)
    indegree = {step.id: len(set(step.depends_on)) for step in steps}
    dependents: dict[str, list[str]] = {step.id: [] for step in steps}
    for step in steps:
        for dep in dict.fromkeys(step.depends_on):
            dependents[dep].append(step.id)
    ready = [step.id for step in steps if indegree[step.id] == 0]
    order: list[str] = []
    while ready:
        current = ready.pop(0)
        order.append(current)
        for child in dependents[current]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if len(order) < len(steps):
        cycle = find_cycle({s.id: s.depends_on for s in steps if s.id not in order})
        raise InvalidDefinition(f"{origin}: dependency cycle: {' -> '.join(cycle)}")
    return order


def find_cycle(depends_on: Mapping[str, Iterable[str]]) -> list[str]:
    """One cycle among steps known to contain one, as [a, b, ..., a] in dependency order."""
    start = next(iter(depends_on))
    path: list[str] = []
    position: dict[str, int] = {}
    node = start
    while node not in position:
        position[node] = len(path)
        path.append(node)
        node = next(dep for dep in depends_on[node] if dep in depends_on)
    cycle = [*path[position[node]:], node]
    return list(reversed(cycle))
