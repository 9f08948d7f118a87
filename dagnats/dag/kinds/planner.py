"""`planner`: a handler that returns steps, which the run then runs (a dynamic DAG).

The handler's output is a fragment: a list of steps in a definition's JSON, their
`depends_on` naming each other. It is validated like a definition (known kinds, no cycle,
each kind's config) and against the planner's own limits (`max_steps`, `allowed_tasks`; a
fragment holds no planner), then added to the run with ids namespaced by the planner's
(`plan.fetch-1`), recorded as a `step.expanded` event: the run's definition is its
registered one plus what its planners added, rebuilt from history like everything else.
The planner step completes, once every added step has, with the outputs of the fragment's
final steps (one: its output; several: an object keyed by their ids in the fragment);
its dependents then run. An invalid fragment fails the step, not retryable, with the
validation message.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from dagnats.dag.actions import Action, CompleteStep, DispatchStep, ExpandPlan, FailStep, WaitStep
from dagnats.dag.kinds.task import TaskStep
from dagnats.dag.payload import nest
from dagnats.dag.steps import StartContext
from dagnats.errors import InvalidDefinition
from dagnats.limits import PLANNER_MAX_DEPTH, PLANNER_MAX_STEPS, WORKFLOW_MAX_STEPS

if TYPE_CHECKING:
    from dagnats.dag.state import RunState


class PlannerConfig(BaseModel):
    """How many steps a plan may hold, and which tasks it may use (None: any)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_steps: StrictInt = Field(default=20, ge=1, le=PLANNER_MAX_STEPS)
    allowed_tasks: tuple[str, ...] | None = None
    max_depth: StrictInt = Field(default=1, ge=1, le=PLANNER_MAX_DEPTH)
    """How deep planners may nest from this one: 1, its plan holds no planner; 2, it may
    hold planners whose plans hold none; and so on (a nested planner's own max_depth is
    kept below its parent's)."""


class PlannerStep(TaskStep):
    """A task whose output is steps to add to the run."""

    kind = "planner"

    type: Literal["planner"]  # type: ignore[assignment]  # a task step of its own kind
    config: PlannerConfig = PlannerConfig()

    def start(self, ctx: StartContext) -> list[Action]:
        """Run the handler to plan; after `run retry`, a plan added already is waited for
        again, not made anew (its steps are in the run)."""
        added = self.added(ctx.run)
        if added:
            return [WaitStep(self.id, ctx.attempt, ctx.input,
                             {"kind": "plan", "steps": added}, ctx.input_refs)]
        return [DispatchStep(self.id, self.task, ctx.attempt, ctx.input, ctx.delay_s,
                             ctx.input_refs, plan=True)]

    def waiting_moves(self, run: RunState, now: datetime) -> list[Action]:
        """A plan came: add its steps, or fail on an invalid one. Its steps all ended:
        complete with their final outputs."""
        step = run.steps[self.id]
        if (step.waiting_for or {}).get("kind") != "plan":
            return []
        added = self.added(run)
        if not added:
            steps = self.expansion(run, step.output)
            if isinstance(steps, str):
                return [FailStep(self.id, step.attempts, f"step {self.id!r}: invalid plan: "
                                 f"{steps}", "InvalidPlan")]
            return [ExpandPlan(self.id, step.attempts, tuple(steps))]
        auxiliary = run.definition.auxiliary_ids()
        if not all(run.steps[sid].status.settled for sid in added if sid not in auxiliary):
            return []
        needed = {dep for sid in added for dep in run.definition.step(sid).depends_on}
        finals = [sid for sid in added if sid not in needed and sid not in auxiliary]
        local = len(self.id) + 1
        if len(finals) == 1:
            only = run.steps[finals[0]]
            return [CompleteStep(self.id, step.attempts, only.output, only.output_refs)]
        value, refs = nest({sid[local:]: (run.steps[sid].output, run.steps[sid].output_refs)
                            for sid in finals})
        return [CompleteStep(self.id, step.attempts, value, refs)]

    def added(self, run: RunState) -> list[str]:
        """The ids of the steps this planner added to the run (none before its plan); not
        those its nested planners added, which their own planners wait for."""
        head = f"{self.id}."
        return [step.id for step in run.definition.steps
                if step.id.startswith(head) and "." not in step.id[len(head):]]

    def expansion(self, run: RunState, fragment: Any) -> list[dict[str, Any]] | str:
        """The fragment's steps as the run will have them (namespaced ids), or why the
        fragment is refused, in one line."""
        from dagnats.dag.validate import parse_definition  # validate builds on the kinds

        if not isinstance(fragment, list) or not fragment:
            return "the handler must return a non-empty list of steps"
        if len(fragment) > self.config.max_steps:
            return f"{len(fragment)} steps; max_steps is {self.config.max_steps}"
        if len(run.definition.steps) + len(fragment) > WORKFLOW_MAX_STEPS:
            return (f"the run would have {len(run.definition.steps) + len(fragment)} steps; "
                    f"at most {WORKFLOW_MAX_STEPS}")
        origin = "plan"
        try:
            planned = parse_definition({"name": "plan", "version": "1", "steps": fragment},
                                       origin=origin)
        except InvalidDefinition as exc:
            return str(exc).removeprefix(f"{origin}: ")
        for planned_step in planned.steps:
            if planned_step.kind == "planner" and self.config.max_depth <= 1:
                return (f"step {planned_step.id!r} is a planner: this plan cannot hold one "
                        "(max_depth is 1)")
            task = getattr(planned_step, "task", None)
            allowed = self.config.allowed_tasks
            if allowed is not None and task is not None and task not in allowed:
                return (f"step {planned_step.id!r} runs task {task!r}, which is not in "
                        f"allowed_tasks ({', '.join(allowed)})")
        return [self._namespaced(self._nested(step))
                for step in planned.to_json_dict()["steps"]]

    def _nested(self, step: dict[str, Any]) -> dict[str, Any]:
        """A nested planner's JSON with its max_depth below this one's."""
        if step.get("type") != "planner":
            return step
        config = step.get("config") or {}
        depth = min(int(config.get("max_depth", 1)), self.config.max_depth - 1)
        return {**step, "config": {**config, "max_depth": depth}}

    def _namespaced(self, step: dict[str, Any]) -> dict[str, Any]:
        """A fragment step's JSON with its ids (its own, and those it names) namespaced."""
        def name(local: str) -> str:
            return f"{self.id}.{local}"

        named = {**step, "id": name(step["id"]),
                 "depends_on": [name(dep) for dep in step.get("depends_on", [])]}
        for field in ("on_failure", "compensate"):
            if step.get(field):
                named[field] = name(step[field])
        if isinstance(step.get("skip_if"), dict):
            named["skip_if"] = {**step["skip_if"], "step_id": name(step["skip_if"]["step_id"])}
        return named
