"""The sub_workflow step kind end to end: a real nats-server with the API, an engine and a
worker. A child's output is its step's; a failed child is retried as a fresh child; a
cancel cascades to a grandchild; nesting is capped; detach; and `run tree`."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dagnats import worker
from dagnats.dag.state import RunStatus, StepStatus
from tests.integration.failures_harness import Stack, running_stack

pytestmark = pytest.mark.timeout(120)


class Box:
    """Flaky children and a gate that holds handlers until a test opens it."""

    def __init__(self) -> None:
        self.fail_left: dict[str, int] = {}
        self.gate = threading.Event()
        self._lock = threading.Lock()

    def should_fail(self, key: str) -> bool:
        with self._lock:
            left = self.fail_left.get(key, 0)
            self.fail_left[key] = left - 1
            return left > 0


@pytest.fixture(scope="module")
def box() -> Box:
    return Box()


@pytest.fixture(scope="module")
def stack(nats_server: Any, box: Box) -> Iterator[Stack]:
    def add_tasks(w: worker.Worker) -> None:
        @w.task("label")
        def label(ctx: worker.TaskContext, order: dict[str, Any]) -> str:
            if box.should_fail(str(order.get("key"))):
                raise ConnectionError("the label printer is offline")
            return f"label for {order['id']}"

        @w.task("hold")
        def hold(ctx: worker.TaskContext, value: Any) -> Any:
            box.gate.wait(30)
            return value

    yield from running_stack(nats_server.url, add_tasks)


def register(stack: Stack, name: str, steps: list[dict[str, Any]]) -> str:
    stack.client.register_workflow({"name": name, "version": "1", "steps": steps})
    return name


def test_the_childs_output_is_the_steps_and_a_failed_child_is_retried_fresh(
        stack: Stack, box: Box) -> None:
    child = register(stack, f"shipping-{uuid.uuid4().hex[:6]}", [{"id": "l", "task": "label"}])
    parent = register(stack, f"order-{uuid.uuid4().hex[:6]}", [
        {"id": "ship", "type": "sub_workflow", "config": {"workflow": child},
         "retry": {"max_attempts": 2, "strategy": "fixed", "initial_delay": "10ms"}},
        {"id": "done", "task": "echo", "depends_on": ["ship"]}])
    key = uuid.uuid4().hex
    box.fail_left[key] = 1  # the first child fails, the second completes
    run = stack.client.wait(stack.client.start(parent, {"id": 7, "key": key}), timeout=30)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.steps["ship"].output == "label for 7"
    assert run.steps["ship"].attempts == 2
    tree = stack.client.tree(run.run_id)
    assert tree["run_id"] == run.run_id and tree["status"] == "completed"
    kids = tree["children"]
    assert [(k["step_id"], k["workflow"], k["status"]) for k in kids] == [
        ("ship", child, "failed"), ("ship", child, "completed")]
    first = stack.client.get_run(kids[0]["run_id"])
    assert "the label printer is offline" in (first.error or "")
    shown = stack.dagnats("run", "status", run.run_id, "--json").output
    assert kids[1]["run_id"] in shown
    text = stack.dagnats("run", "tree", kids[1]["run_id"][:8]).output.splitlines()
    assert text[0] == f"{run.run_id} {parent} completed"
    assert text[2] == f"  - ship: {kids[1]['run_id']} {child} completed"


def test_cancelling_the_parent_cancels_the_grandchild(stack: Stack, box: Box) -> None:
    box.gate.clear()
    grandchild = register(stack, f"gc-{uuid.uuid4().hex[:6]}", [{"id": "h", "task": "hold"}])
    child = register(stack, f"c-{uuid.uuid4().hex[:6]}", [
        {"id": "inner", "type": "sub_workflow", "config": {"workflow": grandchild}}])
    parent = register(stack, f"p-{uuid.uuid4().hex[:6]}", [
        {"id": "outer", "type": "sub_workflow", "config": {"workflow": child}}])
    run_id = stack.client.start(parent, 1)

    def deepest() -> dict[str, Any] | None:
        tree = stack.client.tree(run_id)
        kids = tree["children"]
        grand = kids[0]["children"] if kids else []
        return grand[0] if grand and grand[0]["status"] == "running" else None

    leaf = stack.until(deepest, "the grandchild running")
    waiting = stack.dagnats("run", "status", run_id).output
    assert "outer: waiting for child run " in waiting
    assert stack.dagnats("run", "cancel", run_id).exit_code == 0
    stack.until(lambda: stack.client.get_run(leaf["run_id"]).status is RunStatus.CANCELLED,
                "the grandchild cancelled")
    tree = stack.client.tree(run_id)
    assert tree["status"] == "cancelled"
    assert tree["children"][0]["status"] == "cancelled"
    box.gate.set()


def test_nesting_deeper_than_five_fails_naming_the_chain(stack: Stack) -> None:
    name = f"loop-{uuid.uuid4().hex[:6]}"
    register(stack, name, [{"id": "again", "type": "sub_workflow",
                            "config": {"workflow": name}}])
    run = stack.client.wait(stack.client.start(name, 1), timeout=30)
    assert run.status is RunStatus.FAILED
    assert "would nest runs 6 deep; at most 5" in (run.error or "")
    depth, node = 1, stack.client.tree(run.run_id)
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    assert depth == 5


def test_a_detached_child_completes_the_step_at_once(stack: Stack, box: Box) -> None:
    box.gate.clear()
    child = register(stack, f"bg-{uuid.uuid4().hex[:6]}", [{"id": "h", "task": "hold"}])
    parent = register(stack, f"fire-{uuid.uuid4().hex[:6]}", [
        {"id": "spawn", "type": "sub_workflow",
         "config": {"workflow": child, "detach": True}}])
    run = stack.client.wait(stack.client.start(parent, 1), timeout=30)
    assert run.status is RunStatus.COMPLETED
    child_id = run.output["run_id"]
    assert stack.client.get_run(child_id).status is RunStatus.RUNNING
    box.gate.set()
    assert stack.client.wait(child_id, timeout=30).status is RunStatus.COMPLETED


def test_an_unregistered_child_workflow_fails_the_step_not_retried(stack: Stack) -> None:
    parent = register(stack, f"orphan-{uuid.uuid4().hex[:6]}", [
        {"id": "ship", "type": "sub_workflow", "config": {"workflow": "no-such-workflow"},
         "retry": {"max_attempts": 3}}])
    run = stack.client.wait(stack.client.start(parent, 1), timeout=30)
    assert run.status is RunStatus.FAILED
    assert run.steps["ship"].status is StepStatus.FAILED and run.steps["ship"].attempts == 1
    assert "could not start its child run" in (run.error or "")
