"""The agent_loop step kind end to end: a real nats-server with the API, an engine and a
worker; the state passes from iteration to iteration, a failed iteration is retried from
the last state, and the limits fail the step in one line."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dagnats import worker
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus
from tests.integration.failures_harness import Stack, running_stack

pytestmark = pytest.mark.timeout(120)

FAIL_ONCE_AT = 3  # the iteration whose first attempt fails (retried from iteration 2's state)


class Calls:
    """Every (run, iteration, attempt, input) the handler was called with."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, int, Any]] = []
        self._lock = threading.Lock()

    def add(self, ctx: worker.TaskContext, state: Any) -> None:
        with self._lock:
            self.seen.append((ctx.run_id, ctx.iteration, ctx.attempt, state))

    def of(self, run_id: str) -> list[tuple[int | None, int, Any]]:
        with self._lock:
            return [(i, a, s) for run, i, a, s in self.seen if run == run_id]


@pytest.fixture(scope="module")
def calls() -> Calls:
    return Calls()


@pytest.fixture(scope="module")
def stack(nats_server: Any, calls: Calls) -> Iterator[Stack]:
    def add_tasks(w: worker.Worker) -> None:
        @w.task("think")
        async def think(ctx: worker.TaskContext, state: dict[str, Any]) -> Any:
            calls.add(ctx, state)
            if state.get("flaky") and ctx.iteration == FAIL_ONCE_AT and ctx.attempt == 1:
                raise ConnectionError("the model timed out")
            notes = [*state.get("notes", []), f"n{ctx.iteration}"]
            if len(notes) < state["until"]:
                return worker.Continue({**state, "notes": notes})
            return {"answer": "+".join(notes)}

        @w.task("plain")
        def plain(ctx: worker.TaskContext, value: Any) -> Any:
            return worker.Continue(value)

    yield from running_stack(nats_server.url, add_tasks)


def register(stack: Stack, config: dict[str, Any], **step: Any) -> str:
    name = f"loop-{uuid.uuid4().hex[:8]}"
    stack.client.register_workflow({"name": name, "version": "1", "steps": [
        {"id": "agent", "type": "agent_loop", "task": "think", "config": config, **step}]})
    return name


def test_the_state_passes_from_iteration_to_iteration(stack: Stack, calls: Calls) -> None:
    run_id = stack.client.start(register(stack, {"max_iterations": 10}), {"until": 4})
    run = stack.client.wait(run_id, timeout=30)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == {"answer": "n1+n2+n3+n4"}
    seen = calls.of(run_id)
    assert [(i, a) for i, a, _ in seen] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert seen[2][2] == {"until": 4, "notes": ["n1", "n2"]}
    iterated = [e for e in stack.history(run_id) if e.type is EventType.STEP_ITERATED]
    assert [e.data["iteration"] for e in iterated] == [1, 2, 3]
    assert iterated[1].data["output"] == {"until": 4, "notes": ["n1", "n2"]}
    assert run.steps["agent"].iteration == 3
    watch = stack.dagnats("run", "events", run_id)
    assert "step.iterated" in watch.output


def test_a_failed_iteration_is_retried_from_the_last_state(stack: Stack, calls: Calls) -> None:
    name = register(stack, {}, retry={"max_attempts": 1, "strategy": "fixed",
                                      "initial_delay": "10ms"})
    run = stack.client.wait(stack.client.start(name, {"until": 4, "flaky": True}), timeout=30)
    assert run.status is RunStatus.COMPLETED, run.error
    seen = calls.of(run.run_id)
    assert [(i, a) for i, a, _ in seen] == [(1, 1), (2, 1), (3, 1), (3, 2), (4, 1)]
    assert seen[2][2] == seen[3][2]  # the retry got iteration 2's state, as the first try
    assert run.output == {"answer": "n1+n2+n3+n4"}


def test_max_iterations_fails_the_step_in_one_line(stack: Stack) -> None:
    run_id = stack.client.start(register(stack, {"max_iterations": 2}), {"until": 9})
    run = stack.client.wait(run_id, timeout=30)
    assert run.status is RunStatus.FAILED
    assert run.error == ("step 'agent' failed (not retryable): step 'agent' reached "
                         "max_iterations (2) without finishing")
    shown = stack.dagnats("run", "status", run_id)
    assert "agent: failed after 2 attempts: step 'agent' reached max_iterations" in shown.output


def test_continue_from_a_plain_task_fails_it(stack: Stack) -> None:
    name = f"plain-{uuid.uuid4().hex[:8]}"
    stack.client.register_workflow({"name": name, "version": "1",
                                    "steps": [{"id": "p", "task": "plain"}]})
    run = stack.client.wait(stack.client.start(name, 1), timeout=30)
    assert run.status is RunStatus.FAILED
    assert "returned worker.Continue, but step 'p' is not an agent_loop step" in (run.error or "")
