"""What every kind of step shares: the common fields, skip_if, and the hooks a kind fills in.

A kind of step is one module in `dagnats/dag/kinds/`: a `StepBase` subclass with its own
fields and `config`, and the rules `advance` asks it for. `start` says how an attempt of
the step begins (dispatch a task, wait for a timer, an event or a decision), and
`waiting_moves` what a waiting step does once what it waits for has come (its timer fired).
Failing, retrying, on_failure and compensation are the same for every kind (`advance`);
a kind that cannot retry simply never reports a retryable failure.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from dagnats.dag.actions import StartTimer
from dagnats.dag.paths import MISSING, lookup
from dagnats.dag.payload import Refs
from dagnats.names import step_timer_name

if TYPE_CHECKING:
    from dagnats.dag.actions import Action
    from dagnats.dag.model import RetryPolicy, WorkflowDefinition
    from dagnats.dag.state import RunState

TOKEN_PATTERN = r"^[A-Za-z0-9_-]+$"

#: Tokens joined by dots: a version ("1.0"); a step a planner added, its planner's id in
#: front (`plan.fetch`: registered definitions never use the dot, `validate.parse_definition`).
DOTTED_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"

StepId = Annotated[str, Field(pattern=DOTTED_PATTERN, max_length=256)]
Version = Annotated[str, Field(pattern=DOTTED_PATTERN, max_length=64)]

SKIP_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "exists")


def field_problem(field: str, problem: str) -> PydanticCustomError:
    """A validation error that reads "<field> <problem>" after the step's path, such as
    `step "nap": config.duration must be positive`."""
    return PydanticCustomError("field_problem", "{field} {problem}",
                               {"field": field, "problem": problem})


class SkipIf(BaseModel):
    """Skip the step when a condition on an ancestor's output holds.

    `field` is a dot-path into the output of `step_id` (empty: the whole output). A field
    that is missing, or a comparison between values that cannot be compared, does not skip
    (except `exists`, which asks exactly that).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    step_id: StepId
    field: str = ""
    op: Literal["==", "!=", "<", "<=", ">", ">=", "in", "exists"] = "=="
    value: Any = None

    def holds(self, output: Any) -> bool:
        """True when the condition holds for the ancestor's output."""
        found = lookup(output, self.field)
        if self.op == "exists":
            return found is not MISSING and found is not None
        if found is MISSING:
            return False
        try:
            return _compare(self.op, found, self.value)
        except TypeError:
            return False

    def describe(self) -> str:
        """The condition as a person reads it: `check.action == "skip"`."""
        target = f"{self.step_id}.{self.field}" if self.field else self.step_id
        if self.op == "exists":
            return f"{target} exists"
        return f"{target} {self.op} {_json_text(self.value)}"


def _compare(op: str, left: Any, right: Any) -> bool:
    match op:
        case "==":
            return bool(left == right)
        case "!=":
            return bool(left != right)
        case "<":
            return bool(left < right)
        case "<=":
            return bool(left <= right)
        case ">":
            return bool(left > right)
        case "in":
            return bool(left in right)
        case _:
            return bool(left >= right)


def _json_text(value: Any) -> str:
    return json.dumps(value)


@dataclass(frozen=True)
class StartContext:
    """What a kind needs to begin attempt `attempt` of a step."""

    definition: WorkflowDefinition
    run: RunState
    step_id: str
    attempt: int
    input: Any
    now: datetime
    """The time of the event being handled: the clock of a pure decision."""
    delay_s: float = 0.0
    input_refs: Refs = field(default_factory=dict)
    """The out-of-line parts of `input` (see `dagnats.dag.payload`)."""

    def outputs(self) -> dict[str, Any]:
        """The outputs of the run's steps, for references such as step.<id>.output.x."""
        return {sid: self.run.output_value(sid) for sid in self.run.steps}


class StepBase(BaseModel):
    """The fields every kind of step has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str] = ""
    """The canonical `type` of the kind."""
    leaves_data: ClassVar[bool] = False
    """Its executor keeps something beside history (an event waiter) for the run's end to
    clear."""

    id: StepId
    depends_on: tuple[str, ...] = ()
    description: str | None = None
    on_failure: str | None = None
    """A step to run when this one fails for good; if it completes, this one is recovered."""
    compensate: str | None = None
    """A step that undoes this one, run (in reverse completion order) if the run fails."""
    skip_if: SkipIf | None = None
    """A condition on an ancestor's output under which this step is skipped (counts as done,
    its dependents get null from it)."""

    @abstractmethod
    def start(self, ctx: StartContext) -> list[Action]:
        """The actions that begin attempt `ctx.attempt` of this step (every kind has one)."""

    def waiting_moves(self, run: RunState, now: datetime) -> list[Action]:
        """What a waiting step of this kind does now (its timer may have fired); `now` is
        the time of the event being handled."""
        return []

    def rearm(self, run: RunState) -> list[Action]:
        """The publishes that keep a waiting step's wait alive (its timer, its waiter),
        again: the engine that recorded its step.waiting may have died before making
        them. Repeating them is harmless (deterministic ids, idempotent puts)."""
        return []

    def retry_policy(self, default: RetryPolicy | None) -> RetryPolicy | None:
        """The retry policy of this step (only steps that run a handler retry)."""
        return None

    @property
    def dead_letter_task(self) -> str:
        """The task name its dead letters are kept under (`_<kind>` for engine-run kinds)."""
        return f"_{self.kind}"

    def references(self) -> list[str]:
        """The run-data references (input.x, step.<id>.output.x) its config uses."""
        return []

    def wait_timer(self, attempt: int, until: datetime | None) -> list[Action]:
        """The durable timer that ends a wait of this step at `until` ([] for none)."""
        if until is None:
            return []
        return [StartTimer(step_timer_name(self.id, attempt), until, self.id, attempt)]

    def recorded_wait_timer(self, run: RunState) -> list[Action]:
        """The timer of the step's current wait again, at the `until` it recorded."""
        step = run.steps[self.id]
        until = (step.waiting_for or {}).get("until")
        return self.wait_timer(step.attempts, datetime.fromisoformat(until)
                               if isinstance(until, str) else None)
