"""`sub_workflow`: a step that runs another registered workflow as a child run.

The child gets the step's input; the step's output is the child's output (its one final
step's output, or an object of its final steps' outputs). The child's id is derived from
the parent's run id, the step, its attempt and the run's generation, so starting it twice
(a redelivery, two engines) writes one run. When the child ends, its engine reports the
outcome to the parent's history as the step's step.completed or step.failed
(`ReportToParent`); a failed child is retryable under the step's retry policy, each
attempt a fresh child. With `detach`, the step completes once the child has started, with
`{"run_id": ...}`, and the child lives on its own. Runs nest at most MAX_RUN_DEPTH deep,
checked when a child would start. Ending the parent any way but completed cancels its
attached children in flight, and theirs in turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from dagnats.dag.actions import Action, CompleteStep, FailStep, StartChild, WaitStep
from dagnats.dag.retry import RetryPolicy
from dagnats.dag.steps import TOKEN_PATTERN, StartContext, StepBase, Version
from dagnats.limits import MAX_RUN_DEPTH
from dagnats.names import child_run_id

if TYPE_CHECKING:
    from dagnats.dag.state import RunState


class SubWorkflowConfig(BaseModel):
    """Which workflow (and version: the latest when absent), and whether to wait for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workflow: Annotated[str, Field(pattern=TOKEN_PATTERN, max_length=128)]
    version: Version | None = None
    detach: StrictBool = False


class SubWorkflowStep(StepBase):
    """A child run of another workflow, waited for (or only started, with detach)."""

    kind = "sub_workflow"

    type: Literal["sub_workflow"]
    config: SubWorkflowConfig
    retry: RetryPolicy | None = None
    """Each attempt starts a fresh child (a failed child is retryable)."""

    def retry_policy(self, default: RetryPolicy | None) -> RetryPolicy | None:
        """Its own policy, else the workflow's default (a failed child may be retried)."""
        return self.retry or default

    def start(self, ctx: StartContext) -> list[Action]:
        """Start the child: wait for it, or (detach) complete with its id at once."""
        run = ctx.run
        chain = [*run.chain(), self.config.workflow]
        if len(chain) > MAX_RUN_DEPTH:
            return [FailStep(self.id, ctx.attempt, (
                f"step {self.id!r}: starting workflow {self.config.workflow!r} would nest "
                f"runs {len(chain)} deep; at most {MAX_RUN_DEPTH} ({' -> '.join(chain)})"),
                "TooDeep", at_start=True)]
        child = child_run_id(run.run_id, self.id, ctx.attempt, run.generation)
        start = StartChild(self.id, ctx.attempt, child, self.config.workflow,
                           self.config.version, ctx.input, ctx.input_refs, self.config.detach)
        if self.config.detach:
            return [start, CompleteStep(self.id, ctx.attempt, {"run_id": child},
                                        at_start=True, child_run_id=child)]
        waiting = {"kind": "child", "run_id": child, "workflow": self.config.workflow,
                   "version": self.config.version}
        return [WaitStep(self.id, ctx.attempt, ctx.input, waiting, ctx.input_refs), start]

    def rearm(self, run: RunState) -> list[Action]:
        """The child's start again: the engine that recorded the wait may have died first
        (starting an existing child changes nothing)."""
        step = run.steps[self.id]
        waits = step.waiting_for or {}
        if waits.get("kind") != "child" or not isinstance(waits.get("run_id"), str):
            return []
        return [StartChild(self.id, step.attempts, waits["run_id"], self.config.workflow,
                           self.config.version, step.input, step.input_refs, False)]
