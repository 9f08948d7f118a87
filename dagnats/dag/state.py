"""A run's state as a fold over its events, with every legal status move in tables.

Every transition decision lives in this file. `apply` is idempotent: a duplicate, a
late result of an older attempt, or anything after the run ended changes nothing and
returns the very same object, so redelivery and replay are always safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from dagnats.dag.events import Event, EventType
from dagnats.dag.kinds.map import (
    COMPLETED,
    FAILED,
    FAILED_FOR_GOOD,
    PENDING,
    QUEUED,
    RUNNING,
    MapInstances,
)
from dagnats.dag.kinds.task import TaskStep
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.payload import PayloadRef, Refs, materialize, refs_json, refs_of
from dagnats.names import parse_instance_step_id, step_timer_name, timeout_timer_name


class RunStatus(StrEnum):
    """Where a run is."""

    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATED = "compensated"
    COMPENSATE_FAILED = "compensate_failed"

    @property
    def terminal(self) -> bool:
        """True once the run can no longer change by itself."""
        return self not in (RunStatus.RUNNING, RunStatus.COMPENSATING)

    @property
    def resumable(self) -> bool:
        """True for the ends `dagnats run retry` (or a dead-letter replay) can undo."""
        return self in (RunStatus.FAILED, RunStatus.CANCELLED)


class StepStatus(StrEnum):
    """Where a step is."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RECOVERED = "recovered"
    SKIPPED = "skipped"

    @property
    def settled(self) -> bool:
        """True when the step lets the run finish (it will not run again by itself)."""
        return self in (StepStatus.COMPLETED, StepStatus.RECOVERED, StepStatus.SKIPPED)

    @property
    def in_flight(self) -> bool:
        """True while an attempt is under way: queued, running or waiting."""
        return self in (StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.WAITING)


E = EventType
S = StepStatus
R = RunStatus

#: (step status, event) -> new step status. Anything else is not a legal move.
STEP_TRANSITIONS: dict[tuple[StepStatus, EventType], StepStatus] = {
    (S.PENDING, E.STEP_QUEUED): S.QUEUED,
    (S.FAILED, E.STEP_QUEUED): S.QUEUED,  # a retry
    (S.PENDING, E.STEP_WAITING): S.WAITING,  # a kind the engine runs itself begins
    (S.FAILED, E.STEP_WAITING): S.WAITING,
    (S.WAITING, E.STEP_COMPLETED): S.COMPLETED,  # what it waited for came (or its timeout)
    (S.WAITING, E.STEP_FAILED): S.FAILED,
    (S.PENDING, E.STEP_FAILED): S.FAILED,  # only `at_start`: see _target
    (S.PENDING, E.STEP_COMPLETED): S.COMPLETED,  # only `at_start` (an empty map): _target
    (S.QUEUED, E.STEP_WAITING): S.WAITING,  # a handler waits for a signal
    (S.RUNNING, E.STEP_WAITING): S.WAITING,
    (S.WAITING, E.STEP_STARTED): S.RUNNING,  # only `resumed`: see _target
    (S.QUEUED, E.STEP_STARTED): S.RUNNING,
    (S.RUNNING, E.STEP_STARTED): S.RUNNING,  # redelivered after a worker died
    (S.QUEUED, E.STEP_COMPLETED): S.COMPLETED,
    (S.RUNNING, E.STEP_COMPLETED): S.COMPLETED,
    (S.QUEUED, E.STEP_FAILED): S.FAILED,
    (S.RUNNING, E.STEP_FAILED): S.FAILED,
    (S.FAILED, E.STEP_RECOVERED): S.RECOVERED,  # its on_failure step completed
    (S.PENDING, E.STEP_SKIPPED): S.SKIPPED,  # it depends on a recovered step
    (S.QUEUED, E.STEP_ITERATED): S.WAITING,  # an agent_loop's iteration ended with a state
    (S.RUNNING, E.STEP_ITERATED): S.WAITING,
    (S.WAITING, E.STEP_QUEUED): S.QUEUED,  # ...and its next iteration is dispatched
    (S.FAILED, E.STEP_FAILED): S.FAILED,  # only `at_start` (a loop's limit on a retry)
    (S.QUEUED, E.STEP_PLANNED): S.WAITING,  # a planner's handler returned its plan
    (S.RUNNING, E.STEP_PLANNED): S.WAITING,
    (S.WAITING, E.STEP_EXPANDED): S.WAITING,  # ...and the plan's steps were added
}

