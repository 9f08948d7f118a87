"""The map step kind, driven through `fold` and `advance` (no I/O): instances dispatched
within the concurrency, retried alone, failed fast or all listed, resumed, and refused
configs."""

from __future__ import annotations

from typing import Any

import pytest

from dagnats.dag.actions import (
    CollectMap,
    CompleteStep,
    DispatchStep,
    FailRun,
    FailStep,
    RecordedAction,
    WaitStep,
    event_for,
)
from dagnats.dag.advance import advance
from dagnats.dag.events import EventType as E
from dagnats.dag.state import RunStatus, StepStatus, apply
from dagnats.dag.validate import parse_definition
from dagnats.errors import InvalidDefinition
from tests.unit.test_dag_run import RUN, T0, History, definition

RETRY = {"max_attempts": 1, "strategy": "fixed", "initial_delay": "1s"}


def mapping(config: dict[str, Any] | None = None, **step: Any) -> History:
    """list -> each (a map of `sq`) -> after, with the list step completed with `items`."""
    return History(definition([
        {"id": "list", "task": "ls"},
        {"id": "each", "type": "map", "task": "sq", "depends_on": ["list"],
         "config": config or {}, **step},
        {"id": "after", "task": "sum", "depends_on": ["each"]},
    ]))


def listed(h: History, items: Any) -> list:
    h.carry_out()
    h.add(E.STEP_COMPLETED, "list", 1, output=items)
    return h.carry_out()


def record(h: History, actions: list) -> None:
    for action in actions:
        if isinstance(action, RecordedAction):
            event = event_for(action, RUN, T0)
            h.add(event.type, event.step_id, event.attempt, data=event.data)


def test_instances_run_within_the_concurrency_and_a_flaky_one_is_retried_alone() -> None:
    h = mapping({"concurrency": 2}, retry=RETRY)
    actions = listed(h, [10, 20, 30])
    assert actions == [WaitStep("each", 1, [10, 20, 30], {"kind": "map", "items": 3}),
                       DispatchStep("each", "sq", 1, 10, instance=0),
                       DispatchStep("each", "sq", 1, 20, instance=1)]
    assert [e.step_id for e in h.events[-2:]] == ["each[0]", "each[1]"]
    h.add(E.STEP_COMPLETED, "each[0]", 1, output=100)
    assert h.carry_out() == [DispatchStep("each", "sq", 1, 30, instance=2)]
    h.add(E.STEP_FAILED, "each[1]", 1, error="flaky", retryable=True)
    assert h.carry_out() == [DispatchStep("each", "sq", 2, 20, 1.0, instance=1)]
    h.add(E.STEP_COMPLETED, "each[0]", 1, output=100)  # redelivered: changes nothing
    h.add(E.STEP_COMPLETED, "each[2]", 1, output=900)
    assert h.decide() == []  # instance 1 is still in flight
    h.add(E.STEP_STARTED, "each[1]", 2, delivery=1)
    h.add(E.STEP_COMPLETED, "each[1]", 2, output=400)
    assert h.decide() == [CollectMap("each", 1)]
    instances = h.run().steps["each"].instances
    assert instances is not None and instances.attempts == (1, 2, 1)
    assert instances.public()["counts"]["completed"] == 3
    # The engine reads the outputs from history and records them in order.
    record(h, [CompleteStep("each", 1, [100, 400, 900])])
    assert h.decide() == [DispatchStep("after", "sum", 1, [100, 400, 900])]
    shown = h.run().public()["steps"]["each"]
    assert shown["status"] == "completed" and shown["instances"]["states"] == ["completed"] * 3


def test_an_empty_array_completes_at_once_and_its_dependents_run() -> None:
    h = mapping()
    assert listed(h, []) == [CompleteStep("each", 1, [], at_start=True)]
    assert h.run().steps["each"].status is StepStatus.COMPLETED
    assert h.decide() == [DispatchStep("after", "sum", 1, [])]


@pytest.mark.parametrize(("items", "error"), [
    ({"a": 1}, "step 'each' maps the output of 'list', which is an object, not a JSON array"),
    (None, "which is null, not a JSON array"),
    ([1, 2, 3], "step 'each': the output of 'list' has 3 items; max_items is 2"),
])
def test_anything_but_an_array_within_max_items_fails_the_step_at_once(items: Any,
                                                                       error: str) -> None:
    h = mapping({"max_items": 2})
    actions = listed(h, items)
    assert len(actions) == 1 and isinstance(actions[0], FailStep)
    assert error in actions[0].error and actions[0].error_type == "InvalidMapInput"
    assert not actions[0].retryable
    assert isinstance(h.decide()[-1], FailRun)


