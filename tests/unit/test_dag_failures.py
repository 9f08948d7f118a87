"""advance and fold on the failure paths: on_failure, compensation, timeouts, resume."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dagnats.dag.actions import (
    BeginCompensation,
    CompleteRun,
    DeadLetter,
    DispatchStep,
    EndCompensation,
    FailRun,
    RecoverStep,
    SkipStep,
    StartTimer,
)
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus, StepStatus, apply, fold
from dagnats.dag.validate import parse_definition
from dagnats.errors import InvalidDefinition
from dagnats.names import timeout_timer_name
from tests.unit.test_dag_run import History, definition

E = EventType


def recovering() -> History:
    return History(definition([
        {"id": "fetch", "task": "fetch", "on_failure": "fallback"},
        {"id": "parse", "task": "parse", "depends_on": ["fetch"]},
        {"id": "store", "task": "store", "depends_on": ["parse"]},
        {"id": "audit", "task": "audit"},
        {"id": "fallback", "task": "fallback", "retry": {"max_attempts": 1}},
    ]))


def test_on_failure_step_recovers_the_step_and_skips_its_dependents() -> None:
    h = recovering()
    assert [a.step_id for a in h.carry_out()] == ["fetch", "audit"]  # aux steps never root
    h.add(E.STEP_COMPLETED, "audit", 1, output="ok")
    h.add(E.STEP_FAILED, "fetch", 1, error="404", error_type="HTTPError", retryable=False)
    assert h.carry_out() == [DispatchStep("fallback", "fallback", 1, {
        "failed_step": "fetch", "error": "404", "error_type": "HTTPError"})]
    h.add(E.STEP_COMPLETED, "fallback", 1, output="cached")
    actions = h.carry_out()
    assert actions[:3] == [RecoverStep("fetch", "fallback"),
                           SkipStep("parse", "depends on 'fetch', which was recovered"),
                           SkipStep("store", "depends on 'parse', which was skipped")]
    assert isinstance(actions[3], CompleteRun)
    run = h.run()
    assert run.status is RunStatus.COMPLETED
    assert [run.steps[s].status for s in ("fetch", "parse", "store")] == [
        StepStatus.RECOVERED, StepStatus.SKIPPED, StepStatus.SKIPPED]


def test_a_failing_on_failure_step_is_retried_then_fails_the_run() -> None:
    h = recovering()
    h.carry_out()
    h.add(E.STEP_FAILED, "fetch", 1, error="404", retryable=False)
    h.carry_out()
    h.add(E.STEP_FAILED, "fallback", 1, error="down")
    assert h.carry_out() == [DispatchStep("fallback", "fallback", 2, {
        "failed_step": "fetch", "error": "404", "error_type": None}, 1.0)]
    h.add(E.STEP_FAILED, "fallback", 2, error="still down")
    dead, fail = h.carry_out()
    assert isinstance(dead, DeadLetter) and dead.step_id == "fallback"
    assert fail == FailRun("fallback", "on_failure step 'fallback' of 'fetch' failed: "
                                       "step 'fallback' failed (attempt 2 of 2): still down")
    assert h.run().status is RunStatus.FAILED


def saga() -> History:
    return History(definition([
        {"id": "reserve", "task": "reserve", "compensate": "release"},
        {"id": "charge", "task": "charge", "depends_on": ["reserve"], "compensate": "refund"},
        {"id": "ship", "task": "ship", "depends_on": ["charge"]},
        {"id": "release", "task": "release"},
        {"id": "refund", "task": "refund"},
    ]))


def test_compensation_runs_in_reverse_completion_order_then_ends_compensated() -> None:
    h = saga()
    h.carry_out()
    h.add(E.STEP_COMPLETED, "reserve", 1, output={"hold": 7})
    h.carry_out()
    h.add(E.STEP_COMPLETED, "charge", 1, output={"paid": 10})
    h.carry_out()
    h.add(E.STEP_FAILED, "ship", 1, error="no truck", retryable=False)
    begin, refund = h.carry_out()
    assert begin == BeginCompensation("ship", "step 'ship' failed (not retryable): no truck")
    assert refund == DispatchStep("refund", "refund", 1, {
        "original_step": "charge", "original_output": {"paid": 10},
        "trigger_step": "ship", "trigger_error": begin.error})
    assert h.run().status is RunStatus.COMPENSATING
    h.add(E.STEP_COMPLETED, "refund", 1, output=None)
    [release] = h.carry_out()
    assert isinstance(release, DispatchStep) and release.step_id == "release"
    assert release.input["original_output"] == {"hold": 7}
    h.add(E.STEP_COMPLETED, "release", 1)
    assert h.carry_out() == [EndCompensation()]
    assert h.run().status is RunStatus.COMPENSATED


def test_a_failed_compensation_ends_compensate_failed_with_a_dead_letter() -> None:
    h = saga()
    h.carry_out()
    h.add(E.STEP_COMPLETED, "reserve", 1, output=1)
    h.carry_out()
    h.add(E.STEP_FAILED, "charge", 1, error="declined", retryable=False)
    _, release = h.carry_out()  # charge never completed: only reserve is undone
    assert release.step_id == "release"
    h.add(E.STEP_FAILED, "release", 1, error="lock lost")
    dead, end = h.carry_out()
    assert dead.step_id == "release" and dead.error == "lock lost"
    assert end == EndCompensation("release", "compensation 'release' of 'reserve' failed: "
                                             "lock lost")
    run = h.run()
    assert run.status is RunStatus.COMPENSATE_FAILED and run.error == end.error


def test_run_timeout_timer_fails_the_run_and_stale_timers_are_ignored() -> None:
    h = History(definition([{"id": "a", "task": "t"}], timeout="10m"))
    actions = h.carry_out()
    assert StartTimer(timeout_timer_name(0), h.events[0].timestamp + timedelta(minutes=10)) \
        in actions
    before = h.run()
    assert apply(before, h.add(E.TIMER_FIRED, data={"name": "timeout-7"})) is before
    h.events.pop()
    h.add(E.TIMER_FIRED, data={"name": timeout_timer_name(0)})
    dead_or_fail = h.carry_out()
    assert dead_or_fail == [FailRun(None, "workflow timed out after 10m")]
    run = h.run()
    assert run.status is RunStatus.FAILED and run.steps["a"].status is StepStatus.CANCELLED


def test_resume_reruns_what_did_not_finish_with_a_fresh_retry_budget() -> None:
    h = History(definition([
        {"id": "a", "task": "t"},
        {"id": "b", "task": "t", "depends_on": ["a"], "retry": {"max_attempts": 1,
                                                                "initial_delay": "1s"}},
        {"id": "c", "task": "t", "depends_on": ["b"]},
    ], timeout="1m"))
    h.carry_out()
    h.add(E.STEP_COMPLETED, "a", 1, output="A")
    h.carry_out()
    for attempt in (1, 2):
        h.add(E.STEP_FAILED, "b", attempt, error="boom")
        h.carry_out()
    failed = h.run()
    assert failed.status is RunStatus.FAILED
    assert apply(failed, h.add(E.WORKFLOW_RESUMED, data={"generation": 5})) is failed
    h.events.pop()
    resumed = h.add(E.WORKFLOW_RESUMED, data={"generation": 1, "reason": "retry"})
    actions = h.carry_out()
    assert StartTimer(timeout_timer_name(1), resumed.timestamp + timedelta(minutes=1)) \
        in actions
    assert DispatchStep("b", "t", 3, "A") in actions  # attempts keep counting: ids stay unique
    run = h.run()
    assert run.generation == 1 and run.steps["a"].output == "A"
    h.add(E.STEP_FAILED, "b", 3, error="again")
    assert DispatchStep("b", "t", 4, "A", 1.0) in h.carry_out()  # the budget starts over


def test_cancel_while_compensating_stops_compensation() -> None:
    h = saga()
    h.carry_out()
    h.add(E.STEP_COMPLETED, "reserve", 1)
    h.carry_out()
    h.add(E.STEP_FAILED, "charge", 1, error="x", retryable=False)
    h.carry_out()
    h.add(E.WORKFLOW_CANCELLED)
    run = h.run()
    assert run.status is RunStatus.CANCELLED
    assert run.steps["release"].status is StepStatus.CANCELLED
    assert h.decide() == []


@pytest.mark.parametrize(("steps", "expected"), [
    ([{"id": "a", "task": "t", "on_failure": "zz"}], "names unknown step 'zz' as on_failure"),
    ([{"id": "a", "task": "t", "compensate": "a"}], "names itself as compensate"),
    ([{"id": "a", "task": "t", "on_failure": "h"}, {"id": "b", "task": "t", "compensate": "h"},
      {"id": "h", "task": "t"}], "is named by both 'a' and 'b'"),
    ([{"id": "a", "task": "t", "on_failure": "h"}, {"id": "h", "task": "t", "depends_on": ["a"]}],
     "auxiliary step 'h' (named by 'a') cannot have depends_on"),
    ([{"id": "a", "task": "t", "on_failure": "h"}, {"id": "h", "task": "t"},
      {"id": "b", "task": "t", "depends_on": ["h"]}], "depends on auxiliary step 'h'"),
    ([{"id": "a", "task": "_internal"}], "step \"a\": task: String should match pattern"),
])
def test_auxiliary_step_mistakes_are_refused(steps: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(definition(steps))
    assert expected in str(caught.value)


def test_a_report_stored_before_compensation_began_counts_when_folded_after_it() -> None:
    """An engine folds the events it records at once, ahead of older ones still on their
    way to it: a parallel step's completion stored before workflow.compensating, but folded
    after it, must leave the same state as history's own order (what `run status` shows)."""
    h = History(definition([
        {"id": "a", "task": "t", "compensate": "undo"},
        {"id": "b", "task": "t"},
        {"id": "undo", "task": "t"}]))
    h.carry_out()  # a and b queued
    h.add(E.STEP_FAILED, "b", 1, error="no", retryable=False)
    completed = h.add(E.STEP_COMPLETED, "a", 1, output="done")  # stored before...
    compensating = h.add(EventType.WORKFLOW_COMPENSATING, step_id="b", error="no")
    in_history_order = h.run()
    assert in_history_order.steps["a"].status is StepStatus.COMPLETED
    engine_order = fold([*h.events[:-2], compensating, completed])  # ...folded after
    assert engine_order is not None
    assert engine_order.steps["a"].status is StepStatus.COMPLETED
    assert engine_order.completion_order == in_history_order.completion_order == ("a",)