#: Statuses in which a step waits for its next attempt to begin. The engine records a
#: step.queued event before it publishes the task, so no report of an attempt can come
#: before that attempt's queueing: one that seems to has met a state missing events.
AWAITING_ATTEMPT = (S.PENDING, S.FAILED)
#: Step events that carry no attempt of their own.
UNATTEMPTED = (E.STEP_RECOVERED, E.STEP_SKIPPED)
#: Step events that always begin a new attempt (a step.waiting does when the step awaits
#: one: a kind the engine runs begins; else it is a running handler that waits).
OPENS_ATTEMPT = (E.STEP_QUEUED,)

#: (run status, run-level event) -> new run status.
RUN_TRANSITIONS: dict[tuple[RunStatus, EventType], RunStatus] = {
    (R.RUNNING, E.WORKFLOW_COMPLETED): R.COMPLETED,
    (R.RUNNING, E.WORKFLOW_FAILED): R.FAILED,
    (R.RUNNING, E.WORKFLOW_CANCELLED): R.CANCELLED,
    (R.RUNNING, E.WORKFLOW_COMPENSATING): R.COMPENSATING,
    (R.COMPENSATING, E.WORKFLOW_CANCELLED): R.CANCELLED,
    (R.COMPENSATING, E.WORKFLOW_COMPENSATED): R.COMPENSATED,
    (R.COMPENSATING, E.WORKFLOW_COMPENSATE_FAILED): R.COMPENSATE_FAILED,
    (R.FAILED, E.WORKFLOW_RESUMED): R.RUNNING,
    (R.CANCELLED, E.WORKFLOW_RESUMED): R.RUNNING,
}


class IllegalTransition(Exception):
    """An event that cannot apply to the state it meets (out of order or corrupt)."""

    def __init__(self, run_id: str, step_id: str | None, status: str, event: Event) -> None:
        where = f"step {step_id!r} of run {run_id}" if step_id else f"run {run_id}"
        super().__init__(f"{where}: cannot apply {event.type.value} (seq {event.seq}) "
                         f"to status {status!r}")


class StaleEvent(Exception):
    """An event the state already reflects, or one for an older attempt: safe to ignore."""


class ParentLink(BaseModel):
    """Where a child run (of a sub_workflow step) comes from: its parent's run, step and
    attempt, the root of its lineage, and the workflows from the root down to the parent."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    step_id: str
    attempt: int
    detached: bool = False
    root_run_id: str
    chain: tuple[str, ...] = ()
    """The workflows of the runs above this one, the root's first."""


