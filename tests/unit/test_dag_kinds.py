"""The kinds of step in the pure core: how each starts, waits, wakes and fails, replayed
from histories through `advance` (no I/O), and how their configs are refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from dagnats.dag.actions import (
    AwaitEvent,
    ClearRunData,
    CompleteStep,
    DispatchStep,
    FailStep,
    RequestApproval,
    SkipStep,
    StartTimer,
    WaitStep,
)
from dagnats.dag.events import EventType as E
from dagnats.dag.kinds import (
    KINDS,
    ApprovalStep,
    MapStep,
    SleepStep,
    TaskStep,
    WaitForEventStep,
)
from dagnats.dag.kinds.approval import decision_event, decision_refused
from dagnats.dag.kinds.wait_for_event import matches
from dagnats.dag.paths import MISSING, lookup, render, resolve
from dagnats.dag.state import StepStatus
from dagnats.dag.steps import SkipIf
from dagnats.dag.validate import parse_definition
from dagnats.errors import InvalidDefinition
from dagnats.names import step_timer_name
from tests.unit.test_dag_run import T0, History, definition


def test_the_union_picks_each_kind_by_type_and_normal_is_a_task() -> None:
    doc = definition([
        {"id": "a", "task": "t"}, {"id": "b", "task": "t", "type": "normal"},
        {"id": "c", "type": "sleep", "config": {"duration": "2s"}},
        {"id": "d", "type": "wait_for_event", "config": {"event": "x.y"}},
        {"id": "e", "type": "approval"},
        {"id": "f", "type": "map", "task": "t", "depends_on": ["a"]}])
    steps = parse_definition(doc).steps
    assert [type(s) for s in steps] == [TaskStep, TaskStep, SleepStep, WaitForEventStep,
                                       ApprovalStep, MapStep]
    assert set(KINDS) == {"task", "sleep", "wait_for_event", "approval", "map", "agent_loop",
                          "sub_workflow", "planner"}
    again = parse_definition(parse_definition(doc).to_json_dict())
    assert again == parse_definition(doc)  # stored definitions (in workflow.started) re-parse


@pytest.mark.parametrize(("step", "expected"), [
    ({"id": "nap", "type": "sleep", "config": {"duration": "0s"}},
     'step "nap": config.duration must be positive'),
    ({"id": "nap", "type": "sleep", "config": {"duration": "400d"}}, "invalid duration"),
    ({"id": "nap", "type": "sleep", "config": {"duration": "9000h"}},
     'step "nap": config.duration must be at most 365 days'),
    ({"id": "nap", "type": "sleep", "config": {}},
     'step "nap": config needs exactly one of duration, until and until_input_path'),
    ({"id": "nap", "type": "sleep", "config": {"duration": "1s", "until": "2030-01-01T00:00:00Z"}},
     "(has 2)"),
    ({"id": "nap", "type": "sleep", "config": {"until": "2030-01-01T00:00:00"}},
     'step "nap": config.until: Input should have timezone info'),
    ({"id": "nap", "type": "sleep"}, "missing required field 'config' in step \"nap\""),
    ({"id": "nap", "type": "sleep", "task": "t", "config": {"duration": "1s"}},
     "unknown field 'task' in step \"nap\""),
    ({"id": "w", "type": "wait_for_event", "config": {"event": "a b"}},
     'step "w": config.event: String should match pattern'),
    ({"id": "w", "type": "wait_for_event", "config": {
        "event": "x", "match": {"left": "id", "right": "order.id"}}},
     'step "w": config.match.right is \'order.id\' is not a reference'),
    ({"id": "w", "type": "wait_for_event", "config": {"event": "x", "timeout": "0s"}},
     'step "w": config.timeout must be positive and at most 365 days'),
    ({"id": "r", "type": "approval", "config": {"description": "{{output.x}}"}},
     'step "r": config.description names'),
    ({"id": "r", "type": "approval", "retry": {"max_attempts": 2}},
     "unknown field 'retry' in step \"r\""),
])
def test_bad_configs_get_one_line_naming_the_step_and_field(step: dict[str, Any],
                                                           expected: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(definition([step]), origin="w.json")
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("steps", [
    [{"id": "a", "task": "t"}, {"id": "b", "task": "t",
                                "skip_if": {"step_id": "a", "op": "exists"}}],
    [{"id": "a", "task": "t"}, {"id": "w", "type": "wait_for_event", "config": {
        "event": "x", "match": {"left": "id", "right": "step.a.output.id"}}}],
    [{"id": "a", "task": "t"}, {"id": "r", "type": "approval",
                                "config": {"description": "{{step.a.output}}"}}],
])
def test_references_must_name_an_ancestor(steps: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidDefinition, match="is not an ancestor of it"):
        parse_definition(definition(steps))
    steps[1]["depends_on"] = ["a"]
    parse_definition(definition(steps))


def test_a_sleep_waits_for_its_timer_then_completes() -> None:
    h = History(definition([{"id": "nap", "type": "sleep", "config": {"duration": "2s"}},
                            {"id": "next", "task": "t", "depends_on": ["nap"]}]))
    started = h.events[0].timestamp
    wake = started + timedelta(seconds=2)
    assert h.carry_out() == [
        WaitStep("nap", 1, "World", {"kind": "time", "until": wake.isoformat()}),
        StartTimer(step_timer_name("nap", 1), wake, "nap", 1)]
    nap = h.run().steps["nap"]
    assert nap.status is StepStatus.WAITING and nap.waiting_for == {
        "kind": "time", "until": wake.isoformat()}
    assert h.run().public()["steps"]["nap"]["waiting_for"]["kind"] == "time"
    stale = h.add(E.TIMER_FIRED, "nap", 7, name=step_timer_name("nap", 7))
    assert h.decide() == [] and not h.run().steps["nap"].timer_fired
    h.events.remove(stale)
    h.add(E.TIMER_FIRED, "nap", 1, name=step_timer_name("nap", 1))
    assert h.carry_out() == [CompleteStep("nap", 1, {"slept_until": wake.isoformat()})]
    h.add(E.TIMER_FIRED, "nap", 1, name=step_timer_name("nap", 1))  # redelivered: no-op
    assert h.run().steps["nap"].status is StepStatus.COMPLETED
    assert h.decide() == [DispatchStep("next", "t", 1, {"slept_until": wake.isoformat()})]


def test_a_sleep_until_a_bad_input_time_fails_not_retryable() -> None:
    h = History(definition([{"id": "nap", "type": "sleep",
                             "config": {"until_input_path": "input.at"}}]),
                run_input={"at": "tomorrow"})
    [fail] = h.carry_out()
    assert isinstance(fail, FailStep) and "'tomorrow', not an RFC 3339 time" in fail.error
    run = h.run()
    assert run.steps["nap"].status is StepStatus.FAILED and not run.steps["nap"].retryable
    assert [type(a).__name__ for a in h.carry_out()] == ["DeadLetter", "FailRun"]


WAIT = {"id": "pay", "type": "wait_for_event", "config": {
    "event": "payment.received", "timeout": "1h",
    "match": {"left": "order.id", "right": "input.order_id"}}}


def test_a_wait_resolves_its_match_and_looks_back_ten_minutes() -> None:
    h = History(definition([WAIT]), run_input={"order_id": 42})
    now = h.events[0].timestamp
    wait, await_event, timer = h.carry_out()
    assert wait == WaitStep("pay", 1, {"order_id": 42}, {
        "kind": "event", "event": "payment.received",
        "match": {"left": "order.id", "op": "eq", "value": 42},
        "until": (now + timedelta(hours=1)).isoformat()})
    assert await_event == AwaitEvent("pay", 1, "payment.received", "order.id", 42,
                                     since=now - timedelta(minutes=10),
                                     until=now + timedelta(hours=1))
    assert timer == StartTimer(step_timer_name("pay", 1), now + timedelta(hours=1), "pay", 1)
    assert matches("order.id", 42, {"order": {"id": "42"}})
    assert not matches("order.id", 42, {"order": {"id": 43}})
    assert not matches("order.id", 42, {"other": 1}) and matches(None, None, "anything")


@pytest.mark.parametrize(("on_timeout", "expected"), [
    ("continue", CompleteStep("pay", 1, {"timeout": True})),
    ("fail", FailStep("pay", 1, "no payment.received event came within 1h", "EventTimeout"))])
def test_a_wait_that_times_out(on_timeout: str, expected: object) -> None:
    step = {**WAIT, "config": {**WAIT["config"], "on_timeout": on_timeout}}
    h = History(definition([step]), run_input={"order_id": 1})
    h.carry_out()
    h.add(E.TIMER_FIRED, "pay", 1, name=step_timer_name("pay", 1))
    assert h.decide() == [expected]


def test_a_matched_event_completes_the_wait_and_a_late_timeout_changes_nothing() -> None:
    h = History(definition([WAIT]), run_input={"order_id": 1})
    h.carry_out()
    h.add(E.STEP_COMPLETED, "pay", 1, output={"order": {"id": 1}})
    complete, clear = h.carry_out()
    assert clear == ClearRunData()
    h.add(E.TIMER_FIRED, "pay", 1, name=step_timer_name("pay", 1))
    assert h.decide() == [] and h.run().output == {"order": {"id": 1}}
    assert complete.output == {"order": {"id": 1}}


def test_a_wait_naming_missing_run_data_fails_at_once() -> None:
    h = History(definition([WAIT]), run_input={})
    [fail] = h.carry_out()
    assert isinstance(fail, FailStep)
    assert fail.error == ("step 'pay': config.match.right names input.order_id, which the run "
                          "does not have")


APPROVAL = {"id": "review", "type": "approval", "config": {
    "timeout": "24h", "description": "Ship {{input.order_id}}?", "approvers": ["ops"]}}


def test_an_approval_asks_once_and_is_decided_once() -> None:
    h = History(definition([APPROVAL]), run_input={"order_id": "A-1"})
    wait, request, _timer = h.carry_out()
    assert isinstance(wait, WaitStep) and wait.waiting_for["description"] == "Ship A-1?"
    assert request == RequestApproval("review", 1, None, "Ship A-1?", ("ops",), {},
                                      T0 + timedelta(hours=24))
    run = h.run()
    assert decision_refused(run, "review", "approve") is None
    assert decision_refused(run, "nope", "approve") == f"run {run.run_id} has no step 'nope'"
    decided = decision_event(run, "review", True, "ana", "ok", T0)
    h.add(decided.type, "review", decided.attempt, data=decided.data)
    refused = decision_refused(h.run(), "review", "reject")
    assert refused is not None and "was already approved by ana at 2026-01-01" in refused


def test_a_rejection_fails_the_step_for_good_and_a_timeout_too() -> None:
    h = History(definition([APPROVAL]), run_input={"order_id": "A-1"})
    h.carry_out()
    decided = decision_event(h.run(), "review", False, "bo", "no", T0)
    h.add(decided.type, "review", decided.attempt, data=decided.data)
    review = h.run().steps["review"]
    assert (review.status, review.error, review.retryable) == (
        StepStatus.FAILED, "rejected by bo: no", False)
    refused = decision_refused(h.run(), "review", "approve")
    assert refused is not None and "already rejected by bo" in refused
    timed = History(definition([APPROVAL]), run_input={"order_id": "A-1"})
    timed.carry_out()
    timed.add(E.TIMER_FIRED, "review", 1, name=step_timer_name("review", 1))
    [fail] = timed.decide()
    assert fail == FailStep("review", 1, "no decision came within 24h", "ApprovalTimeout")


@pytest.mark.parametrize(("op", "field", "value", "output", "holds"), [
    ("==", "action", "skip", {"action": "skip"}, True),
    ("!=", "action", "skip", {"action": "go"}, True),
    ("<", "n", 3, {"n": 2}, True), ("<=", "n", 2, {"n": 2}, True),
    (">", "n", 3, {"n": 2}, False), (">=", "n", "x", {"n": 2}, False),  # cannot compare
    ("in", "tier", ["free", "trial"], {"tier": "free"}, True),
    ("exists", "coupon", None, {"coupon": None}, False),
    ("exists", "coupon.code", None, {"coupon": {"code": "X"}}, True),
    ("==", "missing", None, {}, False), ("==", "", "whole", "whole", True),
])
def test_skip_if_operators(op: str, field: str, value: Any, output: Any, holds: bool) -> None:
    condition = SkipIf.model_validate({"step_id": "a", "field": field, "op": op,
                                       "value": value})
    assert condition.holds(output) is holds


def test_a_skip_if_skip_lets_dependents_run_with_null_in_the_same_call() -> None:
    h = History(definition([
        {"id": "check", "task": "t"},
        {"id": "maybe", "task": "t", "depends_on": ["check"],
         "skip_if": {"step_id": "check", "field": "action", "op": "==", "value": "skip"}},
        {"id": "after", "task": "t", "depends_on": ["maybe"]}]))
    h.carry_out()
    h.add(E.STEP_COMPLETED, "check", 1, output={"action": "skip"})
    assert h.carry_out() == [
        SkipStep("maybe", 'skip_if check.action == "skip"', satisfied=True),
        DispatchStep("after", "t", 1, None)]
    assert h.run().public()["steps"]["maybe"]["skip_reason"] == 'skip_if check.action == "skip"'


def test_paths_and_templates() -> None:
    data = {"a": [{"b": 1}], "s": "x"}
    assert lookup(data, "a.0.b") == 1 and lookup(data, "a.1") is MISSING
    assert resolve("input.s", data, {}) == "x"
    assert resolve("step.p.output.v", None, {"p": {"v": [1]}}) == [1]
    assert resolve("step.q.output", None, {}) is MISSING
    assert render("{{input.s}} {{input.a}} {{input.none}}", data, {}) == \
        'x [{"b": 1}] {{input.none}}'


def test_a_waiting_event_from_another_engine_sets_its_timer_and_waiter_again() -> None:
    h = History(definition([WAIT, {"id": "nap", "type": "sleep", "config": {"duration": "1m"}},
                            APPROVAL]), run_input={"order_id": 5, "order": 1})
    decided = h.carry_out()
    timers = {a.step_id: a for a in decided if isinstance(a, StartTimer)}
    waiter = next(a for a in decided if isinstance(a, AwaitEvent))
    for step_id in ("pay", "nap", "review"):
        waiting = next(e for e in h.events if e.step_id == step_id)
        again = h.decide_after(waiting)
        assert timers[step_id] in again
        looks = [a for a in again if isinstance(a, AwaitEvent)]
        assert len(looks) == (step_id == "pay")
        for look in looks:  # it looks back from when the step began waiting, as recorded
            assert replace(look, since=waiter.since) == waiter
            assert look.since == waiting.timestamp - timedelta(minutes=10)
        assert not any(isinstance(a, RequestApproval) for a in again)


def test_a_copied_definition_computes_its_views_anew() -> None:
    original = parse_definition(definition([{"id": "a", "task": "t"}]))
    assert original.to_json_dict()["version"] == "1"  # computed, and cached
    copy = original.model_copy(update={"version": "2"})
    assert copy.to_json_dict()["version"] == "2" and original.to_json_dict()["version"] == "1"
