"""`advance(definition, run, event) -> actions`: the one place where a run's next moves are decided.

It is level-triggered: it looks at the whole state (with `event` already folded in) and
returns every move the state calls for, so a redelivered or replayed event yields the same
actions again, and the engine's deterministic message ids make repeating them harmless.
Moves that would only become visible after another event (a skip that unblocks another
skip, a failure that starts compensation) are worked out in the same call, on an
`effective` view of the step statuses.

What is the same for every kind of step lives here: dependencies, skip_if, retries,
on_failure, compensation and the run's end. What differs (how an attempt begins, what a
waiting step does) is asked of the step's kind (`dagnats.dag.kinds`), never branched on.
`advance` has no clock: the time of the event it handles is its "now".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dagnats.dag.actions import (
    Action,
    BeginCompensation,
    CancelChild,
    ClearRunData,
    CompleteRun,
    DeadLetter,
    EndCompensation,
    FailRun,
    RecoverStep,
    ReportToParent,
    SkipStep,
    StartTimer,
)
from dagnats.dag.events import RUN_TERMINAL_EVENTS, Event, EventType
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.payload import Refs, nest
from dagnats.dag.retry import retry_delay_s, should_retry, total_attempts
from dagnats.dag.state import RunState, RunStatus, StepStatus
from dagnats.dag.steps import StartContext
from dagnats.names import timeout_timer_name

S = StepStatus


def advance(definition: WorkflowDefinition, run: RunState, event: Event) -> list[Action]:
    """The actions `run` calls for now that `event` (already folded into `run`) happened.

    The engine folds the events of its own actions in as it records them, so a step.queued
    event reaches `advance` only when another engine process recorded it, perhaps without
    living to publish its task: the task is published again (a harmless duplicate otherwise).
    """
    if run.status.terminal:
        return _ended(run, event)
    now = event.timestamp
    actions: list[Action] = []
    if event.type is EventType.STEP_WAITING:
        actions += _rearm(definition, run, event)
    if run.status is RunStatus.COMPENSATING:
        return actions + next_compensation(definition, run, run.failed_step, run.error or "",
                                           now)
    if event.type in (EventType.WORKFLOW_STARTED, EventType.WORKFLOW_RESUMED) \
            and definition.timeout:
        actions.append(StartTimer(timeout_timer_name(run.generation),
                                  now + timedelta(seconds=definition.timeout)))
    if event.type is EventType.TIMER_FIRED and event.step_id is None:
        error = f"workflow timed out after {definition.timeout_text()}"
        return actions + run_failure(definition, run, None, error, now)
    return actions + main_moves(definition, run, now)


def _rearm(definition: WorkflowDefinition, run: RunState, event: Event) -> list[Action]:
    """A step.waiting event reaches `advance` only when another engine process recorded it,
    perhaps without living to set its timer or waiter: they are set again."""
    step = run.steps.get(event.step_id or "")
    if step is None or step.status is not S.WAITING or step.attempts != event.attempt:
        return []
    return definition.step(event.step_id or "").rearm(run)


def _ended(run: RunState, event: Event) -> list[Action]:
    """An ended run does nothing more. The event that ended it tells its parent (a child
    run's outcome is its parent step's), cancels its children still in flight, and, when
    it ended for good (not a failure or a cancel, which `run retry` can undo), clears what
    the run kept beside history. The engine that recorded it handles it again at once, and
    another one does after a crash: each of these is harmless to repeat. A signal.sent
    folded in after the end clears the run's data too."""
    if event.type in RUN_TERMINAL_EVENTS and event.seq == run.ended_seq:
        told: list[Action] = [ReportToParent()] if run.parent and not run.parent.detached \
            else []
        cleared = clear_run_data(run) if not run.status.resumable else []
        return [*told, *cancel_children(run), *cleared]
    if event.type is EventType.SIGNAL_SENT and event.seq == run.marked_seq \
            and not run.status.resumable:
        # Folded in after the end (see state.py `_keeps_data`), whether it was stored
        # before the end (an engine folds what it records ahead of what is on its way) or
        # after it: the run's data is cleared now.
        return clear_run_data(run)
    return []


def cancel_children(run: RunState) -> list[Action]:
    """CancelChild for each sub_workflow child still in flight (its step waiting for it, or
    cancelled by the run's end): a child outlives its parent only when detached."""
    return [CancelChild(step_id, step.child_run_id) for step_id, step in run.steps.items()
            if step.child_run_id and step.status in (S.WAITING, S.CANCELLED)]


def clear_run_data(run: RunState) -> list[Action]:
    """ClearRunData when the run kept anything beside history: a step whose kind leaves
    some (event waiters), or signals and checkpoints (`keeps_data`); nothing costs nothing."""
    return [ClearRunData()] if run.keeps_data or run.definition.leaves_data() else []


