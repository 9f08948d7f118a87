"""The agent_loop step kind, driven through `fold` and `advance` (no I/O): each iteration a
task with the last state, retries from the last state, and both limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dagnats.dag.actions import DispatchStep, FailRun, FailStep
from dagnats.dag.events import EventType as E
from dagnats.dag.state import RunStatus, StepStatus, apply
from dagnats.dag.validate import parse_definition
from dagnats.errors import InvalidDefinition
from tests.unit.test_dag_run import T0, History, definition


def looping(config: dict[str, Any] | None = None, **step: Any) -> History:
    return History(definition([
        {"id": "agent", "type": "agent_loop", "task": "think", "config": config or {},
         **step},
        {"id": "after", "task": "report", "depends_on": ["agent"]}]), run_input={"goal": 1})


def loop_of(action: Any) -> dict[str, Any]:
    assert isinstance(action, DispatchStep) and action.loop is not None
    return action.loop


def test_each_iteration_gets_the_last_state_and_a_plain_return_ends_the_loop() -> None:
    h = looping({"max_iterations": 5})
    first = h.carry_out()[0]
    assert isinstance(first, DispatchStep) and first.input == {"goal": 1}
    assert loop_of(first) == {"iteration": 1, "attempt": 1, "max_iterations": 5,
                              "deadline": None}
    h.add(E.STEP_ITERATED, "agent", 1, iteration=1, output={"notes": ["a"]})
    run = h.run()
    assert run.steps["agent"].status is StepStatus.WAITING
    assert run.steps["agent"].iteration == 1
    second = h.carry_out()[0]
    assert isinstance(second, DispatchStep)
    assert (second.attempt, second.input) == (2, {"notes": ["a"]})
    assert loop_of(second)["iteration"] == 2 and loop_of(second)["attempt"] == 1
    h.add(E.STEP_ITERATED, "agent", 2, iteration=2, output={"notes": ["a", "b"]})
    h.add(E.STEP_ITERATED, "agent", 2, iteration=2, output={"notes": ["a", "b"]})  # again
    third = h.carry_out()[0]
    assert isinstance(third, DispatchStep) and third.attempt == 3
    assert h.run().public()["steps"]["agent"]["iteration"] == 2
    h.add(E.STEP_COMPLETED, "agent", 3, output={"answer": "a b c"})
    assert h.carry_out() == [DispatchStep("after", "report", 1, {"answer": "a b c"})]


def test_a_failed_iteration_is_retried_from_the_last_state_with_a_fresh_budget() -> None:
    h = looping(retry={"max_attempts": 1, "strategy": "fixed", "initial_delay": "1s"})
    h.carry_out()
    h.add(E.STEP_ITERATED, "agent", 1, iteration=1, output="state-1")
    h.carry_out()  # iteration 2, attempt 2 overall
    h.add(E.STEP_FAILED, "agent", 2, error="model timed out", retryable=True)
    retry = h.carry_out()[0]
    assert isinstance(retry, DispatchStep)
    assert (retry.attempt, retry.input, retry.delay_s) == (3, "state-1", 1.0)
    assert loop_of(retry)["iteration"] == 2 and loop_of(retry)["attempt"] == 2
    h.add(E.STEP_ITERATED, "agent", 3, iteration=2, output="state-2")
    h.carry_out()  # iteration 3: its own budget again
    h.add(E.STEP_FAILED, "agent", 4, error="again", retryable=True)
    again = h.carry_out()[0]
    assert isinstance(again, DispatchStep) and again.input == "state-2"
    h.add(E.STEP_FAILED, "agent", 5, error="and again", retryable=True)
    assert isinstance(h.carry_out()[-1], FailRun)
    h.add(E.WORKFLOW_RESUMED, generation=1)  # run retry: on from the last state
    resumed = h.carry_out()[0]
    assert isinstance(resumed, DispatchStep) and resumed.input == "state-2"
    assert loop_of(resumed)["iteration"] == 3


def test_max_iterations_fails_the_step_naming_the_limit() -> None:
    h = looping({"max_iterations": 2})
    h.carry_out()
    h.add(E.STEP_ITERATED, "agent", 1, iteration=1, output=1)
    h.carry_out()
    h.add(E.STEP_ITERATED, "agent", 2, iteration=2, output=2)
    failed = h.carry_out()[0]
    assert failed == FailStep("agent", 2, "step 'agent' reached max_iterations (2) without "
                              "finishing", "MaxIterationsReached", at_start=True)
    assert isinstance(h.carry_out()[-1], FailRun)
    run = h.run()
    assert run.status is RunStatus.FAILED and "max_iterations (2)" in (run.error or "")


def test_max_duration_counts_from_the_first_dispatch() -> None:
    h = looping({"max_duration": "5s"})
    first = h.carry_out()[0]
    deadline = loop_of(first)["deadline"]
    assert deadline == (h.events[0].timestamp + timedelta(seconds=5)).isoformat()
    h.add(E.STEP_ITERATED, "agent", 1, iteration=1, output="s")  # at T0 + 2 s
    second = h.carry_out()[0]
    assert loop_of(second)["deadline"] == deadline  # the same deadline, not a new one
    for _ in range(5):  # time passes (each event is a second later)
        h.add(E.SIGNAL_SENT, data={"name": "tick"})
    h.add(E.STEP_ITERATED, "agent", 2, iteration=2, output="s2")
    failed = h.carry_out()[0]
    assert isinstance(failed, FailStep)
    assert failed.error == "step 'agent' exceeded max_duration (5s) after 2 iterations"


def test_a_late_iteration_of_an_older_attempt_changes_nothing() -> None:
    h = looping()
    h.carry_out()
    h.add(E.STEP_ITERATED, "agent", 1, iteration=1, output="s")
    h.carry_out()
    stale = h.add(E.STEP_ITERATED, "agent", 1, iteration=1, output="other")
    run = h.run()
    assert apply(run, stale) is run and run.steps["agent"].output == "s"
    assert T0  # the history's clock


@pytest.mark.parametrize(("config", "problem"), [
    ({"max_iterations": 0}, "config.max_iterations"),
    ({"max_iterations": 10_001}, "config.max_iterations"),
    ({"max_duration": "0s"}, "config.max_duration must be positive"),
    ({"loop_delay": "25h"}, "config.loop_delay must be between 0s and 24h"),
    ({"max_loops": 3}, "unknown field 'max_loops'"),
])
def test_bad_agent_loop_configs_are_refused(config: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(definition([{"id": "agent", "type": "agent_loop", "task": "t",
                                      "config": config}]))
    assert problem in str(caught.value) and "\n" not in str(caught.value)
