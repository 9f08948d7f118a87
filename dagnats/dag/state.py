"""A run's state as a fold over its events, with every legal status move in two tables.

Every transition decision lives in this file. `apply` is idempotent: a duplicate, a
late result of an older attempt, or anything after the run ended changes nothing and
returns the very same object, so redelivery and replay are always safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dagnats.dag.events import Event, EventType
from dagnats.dag.model import WorkflowDefinition


class RunStatus(StrEnum):
    """Where a run is."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True once the run can no longer change."""
        return self is not RunStatus.RUNNING


class StepStatus(StrEnum):
    """Where a step is."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


E = EventType
S = StepStatus

#: (step status, event) -> new step status. Anything else is not a legal move.
STEP_TRANSITIONS: dict[tuple[StepStatus, EventType], StepStatus] = {
    (S.PENDING, E.STEP_QUEUED): S.QUEUED,
    (S.FAILED, E.STEP_QUEUED): S.QUEUED,  # a retry
    (S.QUEUED, E.STEP_STARTED): S.RUNNING,
    (S.RUNNING, E.STEP_STARTED): S.RUNNING,  # redelivered after a worker died
    (S.QUEUED, E.STEP_COMPLETED): S.COMPLETED,
    (S.RUNNING, E.STEP_COMPLETED): S.COMPLETED,
    (S.QUEUED, E.STEP_FAILED): S.FAILED,
    (S.RUNNING, E.STEP_FAILED): S.FAILED,
    # A report may overtake its step.queued event when an engine died between recording
    # the queueing and publishing the task, and another engine republished the task.
    (S.PENDING, E.STEP_STARTED): S.RUNNING,
    (S.FAILED, E.STEP_STARTED): S.RUNNING,
    (S.PENDING, E.STEP_COMPLETED): S.COMPLETED,
    (S.FAILED, E.STEP_COMPLETED): S.COMPLETED,
    (S.PENDING, E.STEP_FAILED): S.FAILED,
    (S.FAILED, E.STEP_FAILED): S.FAILED,
}

#: Statuses in which a step waits for its next attempt to begin.
AWAITING_ATTEMPT = (S.PENDING, S.FAILED)

#: Run-level events -> the status they end the run with.
RUN_TRANSITIONS: dict[EventType, RunStatus] = {
    E.WORKFLOW_COMPLETED: RunStatus.COMPLETED,
    E.WORKFLOW_FAILED: RunStatus.FAILED,
    E.WORKFLOW_CANCELLED: RunStatus.CANCELLED,
}


class IllegalTransition(Exception):
    """An event that cannot apply to the state it meets (out of order or corrupt)."""

    def __init__(self, run_id: str, step_id: str | None, status: str, event: Event) -> None:
        where = f"step {step_id!r} of run {run_id}" if step_id else f"run {run_id}"
        super().__init__(f"{where}: cannot apply {event.type.value} (seq {event.seq}) "
                         f"to status {status!r}")


class StaleEvent(Exception):
    """An event the state already reflects, or one for an older attempt: safe to ignore."""


class StepState(BaseModel):
    """One step's progress within a run."""

    model_config = ConfigDict(frozen=True)

    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    retryable: bool = True
    started_at: datetime | None = None
    completed_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        """The shape shown by `run status --json`."""
        return {
            "status": self.status.value, "attempts": self.attempts, "output": self.output,
            "error": self.error,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
        }