def test_fail_fast_fails_the_step_and_late_results_change_nothing() -> None:
    h = mapping({"concurrency": 2})
    listed(h, [1, 2, 3])
    h.add(E.STEP_FAILED, "each[1]", 1, error="bad item", retryable=True)
    actions = h.carry_out()
    assert actions[0] == FailStep("each", 1, "item 1 failed (not retried): bad item",
                                  "MapItemFailed")
    assert isinstance(h.carry_out()[-1], FailRun) and h.run().status is RunStatus.FAILED
    late = h.add(E.STEP_COMPLETED, "each[0]", 1, output=1)
    assert apply(h.run(), late) is not None and h.decide() == []


def test_without_fail_fast_every_item_runs_and_the_error_lists_the_failed_ones() -> None:
    h = mapping({"fail_fast": False, "concurrency": 1})
    listed(h, ["a", "b", "c"])
    h.add(E.STEP_FAILED, "each[0]", 1, error="no a", retryable=False)
    assert h.carry_out() == [DispatchStep("each", "sq", 1, "b", instance=1)]
    h.add(E.STEP_COMPLETED, "each[1]", 1, output="B")
    assert h.carry_out() == [DispatchStep("each", "sq", 1, "c", instance=2)]
    h.add(E.STEP_FAILED, "each[2]", 1, error="no c", retryable=True)
    failed = h.carry_out()[0]
    assert isinstance(failed, FailStep)
    assert failed.error == "2 of 3 items failed (indexes 0, 2); item 0 (not retried): no a"
    assert isinstance(h.carry_out()[-1], FailRun)


def test_run_retry_runs_only_the_items_that_did_not_complete() -> None:
    h = mapping({"fail_fast": False})
    listed(h, [1, 2])
    h.add(E.STEP_COMPLETED, "each[0]", 1, output=1)
    h.add(E.STEP_FAILED, "each[1]", 1, error="down", retryable=True)
    h.carry_out()
    h.carry_out()
    assert h.run().status is RunStatus.FAILED
    h.add(E.WORKFLOW_RESUMED, generation=1)
    actions = h.carry_out()
    assert actions == [WaitStep("each", 2, [1, 2], {"kind": "map", "items": 2}),
                       DispatchStep("each", "sq", 2, 2, instance=1)]
    h.add(E.STEP_COMPLETED, "each[1]", 2, output=4)
    assert h.decide() == [CollectMap("each", 2)]


def test_instance_events_out_of_place_are_refused_or_ignored() -> None:
    h = mapping()
    listed(h, [1])
    run = h.run()
    before = h.add(E.STEP_COMPLETED, "each[0]", 2, output=1)  # an attempt never queued
    assert apply(run, before) is run
    h.events.remove(before)
    unknown = h.add(E.STEP_COMPLETED, "each[5]", 1, output=1)
    assert apply(h.run(), unknown).steps["each"].instances == run.steps["each"].instances
    requeued = h.add(E.STEP_QUEUED, "each[0]", 1, task="sq", input=1)  # a redelivery
    assert apply(h.run(), requeued).steps["each"].instances == run.steps["each"].instances


@pytest.mark.parametrize(("step", "problem"), [
    ({"depends_on": []}, "depends_on of a map step must name exactly one step"),
    ({"depends_on": ["a", "b"]}, "must name exactly one step"),
    ({"config": {"max_items": 10_001}}, "config.max_items"),
    ({"config": {"concurrency": 0}}, "config.concurrency"),
    ({"config": {"fail_fast": "yes"}}, "config.fail_fast"),
    ({"task": None}, "task"),
])
def test_bad_map_steps_are_refused_in_one_line(step: dict[str, Any], problem: str) -> None:
    each = {"id": "each", "type": "map", "task": "sq", "depends_on": ["a"], **step}
    if each["task"] is None:
        del each["task"]
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(definition([{"id": "a", "task": "t"}, {"id": "b", "task": "t"},
                                     each]))
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_a_map_instance_advance_on_its_own_event_is_level_triggered() -> None:
    h = mapping({"concurrency": 1})
    listed(h, [1, 2])
    h.add(E.STEP_COMPLETED, "each[0]", 1, output=1)
    first = advance(h.definition, h.run(), h.events[-1])
    assert first == advance(h.definition, h.run(), h.events[-1])  # the same again
