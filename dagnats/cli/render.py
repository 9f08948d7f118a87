"""Pure formatting of CLI output: watch lines, run status, event lists and tables.

No I/O: every function takes client models and returns text, so unit tests cover the
exact output the tutorial promises.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dagnats._client_models import Event, Run, StepInfo, Workflow, WorkflowInfo
from dagnats.dag.durations import format_duration
from dagnats.dag.events import EventType
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.state import StepStatus

E = EventType


def compact_json(value: Any) -> str:
    """A value as one line of JSON, non-ASCII kept as is: "Hello, World!" -> '"Hello, World!"'."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def pretty_json(value: Any) -> str:
    """A value as indented JSON, for --json output."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def definition_summary(definition: WorkflowDefinition) -> str:
    """'hello-pipeline (version 1.0, 3 steps)'."""
    count = len(definition.steps)
    return f"{definition.name} (version {definition.version}, {count} step{_s(count)})"


def watch_line(event: Event) -> str | None:
    """The line `run start --watch` prints for an event, or None for a quiet event."""
    step = f"step.{event.step_id}"
    if event.type is E.WORKFLOW_STARTED:
        return f"Run {event.run_id} started"
    if event.type is E.STEP_QUEUED:
        if event.attempt <= 1:
            return None
        delay_s = float(event.data.get("delay_s") or 0)
        return f"{step}: retrying in {format_duration(delay_s)}"
    if event.type is E.STEP_COMPLETED:
        return f"{step}: completed"
    if event.type is E.STEP_FAILED:
        return f"{step}: failed ({_attempt_of(event)}): {event.data.get('error', 'failed')}"
    if event.type is E.WORKFLOW_COMPLETED:
        return f"Run {event.run_id} completed"
    if event.type is E.WORKFLOW_FAILED:
        return f"Run {event.run_id} failed: {event.data.get('error', 'failed')}"
    if event.type is E.WORKFLOW_CANCELLED:
        return f"Run {event.run_id} cancelled"
    return None  # step.started, and event types a newer server may add


def _attempt_of(event: Event) -> str:
    allowed = event.data.get("max_attempts")
    return f"attempt {event.attempt} of {allowed}" if allowed else f"attempt {event.attempt}"


def status_lines(run: Run) -> list[str]:
    """The `run status` layout: run id, status, then one line per step (topological order)."""
    lines = [f"Run: {run.run_id}", f"Status: {run.status.value}"]
    if run.error:
        lines.append(f"Error: {run.error}")
    lines.append("Steps:")
    lines.extend(f"{step_id}: {step_summary(step)}" for step_id, step in run.steps.items())
    return lines


def step_summary(step: StepInfo) -> str:
    """'completed "HELLO"', 'failed after 2 attempts: boom', 'running (attempt 2)', 'pending'."""
    if step.status is StepStatus.COMPLETED:
        return f"completed {compact_json(step.output)}"
    if step.status is StepStatus.FAILED:
        count = step.attempts
        return f"failed after {count} attempt{_s(count)}: {step.error or 'no error message'}"
    if step.attempts > 1 and step.status in (StepStatus.QUEUED, StepStatus.RUNNING):
        return f"{step.status.value} (attempt {step.attempts})"
    return step.status.value


def event_lines(events: Sequence[Event]) -> list[str]:
    """`run events`: timestamp, type, step, attempt and data, one aligned line per event.

    The definition copied into workflow.started is left out (`--json` has it): it would
    make the first line as long as the whole workflow.
    """
    rows = [[
        event.timestamp.isoformat(timespec="milliseconds"), event.type.value,
        event.step_id or "-", f"attempt={event.attempt}" if event.attempt else "-",
        compact_json({k: v for k, v in event.data.items() if k != "definition"}),
    ] for event in events]
    return table(rows)


def runs_table(runs: Sequence[Run]) -> list[str]:
    """`run list`: one line per run under a header."""
    if not runs:
        return ["No runs."]
    rows = [[run.run_id, run.workflow, run.version, run.status.value,
             run.created_at.isoformat(timespec="seconds")] for run in runs]
    return table(rows, ["RUN ID", "WORKFLOW", "VERSION", "STATUS", "CREATED"])


def workflows_table(workflows: Sequence[WorkflowInfo]) -> list[str]:
    """`workflow list`: one line per workflow under a header."""
    if not workflows:
        return ["No workflows registered."]
    rows = [[wf.name, wf.latest, ", ".join(wf.versions), str(wf.steps),
             wf.registered_at.isoformat(timespec="seconds")] for wf in workflows]
    return table(rows, ["NAME", "LATEST", "VERSIONS", "STEPS", "REGISTERED"])


def workflow_lines(workflow: Workflow) -> list[str]:
    """`workflow show`: name, versions, then each step with its task and dependencies."""
    definition = workflow.definition
    shown = definition.version
    lines = [f"Workflow: {definition.name}",
             f"Version: {shown}{' (latest)' if shown == workflow.latest else ''}",
             f"Versions: {', '.join(workflow.versions)}"]
    if definition.description:
        lines.append(f"Description: {definition.description}")
    lines.append("Steps:")
    for step in definition.steps:
        after = f" after {', '.join(step.depends_on)}" if step.depends_on else ""
        lines.append(f"{step.id}: task {step.task}{after}")
    return lines


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> list[str]:
    """Rows as left-aligned columns two spaces apart (the last column is not padded)."""
    all_rows = [list(header), *rows] if header else [list(row) for row in rows]
    if not all_rows:
        return []
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(all_rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
            .rstrip() for row in all_rows]


def _s(count: int) -> str:
    return "" if count == 1 else "s"