class StepState(BaseModel):
    """One step's progress within a run."""

    model_config = ConfigDict(frozen=True)

    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    retry_base: int = 0
    """Attempts made before the run was last resumed: the retry policy counts from here."""
    input: Any = None
    input_refs: Refs = Field(default_factory=dict)
    """The out-of-line parts of `input` (see `dagnats.dag.payload`)."""
    output: Any = None
    output_refs: Refs = Field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    retryable: bool = True
    started_at: datetime | None = None
    completed_at: datetime | None = None
    waiting_for: dict[str, Any] | None = None
    """What a waiting step waits for: {"kind": "time" | "event" | "approval", ...}."""
    timer_fired: bool = False
    """The timer of the current wait (its wake-up or timeout) has fired."""
    skip_reason: str | None = None
    """Why a step was skipped by its skip_if (its condition); None for any other skip."""
    decision: dict[str, Any] | None = None
    """A person's decision that failed the step (a rejected approval)."""
    queued_at: datetime | None = None
    """When the current attempt was queued (its step.queued event): how long a task has
    waited for a worker (`dagnats.unserved`)."""
    instances: MapInstances | None = None
    """A map step's instances (`dagnats.dag.kinds.map`), once it has begun."""
    iteration: int = 0
    """An agent_loop's iterations ended so far; `output` holds the last one's state."""
    deadline: datetime | None = None
    """When an agent_loop's max_duration runs out (set by its first dispatch)."""
    child_run_id: str | None = None
    """A sub_workflow's child run (of its latest attempt)."""

    @property
    def satisfied_skip(self) -> bool:
        """Skipped by its skip_if: counts as done, its dependents run with null from it."""
        return self.status is StepStatus.SKIPPED and self.skip_reason is not None

    def public(self) -> dict[str, Any]:
        """The shape shown by `run status --json`."""
        shown: dict[str, Any] = {
            "status": self.status.value, "attempts": self.attempts, "output": self.output,
            "error": self.error,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
        }
        if self.status is StepStatus.WAITING:
            shown["waiting_for"] = self.waiting_for
        if self.status is StepStatus.QUEUED and self.queued_at is not None:
            shown["queued_at"] = self.queued_at.isoformat()
        if self.status is StepStatus.SKIPPED and self.skip_reason:
            shown["skip_reason"] = self.skip_reason
        if self.output_refs:
            shown["output_refs"] = refs_json(self.output_refs)
        if self.instances is not None:
            shown["instances"] = self.instances.public()
        if self.iteration:
            shown["iteration"] = self.iteration
        if self.child_run_id:
            shown["child_run_id"] = self.child_run_id
        return shown


