"""Workflow definitions: the JSON a user writes, as pydantic models.

Shape checks live here (types, unknown fields, durations); graph checks (unknown
dependencies, cycles) live in `dagnats.dag.validate`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)

from dagnats.dag.durations import format_duration, parse_duration

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""Seconds inside; "30s"-style strings (or integer nanoseconds) at the JSON edge."""

TOKEN_PATTERN = r"^[A-Za-z0-9_-]+$"
TASK_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"  # a leading "_" is reserved for dagnats' own
VERSION_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"

#: Step types that exist in the dagnats design but are not implemented yet.
PLANNED_STEP_TYPES = (
    "map", "sub_workflow", "sleep", "wait_for_event", "approval", "agent_loop",
)
STEP_TYPES = ("normal",)


class RetryPolicy(BaseModel):
    """What to do when an attempt fails: how many retries, and how long to wait before each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=0, le=1000)
    """Retries after the first failure (so max_attempts + 1 attempts in all)."""
    strategy: Literal["fixed", "linear", "exponential"] = "exponential"
    initial_delay: Duration = 1.0
    max_delay: Duration = 300.0
    multiplier: float = Field(default=2.0, ge=1.0, le=100.0)


class Step(BaseModel):
    """One node of the DAG: a task to run once its dependencies have completed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=TOKEN_PATTERN, max_length=128)]
    task: Annotated[str, Field(pattern=TASK_PATTERN, max_length=128)]
    depends_on: tuple[str, ...] = ()
    timeout: Duration | None = None
    retry: RetryPolicy | None = None
    type: str = "normal"
    description: str | None = None
    on_failure: str | None = None
    """A step to run when this one fails for good; if it completes, this one is recovered."""
    compensate: str | None = None
    """A step that undoes this one, run (in reverse completion order) if the run fails."""

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value in STEP_TYPES:
            return value
        if value in PLANNED_STEP_TYPES:
            raise ValueError(f"step type {value!r} is not supported yet; use \"normal\"")
        raise ValueError(f"unknown step type {value!r}; use \"normal\"")


class WorkflowDefinition(BaseModel):
    """A named, versioned DAG of steps, as registered by a user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=TOKEN_PATTERN, max_length=128)]
    version: Annotated[str, Field(pattern=VERSION_PATTERN, max_length=64)]
    description: str | None = None
    default_retry: RetryPolicy | None = None
    timeout: Duration | None = None
    """The whole run's deadline; reaching it fails the run."""
    idempotency_key: str | None = None
    """A dot-path into the run input whose value makes starts idempotent (within 24 h)."""
    steps: tuple[Step, ...]

    @field_validator("steps")
    @classmethod
    def _not_empty(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        if not steps:
            raise ValueError("a workflow needs at least one step")
        return steps

    @cached_property
    def _by_id(self) -> dict[str, Step]:
        return {step.id: step for step in self.steps}

    def step(self, step_id: str) -> Step:
        """The step with this id (KeyError if none)."""
        return self._by_id[step_id]

    @cached_property
    def _auxiliary(self) -> frozenset[str]:
        named = {s.on_failure for s in self.steps} | {s.compensate for s in self.steps}
        return frozenset(step_id for step_id in named if step_id)

    def auxiliary_ids(self) -> frozenset[str]:
        """Steps named by another step's on_failure or compensate: they run only on demand."""
        return self._auxiliary

    @cached_property
    def _main(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.id not in self._auxiliary)

    def main_steps(self) -> tuple[Step, ...]:
        """The steps that make up the DAG proper (not auxiliary), in declaration order."""
        return self._main

    @cached_property
    def _main_order(self) -> tuple[str, ...]:
        from dagnats.dag.validate import topological_order  # validate builds on this module

        return tuple(topological_order(self._main))

    def main_order(self) -> tuple[str, ...]:
        """The main steps' ids in dependency order (Kahn's algorithm), computed once."""
        return self._main_order

    def timeout_text(self) -> str | None:
        """The run timeout as written ("10m"), or None."""
        return self.model_dump(mode="json").get("timeout")

    def retry_policy(self, step: Step) -> RetryPolicy | None:
        """The step's own retry policy, else the workflow's default, else none."""
        return step.retry or self.default_retry

    def to_json_dict(self) -> dict[str, Any]:
        """The definition as JSON-ready data, with durations written as strings."""
        return self.model_dump(mode="json", exclude_none=True)
