"""The kinds of step that wait, end to end: sleep, wait_for_event, approval and skip_if.

A real nats-server with the API, an engine and a worker (the failures stack); runs are
started and decided through the client and the CLI as a user would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus, StepStatus
from dagnats.engine.engine import Engine
from dagnats.store.snapshots import Snapshots
from tests.integration.failures_harness import Stack, one_error_line

pytestmark = pytest.mark.timeout(120)


def register(stack: Stack, steps: list[dict[str, Any]], **extra: Any) -> str:
    name = f"kinds-{uuid.uuid4().hex[:8]}"
    stack.client.register_workflow({"name": name, "version": "1", "steps": steps, **extra})
    return name


def waiting(stack: Stack, run_id: str, step_id: str) -> dict[str, Any]:
    """The step's waiting_for once it waits."""
    return stack.until(lambda: stack.client.get_run(run_id).steps[step_id].waiting_for,
                       f"step {step_id} of {run_id} waiting")


def test_a_sleep_completes_after_its_time_with_slept_until(stack: Stack) -> None:
    name = register(stack, [{"id": "nap", "type": "sleep", "config": {"duration": "1s"}},
                           {"id": "after", "task": "echo", "depends_on": ["nap"]}])
    run_id = stack.client.start(name, "x")
    assert waiting(stack, run_id, "nap")["kind"] == "time"
    shown = stack.dagnats("run", "status", run_id)
    assert "nap: waiting until 20" in shown.output
    run = stack.client.wait(run_id, timeout=20)
    assert run.status is RunStatus.COMPLETED
    slept_until = datetime.fromisoformat(run.steps["nap"].output["slept_until"])
    assert run.steps["nap"].completed_at is not None
    assert run.steps["nap"].completed_at >= slept_until
    assert run.steps["after"].output == f"{run.steps['nap'].output}-ok"
    kinds = [e.type for e in stack.history(run_id) if e.step_id == "nap"]
    assert kinds == [EventType.STEP_WAITING, EventType.TIMER_FIRED, EventType.STEP_COMPLETED]


def test_sleep_until_a_time_in_the_input(stack: Stack) -> None:
    name = register(stack, [{"id": "nap", "type": "sleep",
                             "config": {"until_input_path": "input.remind_at"}}])
    at = (datetime.now(UTC) + timedelta(milliseconds=500)).isoformat()
    run = stack.client.wait(stack.client.start(name, {"remind_at": at}), timeout=20)
    assert run.status is RunStatus.COMPLETED
    assert datetime.fromisoformat(run.output["slept_until"]) == datetime.fromisoformat(at)
    bad = stack.client.wait(stack.client.start(name, {"remind_at": "soon"}), timeout=20)
    assert bad.status is RunStatus.FAILED and "not an RFC 3339 time" in (bad.error or "")


ORDER_WAIT = {"id": "pay", "type": "wait_for_event", "config": {
    "event": "payment.received", "timeout": "1m",
    "match": {"left": "order_id", "op": "eq", "right": "input.order_id"}}}


def test_an_event_published_before_the_wait_starts_still_completes_it(stack: Stack) -> None:
    name = register(stack, [{"id": "first", "task": "echo"},
                            {**ORDER_WAIT, "depends_on": ["first"]}])
    order = uuid.uuid4().hex
    stack.client.publish_event("payment.received", {"order_id": order, "amount": 5})
    run = stack.client.wait(stack.client.start(name, {"order_id": order}), timeout=20)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["pay"].output == {"order_id": order, "amount": 5}


def test_one_event_completes_the_matching_waiters_of_many_runs_once(stack: Stack) -> None:
    name = register(stack, [ORDER_WAIT])
    order, other = uuid.uuid4().hex, uuid.uuid4().hex
    matching = [stack.client.start(name, {"order_id": order}) for _ in range(2)]
    unrelated = stack.client.start(name, {"order_id": other})
    for run_id in (*matching, unrelated):
        assert waiting(stack, run_id, "pay")["match"]["value"] in (order, other)
    result = stack.dagnats("event", "publish", "payment.received", f'{{"order_id": "{order}"}}')
    assert result.exit_code == 0 and "Published event payment.received" in result.output
    for run_id in matching:
        assert stack.client.wait(run_id, timeout=20).status is RunStatus.COMPLETED
    assert stack.client.get_run(unrelated).steps["pay"].status is StepStatus.WAITING
    stack.client.publish_event("payment.received", {"order_id": order})  # a second one
    stack.client.publish_event("payment.received", {"order_id": other})
    assert stack.client.wait(unrelated, timeout=20).status is RunStatus.COMPLETED
    for run_id in matching:
        done = [e for e in stack.history(run_id) if e.type is EventType.STEP_COMPLETED]
        assert len(done) == 1


def test_two_engines_and_one_event_complete_a_waiter_once(stack: Stack) -> None:
    async def second_engine() -> tuple[asyncio.Event, asyncio.Task[None]]:
        stop = asyncio.Event()
        engine = Engine(stack.js, await Snapshots.open(stack.js))
        return stop, asyncio.create_task(engine.run(stop))

    stop, task = stack.run(second_engine())
    try:
        name = register(stack, [ORDER_WAIT])
        orders = [uuid.uuid4().hex for _ in range(10)]
        runs = [stack.client.start(name, {"order_id": order}) for order in orders]
        for run_id in runs:
            waiting(stack, run_id, "pay")
        for order in orders:
            stack.client.publish_event("payment.received", {"order_id": order})
        for run_id in runs:
            assert stack.client.wait(run_id, timeout=20).status is RunStatus.COMPLETED
            events = stack.history(run_id)
            assert sum(e.type is EventType.STEP_COMPLETED for e in events) == 1
            assert sum(e.type is EventType.WORKFLOW_COMPLETED for e in events) == 1
    finally:
        async def stopped() -> None:
            stop.set()
            await asyncio.wait_for(task, 20)
        stack.run(stopped())