class RunState(BaseModel):
    """A run: what it runs, where it is, and every step's progress."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    workflow: str
    version: str
    status: RunStatus = RunStatus.RUNNING
    input: Any = None
    input_refs: Refs = Field(default_factory=dict)
    """The out-of-line parts of `input` (see `dagnats.dag.payload`)."""
    output: Any = None
    output_refs: Refs = Field(default_factory=dict)
    error: str | None = None
    failed_step: str | None = None
    """The step whose failure ended (or is being compensated for) the run."""
    created_at: datetime
    completed_at: datetime | None = None
    steps: dict[str, StepState] = Field(default_factory=dict)
    completion_order: tuple[str, ...] = ()
    """Main steps in the order they completed (compensation runs in reverse)."""
    generation: int = 0
    """How many times the run was resumed; part of run-level message ids and timer names."""
    definition: WorkflowDefinition
    last_seq: int = 0
    """The highest history sequence folded in (0 when unknown)."""
    ended_seq: int = 0
    """The history sequence of the event that ended the run (0 while it runs)."""
    compensating_seq: int = 0
    """The history sequence of the event that began compensation (0: none this generation):
    a step's report stored before it, but folded after it, still counts (see
    `_apply_step_event`)."""
    keeps_data: bool = False
    """Something was kept beside history for the run (a signal, a checkpoint), to delete
    when it ends for good."""
    marked_seq: int = 0
    """The history sequence of the signal.sent that marked the run as keeping data last."""
    parent: ParentLink | None = None
    """For a child run (of a sub_workflow step): where it comes from."""
    fetched: dict[str, Any] = Field(default_factory=dict, exclude=True)
    """Out-of-line values the engine fetched for `advance` to read inside (skip_if, a
    reference in a step's config), by digest; never stored (see `wanted_refs`)."""

    def chain(self) -> list[str]:
        """The workflows from the root run down to this one (this one's last)."""
        return [*(self.parent.chain if self.parent else ()), self.workflow]

    @property
    def root_run_id(self) -> str:
        """The run at the top of this one's lineage (itself when it has no parent)."""
        return self.parent.root_run_id if self.parent else self.run_id

    def children(self) -> list[str]:
        """The child runs its sub_workflow steps started (their latest attempts')."""
        return [step.child_run_id for step in self.steps.values() if step.child_run_id]

    def input_value(self) -> Any:
        """The run input, with the out-of-line parts that were fetched filled in."""
        return materialize(self.input, self.input_refs, self.fetched)

    def output_value(self, step_id: str) -> Any:
        """A step's output, with the out-of-line parts that were fetched filled in."""
        step = self.steps[step_id]
        return materialize(step.output, step.output_refs, self.fetched)

    def wanted_refs(self) -> list[PayloadRef]:
        """Out-of-line values `advance` may read inside (the run input or step outputs
        that the definition's skip_if and references name) and nobody fetched yet."""
        reads_input, step_ids = self.definition.data_reads()
        places = [self.input_refs] if reads_input else []
        places += [self.steps[sid].output_refs for sid in step_ids if sid in self.steps]
        return [ref for refs in places for ref in refs.values()
                if ref.digest not in self.fetched]

    @field_serializer("definition")
    def _definition_json(self, definition: WorkflowDefinition) -> dict[str, Any]:
        """The definition as the JSON it was parsed from, computed once per definition (a
        snapshot is written after every event; the definition never changes)."""
        return definition.json_view()

    def public(self) -> dict[str, Any]:
        """The shape shown by `run status --json`: no definition, outputs as JSON values, the
        main steps in dependency order (the steps a planner added right after it), then the
        on_failure and compensate steps."""
        definition = self.definition
        auxiliary = [s.id for s in definition.steps if s.id in definition.auxiliary_ids()]
        steps: dict[str, Any] = {}
        for step_id in (*_planners_first(definition.main_order()), *auxiliary):
            shown = self.steps[step_id].public()
            if shown["status"] == StepStatus.RECOVERED.value:
                shown["recovered_by"] = definition.step(step_id).on_failure
            step = definition.step(step_id)
            if isinstance(step, TaskStep):  # which workers it waits for
                shown["task"] = step.task
            steps[step_id] = shown
        return {
            "run_id": self.run_id, "workflow": self.workflow, "version": self.version,
            "status": self.status.value, "input": self.input, "output": self.output,
            "error": self.error, "created_at": self.created_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "steps": steps, **_shown_refs(input_refs=self.input_refs,
                                          output_refs=self.output_refs),
            "parent_run_id": self.parent.run_id if self.parent else None,
            "root_run_id": self.root_run_id, "children": self.children(),
        }


def _planners_first(order: tuple[str, ...]) -> list[str]:
    """Step ids in `order`, each planner's added steps (`plan.fetch`) moved right after it,
    in their own order: what a person reads as the run's shape."""
    added: dict[str, list[str]] = {}
    top: list[str] = []
    for step_id in order:
        planner = step_id.rpartition(".")[0]
        (added.setdefault(planner, []) if planner else top).append(step_id)
    shown: list[str] = []

    def place(step_id: str) -> None:
        shown.append(step_id)
        for inner in added.get(step_id, []):
            place(inner)

    for step_id in top:
        place(step_id)
    placed = set(shown)  # a planner that is not a main step (an on_failure step's plan)
    return shown + [step_id for step_id in order if step_id not in placed]


def _shown_refs(**refs: Refs) -> dict[str, Any]:
    """The non-empty `<name>_refs` fields, as JSON, for a public view."""
    return {name: refs_json(found) for name, found in refs.items() if found}


def start_run(event: Event) -> RunState:
    """The state a workflow.started event creates."""
    definition = WorkflowDefinition.from_json(event.data["definition"])
    parent = event.data.get("parent")
    return RunState(
        parent=ParentLink.model_validate(parent) if isinstance(parent, dict) else None,
        run_id=event.run_id, workflow=definition.name, version=definition.version,
        input=event.data.get("input"), input_refs=refs_of(event.data, "input"),
        created_at=event.timestamp, definition=definition,
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
    if event.type is E.TIMER_FIRED:
        return _timer_fired(run, event)
    if event.type is E.SIGNAL_SENT:
        return _keeps_data(run, event)
    if event.step_id is None or event.type.value.startswith("workflow."):
        return _apply_run_event(run, event)
    if run.status.terminal and not _fills_a_hole(run, event):
        raise StaleEvent(f"the run is {run.status.value} already")
    return _apply_step_event(run, event)


def _fills_a_hole(run: RunState, event: Event) -> bool:
    """True for a step's report that happened before the run ended (it is earlier in
    history) but reaches this state after the end: an engine died between recording events
    and storing its state. Only the record is mended; `advance` does nothing for an ended
    run. A result that comes after the end (work cancelled in flight) changes nothing."""
    step = run.steps.get(event.step_id or "")
    if step is None or step.status not in (S.PENDING, S.QUEUED, S.RUNNING, S.WAITING,
                                           S.CANCELLED):
        return False
    if run.ended_seq:
        return 0 < event.seq < run.ended_seq
    return run.status is RunStatus.COMPLETED and step.status is not S.CANCELLED


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


def _keeps_data(run: RunState, event: Event) -> RunState:
    """A signal was sent to the run: it now keeps data to delete at its end. The API stores
    the signal before it records `signal.sent`, so the run may have ended in between (its
    handler got the signal and finished): the mark still counts then, for `advance` to
    clear the data of a run that has ended."""
    if run.keeps_data and run.status.terminal:
        raise StaleEvent("the run has ended, and its data is cleared already")
    return run.model_copy(update={"keeps_data": True, "last_seq": max(run.last_seq, event.seq),
                                  "marked_seq": event.seq})


def _timer_fired(run: RunState, event: Event) -> RunState:
    """A run's timer changes nothing by itself (only a live one reaches `advance`); a step's
    marks its waiting attempt as woken, for the step's kind to act on."""
    if event.step_id is not None:
        return _step_timer_fired(run, event)
    live = event.data.get("name") == timeout_timer_name(run.generation)
    if run.status is not R.RUNNING or not live:
        raise StaleEvent("the timer is no longer wanted")
    return run.model_copy(update={"last_seq": max(run.last_seq, event.seq)})


def _step_timer_fired(run: RunState, event: Event) -> RunState:
    step_id = event.step_id or ""
    step = run.steps.get(step_id)
    live = (step is not None and step.status is S.WAITING and not step.timer_fired
            and step.attempts == event.attempt
            and event.data.get("name") == step_timer_name(step_id, event.attempt))
    if run.status.terminal or step is None or not live:
        raise StaleEvent("the step no longer waits for this timer")
    return run.model_copy(update={
        "steps": {**run.steps, step_id: step.model_copy(update={"timer_fired": True})},
        "last_seq": max(run.last_seq, event.seq)})


def _apply_run_event(run: RunState, event: Event) -> RunState:
    target = RUN_TRANSITIONS.get((run.status, event.type))
    if target is None:
        reached = any(to is run.status for (_, ev), to in RUN_TRANSITIONS.items()
                      if ev is event.type)
        if reached or run.status.terminal or event.type is E.WORKFLOW_RESUMED:
            raise StaleEvent(f"the run is {run.status.value}")
        raise IllegalTransition(run.run_id, None, run.status.value, event)
    if event.type is E.WORKFLOW_RESUMED:
        if event.data.get("generation") != run.generation + 1:
            raise StaleEvent("a resume of another generation")
        return _resume(run, event)
    steps = run.steps
    if target is not R.COMPLETED:  # work in flight will never be looked at again
        steps = _cancel_in_flight(run)
    changes: dict[str, Any] = {"status": target, "steps": steps,
                               "last_seq": max(run.last_seq, event.seq)}
    if target is R.COMPENSATING:
        changes.update(error=event.data.get("error"), failed_step=event.data.get("step_id"),
                       compensating_seq=event.seq)
    else:
        changes.update(completed_at=event.timestamp, output=event.data.get("output"),
                       output_refs=refs_of(event.data, "output"), ended_seq=event.seq)
        if "error" in event.data:
            changes.update(error=event.data["error"],
                           failed_step=event.data.get("step_id", run.failed_step))
    return run.model_copy(update=changes)


def _cancel_in_flight(run: RunState) -> dict[str, StepState]:
    return {sid: s.model_copy(update={"status": S.CANCELLED, "waiting_for": None})
            if s.status.in_flight else s for sid, s in run.steps.items()}


def _resume(run: RunState, event: Event) -> RunState:
    """Failed, cancelled and never-finished steps start over; completed ones keep outputs."""
    steps = {
        sid: step if step.status.settled else
        StepState(attempts=step.attempts, retry_base=step.attempts,
                  input=step.input, input_refs=step.input_refs,  # a plan's roots read it
                  instances=step.instances.resumed() if step.instances else None,
                  iteration=step.iteration,  # an agent_loop goes on from its last state
                  output=step.output if step.iteration else None,
                  output_refs=step.output_refs if step.iteration else {})
        for sid, step in run.steps.items()
    }
    return run.model_copy(update={
        "status": R.RUNNING, "steps": steps, "generation": run.generation + 1,
        "compensating_seq": 0,
        "error": None, "failed_step": None, "completed_at": None, "output": None,
        "output_refs": {},
        "last_seq": max(run.last_seq, event.seq),
    })


def _apply_step_event(run: RunState, event: Event) -> RunState:
    step = run.steps.get(event.step_id or "")
    if step is None:
        return _apply_instance_event(run, event)
    if event.type is E.STEP_EXPANDED:
        return _expanded(run, step, event)
    if step.status is S.CANCELLED and (run.status.terminal or (
            0 < event.seq < run.compensating_seq)):
        # A report stored before the event that cancelled the step (the run's end, see
        # _fills_a_hole; or the start of compensation) but folded after it: an engine
        # folds the events it records at once, ahead of older ones still on their way to
        # it. History's order is the truth, so the report counts.
        step = step.model_copy(update={"status": S.RUNNING})
    if event.type in UNATTEMPTED:
        expected_attempt = event.attempt
    else:
        opens_attempt = event.type in OPENS_ATTEMPT or step.status in AWAITING_ATTEMPT
        expected_attempt = step.attempts + 1 if opens_attempt else step.attempts
    if event.attempt < expected_attempt:
        raise StaleEvent(f"attempt {event.attempt} is older than {expected_attempt}")
    target = _target(step, event)
    if target is None and event.attempt == expected_attempt and _already(step, event):
        raise StaleEvent("already applied")
    if target is None or event.attempt != expected_attempt:
        raise IllegalTransition(run.run_id, event.step_id, step.status.value, event)
    new_step = step.model_copy(update=_step_changes(step, event, target))
    order = run.completion_order
    if target is S.COMPLETED and event.step_id not in run.definition.auxiliary_ids():
        order = (*order, event.step_id or "")
    return run.model_copy(update={
        "steps": {**run.steps, event.step_id: new_step}, "completion_order": order,
        "last_seq": max(run.last_seq, event.seq),
        "keeps_data": run.keeps_data or bool(event.data.get("kept_data")),
    })


def _target(step: StepState, event: Event) -> StepStatus | None:
    """The status `event` moves the step to, or None when it is not a legal move. A failure
    reaches a pending step only when the engine could not even begin it (`at_start`, such
    as a sleep until a time the input lacks); a worker's report there means missed events."""
    if step.status in AWAITING_ATTEMPT and event.type in (E.STEP_FAILED, E.STEP_COMPLETED) \
            and not event.data.get("at_start"):
        return None
    if step.status is S.WAITING and event.type is E.STEP_STARTED \
            and not event.data.get("resumed"):
        return None  # a late report of the start: the handler waits now
    return STEP_TRANSITIONS.get((step.status, event.type))


def _already(step: StepState, event: Event) -> bool:
    """True when this attempt of the step has moved on past what `event` would do to it."""
    return step.status in (S.COMPLETED, S.FAILED, S.CANCELLED, S.RECOVERED, S.SKIPPED) or (
        event.type is E.STEP_QUEUED and step.status is S.RUNNING) or (
        step.status is S.WAITING and event.type in (E.STEP_WAITING, E.STEP_STARTED,
                                                    E.STEP_ITERATED))


def _step_changes(step: StepState, event: Event, target: StepStatus) -> dict[str, Any]:
    changes: dict[str, Any] = {"status": target}
    if event.type is E.STEP_SKIPPED:
        satisfied = bool(event.data.get("satisfied"))
        changes["skip_reason"] = str(event.data.get("reason") or "skip_if") if satisfied \
            else None
    if event.type in UNATTEMPTED:
        return changes
    changes["attempts"] = event.attempt
    if step.status in AWAITING_ATTEMPT:  # a new attempt begins
        changes.update(error=None, error_type=None, completed_at=None, decision=None)
        if event.type is not E.STEP_WAITING:
            changes["instances"] = None
    if target is not S.WAITING:
        changes.update(waiting_for=None, timer_fired=False)
    if event.type in (E.STEP_COMPLETED, E.STEP_FAILED) and step.started_at is None:
        changes["started_at"] = event.began()
    changes.update(_EVENT_CHANGES[event.type](step, event))
    return changes


def _queued(step: StepState, event: Event) -> dict[str, Any]:
    changes = {"input": event.data.get("input"), "input_refs": refs_of(event.data, "input"),
               "queued_at": event.timestamp}
    loop = event.data.get("loop")
    if isinstance(loop, dict) and isinstance(loop.get("deadline"), str):
        changes["deadline"] = datetime.fromisoformat(loop["deadline"])
    return changes


def _planned(step: StepState, event: Event) -> dict[str, Any]:
    """A planner's handler returned its plan: kept (as the step's output so far) for the
    engine to check and add."""
    return {"output": event.data.get("output"), "output_refs": refs_of(event.data, "output"),
            "waiting_for": {"kind": "plan"}}


def _expanded(run: RunState, step: StepState, event: Event) -> RunState:
    """A planner's plan was added: the run's definition gains its steps (pending)."""
    waits = step.waiting_for or {}
    if step.status is not S.WAITING or waits.get("kind") != "plan" or "steps" in waits \
            or event.attempt != step.attempts:
        raise StaleEvent("the plan was added already, or is not awaited")
    added = event.data.get("steps")
    if not isinstance(added, list) or any(not isinstance(s, dict) for s in added):
        raise IllegalTransition(run.run_id, event.step_id, step.status.value, event)
    ids = [str(s.get("id")) for s in added]
    if any(step_id in run.steps for step_id in ids):
        raise StaleEvent("the plan's steps are in the run already")
    definition = WorkflowDefinition.model_validate(
        {**run.definition.json_view(), "steps": [*run.definition.json_view()["steps"], *added]})
    new_step = step.model_copy(update={"waiting_for": {"kind": "plan", "steps": ids}})
    return run.model_copy(update={
        "definition": definition,
        "steps": {**run.steps, event.step_id or "": new_step,
                  **{step_id: StepState() for step_id in ids}},
        "last_seq": max(run.last_seq, event.seq)})


def _iterated(step: StepState, event: Event) -> dict[str, Any]:
    """An agent_loop's iteration ended: its state is kept (as the step's output so far),
    and the next iteration gets the whole retry budget again."""
    iteration = event.data.get("iteration")
    done = iteration if isinstance(iteration, int) else step.iteration + 1
    return {"output": event.data.get("output"), "output_refs": refs_of(event.data, "output"),
            "iteration": done, "retry_base": event.attempt,
            "waiting_for": {"kind": "iteration", "iteration": done}}


def _waiting(step: StepState, event: Event) -> dict[str, Any]:
    changes = {"input": event.data.get("input"), "input_refs": refs_of(event.data, "input"),
               "waiting_for": event.data.get("waiting_for"),
               "timer_fired": False, "started_at": step.started_at or event.timestamp}
    waiting_for = event.data.get("waiting_for") or {}
    if waiting_for.get("kind") == "child" and isinstance(waiting_for.get("run_id"), str):
        changes["child_run_id"] = waiting_for["run_id"]
    if step.status in AWAITING_ATTEMPT and waiting_for.get("kind") == "map":
        total = waiting_for.get("items")
        kept = step.instances  # after `run retry`: completed instances stay completed
        changes["instances"] = kept if kept is not None and kept.total == total \
            else MapInstances.fresh(total if isinstance(total, int) else 0)
    return changes


def _started(step: StepState, event: Event) -> dict[str, Any]:
    return {"started_at": step.started_at or event.timestamp}


def _completed(step: StepState, event: Event) -> dict[str, Any]:
    changes = {"output": event.data.get("output"),
               "output_refs": refs_of(event.data, "output"), "completed_at": event.timestamp}
    if isinstance(event.data.get("child_run_id"), str):  # a detached child, started
        changes["child_run_id"] = event.data["child_run_id"]
    return changes


def _failed(step: StepState, event: Event) -> dict[str, Any]:
    return {"error": event.data.get("error", "failed"), "error_type": event.data.get("error_type"),
            "retryable": bool(event.data.get("retryable", True)),
            "completed_at": event.timestamp, "decision": event.data.get("decision")}


#: What each attempt event records on the step, beyond its status and attempt number.
_EVENT_CHANGES = {E.STEP_QUEUED: _queued, E.STEP_WAITING: _waiting, E.STEP_STARTED: _started,
                  E.STEP_COMPLETED: _completed, E.STEP_FAILED: _failed,
                  E.STEP_ITERATED: _iterated, E.STEP_PLANNED: _planned}


#: (instance status, event) -> its new status. A step.waiting of an instance (its handler
#: waits for a signal) keeps it running, as a step.started of the same attempt does.
INSTANCE_TRANSITIONS: dict[tuple[str, EventType], str] = {
    (QUEUED, E.STEP_STARTED): RUNNING, (RUNNING, E.STEP_STARTED): RUNNING,
    (QUEUED, E.STEP_WAITING): RUNNING, (RUNNING, E.STEP_WAITING): RUNNING,
    (QUEUED, E.STEP_COMPLETED): COMPLETED, (RUNNING, E.STEP_COMPLETED): COMPLETED,
    (QUEUED, E.STEP_FAILED): FAILED, (RUNNING, E.STEP_FAILED): FAILED,
}


def _apply_instance_event(run: RunState, event: Event) -> RunState:
    """An event of one instance of a map step (its step id is `<id>[<index>]`)."""
    try:
        step_id, index = parse_instance_step_id(event.step_id or "")
    except ValueError:
        raise IllegalTransition(run.run_id, event.step_id, "unknown step", event) from None
    step = run.steps.get(step_id)
    instances = step.instances if step is not None else None
    if step is None or instances is None or index >= instances.total:
        raise IllegalTransition(run.run_id, event.step_id, "unknown map instance", event)
    if step.status is not S.WAITING:
        raise StaleEvent(f"map step {step_id!r} is {step.status.value}")
    state, made = instances.states[index], instances.attempts[index]
    if event.type is E.STEP_QUEUED:
        if event.attempt <= made:
            raise StaleEvent(f"attempt {event.attempt} of the instance was queued already")
        if state not in (PENDING, FAILED) or event.attempt != made + 1:
            raise IllegalTransition(run.run_id, event.step_id, state, event)
        target = QUEUED
    else:
        target = INSTANCE_TRANSITIONS.get((state, event.type), "")
        if event.attempt < made or (event.attempt == made and not target):
            raise StaleEvent(f"attempt {event.attempt} of the instance has moved on")
        if not target or event.attempt != made:
            raise IllegalTransition(run.run_id, event.step_id, state, event)
    error = None
    if target == FAILED:
        error = str(event.data.get("error", "failed"))
        if not event.data.get("retryable", True):
            target = FAILED_FOR_GOOD
    new_step = step.model_copy(update={
        "instances": instances.with_state(index, target, event.attempt, error)})
    return run.model_copy(update={"steps": {**run.steps, step_id: new_step},
                                  "last_seq": max(run.last_seq, event.seq)})
