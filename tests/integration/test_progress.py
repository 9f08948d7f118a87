"""Progress and streaming from handlers, end to end: `ctx.progress` shows in `run status`
while the step runs and in `run watch` as it comes; `ctx.stream` chunks reach
`client.stream` in order and `run watch --stream`; neither is written to history."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import nats.errors
import pytest

from dagnats import names, worker
from dagnats.dag.state import RunStatus
from dagnats.store import progress
from tests.integration.failures_harness import Stack, running_stack

pytestmark = pytest.mark.timeout(120)


class Gate:
    """Holds handlers until a test opens it (per run)."""

    def __init__(self) -> None:
        self.opened: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def of(self, run_id: str) -> threading.Event:
        with self._lock:
            return self.opened.setdefault(run_id, threading.Event())


@pytest.fixture(scope="module")
def gate() -> Gate:
    return Gate()


@pytest.fixture(scope="module")
def stack(nats_server: Any, gate: Gate) -> Iterator[Stack]:
    def add_tasks(w: worker.Worker) -> None:
        @w.task("train")
        def train(ctx: worker.TaskContext, epochs: int) -> str:
            for epoch in range(1, epochs + 1):
                ctx.progress(epoch / epochs, f"epoch {epoch}/{epochs}")
            gate.of(ctx.run_id).wait(30)
            return "trained"

        @w.task("talk")
        async def talk(ctx: worker.TaskContext, words: list[str]) -> str:
            await asyncio.to_thread(gate.of(ctx.run_id).wait, 30)
            ctx.progress(0.5, "half way")
            for word in words:
                ctx.stream(word)
            ctx.stream({"done": len(words)})
            return " ".join(words)

    yield from running_stack(nats_server.url, add_tasks)


def one_step(stack: Stack, task: str) -> str:
    name = f"{task}-{uuid.uuid4().hex[:8]}"
    stack.client.register_workflow({"name": name, "version": "1",
                                    "steps": [{"id": "s", "task": task}]})
    return name


def test_the_last_progress_shows_in_run_status_while_the_step_runs(stack: Stack,
                                                                   gate: Gate) -> None:
    run_id = stack.client.start(one_step(stack, "train"), 5)
    shown = stack.until(lambda: (lambda p: p if p and p["fraction"] == 1.0 else None)(
        stack.client.get_run(run_id).steps["s"].progress), "the last progress in status")
    assert shown["message"] == "epoch 5/5" and shown["attempt"] == 1
    text = stack.dagnats("run", "status", run_id).output
    assert "s: running 100% epoch 5/5" in text
    gate.of(run_id).set()
    run = stack.client.wait(run_id, timeout=30)
    assert run.status is RunStatus.COMPLETED and run.steps["s"].progress is None
    assert not any("progress" in json.dumps(e.data) for e in stack.history(run_id))


def test_stream_chunks_come_in_order_to_the_client(stack: Stack, gate: Gate) -> None:
    words = [f"w{n}" for n in range(50)]
    run_id = stack.client.start(one_step(stack, "talk"), words)
    stack.until(lambda: stack.client.get_run(run_id).steps["s"].status.in_flight, "queued")
    got: list[Any] = []

    def read() -> None:
        got.extend(stack.client.stream(run_id, "s"))

    reader = threading.Thread(target=read)
    reader.start()
    stack.until(lambda: stack.run(_subscribed(stack, run_id)), "the client subscribed")
    gate.of(run_id).set()
    reader.join(30)
    assert not reader.is_alive()
    assert got == [*words, {"done": 50}]
    assert stack.client.wait(run_id, timeout=30).status is RunStatus.COMPLETED
    assert list(stack.client.stream(run_id, "s")) == []  # over: nothing more comes


async def _subscribed(stack: Stack, run_id: str) -> bool:
    """True once someone listens on the step's chunk subject: a request there then meets
    a subscriber (it times out unanswered) instead of "no responders"."""
    try:
        await stack.js._nc.request(names.chunk_subject(run_id, "s"), b"", timeout=0.2)
    except nats.errors.NoRespondersError:
        return False
    except nats.errors.TimeoutError:
        return True
    return True


def test_run_watch_prints_progress_lines_and_the_stream(stack: Stack, gate: Gate) -> None:
    run_id = stack.client.start(one_step(stack, "talk"), ["Hel", "lo", " there"])
    stack.until(lambda: stack.client.get_run(run_id).steps["s"].status.in_flight, "queued")
    result: list[Any] = []
    watcher = threading.Thread(target=lambda: result.append(
        stack.dagnats("run", "watch", run_id, "--stream")))
    watcher.start()
    stack.until(lambda: stack.run(_subscribed(stack, run_id)), "the watcher subscribed")
    gate.of(run_id).set()
    watcher.join(30)
    assert not watcher.is_alive() and result[0].exit_code == 0, result
    lines = result[0].output.splitlines()
    assert "step.s: 50% half way" in lines
    assert "Hello there" in lines and '{"done":3}' in lines
    assert lines.index("Hello there") < lines.index('{"done":3}')
    assert lines[-1] == f"Run {run_id} completed"


def test_bad_progress_and_chunks_are_refused_in_the_handler() -> None:
    with pytest.raises(ValueError, match="from 0 to 1"):
        progress.checked_progress(1.5, None)
    with pytest.raises(ValueError, match="not a JSON value"):
        progress.encode_chunk(float("nan"), 1, 1)
    with pytest.raises(ValueError, match="the limit is"):
        progress.encode_chunk("x" * 70_000, 1, 1)
