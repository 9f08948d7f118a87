"""The sub_workflow step kind, driven through `fold` and `advance` (no I/O): the child's
derived id, waiting then the child's report, detach, the depth cap, a parent's end
cancelling its children, and a child's end telling its parent."""

from __future__ import annotations

from typing import Any

import pytest

from dagnats.dag.actions import (
    CancelChild,
    CompleteStep,
    DispatchStep,
    FailRun,
    FailStep,
    ReportToParent,
    StartChild,
    WaitStep,
)
from dagnats.dag.events import EventType as E
from dagnats.dag.state import RunStatus, StepStatus
from dagnats.dag.validate import parse_definition
from dagnats.errors import InvalidDefinition
from dagnats.names import child_run_id
from tests.unit.test_dag_run import RUN, History, definition


def parenting(**config: Any) -> History:
    return History(definition([
        {"id": "ship", "type": "sub_workflow", "config": {"workflow": "shipping", **config},
         "retry": {"max_attempts": 1, "strategy": "fixed", "initial_delay": "1s"}},
        {"id": "after", "task": "t", "depends_on": ["ship"]}]), run_input={"order": 1})


def test_a_child_is_started_waited_for_and_its_output_passed_on() -> None:
    h = parenting(version="2")
    child = child_run_id(RUN, "ship", 1, 0)
    assert h.carry_out() == [
        WaitStep("ship", 1, {"order": 1}, {"kind": "child", "run_id": child,
                                           "workflow": "shipping", "version": "2"}),
        StartChild("ship", 1, child, "shipping", "2", {"order": 1})]
    assert h.run().steps["ship"].child_run_id == child
    assert h.run().public()["children"] == [child]
    waiting = h.events[-1]
    assert h.decide_after(waiting) == [StartChild("ship", 1, child, "shipping", "2",
                                                  {"order": 1})]  # rearmed
    h.add(E.STEP_COMPLETED, "ship", 1, output="shipped", child_run_id=child)
    assert h.carry_out() == [DispatchStep("after", "t", 1, "shipped")]


def test_a_failed_child_is_retried_as_a_fresh_child() -> None:
    h = parenting()
    h.carry_out()
    h.add(E.STEP_FAILED, "ship", 1, error="child failed", retryable=True)
    retry = h.carry_out()
    second = child_run_id(RUN, "ship", 2, 0)
    assert second != child_run_id(RUN, "ship", 1, 0)
    assert isinstance(retry[0], WaitStep) and retry[0].waiting_for["run_id"] == second
    assert retry[1] == StartChild("ship", 2, second, "shipping", None, {"order": 1})


def test_detach_starts_the_child_then_completes_with_its_id() -> None:
    h = parenting(detach=True)
    child = child_run_id(RUN, "ship", 1, 0)
    assert h.carry_out() == [
        StartChild("ship", 1, child, "shipping", None, {"order": 1}, detached=True),
        CompleteStep("ship", 1, {"run_id": child}, at_start=True, child_run_id=child)]
    assert h.run().steps["ship"].status is StepStatus.COMPLETED
    assert h.run().steps["ship"].child_run_id == child


def test_the_depth_cap_fails_the_step_naming_the_chain() -> None:
    h = parenting()
    h.events[0] = h.events[0].model_copy(update={"data": {**h.events[0].data, "parent": {
        "run_id": "p" * 32, "step_id": "s", "attempt": 1, "root_run_id": "r" * 32,
        "chain": ["a", "b", "c", "d"]}}})
    failed = h.carry_out()[0]
    assert isinstance(failed, FailStep) and not failed.retryable
    assert failed.error == ("step 'ship': starting workflow 'shipping' would nest runs 6 "
                            "deep; at most 5 (a -> b -> c -> d -> w -> shipping)")
    assert h.run().root_run_id == "r" * 32


def test_a_parents_end_cancels_its_children_and_a_childs_end_tells_its_parent() -> None:
    h = parenting()
    h.carry_out()
    child = child_run_id(RUN, "ship", 1, 0)
    h.add(E.WORKFLOW_CANCELLED, reason="on request")
    assert h.run().status is RunStatus.CANCELLED
    assert h.decide() == [CancelChild("ship", child)]
    kid = History(definition([{"id": "l", "task": "t"}]))
    kid.events[0] = kid.events[0].model_copy(update={"data": {**kid.events[0].data, "parent": {
        "run_id": RUN, "step_id": "ship", "attempt": 1, "root_run_id": RUN, "chain": ["w"]}}})
    kid.carry_out()
    kid.add(E.STEP_FAILED, "l", 1, error="no", retryable=False)
    assert isinstance(kid.carry_out()[-1], FailRun)
    assert kid.decide() == [ReportToParent()]


@pytest.mark.parametrize(("config", "problem"), [
    ({}, "missing required field 'workflow'"),
    ({"workflow": "a b"}, "config.workflow"),
    ({"workflow": "x", "detach": "yes"}, "config.detach"),
])
def test_bad_sub_workflow_configs_are_refused(config: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(definition([{"id": "s", "type": "sub_workflow", "config": config}]))
    assert problem in str(caught.value)
