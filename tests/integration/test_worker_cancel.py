"""Cancellation in the worker, against a real nats-server (tasks published as the engine would).

A task of a cancelled run is acked without running its handler and without any event; a
running handler sees `ctx.cancelled` and `wait_cancelled()`; an async handler still running
after `cancel_grace` is cancelled; nothing is reported for any of them. The watch on the
cancellations bucket is re-created after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from dagnats import jetstream, names, worker
from dagnats.connection import connect
from dagnats.dag.events import Event, EventType
from dagnats.dag.tasks import TaskMessage
from dagnats.server.binary import find_nats_server
from dagnats.server.nats_process import NatsServer
from dagnats.worker import _runner
from tests.integration.tasks import publish_task, reports

pytestmark = pytest.mark.timeout(60)
DEADLINE_S = 10.0


@pytest.fixture(autouse=True)
def short_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runner, "POLL_S", 0.2)


def uid() -> str:
    return uuid.uuid4().hex[:12]


async def publish(js: JetStreamContext, task: str, run_id: str, step_id: str = "s") -> None:
    message = TaskMessage(run_id=run_id, workflow="wf", step_id=step_id, task=task, attempt=1,
                          max_attempts=1, input=None)
    await publish_task(js, message)


async def cancel(js: JetStreamContext, run_id: str) -> None:
    kv = await js.key_value(names.CANCEL_BUCKET)
    await kv.put(names.cancel_key(run_id), json.dumps({"cancelled_at": "now"}).encode())


async def until(probe: Callable[[], Awaitable[Any]], what: str) -> Any:
    give_up = time.monotonic() + DEADLINE_S
    while True:
        result = await probe()
        if result:
            return result
        assert time.monotonic() < give_up, f"timed out: {what}"
        await asyncio.sleep(0.02)


async def drained(js: JetStreamContext, task: str) -> bool:
    info = await js.consumer_info(names.HISTORY_STREAM, names.task_consumer(task))
    return info.num_pending == 0 and info.num_ack_pending == 0


def events_of(js: JetStreamContext, run_id: str) -> Callable[[], Awaitable[list[Event]]]:
    return lambda: reports(js, run_id)


class Seen:
    """Thread-safe notes from handlers (they run on the worker's handler loop or threads)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, what: str, run_id: str) -> None:
        with self._lock:
            self.items.append((what, run_id))

    async def has(self, what: str, run_id: str) -> bool:
        with self._lock:
            return (what, run_id) in self.items


def cancellable_worker(url: str, seen: Seen, tasks: dict[str, str]) -> worker.Worker:
    w = worker.Worker(url, lease=2, cancel_grace=0.3, name="cancel-worker")

    @w.task(tasks["listens"])
    async def listens(ctx: worker.TaskContext, value: Any) -> str:
        seen.add("ran", ctx.run_id)
        await ctx.wait_cancelled()
        seen.add("told", ctx.run_id)
        return "ignored"

    @w.task(tasks["stubborn"])
    async def stubborn(ctx: worker.TaskContext, value: Any) -> str:
        seen.add("ran", ctx.run_id)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.add("cancelled", ctx.run_id)
            raise
        return "never"

    @w.task(tasks["polls"])
    def polls(ctx: worker.TaskContext, value: Any) -> str:
        seen.add("ran", ctx.run_id)
        while not ctx.cancelled:
            time.sleep(0.01)  # the handler's work
        seen.add("noticed", ctx.run_id)
        return "stopped"

    return w


@contextlib.asynccontextmanager
async def serving(url: str, w: worker.Worker) -> AsyncIterator[JetStreamContext]:
    nc = await connect(url, long_lived=True)  # reconnects, as the worker does
    js = nc.jetstream()
    await jetstream.provision(js)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run_async(stop))
    try:
        yield js
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)
        await jetstream.close(nc)


def task_names() -> dict[str, str]:
    return {kind: f"{kind}_{uid()}" for kind in ("listens", "stubborn", "polls")}


