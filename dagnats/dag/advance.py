"""`advance(definition, run, event) -> actions`: the one place where a run's next moves are decided.

It is level-triggered: it looks at the whole state (with `event` already folded in) and
returns every move the state calls for, so a redelivered or replayed event yields the same
actions again, and the engine's deterministic message ids make repeating them harmless.
"""

from __future__ import annotations

from typing import Any

from dagnats.dag.actions import Action, CompleteRun, DispatchStep, FailRun, requeue_for
from dagnats.dag.events import Event, EventType
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.retry import retry_delay_s, should_retry, total_attempts
from dagnats.dag.state import RunState, StepStatus
from dagnats.dag.validate import topological_order


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
    for step_id in topological_order(definition.steps):
        step = run.steps[step_id]
        if step.status is StepStatus.FAILED:
            retry = _retry_or_fail(definition, run, step_id)
            if isinstance(retry, FailRun):
                return [retry]
            actions.append(retry)
        elif step.status is StepStatus.PENDING and _dependencies_done(definition, run, step_id):
            task = definition.step(step_id).task
            actions.append(DispatchStep(step_id, task, 1, step_input(definition, run, step_id)))
    if all(s.status is StepStatus.COMPLETED for s in run.steps.values()):
        return [CompleteRun(output=run_output(definition, run))]
    return actions


def _retry_or_fail(definition: WorkflowDefinition, run: RunState, step_id: str
                   ) -> DispatchStep | FailRun:
    step = run.steps[step_id]
    policy = definition.retry_policy(definition.step(step_id))
    if policy is None or not should_retry(policy, step.attempts, step.retryable):
        allowed = total_attempts(policy)
        why = "not retryable" if not step.retryable else f"attempt {step.attempts} of {allowed}"
        return FailRun(step_id, f"step {step_id!r} failed ({why}): {step.error}")
    return DispatchStep(
        step_id, definition.step(step_id).task, step.attempts + 1,
        step_input(definition, run, step_id), retry_delay_s(policy, step.attempts),
    )


def _dependencies_done(definition: WorkflowDefinition, run: RunState, step_id: str) -> bool:
    deps = definition.step(step_id).depends_on
    return all(run.steps[dep].status is StepStatus.COMPLETED for dep in deps)


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
    needed = {dep for step in definition.steps for dep in step.depends_on}
    finals = [step.id for step in definition.steps if step.id not in needed]
    if len(finals) == 1:
        return run.steps[finals[0]].output
    return {step_id: run.steps[step_id].output for step_id in finals}
