"""The registry of step kinds: one module each, joined here into the `Step` union.

A definition's step picks its kind with `type` (absent: `task`; `normal` is the older name
of `task`). Adding a kind is one module beside these (a `StepBase` subclass with its
`start` and `waiting_moves` rules) and one line in `Step` and `KINDS` below.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from dagnats.dag.kinds.agent_loop import AgentLoopStep
from dagnats.dag.kinds.approval import ApprovalStep
from dagnats.dag.kinds.map import MapStep
from dagnats.dag.kinds.planner import PlannerStep
from dagnats.dag.kinds.sleep import SleepStep
from dagnats.dag.kinds.sub_workflow import SubWorkflowStep
from dagnats.dag.kinds.task import TaskStep
from dagnats.dag.kinds.wait_for_event import WaitForEventStep
from dagnats.dag.steps import StepBase

#: Every kind, by its `type`.
KINDS: dict[str, type[StepBase]] = {
    "task": TaskStep, "sleep": SleepStep, "wait_for_event": WaitForEventStep,
    "approval": ApprovalStep, "map": MapStep, "agent_loop": AgentLoopStep,
    "sub_workflow": SubWorkflowStep, "planner": PlannerStep,
}
#: Older or alternative spellings of a kind's `type`.
ALIASES = {"normal": "task"}


def kind_of(data: Any) -> str | None:
    """The kind a step's JSON (or model) asks for, by its `type` (None: not a known kind)."""
    raw = data.get("type", "task") if isinstance(data, dict) else getattr(data, "type", None)
    if not isinstance(raw, str):
        return None
    kind = ALIASES.get(raw, raw)
    return kind if kind in KINDS else None


def unknown_kind_problem(raw: object) -> str:
    """Why a step's `type` is refused, in one phrase."""
    return f"unknown type {raw!r}; use one of {', '.join(KINDS)}"


Step = Annotated[
    TaskStep | SleepStep | WaitForEventStep | ApprovalStep | MapStep | AgentLoopStep
    | SubWorkflowStep | PlannerStep,
    Field(discriminator="type"),
]
"""One step of a definition: a closed union of the kinds, told apart by `type` (which
`with_kind` fills in where it is absent: pydantic's own tagged union is the fastest)."""


def with_kind(step: Any) -> Any:
    """A step's JSON with its `type` written out (absent means task)."""
    if isinstance(step, dict) and "type" not in step:
        return {**step, "type": "task"}
    return step

__all__ = [
    "KINDS",
    "AgentLoopStep",
    "ApprovalStep",
    "MapStep",
    "PlannerStep",
    "SleepStep",
    "Step",
    "StepBase",
    "SubWorkflowStep",
    "TaskStep",
    "WaitForEventStep",
    "kind_of",
    "with_kind",
]
