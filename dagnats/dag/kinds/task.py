"""`task`: a handler runs on a worker (the default kind; "normal" is its older name)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from dagnats.dag.actions import Action, DispatchStep, event_for
from dagnats.dag.durations import Duration
from dagnats.dag.events import Event
from dagnats.dag.retry import RetryPolicy, total_attempts
from dagnats.dag.steps import StartContext, StepBase
from dagnats.dag.tasks import TaskMessage

if TYPE_CHECKING:
    from dagnats.dag.model import WorkflowDefinition

TASK_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"  # a leading "_" is reserved for dagnats' own


class TaskStep(StepBase):
    """A step whose work is a handler registered under `task` on some worker."""

    kind = "task"

    type: Literal["task", "normal"] = "task"
    task: Annotated[str, Field(pattern=TASK_PATTERN, max_length=128)]
    timeout: Duration | None = None
    """How long one attempt's handler may run; past it the attempt fails (retryable)."""
    retry: RetryPolicy | None = None

    def start(self, ctx: StartContext) -> list[Action]:
        """Queue the task for a worker (after the retry delay, if any)."""
        return [DispatchStep(self.id, self.task, ctx.attempt, ctx.input, ctx.delay_s,
                             ctx.input_refs)]

    def retry_policy(self, default: RetryPolicy | None) -> RetryPolicy | None:
        """Its own policy, else the workflow's default."""
        return self.retry or default

    @property
    def dead_letter_task(self) -> str:
        """Dead letters of a task step are kept under its task name."""
        return self.task


def task_for(action: DispatchStep, definition: WorkflowDefinition, run_id: str,
             now: datetime) -> TaskMessage:
    """The task that carries out a DispatchStep."""
    step = definition.step(action.step_id)
    if not isinstance(step, TaskStep):
        raise TypeError(f"step {step.id!r} is a {step.kind} step, not a task")
    timeout = step.model_dump(mode="json")["timeout"] if step.timeout else None
    not_before = now + timedelta(seconds=action.delay_s) if action.delay_s else None
    return TaskMessage(
        run_id=run_id, workflow=definition.name, step_id=action.event_step_id, task=step.task,
        attempt=action.attempt,
        max_attempts=total_attempts(step.retry_policy(definition.default_retry)),
        input=action.input, input_refs=action.input_refs, timeout_s=step.timeout,
        timeout=timeout, not_before=not_before,
        iteration=action.loop.get("iteration") if action.loop else None,
        iteration_attempt=action.loop.get("attempt") if action.loop else None,
        plan=action.plan,
    )


def task_event(action: DispatchStep, definition: WorkflowDefinition, run_id: str,
               now: datetime) -> Event:
    """The step.queued event that records a DispatchStep and is the task workers pull."""
    event = event_for(action, run_id, now)
    fields = task_for(action, definition, run_id, now).event_fields()
    return event.model_copy(update={"data": {**event.data, **fields}})