class RunState(BaseModel):
    """A run: what it runs, where it is, and every step's progress."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    workflow: str
    version: str
    status: RunStatus = RunStatus.RUNNING
    input: Any = None
    output: Any = None
    error: str | None = None
    created_at: datetime
    completed_at: datetime | None = None
    steps: dict[str, StepState] = Field(default_factory=dict)
    definition: WorkflowDefinition
    last_seq: int = 0
    """The highest history sequence folded in (0 when unknown)."""

    def public(self) -> dict[str, Any]:
        """The shape shown by `run status --json` (no definition, outputs as JSON values)."""
        return {
            "run_id": self.run_id, "workflow": self.workflow, "version": self.version,
            "status": self.status.value, "input": self.input, "output": self.output,
            "error": self.error, "created_at": self.created_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "steps": {sid: step.public() for sid, step in self.steps.items()},
        }


def start_run(event: Event) -> RunState:
    """The state a workflow.started event creates."""
    definition = WorkflowDefinition.model_validate(event.data["definition"])
    return RunState(
        run_id=event.run_id, workflow=definition.name, version=definition.version,
        input=event.data.get("input"), created_at=event.timestamp, definition=definition,
        steps={step.id: StepState() for step in definition.steps}, last_seq=event.seq,
    )


def apply_checked(run: RunState | None, event: Event) -> RunState:
    """Fold one event into the state, raising StaleEvent or IllegalTransition when it can't."""
    if event.type is E.WORKFLOW_STARTED:
        if run is not None:
            raise StaleEvent("the run has started already")
        return start_run(event)
    if run is None:
        raise IllegalTransition(event.run_id, event.step_id, "not started", event)
    if run.status.terminal:
        raise StaleEvent(f"the run is {run.status.value} already")
    if event.type in RUN_TRANSITIONS:
        return _end_run(run, event)
    return _apply_step_event(run, event)


def apply(run: RunState | None, event: Event) -> RunState | None:
    """Fold one event in; stale or illegal events return `run` itself, unchanged."""
    try:
        return apply_checked(run, event)
    except (StaleEvent, IllegalTransition):
        return run


def fold(events: Iterable[Event], run: RunState | None = None) -> RunState | None:
    """The state after `events`, in order, starting from `run` (None: from nothing)."""
    for event in events:
        run = apply(run, event)
    return run


def _end_run(run: RunState, event: Event) -> RunState:
    status = RUN_TRANSITIONS[event.type]
    steps = run.steps
    if status is not RunStatus.COMPLETED:  # work in flight will never be looked at again
        in_flight = (S.QUEUED, S.RUNNING)
        steps = {sid: s.model_copy(update={"status": S.CANCELLED}) if s.status in in_flight
                 else s for sid, s in steps.items()}
    return run.model_copy(update={
        "status": status, "steps": steps, "completed_at": event.timestamp,
        "output": event.data.get("output"), "error": event.data.get("error"),
        "last_seq": max(run.last_seq, event.seq),
    })


def _apply_step_event(run: RunState, event: Event) -> RunState:
    step = run.steps.get(event.step_id or "")
    if step is None:
        raise IllegalTransition(run.run_id, event.step_id, "unknown step", event)
    opens_attempt = event.type is E.STEP_QUEUED or step.status in AWAITING_ATTEMPT
    expected_attempt = step.attempts + 1 if opens_attempt else step.attempts
    if event.attempt < expected_attempt:
        raise StaleEvent(f"attempt {event.attempt} is older than {expected_attempt}")
    target = STEP_TRANSITIONS.get((step.status, event.type))
    if target is None and event.attempt == expected_attempt and _already(step, event):
        raise StaleEvent("already applied")
    if target is None or event.attempt != expected_attempt:
        raise IllegalTransition(run.run_id, event.step_id, step.status.value, event)
    new_step = step.model_copy(update=_step_changes(step, event, target))
    return run.model_copy(update={
        "steps": {**run.steps, event.step_id: new_step},
        "last_seq": max(run.last_seq, event.seq),
    })


def _already(step: StepState, event: Event) -> bool:
    """True when this attempt of the step has moved on past what `event` would do to it."""
    return step.status in (S.COMPLETED, S.FAILED, S.CANCELLED) or (
        event.type is E.STEP_QUEUED and step.status is S.RUNNING)


def _step_changes(step: StepState, event: Event, target: StepStatus) -> dict[str, Any]:
    changes: dict[str, Any] = {"status": target, "attempts": event.attempt}
    if step.status in AWAITING_ATTEMPT:  # a new attempt begins
        changes.update(error=None, error_type=None, completed_at=None)
    if event.type is E.STEP_STARTED:
        if step.started_at is None:
            changes["started_at"] = event.timestamp
    elif event.type is E.STEP_COMPLETED:
        if step.started_at is None:
            changes["started_at"] = event.timestamp
        changes.update(output=event.data.get("output"), completed_at=event.timestamp)
    elif event.type is E.STEP_FAILED:
        changes.update(
            error=event.data.get("error", "failed"),
            error_type=event.data.get("error_type"),
            retryable=bool(event.data.get("retryable", True)),
            completed_at=event.timestamp,
        )
    return changes
