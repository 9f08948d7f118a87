"""Turning user JSON into a checked WorkflowDefinition: shape, then graph (Kahn's algorithm).

Every problem becomes one InvalidDefinition line that says where and what.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from dagnats.dag.kinds import KINDS
from dagnats.dag.model import StepBase, WorkflowDefinition
from dagnats.dag.paths import check_reference
from dagnats.errors import InvalidDefinition
from dagnats.strict_json import JsonRefused, check, loads

IGNORED_KEYS = ("$schema",)


def parse_json_text(text: str | bytes, origin: str) -> Any:
    """Decode JSON, turning a syntax error into one line with its line and column."""
    try:
        return loads(text)
    except JsonRefused as exc:
        detail = str(exc)
        if detail.startswith("line "):
            detail = f"malformed JSON at {detail}"
        raise InvalidDefinition(f"{origin}: {detail}") from None


def parse_definition(source: str | bytes | Mapping[str, Any], origin: str = "definition"
                     ) -> WorkflowDefinition:
    """Parse and fully validate a workflow definition from JSON text or decoded data."""
    if isinstance(source, (str, bytes)):
        data = parse_json_text(source, origin)
    else:
        data = source
        try:
            check(data)
        except JsonRefused as exc:
            raise InvalidDefinition(f"{origin}: {exc}") from None
    if not isinstance(data, Mapping):
        raise InvalidDefinition(f"{origin}: a workflow definition must be a JSON object")
    cleaned = {key: value for key, value in data.items() if key not in IGNORED_KEYS}
    try:
        definition = WorkflowDefinition.model_validate(cleaned)
    except ValidationError as exc:
        raise InvalidDefinition(f"{origin}: {describe_validation_error(exc, cleaned)}") from None
    for step in definition.steps:
        if "." in step.id:
            raise InvalidDefinition(f"{origin}: step {step.id!r}: an id is letters, digits, _ "
                                    "and - (a dot names a step that a planner added)")
    check_graph(definition, origin)
    return definition


def describe_validation_error(exc: ValidationError, data: Mapping[str, Any]) -> str:
    """One line for the first pydantic error: where (the step, the field), then the problem.

    A step is named by its id: `step "nap": config.duration must be positive`.
    """
    error = exc.errors()[0]
    where, loc = _locate(list(error["loc"]), data)
    prefix = f"{where}: " if where else ""
    if error["type"] in ("extra_forbidden", "missing") and loc:
        parent = _dotted(loc[:-1])
        inside = f" in {where}{'.' if where and parent else ''}{parent}" if where or parent \
            else ""
        if error["type"] == "extra_forbidden":
            return f"unknown field '{loc[-1]}'{inside} (a typo?)"
        return f"missing required field '{loc[-1]}'{inside}"
    if error["type"] == "field_problem":
        context = error.get("ctx") or {}
        return f"{prefix}{context.get('field')} {context.get('problem')}"
    message = error["msg"].removeprefix("Value error, ")
    count = exc.error_count()
    more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
    path = _dotted(loc)
    if not where and not path:
        return f"definition: {message}{more}"
    return f"{prefix}{path}{': ' if path else ''}{message}{more}"


def _locate(loc: list[int | str], data: Mapping[str, Any]) -> tuple[str, list[int | str]]:
    """(`step "<id>"` or "", the rest of the location) for a pydantic location. The kind's
    tag that pydantic puts after a step's index is dropped."""
    if len(loc) < 2 or loc[0] != "steps" or not isinstance(loc[1], int):
        return "", loc
    steps = data.get("steps")
    raw = steps[loc[1]] if isinstance(steps, list) and 0 <= loc[1] < len(steps) else None
    step_id = raw.get("id") if isinstance(raw, Mapping) else None
    rest = loc[2:]
    if rest and rest[0] in KINDS:
        rest = rest[1:]
    if not (isinstance(step_id, str) and step_id):
        return "", [*loc[:2], *rest]
    return f"step {json.dumps(step_id)}", rest


def _dotted(loc: Iterable[int | str]) -> str:
    """A location as a path: config.match.left, approvers[0]."""
    text = ""
    for item in loc:
        text += f"[{item}]" if isinstance(item, int) else f"{'.' if text else ''}{item}"
    return text


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
    check_ancestry(definition, origin)


def ancestors(definition: WorkflowDefinition, step_id: str) -> set[str]:
    """Every step `step_id` depends on, directly or through others."""
    found: set[str] = set()
    todo = list(definition.step(step_id).depends_on)
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(definition.step(current).depends_on)
    return found


def check_ancestry(definition: WorkflowDefinition, origin: str = "definition") -> None:
    """skip_if and step.<id>.output references must name an ancestor of their step: only
    an ancestor's output is known when the step starts."""
    for step in definition.steps:
        named: list[tuple[str, str]] = []
        if step.skip_if is not None:
            named.append(("skip_if.step_id", step.skip_if.step_id))
        for ref in step.references():
            _, ref_step, _ = check_reference(ref)
            if ref_step is not None:
                named.append((ref, ref_step))
        before = ancestors(definition, step.id)
        for field, target in named:
            if target not in before:
                raise InvalidDefinition(
                    f"{origin}: step {json.dumps(step.id)}: {field} names {target!r}, which "
                    "is not an ancestor of it (add it to depends_on, directly or through "
                    "other steps)")


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
        if step.id in auxiliary and (step.depends_on or step.on_failure or step.compensate
                                     or step.skip_if):
            raise InvalidDefinition(
                f"{origin}: auxiliary step {step.id!r} (named by {claimed[step.id]!r}) cannot "
                "have depends_on, on_failure, compensate or skip_if of its own")
        for dep in step.depends_on:
            if dep in auxiliary:
                raise InvalidDefinition(
                    f"{origin}: step {step.id!r} depends on auxiliary step {dep!r}, "
                    "which runs only on failure")
    if not definition.main_steps():
        raise InvalidDefinition(f"{origin}: every step is auxiliary; nothing would run")


def topological_order(steps: Iterable[StepBase], origin: str = "definition") -> list[str]:
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
