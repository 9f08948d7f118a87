"""`approval`: wait for a person to approve or reject (`dagnats run approve/reject`).

When the step starts, a request goes out on `approval.requested.<workflow>` (or the
config's `subject`) for notifiers. The decision is made once: the API writes it only if
the run's history has not moved since it looked (compare-and-set), and a second decision
is refused with who decided and when. Approval completes the step with `{"approved": true,
"by", "comment", "at"}`; rejection fails it (not retryable), so on_failure and
compensation apply as for any failure; a timeout fails it too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dagnats.dag.actions import Action, FailStep, RequestApproval, WaitStep
from dagnats.dag.durations import Duration, format_duration
from dagnats.dag.events import Event, EventType
from dagnats.dag.paths import check_reference, render, template_references
from dagnats.dag.steps import StartContext, StepBase, field_problem
from dagnats.limits import TIMER_HORIZON_S

if TYPE_CHECKING:
    from dagnats.dag.state import RunState

#: The error_type of a rejected approval, and of one that timed out.
REJECTED = "Rejected"
TIMED_OUT = "ApprovalTimeout"


class ApprovalConfig(BaseModel):
    """What the person is asked, who may answer (informational), and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: Duration | None = None
    """How long to wait for a decision (none: until the run ends); past it the step fails."""
    description: str | None = Field(default=None, max_length=4096)
    """Shown to the approver; {{input.x}} and {{step.<id>.output.x}} are filled in."""
    approvers: tuple[str, ...] = ()
    subject: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    """Where the request is published (default approval.requested.<workflow>)."""
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.timeout is not None and not 0 < self.timeout <= TIMER_HORIZON_S:
            raise field_problem("config.timeout", "must be positive and at most 365 days")
        for ref in template_references(self.description or ""):
            try:
                check_reference(ref)
            except ValueError as exc:
                raise field_problem("config.description", f"names {exc}") from None
        return self


class ApprovalStep(StepBase):
    """A step that waits for a person's decision."""

    kind = "approval"

    type: Literal["approval"]
    config: ApprovalConfig = ApprovalConfig()

    def start(self, ctx: StartContext) -> list[Action]:
        """Wait for a decision, ask for one, and set the timeout's timer."""
        config = self.config
        description = render(config.description, ctx.run.input_value(), ctx.outputs()) \
            if config.description else None
        until = ctx.now + timedelta(seconds=config.timeout) if config.timeout else None
        waiting_for = {"kind": "approval", "description": description,
                       "approvers": list(config.approvers),
                       "until": until.isoformat() if until else None}
        actions: list[Action] = [
            WaitStep(self.id, ctx.attempt, ctx.input, waiting_for, ctx.input_refs),
            RequestApproval(self.id, ctx.attempt, config.subject, description,
                            config.approvers, dict(config.metadata), until)]
        return actions + self.wait_timer(ctx.attempt, until)

    def waiting_moves(self, run: RunState, now: datetime) -> list[Action]:
        """On timeout the step fails."""
        step = run.steps[self.id]
        if not step.timer_fired:
            return []
        waited = format_duration(self.config.timeout or 0)
        return [FailStep(self.id, step.attempts, f"no decision came within {waited}",
                         TIMED_OUT)]

    def rearm(self, run: RunState) -> list[Action]:
        """The timeout's timer again (the request is not repeated: people were told)."""
        return self.recorded_wait_timer(run)

    def references(self) -> list[str]:
        """The references its description names."""
        return template_references(self.config.description or "")


def decision_refused(run: RunState, step_id: str, verb: str) -> str | None:
    """Why a decision on `step_id` cannot be made now (one line), or None when it can."""
    step_state = run.steps.get(step_id)
    if step_state is None:
        return f"run {run.run_id} has no step {step_id!r}"
    step = run.definition.step(step_id)
    if not isinstance(step, ApprovalStep):
        return f"step {step_id!r} of run {run.run_id} is a {step.kind} step, not an approval"
    decided = _decision_of(run, step_id)
    if decided is not None:
        return decided
    status = step_state.status.value
    if status != "waiting":
        if run.status.terminal:
            return f"run {run.run_id} is {run.status.value}: nothing to {verb}"
        return (f"step {step_id!r} of run {run.run_id} is {status}, not waiting for "
                f"approval; see `dagnats run status {run.run_id}`")
    if run.status.terminal:
        return f"run {run.run_id} is {run.status.value}: nothing to {verb}"
    return None


def _decision_of(run: RunState, step_id: str) -> str | None:
    """"already approved by X at T" (or rejected, or timed out) when it was decided."""
    step = run.steps[step_id]
    decision = step.output if step.status.value == "completed" else step.decision
    if isinstance(decision, dict) and "approved" in decision:
        word = "approved" if decision.get("approved") else "rejected"
        return (f"step {step_id!r} of run {run.run_id} was already {word} by "
                f"{decision.get('by') or 'someone'} at {decision.get('at')}")
    if step.status.value == "failed" and step.error_type == TIMED_OUT:
        return f"step {step_id!r} of run {run.run_id} already timed out: {step.error}"
    return None


def decision_event(run: RunState, step_id: str, approved: bool, by: str | None,
                   comment: str | None, at: datetime) -> Event:
    """The history event that records a decision on a waiting approval step."""
    attempt = run.steps[step_id].attempts
    decision: dict[str, Any] = {"approved": approved, "by": by, "comment": comment,
                                "at": at.isoformat()}
    if approved:
        return Event(type=EventType.STEP_COMPLETED, run_id=run.run_id, step_id=step_id,
                     attempt=attempt, timestamp=at, data={"output": decision})
    why = f"rejected by {by or 'someone'}" + (f": {comment}" if comment else "")
    return Event(type=EventType.STEP_FAILED, run_id=run.run_id, step_id=step_id,
                 attempt=attempt, timestamp=at,
                 data={"error": why, "error_type": REJECTED, "retryable": False,
                       "decision": decision})