def begin_attempt(definition: WorkflowDefinition, run: RunState, step_id: str,
                  input_: tuple[Any, Refs], now: datetime, delay_s: float = 0.0
                  ) -> list[Action]:
    """The actions that begin the step's next attempt with `input_` (a value and its
    out-of-line parts), as its kind says."""
    value, refs = input_
    ctx = StartContext(definition, run, step_id, run.steps[step_id].attempts + 1, value, now,
                       delay_s, refs)
    return definition.step(step_id).start(ctx)


def in_flight_moves(definition: WorkflowDefinition, run: RunState, step_id: str,
                    now: datetime) -> list[Action]:
    """What a step under way does now: a waiting one asks its kind (its timer may have
    fired); a queued or running one waits for its worker."""
    if run.steps[step_id].status is S.WAITING:
        return definition.step(step_id).waiting_moves(run, now)
    return []


def main_moves(definition: WorkflowDefinition, run: RunState, now: datetime) -> list[Action]:
    """Retries, recoveries, skips, starts and wake-ups of the main steps, then completion."""
    view = _View(run)
    actions: list[Action] = []
    for step_id in definition.main_order():
        status = view.status[step_id]
        if status is S.FAILED:
            moves = failed_step_moves(definition, run, step_id, now)
            if any(isinstance(m, (FailRun, BeginCompensation)) for m in moves):
                return moves
            actions += moves
            if any(isinstance(m, RecoverStep) for m in moves):
                view.status[step_id] = S.RECOVERED
        elif status is S.PENDING:
            actions += _pending_moves(definition, run, step_id, view, now)
        elif status is S.WAITING:
            actions += in_flight_moves(definition, run, step_id, now)
    auxiliary_busy = any(view.status[sid].in_flight for sid in definition.auxiliary_ids())
    main_done = all(view.status[step.id].settled for step in definition.main_steps())
    if main_done and not auxiliary_busy:
        output, output_refs = run_output(definition, run)
        actions += [CompleteRun(output, output_refs), *clear_run_data(run)]
    return actions


class _View:
    """The step statuses as they will be once this call's skips and recoveries are folded."""

    def __init__(self, run: RunState) -> None:
        self._steps = run.steps
        self.status = {sid: step.status for sid, step in run.steps.items()}
        self._satisfied_now: set[str] = set()  # skip_if skips decided in this call

    def _satisfied(self, step_id: str) -> bool:
        return step_id in self._satisfied_now or self._steps[step_id].satisfied_skip

    def done(self, step_id: str) -> bool:
        """Lets its dependents run: completed, or skipped by its own skip_if."""
        return self.status[step_id] is S.COMPLETED or self._satisfied(step_id)

    def passed_over(self, step_id: str) -> bool:
        """Makes its dependents skip: recovered, or skipped because of a recovered step."""
        status = self.status[step_id]
        return status is S.RECOVERED or (status is S.SKIPPED and not self._satisfied(step_id))

    def skip(self, step_id: str, satisfied: bool) -> None:
        """Note a skip decided in this call."""
        self.status[step_id] = S.SKIPPED
        if satisfied:
            self._satisfied_now.add(step_id)


def _pending_moves(definition: WorkflowDefinition, run: RunState, step_id: str, view: _View,
                   now: datetime) -> list[Action]:
    step = definition.step(step_id)
    passed = [dep for dep in step.depends_on if view.passed_over(dep)]
    if passed:
        view.skip(step_id, satisfied=False)
        return [SkipStep(step_id, f"depends on {passed[0]!r}, which was "
                                  f"{view.status[passed[0]].value}")]
    if all(view.done(dep) for dep in step.depends_on):
        condition = step.skip_if
        if condition is not None and condition.holds(run.output_value(condition.step_id)):
            view.skip(step_id, satisfied=True)
            return [SkipStep(step_id, f"skip_if {condition.describe()}", satisfied=True)]
        return begin_attempt(definition, run, step_id, step_input(definition, run, step_id),
                             now)
    return []


def failed_step_moves(definition: WorkflowDefinition, run: RunState, step_id: str,
                      now: datetime) -> list[Action]:
    """A failed main step: retry it, run or await its on_failure step, or fail the run."""
    retry = retry_moves(definition, run, step_id, now)
    if retry:
        return retry
    step = run.steps[step_id]
    handler_id = definition.step(step_id).on_failure
    if handler_id is None:
        return run_failure(definition, run, step_id, failure_text(definition, run, step_id),
                           now)
    handler = run.steps[handler_id]
    if handler.status is S.COMPLETED:
        return [RecoverStep(step_id, by=handler_id)]
    if handler.status.in_flight:
        return in_flight_moves(definition, run, handler_id, now)
    if handler.status is S.FAILED:
        handler_retry = retry_moves(definition, run, handler_id, now)
        if handler_retry:
            return handler_retry
        error = (f"on_failure step {handler_id!r} of {step_id!r} failed: "
                 f"{failure_text(definition, run, handler_id)}")
        return run_failure(definition, run, handler_id, error, now)
    recovery_input = {"failed_step": step_id, "error": step.error, "error_type": step.error_type}
    return begin_attempt(definition, run, handler_id, (recovery_input, {}), now)


