"""The task: what the engine asks a worker to do for one attempt of one step.

It travels as the step.queued event that records the dispatch (on the run's task subject,
`history.<p>.<run>.task.<task>`, which that task's workers consume): one message is both the
fact and the work. `TaskMessage` is the worker's view of that event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dagnats.dag.events import Event, EventType
from dagnats.dag.payload import Refs, refs_json, refs_of


class TaskMessage(BaseModel):
    """One attempt of one step, with its resolved input: a step.queued event, read."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    workflow: str
    step_id: str
    task: str
    attempt: int
    max_attempts: int
    """Attempts allowed in all (the first plus the retries)."""
    input: Any = None
    input_refs: Refs = Field(default_factory=dict)
    """The out-of-line parts of `input`: the worker fetches them before the handler runs."""
    timeout_s: float | None = None
    timeout: str | None = None
    """The timeout as the user wrote it, for messages such as "timed out after 30s"."""
    not_before: datetime | None = None
    """A retry waits until then; a worker that gets it early puts it back with a delay."""
    iteration: int | None = None
    """An agent_loop's iteration (from 1); None for every other kind of step."""
    iteration_attempt: int | None = None
    """An agent_loop's attempt of this iteration (from 1; `attempt` counts them all)."""
    plan: bool = False
    """A planner's task: what the handler returns is a plan (a list of steps)."""

    @classmethod
    def from_event(cls, event: Event) -> TaskMessage:
        """The task a step.queued event carries; ValueError when it carries none."""
        data = event.data
        if event.type is not EventType.STEP_QUEUED or not event.step_id:
            raise ValueError(f"a {event.type.value} event is not a task")
        try:
            return cls(run_id=event.run_id, workflow=data["workflow"], step_id=event.step_id,
                       task=data["task"], attempt=event.attempt,
                       max_attempts=data["max_attempts"], input=data.get("input"),
                       input_refs=refs_of(data, "input"), timeout_s=data.get("timeout_s"),
                       timeout=data.get("timeout"), not_before=data.get("not_before"),
                       iteration=_loop_number(data.get("loop"), "iteration"),
                       iteration_attempt=_loop_number(data.get("loop"), "attempt"),
                       plan=data.get("plan") is True)
        except KeyError as exc:
            raise ValueError(f"a step.queued event without {exc.args[0]!r} is not a task"
                             ) from None

    def as_event(self, timestamp: datetime) -> Event:
        """The step.queued event that carries this task (`from_event` reads it back)."""
        data: dict[str, Any] = {"task": self.task, "input": self.input,
                                "not_before": self.not_before.isoformat()
                                if self.not_before else None, **self.event_fields()}
        if self.input_refs:
            data["input_refs"] = refs_json(self.input_refs)
        if self.iteration is not None:
            data["loop"] = {"iteration": self.iteration, "attempt": self.iteration_attempt}
        if self.plan:
            data["plan"] = True
        return Event(type=EventType.STEP_QUEUED, run_id=self.run_id, step_id=self.step_id,
                     attempt=self.attempt, timestamp=timestamp, data=data)

    def event_fields(self) -> dict[str, Any]:
        """What a step.queued event adds to carry this task (beside task, input, not_before)."""
        fields: dict[str, Any] = {"workflow": self.workflow, "max_attempts": self.max_attempts}
        if self.timeout_s is not None:
            fields["timeout_s"] = self.timeout_s
            fields["timeout"] = self.timeout
        return fields


def _loop_number(loop: Any, name: str) -> int | None:
    """An agent_loop task's iteration (or attempt of it), from its step.queued's `loop`."""
    found = loop.get(name) if isinstance(loop, dict) else None
    return found if isinstance(found, int) else None


def task_of(event: Event) -> str | None:
    """The task an event is, if it is one (a step.queued event of a task step); else None."""
    if event.type is EventType.STEP_QUEUED:
        task = event.data.get("task")
        return task if isinstance(task, str) else None
    return None
