"""Worker liveness: heartbeats come from the worker's own event loop, which runs no handler
code, so a handler that blocks (even an async one that blocks its loop) keeps its lease and
is never redelivered while it runs."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from dagnats import jetstream, worker
from dagnats.connection import connect
from dagnats.dag.events import EventType
from dagnats.dag.tasks import TaskMessage
from dagnats.store import history
from dagnats.worker import _runner
from tests.integration.tasks import publish_task

pytestmark = pytest.mark.timeout(60)
LEASE_S = 1.0
BLOCK_S = 3.5
DEADLINE_S = 15.0


def test_an_async_handler_that_blocks_its_loop_is_not_redelivered(
        nats_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runner, "POLL_S", 0.2)
    task = f"blocks_{uuid.uuid4().hex[:10]}"
    run_id = uuid.uuid4().hex
    w = worker.Worker(nats_server.url, lease=LEASE_S, name="liveness")

    @w.task(task)
    async def blocks(ctx: worker.TaskContext, value: Any) -> str:
        time.sleep(BLOCK_S)  # noqa: ASYNC251 - blocks the handler loop on purpose
        return "survived"

    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        stop = asyncio.Event()
        running = asyncio.create_task(w.run_async(stop))
        try:
            message = TaskMessage(run_id=run_id, workflow="wf", step_id="s", task=task,
                                  attempt=1, max_attempts=1, input=None)
            await publish_task(js, message)
            give_up = time.monotonic() + DEADLINE_S
            while not any(e.type is EventType.STEP_COMPLETED
                          for e in await history.read(js, run_id)):
                assert time.monotonic() < give_up, "the handler never completed"
                await asyncio.sleep(0.05)
            events = await history.read(js, run_id)
            started = [e for e in events if e.type is EventType.STEP_STARTED]
            assert [e.data["delivery"] for e in started] == [1]
            [completed] = [e for e in events if e.type is EventType.STEP_COMPLETED]
            assert completed.data == {"output": "survived"}
            held = (completed.timestamp - started[0].timestamp).total_seconds()
            assert held >= BLOCK_S > 3 * LEASE_S
        finally:
            stop.set()
            await asyncio.wait_for(running, DEADLINE_S)
            await jetstream.close(nc)

    asyncio.run(scenario())
