"""`advance(definition, run, event) -> actions`: the one place where a run's next moves are decided.

It is level-triggered: it looks at the whole state (with `event` already folded in) and
returns every move the state calls for, so a redelivered or replayed event yields the same
actions again, and the engine's deterministic message ids make repeating them harmless.
Moves that would only become visible after another event (a skip that unblocks another
skip, a failure that starts compensation) are worked out in the same call, on an
`effective` view of the step statuses.
"""

from __future__ import annotations

from typing import Any

from dagnats.dag.actions import (
    Action,
    BeginCompensation,
    CompleteRun,
    DeadLetter,
    DispatchStep,
    EndCompensation,
    FailRun,
    RecoverStep,
    SkipStep,
    StartTimer,
    requeue_for,
)
from dagnats.dag.events import Event, EventType
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.retry import retry_delay_s, should_retry, total_attempts
from dagnats.dag.state import RunState, RunStatus, StepStatus, timeout_timer_name

S = StepStatus


def advance(definition: WorkflowDefinition, run: RunState, event: Event) -> list[Action]:
    """The actions `run` calls for now that `event` (already folded into `run`) happened.

    The engine folds the events of its own actions in as it records them, so a step.queued
    event reaches `advance` only when another engine process recorded it, perhaps without
    living to publish its task: the task is published again (a harmless duplicate otherwise).
    """
    if run.status.terminal:
        return []
    actions: list[Action] = []
    if event.type is EventType.STEP_QUEUED:
        actions.append(requeue_for(event))
    if run.status is RunStatus.COMPENSATING:
        return actions + next_compensation(definition, run, run.failed_step, run.error or "")
    if event.type in (EventType.WORKFLOW_STARTED, EventType.WORKFLOW_RESUMED) \
            and definition.timeout:
        actions.append(StartTimer(timeout_timer_name(run.generation), definition.timeout))
    if event.type is EventType.TIMER_FIRED:
        error = f"workflow timed out after {definition.timeout_text()}"
        return actions + run_failure(definition, run, None, error)
    return actions + main_moves(definition, run)


def main_moves(definition: WorkflowDefinition, run: RunState) -> list[Action]:
    """Retries, recoveries, skips and dispatches of the main steps, then completion."""
    effective = {sid: step.status for sid, step in run.steps.items()}
    actions: list[Action] = []
    for step_id in definition.main_order():
        status = effective[step_id]
        if status is S.FAILED:
            moves = failed_step_moves(definition, run, step_id)
            if any(isinstance(m, (FailRun, BeginCompensation)) for m in moves):
                return moves
            actions += moves
            if any(isinstance(m, RecoverStep) for m in moves):
                effective[step_id] = S.RECOVERED
        elif status is S.PENDING:
            actions += _pending_moves(definition, run, step_id, effective)
    auxiliary_busy = any(effective[sid] in (S.QUEUED, S.RUNNING)
                         for sid in definition.auxiliary_ids())
    main_done = all(effective[step.id].settled for step in definition.main_steps())
    if main_done and not auxiliary_busy:
        actions.append(CompleteRun(output=run_output(definition, run)))
    return actions


def _pending_moves(definition: WorkflowDefinition, run: RunState, step_id: str,
                   effective: dict[str, StepStatus]) -> list[Action]:
    deps = definition.step(step_id).depends_on
    passed = [dep for dep in deps if effective[dep] in (S.RECOVERED, S.SKIPPED)]
    if passed:
        effective[step_id] = S.SKIPPED
        return [SkipStep(step_id, f"depends on {passed[0]!r}, which was "
                                  f"{effective[passed[0]].value}")]
    if all(effective[dep] is S.COMPLETED for dep in deps):
        step = run.steps[step_id]
        task = definition.step(step_id).task
        input_ = step_input(definition, run, step_id)
        return [DispatchStep(step_id, task, step.attempts + 1, input_)]
    return []


