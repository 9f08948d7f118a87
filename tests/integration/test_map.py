"""The map step kind end to end: a real nats-server with the API, an engine and a worker;
runs started and followed through the client and the CLI as a user would."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from dagnats import worker
from dagnats._client_models import Run
from dagnats.dag.state import RunStatus, StepStatus, fold
from tests.integration.failures_harness import Stack, running_stack

pytestmark = pytest.mark.timeout(120)


class Flakes:
    """Which items fail, how often, and every call each item got."""

    def __init__(self) -> None:
        self.fail_times: dict[Any, int] = {}
        self.for_good: set[Any] = set()
        self.calls: Counter[tuple[str, Any]] = Counter()
        self._lock = threading.Lock()

    def call(self, run_id: str, item: Any) -> int:
        with self._lock:
            self.calls[(run_id, item)] += 1
            return self.calls[(run_id, item)]


@pytest.fixture(scope="module")
def flakes() -> Flakes:
    return Flakes()


@pytest.fixture(scope="module")
def stack(nats_server: Any, flakes: Flakes) -> Iterator[Stack]:
    def add_tasks(w: worker.Worker) -> None:
        @w.task("listing")
        def listing(ctx: worker.TaskContext, count: int) -> list[int]:
            return list(range(count))

        @w.task("square")
        def square(ctx: worker.TaskContext, item: Any) -> Any:
            if isinstance(item, dict):
                return {"size": len(json.dumps(item))}
            made = flakes.call(ctx.run_id, item)
            if item in flakes.for_good:
                raise worker.NonRetryableError(f"item {item} is bad")
            if made <= flakes.fail_times.get(item, 0):
                raise ConnectionError(f"item {item}: flaky")
            return item * item

        @w.task("blobs")
        def make_blobs(ctx: worker.TaskContext, count: int) -> list[dict[str, Any]]:
            return blobs(count)

        @w.task("total")
        def total(ctx: worker.TaskContext, values: list[int]) -> int:
            return sum(values)

    yield from running_stack(nats_server.url, add_tasks)


def register(stack: Stack, config: dict[str, Any] | None = None, **each: Any) -> str:
    name = f"map-{uuid.uuid4().hex[:8]}"
    stack.client.register_workflow({"name": name, "version": "1", "steps": [
        {"id": "list", "task": "listing"},
        {"id": "each", "type": "map", "task": "square", "depends_on": ["list"],
         "config": config or {}, **each},
        {"id": "sum", "task": "total", "depends_on": ["each"]}]})
    return name


def test_a_flaky_item_is_retried_alone_and_outputs_keep_input_order(stack: Stack,
                                                                    flakes: Flakes) -> None:
    flakes.fail_times[3] = 2
    name = register(stack, {"concurrency": 4},
                    retry={"max_attempts": 3, "strategy": "fixed", "initial_delay": "10ms"})
    run_id = stack.client.start(name, 10)
    run = stack.client.wait(run_id, timeout=30)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.steps["each"].output == [i * i for i in range(10)]
    assert run.output == sum(i * i for i in range(10))
    assert flakes.calls[(run_id, 3)] == 3
    assert all(flakes.calls[(run_id, i)] == 1 for i in range(10) if i != 3)
    shown = stack.dagnats("run", "status", run_id, "--json")
    instances = json.loads(shown.output)["steps"]["each"]["instances"]
    assert instances["total"] == 10 and instances["counts"]["completed"] == 10
    assert instances["attempts"][3] == 3
    text = stack.dagnats("run", "status", run_id).output
    assert "each: completed [0,1,4,9,16,25,36,49,64,81]" in text
    events = stack.history(run_id)
    assert [e.attempt for e in events if e.step_id == "each[3]"
            and e.type.value == "step.queued"] == [1, 2, 3]
    folded = fold(events)  # run status starts from the snapshot: the same as all history
    assert folded is not None
    assert stack.client.get_run(run_id) == Run.model_validate(folded.public())
    assert len(stack.client.events(run_id)) == len(events)


def test_an_empty_array_completes_at_once(stack: Stack) -> None:
    run = stack.client.wait(stack.client.start(register(stack), 0), timeout=20)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["each"].output == [] and run.output == 0


def test_an_item_that_fails_for_good_fails_the_step_naming_it(stack: Stack,
                                                              flakes: Flakes) -> None:
    flakes.for_good.add(2)
    flakes.fail_times.clear()
    run = stack.client.wait(stack.client.start(register(stack), 4), timeout=20)
    assert run.status is RunStatus.FAILED
    assert run.steps["each"].status is StepStatus.FAILED
    assert "step 'each' failed (not retryable): item 2 failed (not retried)" in (
        run.error or "")
    assert "item 2 is bad" in (run.error or "")
    listed = register(stack, {"fail_fast": False, "concurrency": 1})
    run = stack.client.wait(stack.client.start(listed, 4), timeout=20)
    assert run.status is RunStatus.FAILED
    assert "item 2 failed" in (run.error or "")
    assert run.steps["each"].status is StepStatus.FAILED
    flakes.for_good.discard(2)


def test_run_retry_runs_only_the_items_that_failed(stack: Stack, flakes: Flakes) -> None:
    flakes.for_good.add(1)
    run_id = stack.client.start(register(stack, {"fail_fast": False}), 3)
    assert stack.client.wait(run_id, timeout=20).status is RunStatus.FAILED
    flakes.for_good.discard(1)
    result = stack.dagnats("run", "retry", run_id)
    assert result.exit_code == 0, result.output
    run = stack.client.wait(run_id, timeout=20)
    assert run.status is RunStatus.COMPLETED and run.output == 0 + 1 + 4
    assert [flakes.calls[(run_id, i)] for i in range(3)] == [1, 2, 1]


def test_too_many_items_or_not_an_array_fails_in_one_line(stack: Stack) -> None:
    run = stack.client.wait(stack.client.start(register(stack, {"max_items": 3}), 5),
                            timeout=20)
    assert run.status is RunStatus.FAILED
    assert "the output of 'list' has 5 items; max_items is 3" in (run.error or "")


def test_large_elements_and_a_large_output_go_out_of_line(stack: Stack) -> None:
    name = f"map-big-{uuid.uuid4().hex[:8]}"
    stack.client.register_workflow({"name": name, "version": "1", "steps": [
        {"id": "list", "task": "blobs"},
        {"id": "each", "type": "map", "task": "square", "depends_on": ["list"]}]})
    run = stack.client.wait(stack.client.start(name, 3), timeout=30)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == [{"size": len(json.dumps(item))} for item in blobs(3)]
    queued = [e for e in stack.history(run.run_id)
              if e.type.value == "step.queued" and (e.step_id or "").startswith("each[")]
    assert len(queued) == 3 and all(e.data.get("input_refs") for e in queued)
    long = f"map-long-{uuid.uuid4().hex[:8]}"
    stack.client.register_workflow({"name": long, "version": "1", "steps": [
        {"id": "list", "task": "listing"},
        {"id": "each", "type": "map", "task": "square", "depends_on": ["list"],
         "config": {"max_items": 2000}}]})
    run = stack.client.wait(stack.client.start(long, 2000), timeout=60)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == [i * i for i in range(2000)]
    done = [e for e in stack.history(run.run_id)
            if e.type.value == "step.completed" and e.step_id == "each"]
    assert len(done) == 1 and done[0].data.get("output_refs")  # over 4 KiB: out of line


def blobs(count: int) -> list[dict[str, Any]]:
    """Items of 6 KB each: every one goes out of line when its instance is dispatched."""
    return [{"blob": "x" * 6000, "n": i} for i in range(count)]
