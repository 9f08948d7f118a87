"""`dagnats run cancel` against a real engine and worker: the run ends cancelled, its running
handlers are told (and async ones cancelled after the grace period), nothing they return is
reported, and nothing new is dispatched."""

from __future__ import annotations

import json

import pytest

from dagnats import names
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus
from tests.integration.failures_harness import Behaviour, Stack

pytestmark = pytest.mark.timeout(90)
E = EventType


def test_cancel_stops_a_run_and_tells_its_handlers(stack: Stack, behaviour: Behaviour) -> None:
    stack.client.register_workflow({"name": "cancel-me", "version": "1", "steps": [
        {"id": "g", "task": "gate"}, {"id": "s", "task": "stubborn"},
        {"id": "p", "task": "polls"},
        {"id": "after", "task": "echo", "depends_on": ["g", "s", "p"]}]})
    run_id = stack.client.start("cancel-me", "x")
    stack.until_event(run_id, E.STEP_STARTED, count=3)

    result = stack.dagnats("run", "cancel", run_id, "--json")
    assert json.loads(result.stdout) == {"run_id": run_id, "status": "cancelled",
                                         "changed": True}
    stack.until(lambda: {t for t, r in behaviour.cancel_seen if r == run_id} == {
        "gate", "stubborn", "polls"}, "every handler noticed the cancellation")
    for task in ("gate", "stubborn", "polls"):
        stack.until(lambda task=task: _drained(stack, task), f"{task} acked")

    events = stack.history(run_id)
    assert [e.type for e in events if e.type not in (E.STEP_QUEUED, E.STEP_STARTED)] == [
        E.WORKFLOW_STARTED, E.WORKFLOW_CANCELLED]
    run = stack.client.get_run(run_id)
    assert run.status is RunStatus.CANCELLED
    assert {sid: s.status.value for sid, s in run.steps.items()} == {
        "g": "cancelled", "s": "cancelled", "p": "cancelled", "after": "pending"}
    kv = stack.run(stack.js.key_value(names.CANCEL_BUCKET))
    assert json.loads(stack.run(kv.get(names.cancel_key(run_id))).value)["cancelled_at"]
    status = stack.dagnats("run", "status", run_id).stdout.splitlines()
    assert status[1] == "Status: cancelled" and "g: cancelled" in status


def _drained(stack: Stack, task: str) -> bool:
    info = stack.run(stack.js.consumer_info(names.HISTORY_STREAM, names.task_consumer(task)))
    return info.num_pending == 0 and info.num_ack_pending == 0