def retry_moves(definition: WorkflowDefinition, run: RunState, step_id: str, now: datetime
                ) -> list[Action]:
    """The retry a failed step is owed under its policy ([] when it has none left)."""
    step = run.steps[step_id]
    policy = definition.retry_policy(definition.step(step_id))
    made = step.attempts - step.retry_base
    if policy is None or not should_retry(policy, made, step.retryable):
        return []
    return begin_attempt(definition, run, step_id, (step.input, step.input_refs), now,
                         retry_delay_s(policy, made))


def failure_text(definition: WorkflowDefinition, run: RunState, step_id: str) -> str:
    """Why a step failed for good, in one line."""
    step = run.steps[step_id]
    allowed = total_attempts(definition.retry_policy(definition.step(step_id)))
    made = step.attempts - step.retry_base
    why = "not retryable" if not step.retryable else f"attempt {made} of {allowed}"
    return f"step {step_id!r} failed ({why}): {step.error}"


def run_failure(definition: WorkflowDefinition, run: RunState, step_id: str | None,
                error: str, now: datetime) -> list[Action]:
    """The run fails for good: compensate what completed, or fail with a dead letter."""
    if compensable(definition, run):
        return [BeginCompensation(step_id, error), *cancel_children(run),
                *next_compensation(definition, run, step_id, error, now)]
    actions: list[Action] = []
    if step_id is not None:
        actions.append(dead_letter(definition, run, step_id))
    return [*actions, FailRun(step_id, error)]


def compensable(definition: WorkflowDefinition, run: RunState) -> list[str]:
    """Completed main steps that have a compensation, latest completed first."""
    return [sid for sid in reversed(run.completion_order) if definition.step(sid).compensate]


def next_compensation(definition: WorkflowDefinition, run: RunState, trigger_step: str | None,
                      trigger_error: str, now: datetime) -> list[Action]:
    """Run compensations one at a time in reverse completion order, then end the run."""
    for original in compensable(definition, run):
        comp_id = definition.step(original).compensate or ""
        comp = run.steps[comp_id]
        if comp.status is S.COMPLETED:
            continue
        if comp.status.in_flight:
            return in_flight_moves(definition, run, comp_id, now)
        if comp.status is S.FAILED:
            retry = retry_moves(definition, run, comp_id, now)
            if retry:
                return retry
            error = f"compensation {comp_id!r} of {original!r} failed: {comp.error}"
            return [dead_letter(definition, run, comp_id), EndCompensation(comp_id, error),
                    *clear_run_data(run)]
        done = run.steps[original]
        comp_input = nest({"original_step": (original, {}),
                           "original_output": (done.output, done.output_refs),
                           "trigger_step": (trigger_step, {}),
                           "trigger_error": (trigger_error, {})})
        return begin_attempt(definition, run, comp_id, comp_input, now)
    return [EndCompensation(), *clear_run_data(run)]


def dead_letter(definition: WorkflowDefinition, run: RunState, step_id: str) -> DeadLetter:
    """The dead letter for a step that failed for good."""
    step = run.steps[step_id]
    return DeadLetter(step_id, definition.step(step_id).dead_letter_task, step.attempts,
                      step.input, step.error or "failed", step.error_type, step.input_refs)


def step_input(definition: WorkflowDefinition, run: RunState, step_id: str
               ) -> tuple[Any, Refs]:
    """A root step gets the run input (a root of a planner's plan, the planner's input);
    one dependency, its output; several, a dict by id (each with its out-of-line parts)."""
    deps = definition.step(step_id).depends_on
    if not deps and "." in step_id:  # a root of a planner's plan: the planner's input
        planner = run.steps[step_id.rpartition(".")[0]]
        return planner.input, planner.input_refs
    if not deps:
        return run.input, run.input_refs
    if len(deps) == 1:
        return _output(run, deps[0])
    return nest({dep: _output(run, dep) for dep in deps})


def _output(run: RunState, step_id: str) -> tuple[Any, Refs]:
    step = run.steps[step_id]
    return step.output, step.output_refs


def run_output(definition: WorkflowDefinition, run: RunState) -> tuple[Any, Refs]:
    """A finished run's output: its one final step's output, or a dict of its final steps'."""
    main = definition.main_steps()
    needed = {dep for step in main for dep in step.depends_on}
    finals = [step.id for step in main if step.id not in needed
              and "." not in step.id]  # a planner's steps: its output carries them
    if len(finals) == 1:
        return _output(run, finals[0])
    return nest({step_id: _output(run, step_id) for step_id in finals})
