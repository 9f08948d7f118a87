"""Workflow definitions: the JSON a user writes, as pydantic models.

Each step is one of the kinds in `dagnats.dag.kinds` (a closed union on `type`). Shape
checks live in the models (types, unknown fields, durations, each kind's config); graph
checks (unknown dependencies, cycles, skip_if and references naming ancestors) live in
`dagnats.dag.validate`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dagnats.dag.durations import Duration
from dagnats.dag.kinds import KINDS, Step, TaskStep, kind_of, unknown_kind_problem, with_kind
from dagnats.dag.retry import RetryPolicy
from dagnats.dag.steps import TOKEN_PATTERN, StepBase, Version, field_problem
from dagnats.limits import WORKFLOW_MAX_STEPS

__all__ = ["KINDS", "RetryPolicy", "Step", "StepBase", "TaskStep", "WorkflowDefinition"]


class WorkflowDefinition(BaseModel):
    """A named, versioned DAG of steps, as registered by a user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=TOKEN_PATTERN, max_length=128)]
    version: Version
    description: str | None = None
    default_retry: RetryPolicy | None = None
    timeout: Duration | None = None
    """The whole run's deadline; reaching it fails the run."""
    idempotency_key: str | None = None
    """A dot-path into the run input whose value makes starts idempotent (within 24 h)."""
    steps: tuple[Step, ...]

    @field_validator("steps", mode="before")
    @classmethod
    def _known_kinds(cls, steps: Any) -> Any:
        if not isinstance(steps, list | tuple):
            return steps
        for index, step in enumerate(steps):
            if isinstance(step, dict) and kind_of(step) is None:
                name = step.get("id") if isinstance(step.get("id"), str) else f"#{index}"
                raise field_problem(f"step {json.dumps(name)}:",
                                    unknown_kind_problem(step.get("type")))
        return [with_kind(step) for step in steps]

    @field_validator("steps")
    @classmethod
    def _not_empty(cls, steps: tuple[StepBase, ...]) -> tuple[StepBase, ...]:
        if not steps:
            raise ValueError("a workflow needs at least one step")
        return steps

    @field_validator("steps", mode="before")
    @classmethod
    def _not_too_many(cls, steps: Any) -> Any:
        if isinstance(steps, list | tuple) and len(steps) > WORKFLOW_MAX_STEPS:
            raise ValueError(f"a workflow has at most {WORKFLOW_MAX_STEPS} steps (this one "
                             f"has {len(steps)}); split it into workflows that start each "
                             "other, or pass lists of items to one step")
        return steps

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False
                   ) -> WorkflowDefinition:
        """A copy (with `update` applied) that computes its cached views anew."""
        copied = super().model_copy(update=update, deep=deep)
        for name in _CACHED:
            copied.__dict__.pop(name, None)
        return copied

    @cached_property
    def _by_id(self) -> dict[str, StepBase]:
        return {step.id: step for step in self.steps}

    def step(self, step_id: str) -> StepBase:
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
    def _main(self) -> tuple[StepBase, ...]:
        return tuple(step for step in self.steps if step.id not in self._auxiliary)

    def main_steps(self) -> tuple[StepBase, ...]:
        """The steps that make up the DAG proper (not auxiliary), in declaration order."""
        return self._main

    @cached_property
    def _main_order(self) -> tuple[str, ...]:
        from dagnats.dag.validate import topological_order  # validate builds on this module

        return tuple(topological_order(self._main))

    def main_order(self) -> tuple[str, ...]:
        """The main steps' ids in dependency order (Kahn's algorithm), computed once."""
        return self._main_order

    @cached_property
    def _leaves_data(self) -> bool:
        return any(step.leaves_data for step in self.steps)

    def leaves_data(self) -> bool:
        """True when a step's kind keeps data beside history for the run's end to clear."""
        return self._leaves_data

    @cached_property
    def _data_reads(self) -> tuple[bool, frozenset[str]]:
        from dagnats.dag.paths import check_reference

        reads_input, step_ids = False, set()
        for step in self.steps:
            if step.skip_if is not None:
                step_ids.add(step.skip_if.step_id)
            for ref in step.references():
                source, step_id, _ = check_reference(ref)
                reads_input = reads_input or source == "input"
                if step_id is not None:
                    step_ids.add(step_id)
        return reads_input, frozenset(step_ids)

    def data_reads(self) -> tuple[bool, frozenset[str]]:
        """What `advance` may read inside: (the run input?, the outputs of these steps),
        from the steps' skip_if and the references in their config; computed once."""
        return self._data_reads

    def timeout_text(self) -> str | None:
        """The run timeout as written ("10m"), or None."""
        text = self.model_dump(mode="json").get("timeout")
        return text if isinstance(text, str) else None

    def retry_policy(self, step: StepBase) -> RetryPolicy | None:
        """The step's retry policy: a task's own, else the workflow's default; other kinds
        never retry."""
        return step.retry_policy(self.default_retry)

    def to_json_dict(self) -> dict[str, Any]:
        """The definition as JSON-ready data, with durations written as strings (a fresh
        copy; the definition is frozen, so it is computed once)."""
        return copy.deepcopy(self._json)

    @cached_property
    def _json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def json_view(self) -> dict[str, Any]:
        """`to_json_dict()` without the copy: read it, never change it (snapshots embed it)."""
        return self._json

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkflowDefinition:
        """Validate a definition read as JSON (from an event, a snapshot or the registry)
        and keep `data` as its JSON view, which is then not computed again: `data` must
        not be changed afterwards."""
        definition = cls.model_validate(data)
        definition.__dict__["_json"] = data
        return definition


#: The views a definition computes once (functools.cached_property keeps them in __dict__).
_CACHED = tuple(name for name, value in vars(WorkflowDefinition).items()
                if isinstance(value, cached_property))
