"""Actions: every decision `advance` makes, as frozen dataclasses in a closed union.

The engine carries actions out and decides nothing itself; it matches on `Action` with
`assert_never`, so a new action cannot be forgotten. Recorded actions have a history
event (`event_for`) that the engine folds straight back in; the others only publish
(a task, a dead letter, a timer, a waiter for events, an approval request), clean up, or
gather what a recorded action needs first (a map's outputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, assert_never

from dagnats.dag.events import Event, EventType
from dagnats.dag.payload import Refs, refs_json
from dagnats.names import instance_step_id


@dataclass(frozen=True)
class DispatchStep:
    """Queue attempt `attempt` of a task step, with its resolved input, after `delay_s`."""

    step_id: str
    task: str
    attempt: int
    input: Any
    delay_s: float = 0.0
    input_refs: Refs = field(default_factory=dict)
    instance: int | None = None
    """The instance of a map step this dispatches (`attempt` is then the instance's)."""
    loop: dict[str, Any] | None = None
    """An agent_loop's iteration: its number, max_iterations and deadline (for the task)."""
    plan: bool = False
    """A planner's task: its handler's output is a plan (step.planned), not the output."""

    @property
    def event_step_id(self) -> str:
        """The step id its event and task carry: a map instance's own (`each[3]`)."""
        if self.instance is None:
            return self.step_id
        return instance_step_id(self.step_id, self.instance)


@dataclass(frozen=True)
class WaitStep:
    """Attempt `attempt` of a step begins waiting: for a time, an event or a decision."""

    step_id: str
    attempt: int
    input: Any
    waiting_for: dict[str, Any]
    input_refs: Refs = field(default_factory=dict)


@dataclass(frozen=True)
class CompleteStep:
    """A step the engine runs itself (a sleep, a wait that timed out) completes;
    `at_start`: at once, without waiting for anything (a map of an empty array)."""

    step_id: str
    attempt: int
    output: Any
    output_refs: Refs = field(default_factory=dict)
    at_start: bool = False
    child_run_id: str | None = None
    """A detached sub_workflow's child, started with it (kept on the step)."""


@dataclass(frozen=True)
class CollectMap:
    """Every instance of a map step completed: complete the step with their outputs in
    order, which the engine reads from history (the run's state does not keep them)."""

    step_id: str
    attempt: int


@dataclass(frozen=True)
class FailStep:
    """A step the engine runs itself fails (not retryable unless said otherwise);
    `at_start`: it could not even begin (a bad value in its config or the run's data)."""

    step_id: str
    attempt: int
    error: str
    error_type: str
    retryable: bool = False
    at_start: bool = False


@dataclass(frozen=True)
class ExpandPlan:
    """Add a planner's validated plan to the run: `steps` (definition JSON, ids namespaced
    by the planner's)."""

    step_id: str
    attempt: int
    steps: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class RecoverStep:
    """A failed step's on_failure step completed: the step counts as recovered."""

    step_id: str
    by: str


@dataclass(frozen=True)
class SkipStep:
    """A step will not run: it depends on a recovered step, or its skip_if holds
    (`satisfied`: it then counts as done and its dependents run with null from it)."""

    step_id: str
    reason: str
    satisfied: bool = False


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
    output_refs: Refs = field(default_factory=dict)


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
    input_refs: Refs = field(default_factory=dict)


@dataclass(frozen=True)
class StartTimer:
    """Have a `timer.fired` event with this name written to history at `at`.

    A step's timer names the step and the attempt it belongs to; a run's (the run
    timeout) names neither.
    """

    name: str
    at: datetime
    step_id: str | None = None
    attempt: int = 0


@dataclass(frozen=True)
class AwaitEvent:
    """Watch for an event of type `event` whose data at `left` equals `value` (any event of
    that type when `left` is None), published since `since`; the first completes the step."""

    step_id: str
    attempt: int
    event: str
    left: str | None
    value: Any
    since: datetime
    until: datetime


@dataclass(frozen=True)
class RequestApproval:
    """Tell whoever listens (a notifier) that a step waits for a person's decision."""

    step_id: str
    attempt: int
    subject: str | None
    description: str | None
    approvers: tuple[str, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    until: datetime | None = None


@dataclass(frozen=True)
class StartChild:
    """Start run `run_id` of `workflow` with `input` as the child of attempt `attempt` of
    step `step_id` (a sub_workflow); starting it again changes nothing."""

    step_id: str
    attempt: int
    run_id: str
    workflow: str
    version: str | None
    input: Any
    input_refs: Refs = field(default_factory=dict)
    detached: bool = False


@dataclass(frozen=True)
class ReportToParent:
    """This run (a child) ended: record its outcome as its parent's step's outcome."""


@dataclass(frozen=True)
class CancelChild:
    """The run ended (or began compensating) with this child of step `step_id` in flight:
    cancel it (and so, in turn, its own children)."""

    step_id: str
    run_id: str


@dataclass(frozen=True)
class ClearRunData:
    """The run has ended for good: delete what it kept beside history (checkpoints,
    signals, event waiters)."""


RecordedAction = (DispatchStep | WaitStep | CompleteStep | FailStep | RecoverStep | SkipStep
                  | BeginCompensation | EndCompensation | CompleteRun | FailRun | ExpandPlan)
Action = (RecordedAction | DeadLetter | StartTimer | AwaitEvent | RequestApproval
          | ClearRunData | CollectMap | StartChild | ReportToParent | CancelChild)


def event_for(action: RecordedAction, run_id: str, now: datetime) -> Event:
    """The history event that records `action`."""
    kind, step_id, attempt, data = _event_parts(action, now)
    return Event(type=kind, run_id=run_id, step_id=step_id, attempt=attempt, timestamp=now,
                 data=data)


def _event_parts(action: RecordedAction, now: datetime
                 ) -> tuple[EventType, str | None, int, dict[str, Any]]:
    match action:
        case DispatchStep() | WaitStep() | CompleteStep() | FailStep() | RecoverStep() \
                | SkipStep():
            return _step_event_parts(action, now)
        case ExpandPlan():
            return EventType.STEP_EXPANDED, action.step_id, action.attempt, {
                "steps": list(action.steps)}
        case BeginCompensation():
            return EventType.WORKFLOW_COMPENSATING, None, 0, {
                "step_id": action.step_id, "error": action.error}
        case EndCompensation() if action.failed_step is None:
            return EventType.WORKFLOW_COMPENSATED, None, 0, {}
        case EndCompensation():
            return EventType.WORKFLOW_COMPENSATE_FAILED, None, 0, {
                "step_id": action.failed_step, "error": action.error}
        case CompleteRun():
            return EventType.WORKFLOW_COMPLETED, None, 0, _with_refs(
                {"output": action.output}, "output", action.output_refs)
        case FailRun():
            return EventType.WORKFLOW_FAILED, None, 0, {
                "step_id": action.step_id, "error": action.error}
        case _:
            assert_never(action)


def _step_event_parts(action: DispatchStep | WaitStep | CompleteStep | FailStep | RecoverStep
                      | SkipStep, now: datetime
                      ) -> tuple[EventType, str | None, int, dict[str, Any]]:
    match action:
        case DispatchStep():
            return EventType.STEP_QUEUED, action.event_step_id, action.attempt, _with_refs(
                _queued_data(action, now), "input", action.input_refs)
        case WaitStep():
            return EventType.STEP_WAITING, action.step_id, action.attempt, _with_refs({
                "input": action.input, "waiting_for": action.waiting_for},
                "input", action.input_refs)
        case CompleteStep():
            done: dict[str, Any] = {"output": action.output}
            if action.at_start:
                done["at_start"] = True
            if action.child_run_id:
                done["child_run_id"] = action.child_run_id
            return EventType.STEP_COMPLETED, action.step_id, action.attempt, _with_refs(
                done, "output", action.output_refs)
        case FailStep():
            data = {"error": action.error, "error_type": action.error_type,
                    "retryable": action.retryable}
            if action.at_start:
                data["at_start"] = True
            return EventType.STEP_FAILED, action.step_id, action.attempt, data
        case RecoverStep():
            return EventType.STEP_RECOVERED, action.step_id, 0, {"by": action.by}
        case SkipStep():
            skip: dict[str, Any] = {"reason": action.reason}
            if action.satisfied:
                skip["satisfied"] = True
            return EventType.STEP_SKIPPED, action.step_id, 0, skip
        case _:
            assert_never(action)


def _queued_data(action: DispatchStep, now: datetime) -> dict[str, Any]:
    """The data of the step.queued event that records a dispatch (and is its task)."""
    not_before = now + timedelta(seconds=action.delay_s) if action.delay_s else None
    queued: dict[str, Any] = {
        "task": action.task, "input": action.input, "delay_s": action.delay_s,
        "not_before": not_before.isoformat() if not_before else None}
    if action.loop is not None:
        queued["loop"] = action.loop
    if action.plan:
        queued["plan"] = True
    return queued


def _with_refs(data: dict[str, Any], name: str, refs: Refs) -> dict[str, Any]:
    """An event's data with `<name>_refs` when the value has out-of-line parts (small
    values, the common case, carry no such field)."""
    if refs:
        data[f"{name}_refs"] = refs_json(refs)
    return data
