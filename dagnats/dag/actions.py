"""Actions: every decision `advance` makes, as frozen dataclasses in a closed union.

The engine carries actions out and decides nothing itself; it matches on `Action` with
`assert_never`, so a new action cannot be forgotten. Each action says which history event
records it (`event_for`), so the engine can fold its own decisions straight back in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Union

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
class CompleteRun:
    """Every step has completed: end the run as completed with `output`."""

    output: Any = None


@dataclass(frozen=True)
class FailRun:
    """A step failed for good: end the run as failed."""

    step_id: str
    error: str


Action = Union[DispatchStep, RequeueTask, CompleteRun, FailRun]  # noqa: UP007 - closed union
RecordedAction = Union[DispatchStep, CompleteRun, FailRun]  # noqa: UP007 - those with an event


def event_for(action: RecordedAction, run_id: str, now: datetime) -> Event:
    """The history event that records `action`."""
    if isinstance(action, DispatchStep):
        not_before = now + timedelta(seconds=action.delay_s) if action.delay_s else None
        return Event(
            type=EventType.STEP_QUEUED, run_id=run_id, step_id=action.step_id,
            attempt=action.attempt, timestamp=now,
            data={"task": action.task, "input": action.input, "delay_s": action.delay_s,
                  "not_before": not_before.isoformat() if not_before else None},
        )
    if isinstance(action, CompleteRun):
        return Event(type=EventType.WORKFLOW_COMPLETED, run_id=run_id, timestamp=now,
                     data={"output": action.output})
    return Event(type=EventType.WORKFLOW_FAILED, run_id=run_id, timestamp=now,
                 step_id=action.step_id, data={"error": action.error})


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
