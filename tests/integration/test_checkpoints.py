"""Checkpoints against a real nats-server: kept across retries and across a killed worker.

The retry tests run the whole stack (API, engine, worker) so the second attempt is the
engine's own retry. The kill test runs the worker as a real process, kills it with SIGKILL
after its checkpoints, and lets a restarted worker take the redelivered task.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagnats import jetstream, limits, names, worker
from dagnats.connection import connect
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus
from dagnats.dag.tasks import TaskMessage
from dagnats.store import checkpoints, history
from tests.integration.failures_harness import Stack
from tests.integration.tasks import publish_task

pytestmark = pytest.mark.timeout(60)
DEADLINE_S = 15.0
RETRY_ONCE = {"max_attempts": 1, "strategy": "fixed", "initial_delay": "10ms"}


def checkpointing_worker(url: str) -> worker.Worker:
    """Handlers that checkpoint, fail their first attempt, and report what they loaded."""
    w = worker.Worker(url, name="checkpoint-worker", lease=5)

    @w.task("ckpt_sync")
    def ckpt_sync(ctx: worker.TaskContext, value: Any) -> dict[str, Any]:
        loaded = ctx.load_checkpoint()
        if ctx.attempt == 1:
            ctx.checkpoint({"done": 3, "by": ctx.attempt})
            raise ConnectionError("lost the upstream after item 3")
        return {"loaded": loaded}

    @w.task("ckpt_async")
    async def ckpt_async(ctx: worker.TaskContext, value: Any) -> dict[str, Any]:
        loaded = await ctx.aload_checkpoint()
        if ctx.attempt == 1:
            await ctx.acheckpoint({"done": 1})
            await ctx.acheckpoint({"done": 7, "by": ctx.attempt})  # the last one counts
            raise ConnectionError("lost the upstream after item 7")
        return {"loaded": loaded}

    @w.task("ckpt_big")
    def ckpt_big(ctx: worker.TaskContext, value: Any) -> str:
        ctx.checkpoint("x" * limits.CHECKPOINT_MAX_BYTES)
        return "never"

    return w


@pytest.fixture(scope="module")
def stack(nats_server: Any) -> Iterator[Stack]:
    running = Stack(nats_server.url, checkpointing_worker(nats_server.url))
    for task in ("ckpt_sync", "ckpt_async", "ckpt_big"):
        running.client.register_workflow({"name": task, "version": "1", "steps": [
            {"id": "work", "task": task, "retry": RETRY_ONCE}]})
    try:
        yield running
    finally:
        running.close()


@pytest.mark.parametrize("task", ["ckpt_sync", "ckpt_async"])
def test_a_retried_attempt_resumes_from_the_checkpoint_of_the_failed_one(
        stack: Stack, task: str) -> None:
    run_id = stack.client.start(task)
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.status is RunStatus.COMPLETED, run
    done = 3 if task == "ckpt_sync" else 7
    assert run.steps["work"].output == {"loaded": {"done": done, "by": 1}}
    assert run.steps["work"].attempts == 2
    stack.until(lambda: stack.run(_stored_checkpoint(stack, run_id, "work")) is None,
                "the completed run's checkpoint to be deleted")


def test_a_checkpoint_over_the_limit_fails_the_step_naming_it(stack: Stack) -> None:
    run_id = stack.client.start("ckpt_big")
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.status is RunStatus.FAILED
    error = run.steps["work"].error or ""
    assert f"checkpoint of run {run_id} step work is " in error
    assert f"over the limit of {limits.CHECKPOINT_MAX_BYTES}" in error
    assert stack.run(_stored_checkpoint(stack, run_id, "work")) is None


async def _stored_checkpoint(stack: Stack, run_id: str, step_id: str
                             ) -> checkpoints.Checkpoint | None:
    kv = await stack.js.key_value(names.CHECKPOINTS_BUCKET)
    return await checkpoints.load(kv, run_id, step_id)


# --- a worker killed mid-task -----------------------------------------------------------------

RESUMING_WORKER = """
import os, pathlib, threading
from dagnats import worker

w = worker.Worker()
MARKS = pathlib.Path(os.environ["MARKS"])


@w.task(os.environ["TASK"])
def add_up(ctx: worker.TaskContext, items: list[int]) -> dict:
    state = ctx.load_checkpoint() or {"next": 0, "sum": 0}
    resumed_at = state["next"]
    for i in range(state["next"], len(items)):
        state = {"next": i + 1, "sum": state["sum"] + items[i]}
        ctx.checkpoint(state)
        if i == 1 and os.environ.get("STALL_AFTER_TWO"):
            (MARKS / f"stalled.{os.getpid()}").touch()
            threading.Event().wait()  # killed here, two items in
    return {"sum": state["sum"], "resumed_at": resumed_at, "pid": os.getpid()}


w.run()
"""


def test_a_worker_killed_after_a_checkpoint_leaves_the_redelivery_to_resume_from_it(
        nats_server: Any, tmp_path: Path) -> None:
    script, marks = tmp_path / "resuming_worker.py", tmp_path / "marks"
    script.write_text(RESUMING_WORKER)
    marks.mkdir()
    task = f"add_up_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DAGNATS_NATS_URL": nats_server.url, "DAGNATS_TASK_LEASE": "1",
           "MARKS": str(marks), "TASK": task}

    def start(**extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(script)], env={**env, **extra},
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        first = start(STALL_AFTER_TWO="1")
        second: subprocess.Popen[bytes] | None = None
        try:
            run_id = await _publish(js, task, [1, 2, 3, 4])
            await _until(lambda: (marks / f"stalled.{first.pid}").exists(), "two items done")
            os.kill(first.pid, signal.SIGKILL)
            first.wait(5)
            second = start()
            done = await _completed(js, run_id)
            assert done.data["output"] == {"sum": 10, "resumed_at": 2, "pid": second.pid}
            assert done.data["delivery"] == 2 and done.attempt == 1  # a redelivery, not a retry
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
            await jetstream.close(nc)

    asyncio.run(scenario())


async def _publish(js: Any, task: str, value: Any) -> str:
    run_id = uuid.uuid4().hex
    message = TaskMessage(run_id=run_id, workflow="wf", step_id="sum", task=task, attempt=1,
                          max_attempts=1, input=value)
    await publish_task(js, message)
    return run_id


async def _until(probe: Any, what: str) -> None:
    give_up = time.monotonic() + DEADLINE_S
    while not probe():
        assert time.monotonic() < give_up, f"timed out: {what}"
        await asyncio.sleep(0.02)


async def _completed(js: Any, run_id: str) -> Any:
    give_up = time.monotonic() + DEADLINE_S
    while True:
        found = [e for e in await history.read(js, run_id)
                 if e.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED)]
        if found:
            assert found[0].type is EventType.STEP_COMPLETED, json.dumps(found[0].data)
            return found[0]
        assert time.monotonic() < give_up, f"run {run_id} never finished"
        await asyncio.sleep(0.05)
