"""The planner step kind, driven through `fold` and `advance` (no I/O): a plan validated and
added with namespaced ids, run, and its final outputs completing the planner; invalid plans
fail in one line; `run retry` does not plan again."""

from __future__ import annotations

from typing import Any

import pytest

from dagnats.dag.actions import CompleteStep, DispatchStep, ExpandPlan, FailRun, FailStep
from dagnats.dag.events import EventType as E
from dagnats.dag.state import RunStatus, StepStatus, fold
from tests.unit.test_dag_run import History, definition

PLAN = [{"id": "fetch-a", "task": "fetch"}, {"id": "fetch-b", "task": "fetch"},
        {"id": "sum", "task": "summarize", "depends_on": ["fetch-a", "fetch-b"]}]


def planning(**config: Any) -> History:
    return History(definition([
        {"id": "plan", "type": "planner", "task": "make_plan",
         "config": {"allowed_tasks": ["fetch", "summarize"], **config}},
        {"id": "report", "task": "report", "depends_on": ["plan"]}]), run_input="topic")


def planned(h: History, plan: Any) -> list:
    dispatch = h.carry_out()[0]
    assert isinstance(dispatch, DispatchStep) and dispatch.plan
    h.add(E.STEP_PLANNED, "plan", 1, output=plan)
    return h.carry_out()


def test_a_plan_is_added_run_and_its_final_output_completes_the_planner() -> None:
    h = planning()
    expanded = planned(h, PLAN)
    assert isinstance(expanded[0], ExpandPlan)
    assert [s["id"] for s in expanded[0].steps] == ["plan.fetch-a", "plan.fetch-b", "plan.sum"]
    assert expanded[0].steps[2]["depends_on"] == ["plan.fetch-a", "plan.fetch-b"]
    assert len(expanded) == 1  # the engine advances again on its own step.expanded:
    assert h.carry_out() == [DispatchStep("plan.fetch-a", "fetch", 1, "topic"),
                             DispatchStep("plan.fetch-b", "fetch", 1, "topic")]
    run = h.run()
    assert run.steps["plan"].status is StepStatus.WAITING
    assert list(run.public()["steps"]) == ["plan", "plan.fetch-a", "plan.fetch-b",
                                           "plan.sum", "report"]
    h.add(E.STEP_COMPLETED, "plan.fetch-a", 1, output="A")
    h.add(E.STEP_COMPLETED, "plan.fetch-b", 1, output="B")
    assert h.carry_out() == [DispatchStep("plan.sum", "summarize", 1,
                                          {"plan.fetch-a": "A", "plan.fetch-b": "B"})]
    h.add(E.STEP_COMPLETED, "plan.sum", 1, output="A+B")
    assert h.carry_out() == [CompleteStep("plan", 1, "A+B")]
    assert h.carry_out() == [DispatchStep("report", "report", 1, "A+B")]
    h.add(E.STEP_COMPLETED, "report", 1, output="done")
    h.carry_out()
    run = h.run()
    assert run.status is RunStatus.COMPLETED and run.output == "done"  # not the plan's
    assert fold(h.events) == run  # the added steps are rebuilt from history


@pytest.mark.parametrize(("plan", "problem"), [
    ("not a list", "the handler must return a non-empty list of steps"),
    ([{"id": "x", "task": "rm-rf"}], "step 'x' runs task 'rm-rf', which is not in allowed_tasks"),
    ([{"id": "a", "task": "fetch", "depends_on": ["b"]},
      {"id": "b", "task": "fetch", "depends_on": ["a"]}], "cycle"),
    ([{"id": "p", "type": "planner", "task": "fetch"}], "this plan cannot hold one"),
    ([{"id": "a", "task": "fetch", "bogus": 1}], "unknown field 'bogus'"),
    ([{"id": f"s{n}", "task": "fetch"} for n in range(3)], "3 steps; max_steps is 2"),
])
def test_an_invalid_plan_fails_the_planner_in_one_line(plan: Any, problem: str) -> None:
    h = planning(max_steps=2)
    failed = planned(h, plan)[0]
    assert isinstance(failed, FailStep) and not failed.retryable
    assert failed.error.startswith("step 'plan': invalid plan: ") and problem in failed.error
    assert "\n" not in failed.error
    assert isinstance(h.carry_out()[-1], FailRun)


def test_a_nested_planner_plans_in_turn_within_max_depth() -> None:
    h = planning(max_depth=2)
    expanded = planned(h, [{"id": "sub", "type": "planner", "task": "fetch",
                            "config": {"max_depth": 3}}])[0]
    assert isinstance(expanded, ExpandPlan)
    assert expanded.steps[0]["config"]["max_depth"] == 1  # kept below its parent's
    sub = h.carry_out()[0]
    assert isinstance(sub, DispatchStep) and sub.step_id == "plan.sub" and sub.plan
    assert sub.input == "topic"  # a plan's root gets its planner's input
    h.add(E.STEP_PLANNED, "plan.sub", 1, output=[{"id": "leaf", "task": "fetch"}])
    inner = h.carry_out()[0]
    assert isinstance(inner, ExpandPlan) and inner.steps[0]["id"] == "plan.sub.leaf"
    assert h.carry_out() == [DispatchStep("plan.sub.leaf", "fetch", 1, "topic")]
    h.add(E.STEP_COMPLETED, "plan.sub.leaf", 1, output="leaf!")
    assert h.carry_out() == [CompleteStep("plan.sub", 1, "leaf!")]
    assert h.carry_out() == [CompleteStep("plan", 1, "leaf!")]
    again = planned(planning(max_depth=2), [
        {"id": "sub", "type": "planner", "task": "fetch"}])  # sub's own max_depth: 1
    assert isinstance(again[0], ExpandPlan)


def test_run_retry_runs_the_plans_unfinished_steps_without_planning_again() -> None:
    h = planning()
    planned(h, PLAN)
    h.carry_out()
    h.add(E.STEP_COMPLETED, "plan.fetch-a", 1, output="A")
    h.add(E.STEP_FAILED, "plan.fetch-b", 1, error="down", retryable=False)
    assert isinstance(h.carry_out()[-1], FailRun)
    h.add(E.WORKFLOW_RESUMED, generation=1)
    actions = h.carry_out()
    assert not any(isinstance(a, DispatchStep) and a.plan for a in actions)
    assert DispatchStep("plan.fetch-b", "fetch", 2, "topic") in actions