def test_running_handlers_are_told_and_async_ones_cancelled_nothing_reported(
        nats_server: Any) -> None:
    tasks, seen = task_names(), Seen()

    async def scenario() -> None:
        async with serving(nats_server.url, cancellable_worker(nats_server.url, seen, tasks)
                           ) as js:
            run_id = uid()
            for kind, task in tasks.items():
                await publish(js, task, run_id, step_id=kind)
            await until(lambda: _started(js, run_id, 3), "three handlers started")
            await cancel(js, run_id)
            await until(lambda: seen.has("told", run_id), "wait_cancelled returned")
            await until(lambda: seen.has("noticed", run_id), "ctx.cancelled seen")
            await until(lambda: seen.has("cancelled", run_id), "the stubborn one cancelled")
            for task in tasks.values():
                await until(lambda task=task: drained(js, task), f"{task} acked")
            events = await reports(js, run_id)
            assert {e.type for e in events} == {EventType.STEP_STARTED}
    asyncio.run(scenario())


async def _started(js: JetStreamContext, run_id: str, count: int) -> bool:
    return len(await reports(js, run_id)) >= count


def test_a_task_of_a_cancelled_run_is_dropped_without_running(nats_server: Any) -> None:
    tasks, seen = task_names(), Seen()

    async def scenario() -> None:
        async with serving(nats_server.url, cancellable_worker(nats_server.url, seen, tasks)
                           ) as js:
            doomed, witness = uid(), uid()
            await cancel(js, doomed)
            await _worker_saw_a_cancel(js, tasks["listens"], witness, seen)
            await publish(js, tasks["polls"], doomed)
            await until(lambda: drained(js, tasks["polls"]), "the task was acked")
            assert not await seen.has("ran", doomed)
            assert await reports(js, doomed) == []
    asyncio.run(scenario())


def test_tasks_of_runs_cancelled_before_the_worker_started_never_run(nats_server: Any) -> None:
    """The worker reads every cancellation before its first task, at each of several starts."""
    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        try:
            for _ in range(3):
                doomed = await _start_a_worker_after_cancelling(js, nats_server.url)
                assert doomed == []
        finally:
            await jetstream.close(nc)
    asyncio.run(scenario())


async def _start_a_worker_after_cancelling(js: JetStreamContext, url: str) -> list[str]:
    """Cancel five runs and queue their tasks, then one live run's; start a worker and wait
    until every task is acked. The cancelled runs whose handler ran anyway."""
    task, seen = f"records_{uid()}", Seen()
    doomed, live = [uid() for _ in range(5)], uid()
    for run_id in doomed:
        await cancel(js, run_id)
        await publish(js, task, run_id)
    await publish(js, task, live)
    w = worker.Worker(url, lease=2, name="late-worker")

    @w.task(task)
    def records(ctx: worker.TaskContext, value: Any) -> str:
        seen.add("ran", ctx.run_id)
        return "done"

    async with serving(url, w):
        await until(lambda: seen.has("ran", live), "the live run's task ran")
        await until(lambda: drained(js, task), "every task was acked")
    return [run_id for run_id in doomed if ("ran", run_id) in seen.items]


async def _worker_saw_a_cancel(js: JetStreamContext, task: str, run_id: str,
                               seen: Seen) -> None:
    """Cancel a running `listens` task: once its handler is told, the worker's watch has
    caught up with every cancellation written before this one (KV keeps them in order)."""
    await publish(js, task, run_id)
    await until(lambda: seen.has("ran", run_id), "the witness runs")
    await cancel(js, run_id)
    await until(lambda: seen.has("told", run_id), "the witness was told")


def test_the_watch_is_recreated_after_a_reconnect(tmp_path: Path) -> None:
    tasks, seen = task_names(), Seen()

    async def scenario() -> None:
        server = NatsServer(find_nats_server(), tmp_path / "store", tmp_path / "log", port=0)
        await server.start()
        try:
            async with serving(server.url, cancellable_worker(server.url, seen, tasks)) as js:
                await _worker_saw_a_cancel(js, tasks["listens"], uid(), seen)
                await server.stop()
                await server.start()  # same port and store: every client reconnects
                doomed = uid()
                await until(lambda: _reachable(js), "the test's connection is back")
                await cancel(js, doomed)
                await _worker_saw_a_cancel(js, tasks["listens"], uid(), seen)
                await publish(js, tasks["polls"], doomed)
                await until(lambda: drained(js, tasks["polls"]), "the task was acked")
                assert not await seen.has("ran", doomed)
        finally:
            await server.stop()
    asyncio.run(scenario())


async def _reachable(js: JetStreamContext) -> bool:
    try:
        await js.stream_info(names.HISTORY_STREAM)
    except Exception:
        return False
    return True


def test_cancel_grace_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="cancel_grace must not be negative"):
        worker.Worker("nats://127.0.0.1:1", cancel_grace=-1)