@pytest.mark.parametrize(("on_timeout", "status"), [("continue", RunStatus.COMPLETED),
                                                     ("fail", RunStatus.FAILED)])
def test_a_wait_that_times_out(stack: Stack, on_timeout: str, status: RunStatus) -> None:
    name = register(stack, [{"id": "pay", "type": "wait_for_event", "config": {
        "event": "never.sent", "timeout": "500ms", "on_timeout": on_timeout}}])
    run = stack.client.wait(stack.client.start(name, None), timeout=20)
    assert run.status is status
    if status is RunStatus.COMPLETED:
        assert run.output == {"timeout": True}
    else:
        assert run.error and "no never.sent event came within 500ms" in run.error


APPROVAL = {"id": "review", "type": "approval",
            "config": {"description": "Ship order {{input.order_id}}?", "approvers": ["ops"]}}


def test_an_approval_is_decided_once(stack: Stack) -> None:
    name = register(stack, [APPROVAL, {"id": "ship", "task": "echo", "depends_on": ["review"]}])
    run_id = stack.client.start(name, {"order_id": 42})
    assert waiting(stack, run_id, "review")["description"] == "Ship order 42?"
    assert "review: waiting for approval" in stack.dagnats("run", "status", run_id).output
    approved = stack.dagnats("run", "approve", run_id, "review", "--by", "ana",
                             "--comment", "looks right")
    assert approved.exit_code == 0, approved.output
    assert f"Approved step review of run {run_id} by ana" in approved.output
    again = one_error_line(stack.dagnats("run", "reject", run_id, "review", "--by", "bo"), 2)
    assert "was already approved by ana at 20" in again
    run = stack.client.wait(run_id, timeout=20)
    assert run.status is RunStatus.COMPLETED
    decision = run.steps["review"].output
    assert (decision["approved"], decision["by"], decision["comment"]) == (
        True, "ana", "looks right")


def test_a_rejection_fails_the_step_and_on_failure_applies(stack: Stack) -> None:
    name = register(stack, [{**APPROVAL, "on_failure": "fallback"},
                            {"id": "fallback", "task": "echo"}])
    run_id = stack.client.start(name, {"order_id": 7})
    waiting(stack, run_id, "review")
    decision = stack.client.reject(run_id, "review", by="bo", comment="too big")
    assert decision.approved is False
    run = stack.client.wait(run_id, timeout=20)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["review"].status is StepStatus.RECOVERED
    assert run.steps["review"].error == "rejected by bo: too big"


def test_concurrent_decisions_store_one(stack: Stack) -> None:
    name = register(stack, [APPROVAL])
    run_id = stack.client.start(name, {"order_id": 1})
    waiting(stack, run_id, "review")

    async def both() -> list[Any]:
        from dagnats.client import AsyncClient
        async with await AsyncClient.connect(stack.url) as client:
            return await asyncio.gather(
                *(client.approve(run_id, "review", by=f"p{i}") for i in range(5)),
                return_exceptions=True)

    outcomes = asyncio.run(both())
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all("already approved by" in str(o) for o in outcomes if isinstance(o, Exception))
    assert stack.client.wait(run_id, timeout=20).status is RunStatus.COMPLETED


def test_skip_if_skips_and_dependents_get_null(stack: Stack) -> None:
    name = register(stack, [
        {"id": "check", "task": "echo"},
        {"id": "maybe", "task": "echo", "depends_on": ["check"],
         "skip_if": {"step_id": "check", "op": "==", "value": "skip-ok"}},
        {"id": "after", "task": "echo", "depends_on": ["maybe"]}])
    skipped = stack.client.wait(stack.client.start(name, "skip"), timeout=20)
    assert skipped.status is RunStatus.COMPLETED
    assert skipped.steps["maybe"].status is StepStatus.SKIPPED
    assert skipped.steps["after"].output == "None-ok"
    status = stack.dagnats("run", "status", skipped.run_id).output
    assert 'maybe: skipped (skip_if check == "skip-ok")' in status
    ran = stack.client.wait(stack.client.start(name, "go"), timeout=20)
    assert ran.steps["maybe"].output == "go-ok-ok"


def test_an_approval_request_goes_out_for_notifiers(stack: Stack) -> None:
    from dagnats import names

    name = register(stack, [APPROVAL])
    got: list[dict[str, Any]] = []

    async def listen() -> Any:
        async def on_request(msg: Any) -> None:
            got.append(json.loads(msg.data))
        return await stack.js._nc.subscribe(names.approval_subject(name), cb=on_request)

    sub = stack.run(listen())
    try:
        run_id = stack.client.start(name, {"order_id": 9})
        [request] = stack.until(lambda: got, "the approval request")
    finally:
        stack.run(sub.unsubscribe())
    assert (request["run_id"], request["workflow"], request["step_id"]) == (run_id, name,
                                                                            "review")
    assert request["description"] == "Ship order 9?" and request["approvers"] == ["ops"]
    assert request["approve"] == f"dagnats run approve {run_id} review"
    stack.client.approve(run_id, "review")
    assert stack.client.wait(run_id, timeout=20).status is RunStatus.COMPLETED
