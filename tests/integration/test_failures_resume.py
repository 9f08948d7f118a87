"""Resuming and rerunning through the CLI against a real engine and worker.

`run retry` resumes a failed or cancelled run in place: completed steps keep their outputs
and are not executed again (no new step.started). `run rerun` starts a new run of the very
definition and input of an earlier run, not of the latest registered version.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from nats.js.errors import KeyNotFoundError

from dagnats import names
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus
from tests.integration.failures_harness import (
    FAST_RETRY,
    Behaviour,
    Stack,
    one_error_line,
    steps_started,
)

pytestmark = pytest.mark.timeout(90)
E = EventType


def test_retry_resumes_a_failed_run_without_rerunning_completed_steps(
        stack: Stack, behaviour: Behaviour) -> None:
    stack.client.register_workflow({"name": "retry-me", "version": "1", "steps": [
        {"id": "a", "task": "echo"},
        {"id": "b", "task": "flaky", "depends_on": ["a"], "retry": FAST_RETRY},
        {"id": "c", "task": "echo", "depends_on": ["b"]}]})
    behaviour.broken.add("retry-me")
    run_id = stack.client.start("retry-me", "in")
    assert stack.client.wait(run_id, timeout=20).status is RunStatus.FAILED
    assert len(stack.client.dead_letters(run_id)) == 1
    status = stack.dagnats("run", "status", run_id).stdout.splitlines()
    assert status[4:] == ['a: completed "in-ok"',
                          "b: failed after 2 attempts: ConnectionError: flaky network",
                          "c: pending"]

    behaviour.broken.discard("retry-me")
    result = stack.dagnats("run", "retry", run_id, "--watch")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"Run {run_id} resumed", "step.b: retrying (attempt 3)", "step.b: completed",
        "step.c: completed", f"Run {run_id} completed"]
    events = stack.history(run_id)
    assert len(steps_started(events, "a")) == 1
    assert [(t, a) for t, a in behaviour.calls_of(run_id)] == [
        ("echo", 1), ("flaky", 1), ("flaky", 2), ("flaky", 3), ("echo", 1)]
    [resumed] = [e for e in events if e.type is E.WORKFLOW_RESUMED]
    assert resumed.data == {"generation": 1, "reason": "retry"}
    assert stack.client.dead_letters(run_id) == []  # the retry settled them
    assert stack.client.get_run(run_id).output == "in-ok-fixed-ok"


def test_retry_of_a_cancelled_run_clears_the_cancellation(stack: Stack,
                                                          behaviour: Behaviour) -> None:
    stack.client.register_workflow({"name": "retry-cancelled", "version": "1", "steps": [
        {"id": "a", "task": "echo"}, {"id": "g", "task": "gate", "depends_on": ["a"]}]})
    run_id = stack.client.start("retry-cancelled", "x")
    stack.until(lambda: steps_started(stack.history(run_id), "g"), "gate started")
    assert stack.dagnats("run", "cancel", run_id).stdout == f"Cancelled run {run_id}\n"
    stack.until(lambda: ("gate", run_id) in behaviour.cancel_seen, "the gate saw the cancel")
    kv = stack.run(stack.js.key_value(names.CANCEL_BUCKET))
    assert stack.run(kv.get(names.cancel_key(run_id))).value

    result = stack.dagnats("run", "retry", run_id, "--json")
    assert json.loads(result.stdout) == {"run_id": run_id}
    run = stack.client.wait(run_id, timeout=20)
    assert run.status is RunStatus.COMPLETED and run.steps["g"].output == "opened"
    assert stack.run(_missing(kv, names.cancel_key(run_id)))
    events = stack.history(run_id)
    assert len(steps_started(events, "a")) == 1
    assert [e.type for e in events if e.step_id == "g"][-1] is E.STEP_COMPLETED
    assert not [e for e in events if e.step_id == "g" and e.attempt == 1
                and e.type is E.STEP_COMPLETED]  # the cancelled attempt reported nothing


async def _missing(kv: Any, key: str) -> bool:
    try:
        await kv.get(key)
    except KeyNotFoundError:
        return True
    return False


def test_rerun_starts_the_same_definition_with_the_same_or_a_new_input(stack: Stack) -> None:
    stack.client.register_workflow({"name": "rerun-me", "version": "1", "steps": [
        {"id": "a", "task": "echo"}]})
    first = stack.client.start("rerun-me", "one")
    assert stack.client.wait(first, timeout=20).status is RunStatus.COMPLETED
    stack.client.register_workflow({"name": "rerun-me", "version": "2", "steps": [
        {"id": "a", "task": "echo"}, {"id": "b", "task": "echo", "depends_on": ["a"]}]})

    second = json.loads(stack.dagnats("run", "rerun", first, "--json").stdout)["run_id"]
    run = stack.client.wait(second, timeout=20)
    assert (run.version, run.input, list(run.steps), run.output) == ("1", "one", ["a"],
                                                                      "one-ok")
    started = stack.history(second)[0]
    assert started.data["rerun_of"] == first

    result = stack.dagnats("run", "rerun", first[:8], '"two"', "--watch")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    third = lines[0].split()[1]
    assert lines == [f"Run {third} started", "step.a: completed", f"Run {third} completed"]
    assert stack.client.get_run(third).output == "two-ok"
    plain = stack.dagnats("run", "rerun", first, "null").stdout.strip()
    assert stack.client.get_run(plain).input is None


def test_retry_refuses_runs_that_did_not_fail_in_one_line(stack: Stack) -> None:
    stack.client.register_workflow({"name": "not-failed", "version": "1", "steps": [
        {"id": "a", "task": "echo"}]})
    done = stack.client.start("not-failed", "x")
    assert stack.client.wait(done, timeout=20).status is RunStatus.COMPLETED
    before = stack.history(done)
    line = one_error_line(stack.dagnats("run", "retry", done), 1)
    assert line == (f"error: run {done} completed: nothing to retry; to run it again, "
                    f"`dagnats run rerun {done}`")
    assert stack.history(done) == before
    assert "no run with id" in one_error_line(
        stack.dagnats("run", "retry", "0123456789abcdef0123456789abcdef"), 2)
    assert "INPUT is not valid JSON" in one_error_line(
        stack.dagnats("run", "rerun", done, "{nope"), 2)


def test_cancel_of_a_finished_run_is_a_no_op(stack: Stack) -> None:
    stack.client.register_workflow({"name": "finished", "version": "1", "steps": [
        {"id": "a", "task": "echo"}]})
    done = stack.client.start("finished", "x")
    assert stack.client.wait(done, timeout=20).status is RunStatus.COMPLETED
    result = stack.dagnats("run", "cancel", done)
    assert (result.exit_code, result.stdout) == (
        0, f"Run {done} is already completed; nothing to cancel\n")
    assert "no run with id or prefix" in one_error_line(
        stack.dagnats("run", "cancel", "feedfacefeedface"), 2)
