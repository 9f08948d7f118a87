"""Actions: every decision `advance` makes, as frozen dataclasses in a closed union.

The engine carries actions out and decides nothing itself; it matches on `Action` with
`assert_never`, so a new action cannot be forgotten. Recorded actions have a history
event (`event_for`) that the engine folds straight back in; the others only publish
(a task, a dead letter, a timer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dagnats.dag.events import Event, EventType
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.retry import total_attempts
from dagnats.dag.tasks import TaskMessage


@dataclass(frozen=True)
class DispatchStep:
    """Queue attempt `attempt` of a step, with its resolved input, after `delay_s`."""

    step_id: str
    task: str
    attempt: int
    input: Any
    delay_s: float = 0.0


@dataclass(frozen=True)
class RequeueTask:
    """Publish the task of a step.queued event again (its engine may have died before it).

    Republishing is harmless: the task's message id makes JetStream drop a duplicate.
    """

    step_id: str
    task: str
    attempt: int
    input: Any
    not_before: datetime | None = None


@dataclass(frozen=True)
class RecoverStep:
    """A failed step's on_failure step completed: the step counts as recovered."""

    step_id: str
    by: str


@dataclass(frozen=True)
class SkipStep:
    """A step will not run (it depends on a recovered step)."""

    step_id: str
    reason: str


@dataclass(frozen=True)
class BeginCompensation:
    """The run failed for good and has steps to undo: compensate in reverse order."""

    step_id: str | None
    error: str


@dataclass(frozen=True)
class EndCompensation:
    """Compensation is over: every compensation completed, or `failed_step` failed."""

    failed_step: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class CompleteRun:
    """Every step has completed: end the run as completed with `output`."""

    output: Any = None


@dataclass(frozen=True)
class FailRun:
    """A step failed for good (or the run timed out): end the run as failed."""

    step_id: str | None
    error: str


@dataclass(frozen=True)
class DeadLetter:
    """Keep a step that failed for good, with its input, where a person can replay it."""

    step_id: str
    task: str
    attempt: int
    input: Any
    error: str
    error_type: str | None


@dataclass(frozen=True)
class StartTimer:
    """Have a `timer.fired` event with this name written to history after `delay_s`."""

    name: str
    delay_s: float


RecordedAction = (DispatchStep | RecoverStep | SkipStep | BeginCompensation | EndCompensation
                  | CompleteRun | FailRun)
Action = RecordedAction | RequeueTask | DeadLetter | StartTimer


def event_for(action: RecordedAction, run_id: str, now: datetime) -> Event:
    """The history event that records `action`."""
    kind, step_id, attempt, data = _event_parts(action, now)
    return Event(type=kind, run_id=run_id, step_id=step_id, attempt=attempt, timestamp=now,
                 data=data)


def _event_parts(action: RecordedAction, now: datetime
                 ) -> tuple[EventType, str | None, int, dict[str, Any]]:
    match action:
        case DispatchStep():
            not_before = now + timedelta(seconds=action.delay_s) if action.delay_s else None
            return EventType.STEP_QUEUED, action.step_id, action.attempt, {
                "task": action.task, "input": action.input, "delay_s": action.delay_s,
                "not_before": not_before.isoformat() if not_before else None}
        case RecoverStep():
            return EventType.STEP_RECOVERED, action.step_id, 0, {"by": action.by}
        case SkipStep():
            return EventType.STEP_SKIPPED, action.step_id, 0, {"reason": action.reason}
        case BeginCompensation():
            return EventType.WORKFLOW_COMPENSATING, None, 0, {
                "step_id": action.step_id, "error": action.error}
        case EndCompensation() if action.failed_step is None:
            return EventType.WORKFLOW_COMPENSATED, None, 0, {}
        case EndCompensation():
            return EventType.WORKFLOW_COMPENSATE_FAILED, None, 0, {
                "step_id": action.failed_step, "error": action.error}
        case CompleteRun():
            return EventType.WORKFLOW_COMPLETED, None, 0, {"output": action.output}
        case FailRun():
            return EventType.WORKFLOW_FAILED, None, 0, {
                "step_id": action.step_id, "error": action.error}


def requeue_for(event: Event) -> RequeueTask:
    """The RequeueTask that re-creates the task recorded by a step.queued event."""
    not_before = event.data.get("not_before")
    return RequeueTask(
        step_id=event.step_id or "", task=event.data["task"], attempt=event.attempt,
        input=event.data.get("input"),
        not_before=datetime.fromisoformat(not_before) if not_before else None,
    )


def task_for(action: DispatchStep | RequeueTask, definition: WorkflowDefinition, run_id: str,
             now: datetime) -> TaskMessage:
    """The task message that carries out a DispatchStep or a RequeueTask."""
    step = definition.step(action.step_id)
    timeout = step.model_dump(mode="json")["timeout"] if step.timeout else None
    if isinstance(action, DispatchStep):
        not_before = now + timedelta(seconds=action.delay_s) if action.delay_s else None
    else:
        not_before = action.not_before
    return TaskMessage(
        run_id=run_id, workflow=definition.name, step_id=step.id, task=step.task,
        attempt=action.attempt, max_attempts=total_attempts(definition.retry_policy(step)),
        input=action.input, timeout_s=step.timeout, timeout=timeout, not_before=not_before,
    )