def failed_step_moves(definition: WorkflowDefinition, run: RunState, step_id: str
                      ) -> list[Action]:
    """A failed main step: retry it, run or await its on_failure step, or fail the run."""
    retry = retry_move(definition, run, step_id)
    if retry is not None:
        return [retry]
    step = run.steps[step_id]
    handler_id = definition.step(step_id).on_failure
    if handler_id is None:
        return run_failure(definition, run, step_id, failure_text(definition, run, step_id))
    handler = run.steps[handler_id]
    if handler.status is S.COMPLETED:
        return [RecoverStep(step_id, by=handler_id)]
    if handler.status in (S.QUEUED, S.RUNNING):
        return []
    if handler.status is S.FAILED:
        handler_retry = retry_move(definition, run, handler_id)
        if handler_retry is not None:
            return [handler_retry]
        error = (f"on_failure step {handler_id!r} of {step_id!r} failed: "
                 f"{failure_text(definition, run, handler_id)}")
        return run_failure(definition, run, handler_id, error)
    recovery_input = {"failed_step": step_id, "error": step.error, "error_type": step.error_type}
    task = definition.step(handler_id).task
    return [DispatchStep(handler_id, task, handler.attempts + 1, recovery_input)]


def retry_move(definition: WorkflowDefinition, run: RunState, step_id: str
               ) -> DispatchStep | None:
    """The retry a failed step is owed under its policy, or None when it has none left."""
    step = run.steps[step_id]
    policy = definition.retry_policy(definition.step(step_id))
    made = step.attempts - step.retry_base
    if policy is None or not should_retry(policy, made, step.retryable):
        return None
    return DispatchStep(step_id, definition.step(step_id).task, step.attempts + 1, step.input,
                        retry_delay_s(policy, made))


def failure_text(definition: WorkflowDefinition, run: RunState, step_id: str) -> str:
    """Why a step failed for good, in one line."""
    step = run.steps[step_id]
    allowed = total_attempts(definition.retry_policy(definition.step(step_id)))
    made = step.attempts - step.retry_base
    why = "not retryable" if not step.retryable else f"attempt {made} of {allowed}"
    return f"step {step_id!r} failed ({why}): {step.error}"


def run_failure(definition: WorkflowDefinition, run: RunState, step_id: str | None,
                error: str) -> list[Action]:
    """The run fails for good: compensate what completed, or fail with a dead letter."""
    if compensable(definition, run):
        return [BeginCompensation(step_id, error),
                *next_compensation(definition, run, step_id, error)]
    actions: list[Action] = []
    if step_id is not None:
        actions.append(dead_letter(definition, run, step_id))
    return [*actions, FailRun(step_id, error)]


def compensable(definition: WorkflowDefinition, run: RunState) -> list[str]:
    """Completed main steps that have a compensation, latest completed first."""
    return [sid for sid in reversed(run.completion_order) if definition.step(sid).compensate]


def next_compensation(definition: WorkflowDefinition, run: RunState, trigger_step: str | None,
                      trigger_error: str) -> list[Action]:
    """Run compensations one at a time in reverse completion order, then end the run."""
    for original in compensable(definition, run):
        comp_id = definition.step(original).compensate or ""
        comp = run.steps[comp_id]
        if comp.status is S.COMPLETED:
            continue
        if comp.status in (S.QUEUED, S.RUNNING):
            return []
        if comp.status is S.FAILED:
            retry = retry_move(definition, run, comp_id)
            if retry is not None:
                return [retry]
            error = f"compensation {comp_id!r} of {original!r} failed: {comp.error}"
            return [dead_letter(definition, run, comp_id), EndCompensation(comp_id, error)]
        comp_input = {"original_step": original,
                      "original_output": run.steps[original].output,
                      "trigger_step": trigger_step, "trigger_error": trigger_error}
        task = definition.step(comp_id).task
        return [DispatchStep(comp_id, task, comp.attempts + 1, comp_input)]
    return [EndCompensation()]


def dead_letter(definition: WorkflowDefinition, run: RunState, step_id: str) -> DeadLetter:
    """The dead letter for a step that failed for good."""
    step = run.steps[step_id]
    return DeadLetter(step_id, definition.step(step_id).task, step.attempts, step.input,
                      step.error or "failed", step.error_type)


def step_input(definition: WorkflowDefinition, run: RunState, step_id: str) -> Any:
    """A root step gets the run input; one dependency, its output; several, a dict by id."""
    deps = definition.step(step_id).depends_on
    if not deps:
        return run.input
    if len(deps) == 1:
        return run.steps[deps[0]].output
    return {dep: run.steps[dep].output for dep in deps}


def run_output(definition: WorkflowDefinition, run: RunState) -> Any:
    """A finished run's output: its one final step's output, or a dict of its final steps'."""
    main = definition.main_steps()
    needed = {dep for step in main for dep in step.depends_on}
    finals = [step.id for step in main if step.id not in needed]
    if len(finals) == 1:
        return run.steps[finals[0]].output
    return {step_id: run.steps[step_id].output for step_id in finals}
