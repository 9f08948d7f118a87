"""The planner step kind end to end: a real nats-server with the API, an engine and a
worker. A plan's steps are added, run and shown like any others; an invalid plan fails the
planner in one line."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dagnats import worker
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus
from tests.integration.failures_harness import Stack, running_stack

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stack(nats_server: Any) -> Iterator[Stack]:
    def add_tasks(w: worker.Worker) -> None:
        @w.task("make_plan")
        def make_plan(ctx: worker.TaskContext, topic: dict[str, Any]) -> Any:
            if topic.get("bad"):
                return [{"id": "x", "task": "forbidden"}]
            fetches = [{"id": f"fetch-{s}", "task": "fetch"} for s in topic["sources"]]
            return [*fetches, {"id": "sum", "task": "summarize",
                               "depends_on": [f["id"] for f in fetches]}]

        @w.task("fetch")
        def fetch(ctx: worker.TaskContext, topic: dict[str, Any]) -> str:
            return f"{ctx.step_id}:{topic['name']}"

        @w.task("summarize")
        def summarize(ctx: worker.TaskContext, found: dict[str, str]) -> str:
            return " | ".join(found[key] for key in sorted(found))

    yield from running_stack(nats_server.url, add_tasks)


def register(stack: Stack) -> str:
    name = f"plan-{uuid.uuid4().hex[:8]}"
    stack.client.register_workflow({"name": name, "version": "1", "steps": [
        {"id": "plan", "type": "planner", "task": "make_plan",
         "config": {"max_steps": 5, "allowed_tasks": ["fetch", "summarize"]}},
        {"id": "report", "task": "echo", "depends_on": ["plan"]}]})
    return name


def test_a_plans_steps_run_and_show_like_any_others(stack: Stack) -> None:
    run_id = stack.client.start(register(stack), {"name": "tides", "sources": ["web", "lib"]})
    run = stack.client.wait(run_id, timeout=30)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.steps["plan"].output == "plan.fetch-lib:tides | plan.fetch-web:tides"
    assert run.output == "plan.fetch-lib:tides | plan.fetch-web:tides-ok"
    assert set(run.steps) == {"plan", "plan.fetch-web", "plan.fetch-lib", "plan.sum",
                              "report"}
    text = stack.dagnats("run", "status", run_id).output
    assert 'plan.sum: completed "plan.fetch-lib:tides | plan.fetch-web:tides"' in text
    kinds = [e.type for e in stack.history(run_id) if e.step_id == "plan"]
    assert kinds[:3] == [EventType.STEP_QUEUED, EventType.STEP_PLANNED, EventType.STEP_EXPANDED]
    assert "step.expanded" in stack.dagnats("run", "events", run_id).output


def test_an_invalid_plan_fails_the_planner_in_one_line(stack: Stack) -> None:
    run = stack.client.wait(stack.client.start(register(stack), {"bad": True}), timeout=30)
    assert run.status is RunStatus.FAILED
    assert run.error == ("step 'plan' failed (not retryable): step 'plan': invalid plan: step "
                         "'x' runs task 'forbidden', which is not in allowed_tasks (fetch, "
                         "summarize)")


def test_a_plan_too_large_fails_the_planner_not_retried(stack: Stack) -> None:
    many = [f"source-{n}-{'x' * 300}" for n in range(1000)]
    run = stack.client.wait(stack.client.start(register(stack), {"sources": many}), timeout=30)
    assert run.status is RunStatus.FAILED
    assert "a plan is at most 262,144" in (run.error or "")
