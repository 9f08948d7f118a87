"""Signals against a real nats-server: sent before or during a handler's wait, refused when
they cannot be taken, ending the wait on timeout or cancellation; and deleting a run's data.

The handler tests run the whole stack (API, engine, worker) and send signals through the
client, as a user does. "While waiting" is made certain by finding the wait's KV watch on
the server before the signal is sent; "before" by a gate the handler waits at first.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from dagnats import jetstream, limits, names, worker
from dagnats.connection import connect
from dagnats.dag.state import RunStatus
from dagnats.errors import InvalidInput, RunEnded, RunNotFound
from dagnats.server.binary import find_nats_server
from dagnats.server.nats_process import NatsServer
from dagnats.store import checkpoints, run_data, signals
from tests.integration.failures_harness import Stack

pytestmark = pytest.mark.timeout(60)
DEADLINE_S = 15.0
NO_RETRY = {"max_attempts": 0}


class Notes:
    """What handlers did, per run, and gates they wait at (they run in other threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: dict[tuple[str, str], Any] = {}
        self.gates: dict[str, threading.Event] = {}

    def note(self, what: str, run_id: str, detail: Any = True) -> None:
        with self._lock:
            self.seen[what, run_id] = detail

    def get(self, what: str, run_id: str) -> Any:
        with self._lock:
            return self.seen.get((what, run_id))

    def gate(self, run_id: str) -> threading.Event:
        with self._lock:
            return self.gates.setdefault(run_id, threading.Event())


def signal_worker(url: str, notes: Notes) -> worker.Worker:
    """Handlers that wait for the signal named in their input (after a gate, if asked)."""
    w = worker.Worker(url, name="signal-worker", lease=5, cancel_grace=5)

    @w.task("waits_async")
    async def waits_async(ctx: worker.TaskContext, ask: dict[str, Any]) -> dict[str, Any]:
        notes.note("started", ctx.run_id)
        if ask.get("gated"):
            await asyncio.to_thread(notes.gate(ctx.run_id).wait, DEADLINE_S)
        return {"got": await ctx.wait_for_signal(ask["name"], timeout=DEADLINE_S)}

    @w.task("waits_sync")
    def waits_sync(ctx: worker.TaskContext, ask: dict[str, Any]) -> dict[str, Any]:
        notes.note("started", ctx.run_id)
        if ask.get("gated"):
            notes.gate(ctx.run_id).wait(DEADLINE_S)
        return {"got": ctx.wait_for_signal_sync(ask["name"], timeout=DEADLINE_S)}

    @w.task("times_out")
    def times_out(ctx: worker.TaskContext, timeout_s: float) -> str:
        began = time.monotonic()
        try:
            return ctx.wait_for_signal_sync("never_sent", timeout=timeout_s)
        finally:
            notes.note("waited", ctx.run_id, time.monotonic() - began)

    @w.task("outlived")
    async def outlived(ctx: worker.TaskContext, value: Any) -> str:
        began = time.monotonic()
        try:
            return await ctx.wait_for_signal("never_sent", timeout=DEADLINE_S)
        except worker.RunCancelled:
            notes.note("cancelled", ctx.run_id, time.monotonic() - began)
            raise

    @w.task("stuck_sync")
    def stuck_sync(ctx: worker.TaskContext, value: Any) -> str:
        began = time.monotonic()
        try:
            return ctx.wait_for_signal_sync("never_sent", timeout=DEADLINE_S)
        except Exception as exc:
            notes.note("released", ctx.run_id, (type(exc).__name__, time.monotonic() - began))
            raise

    @w.task("quick")
    def quick(ctx: worker.TaskContext, value: Any) -> Any:
        return value

    return w


@pytest.fixture(scope="module")
def notes() -> Notes:
    return Notes()


@pytest.fixture(scope="module")
def stack(nats_server: Any, notes: Notes) -> Iterator[Stack]:
    running = Stack(nats_server.url, signal_worker(nats_server.url, notes))
    for task in ("waits_async", "waits_sync", "times_out", "outlived", "quick"):
        running.client.register_workflow({"name": task, "version": "1", "steps": [
            {"id": "wait", "task": task, "retry": NO_RETRY}]})
    running.client.register_workflow({"name": "stuck_sync", "version": "1", "steps": [
        {"id": "wait", "task": "stuck_sync", "retry": NO_RETRY, "timeout": "500ms"}]})
    try:
        yield running
    finally:
        running.close()


def watching(stack: Stack, run_id: str, name: str) -> bool:
    """True once a KV watch of the run's signal `name` stands on the server."""
    subject = names.kv_subject(names.SIGNALS_BUCKET, names.signal_key(run_id, name))

    async def probe() -> bool:
        found = await stack.js.consumers_info(names.kv_stream(names.SIGNALS_BUCKET))
        return any(info.config.filter_subject == subject for info in found)

    return stack.run(probe())


@pytest.mark.parametrize("task", ["waits_async", "waits_sync"])
def test_a_signal_sent_before_the_wait_is_received(stack: Stack, notes: Notes, task: str
                                                   ) -> None:
    run_id = stack.client.start(task, {"name": "approve", "gated": True})
    stack.until(lambda: notes.get("started", run_id), "the handler started")
    assert stack.client.signal(run_id, "approve", {"ok": True, "by": "ada"}) == run_id
    notes.gate(run_id).set()  # only now does the handler begin to wait
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.status is RunStatus.COMPLETED, run
    assert run.steps["wait"].output == {"got": {"ok": True, "by": "ada"}}


@pytest.mark.parametrize("task", ["waits_async", "waits_sync"])
def test_a_signal_sent_while_waiting_is_received(stack: Stack, task: str) -> None:
    run_id = stack.client.start(task, {"name": "go"})
    stack.until(lambda: watching(stack, run_id, "go"), "the handler waits for the signal")
    shown = stack.until(lambda: stack.client.get_run(run_id).steps["wait"].waiting_for,
                        "the step to show what it waits for")
    assert (shown["kind"], shown["signal"]) == ("signal", "go")
    assert stack.client.get_run(run_id).status is RunStatus.RUNNING
    assert "wait: waiting for signal go (until " in stack.dagnats("run", "status", run_id).output
    assert stack.client.signal(run_id[:8], "go", [1, "two"]) == run_id  # a prefix will do
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.steps["wait"].output == {"got": [1, "two"]}
    kinds = [(e.type.value, e.data.get("resumed")) for e in stack.history(run_id)
             if e.step_id == "wait" and e.type.value in ("step.waiting", "step.started")]
    assert ("step.waiting", None) in kinds and ("step.started", "signal go") in kinds
    assert any(e.type.value == "signal.sent" for e in stack.history(run_id))

    async def kept() -> list[str]:
        keys = await jetstream.bucket_keys(stack.js, names.SIGNALS_BUCKET)
        return [key for key in keys if names.parse_signal_key(key)[0] == run_id]

    stack.until(lambda: not stack.run(kept()), "the ended run's signals to be deleted")


def test_a_wait_with_no_signal_ends_in_timeout_error_at_its_timeout(stack: Stack,
                                                                    notes: Notes) -> None:
    run_id = stack.client.start("times_out", 0.5)
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.status is RunStatus.FAILED
    assert run.steps["wait"].error == (
        f"TimeoutError: no signal never_sent reached run {run_id} within 0.5s")
    assert notes.get("waited", run_id) >= 0.5


def test_cancelling_the_run_ends_the_wait_with_run_cancelled(stack: Stack, notes: Notes
                                                             ) -> None:
    run_id = stack.client.start("outlived")
    stack.until(lambda: watching(stack, run_id, "never_sent"), "the handler waits")
    stack.client.cancel(run_id)
    waited = stack.until(lambda: notes.get("cancelled", run_id), "the wait ended")
    assert waited < 10.0  # the cancellation, not the wait's own 15 s timeout


def test_the_step_timeout_releases_a_sync_handler_waiting_for_a_signal(stack: Stack,
                                                                      notes: Notes) -> None:
    """The step fails at its timeout, and the thread waiting in the handler is let go then
    (not after the wait's own 15 s): the worker's thread pool stays honest."""
    run_id = stack.client.start("stuck_sync")
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.status is RunStatus.FAILED
    assert run.steps["wait"].error == "timed out after 500ms"
    kind, waited = stack.until(lambda: notes.get("released", run_id), "the thread let go")
    assert kind == "RuntimeError" and waited < 3.0


def test_signals_that_cannot_be_taken_are_refused_and_nothing_is_stored(stack: Stack
                                                                        ) -> None:
    ended = stack.client.start("quick", "x")
    assert stack.client.wait(ended, timeout=DEADLINE_S).status is RunStatus.COMPLETED
    with pytest.raises(RunEnded) as refused:
        stack.client.signal(ended, "approve", True)
    assert refused.value.message == (
        f"run {ended} has ended (completed): it takes no more signals; see"
        f" `dagnats run status {ended}`")
    with pytest.raises(RunNotFound):
        stack.client.signal("0123456789abcdef", "approve", True)

    live = stack.client.start("waits_async", {"name": "later"})
    oversize = "x" * limits.SIGNAL_MAX_BYTES
    with pytest.raises(InvalidInput, match="over the limit of 65536"):
        stack.client.signal(live, "big", oversize)  # refused by the client itself
    reply = stack.run(_raw_request(stack, {"run_id": live, "name": "big", "value": oversize}))
    assert reply["error"]["type"] == "InvalidInput"  # and by the API, for any other sender
    assert "over the limit of 65536" in reply["error"]["message"]
    with pytest.raises(InvalidInput, match="not a signal name"):
        stack.client.signal(live, "a.b", 1)
    for run_id, name in ((ended, "approve"), (live, "big")):
        assert stack.run(_latest(stack, run_id, name)) is None
    stack.client.signal(live, "later", "done")
    assert stack.client.wait(live, timeout=DEADLINE_S).status is RunStatus.COMPLETED


async def _raw_request(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    reply = await stack.js._nc.request(names.api_subject("run.signal"),
                                       json.dumps(body).encode(), timeout=5)
    return json.loads(reply.data)


async def _latest(stack: Stack, run_id: str, name: str) -> signals.Signal | None:
    return await signals.latest(await stack.js.key_value(names.SIGNALS_BUCKET), run_id, name)


# --- the store, directly ---------------------------------------------------------------------

def test_delete_run_data_removes_every_key_of_one_run_and_only_those(nats_server: Any
                                                                     ) -> None:
    doomed, kept = uuid.uuid4().hex, uuid.uuid4().hex

    async def scenario(js: JetStreamContext) -> None:
        sigs = await run_data.open_bucket(js, names.SIGNALS_BUCKET)
        ckpts = await run_data.open_bucket(js, names.CHECKPOINTS_BUCKET)
        for run_id in (doomed, kept):
            for name in ("a", "b"):
                await signals.send(sigs, run_id, name, signals.encode(run_id, name, name))
                await checkpoints.save(ckpts, run_id, name, checkpoints.encode(
                    {"at": name}, run_id=run_id, step_id=name, attempt=1))
        await run_data.delete_run_data(js, doomed)
        await run_data.delete_run_data(js, doomed)  # again: nothing left, no error
        for name in ("a", "b"):
            assert await signals.latest(sigs, doomed, name) is None
            assert await checkpoints.load(ckpts, doomed, name) is None
            assert (await signals.latest(sigs, kept, name)).value == name  # type: ignore[union-attr]
            assert (await checkpoints.load(ckpts, kept, name)).state == {"at": name}  # type: ignore[union-attr]
        for bucket in (names.SIGNALS_BUCKET, names.CHECKPOINTS_BUCKET):
            keys = await jetstream.bucket_keys(js, bucket)
            assert not [k for k in keys if k.startswith(f"{doomed}.")]  # not even a marker
            assert {k for k in keys if k.startswith(f"{kept}.")} == {f"{kept}.a", f"{kept}.b"}

    asyncio.run(_with_js(nats_server.url, scenario))


def test_a_wait_outlives_a_restart_of_nats(tmp_path: Path) -> None:
    """KV watches of nats-py do not survive a reconnect: the wait watches anew."""
    run_id = uuid.uuid4().hex

    async def scenario() -> None:
        server = NatsServer(find_nats_server(), tmp_path / "store", tmp_path / "log", port=0)
        await server.start()
        nc = await connect(server.url, long_lived=True)
        try:
            js = nc.jetstream()
            await jetstream.provision(js)
            kv = await run_data.open_bucket(js, names.SIGNALS_BUCKET)
            waiting = asyncio.ensure_future(
                signals.wait_for(kv, run_id, "resume", DEADLINE_S, recheck_s=0.2))
            await _until(lambda: _has_watch(js, run_id), "the wait watches")
            await server.stop()
            await server.start()  # same port and store: the connection comes back
            await _until(lambda: _reconnected(nc), "the client reconnected")
            await signals.send(kv, run_id, "resume", signals.encode(run_id, "resume", 42))
            found = await asyncio.wait_for(waiting, DEADLINE_S)
            assert found.value == 42
        finally:
            await jetstream.close(nc)
            await server.stop()

    asyncio.run(scenario())


async def _with_js(url: str, scenario: Any) -> None:
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await jetstream.provision(js)
        await scenario(js)
    finally:
        await jetstream.close(nc)


async def _has_watch(js: JetStreamContext, run_id: str) -> bool:
    subject = names.kv_subject(names.SIGNALS_BUCKET, names.signal_key(run_id, "resume"))
    found = await js.consumers_info(names.kv_stream(names.SIGNALS_BUCKET))
    return any(info.config.filter_subject == subject for info in found)


async def _reconnected(nc: Any) -> bool:
    return bool(nc.is_connected and nc.stats["reconnects"] >= 1)


async def _until(probe: Any, what: str) -> None:
    give_up = time.monotonic() + DEADLINE_S
    while not await probe():
        assert time.monotonic() < give_up, f"timed out: {what}"
        await asyncio.sleep(0.02)
