"""The situations that produce each error of docs/errors.md (used by test_failures_errors)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from dagnats import jetstream, names, worker
from dagnats.api import approvals, idempotency, lifecycle, service
from dagnats.api.context import ApiContext
from dagnats.api.runs import RunRequest, load_run
from dagnats.client import AsyncClient
from dagnats.connection import connect
from dagnats.errors import DagnatsError
from dagnats.store import dead_letters
from dagnats.worker import RegistrationError, _worker
from tests.integration.failures_harness import Stack

STEP = '{"id": "a", "task": "t"}'
DEFINITIONS: dict[str, str | bytes] = {
    "malformed": '{"name": "w",\n "version": "1"\n "steps": []}',
    "not utf-8": b'{"name": "\xff"}',
    "not an object": "[1, 2]",
    "missing field": '{"version": "1", "steps": [' + STEP + "]}",
    "unknown field": '{"name": "w", "version": "1", "stepz": [], "steps": [' + STEP + "]}",
    "bad value": '{"name": "w", "version": "1", "steps": [{"id": "a", "task": "t", '
                 '"timeout": "soon"}]}',
    "duplicate": '{"name": "w", "version": "1", "steps": [' + STEP + ", " + STEP + "]}",
    "unknown dependency": '{"name": "w", "version": "1", "steps": [{"id": "a", "task": "t", '
                          '"depends_on": ["zz"]}]}',
    "cycle": '{"name": "w", "version": "1", "steps": [{"id": "a", "task": "t", "depends_on": '
             '["b"]}, {"id": "b", "task": "t", "depends_on": ["a"]}]}',
    "unknown on_failure": '{"name": "w", "version": "1", "steps": [{"id": "a", "task": "t", '
                          '"on_failure": "zz"}]}',
    "itself": '{"name": "w", "version": "1", "steps": [{"id": "a", "task": "t", '
              '"compensate": "a"}]}',
    "named twice": '{"name": "w", "version": "1", "steps": [{"id": "a", "task": "t", '
                   '"on_failure": "h"}, {"id": "b", "task": "t", "compensate": "h"}, '
                   '{"id": "h", "task": "t"}]}',
    "auxiliary with deps": '{"name": "w", "version": "1", "steps": [{"id": "a", "task": "t", '
                           '"on_failure": "h"}, {"id": "h", "task": "t", "depends_on": ["a"]}]}',
    "bad version": '{"name": "w", "version": "1 0", "steps": [' + STEP + "]}",
    "sleep config": '{"name": "w", "version": "1", "steps": [{"id": "nap", "type": "sleep", '
                    '"config": {"duration": "0s"}}]}',
    "dotted id": '{"name": "w", "version": "1", "steps": [{"id": "a.b", "task": "t"}]}',
    "unknown kind": '{"name": "w", "version": "1", "steps": [{"id": "a", "type": "cron"}]}',
    "skip_if not an ancestor": '{"name": "w", "version": "1", "steps": [' + STEP + ', {"id": '
                               '"b", "task": "t", "skip_if": {"step_id": "a", "op": "exists"}}]}',
    "NaN": '{"name": "w", "version": "1", "steps": [' + STEP + '], "description": NaN}',
    "infinite": '{"name": "w", "version": "1", "steps": [' + STEP + '], "x": 1e999}',
    "lone surrogate": '{"name": "\\ud800", "version": "1", "steps": [' + STEP + "]}",
    "too deep": '{"name": "w", "version": "1", "steps": [' + STEP + '], "x": '
                + "[" * 101 + "]" * 101 + "}",
    "too many steps": '{"name": "w", "version": "1", "steps": ['
                      + ", ".join(f'{{"id": "s{i}", "task": "t"}}' for i in range(501)) + "]}",
    "coerced number": '{"name": "w", "version": "1", "steps": [{"id": "a", "task": "t", '
                      '"retry": {"max_attempts": true}}]}',
    "depends on auxiliary": '{"name": "w", "version": "1", "steps": [{"id": "a", "task": "t", '
                            '"on_failure": "h"}, {"id": "h", "task": "t"}, {"id": "b", '
                            '"task": "t", "depends_on": ["h"]}]}',
}
OFFLINE_ARGS = [
    ("workflow", "validate", "TMP/missing.json"),
    ("run", "start", "w", "World"),
    ("run", "rerun", "abcdefgh", "{bad"),
    ("event", "publish", "payment.received", "{bad"),
    ("run", "signal", "abcdefgh", "go", "{bad"),
    ("dlq", "discard", "three"),
    ("dlq", "replay"),
    ("worker", "run", "TMP/missing.py"),
    ("worker", "run", "TMP"),
    ("worker", "run", "BINARY"),
    ("worker", "run", "ZIP"),
    ("run", "start", "w", "NaN"),
    ("run", "start", "w", "@TMP/missing.json"),
    ("run", "start", "w", "@"),
    ("run", "list", "--since", "yesterday"),
]


def plant_dead_letter(stack: Stack, run_id: str) -> int:
    """A dead letter for `run_id`, as the engine writes one."""
    entry = dead_letters.DeadLetterEntry(run_id=run_id, step_id="g", task="gate", attempts=1,
                                         error="boom", timestamp=datetime.now(UTC))
    return stack.run(dead_letters.publish(stack.js, entry, f"planted:{run_id}"))


async def resume_twice(stack: Stack, run_id: str) -> None:
    """Two retries that read the same failed generation: the second is refused."""
    ctx = await ApiContext.open(stack.js._nc)
    run, _ = await load_run(ctx, run_id)
    await lifecycle.resume(ctx, run, "retry", what="retry")
    await lifecycle.resume(ctx, run, "retry", what="retry")


async def cancel_with_stale_history(stack: Stack, run_id: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancel whose every read of the history is already out of date."""
    async def stale(ctx: ApiContext, given: str) -> Any:
        run, found = await load_run(ctx, given)
        return run, found[:-1] if len(found) > 1 else [found[0].model_copy(update={"seq": 1})]

    monkeypatch.setattr(lifecycle, "load_run", stale)
    await lifecycle.cancel(await ApiContext.open(stack.js._nc), RunRequest(run_id=run_id))


async def decide_with_stale_history(stack: Stack, run_id: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An approval whose every read of the history is already out of date."""
    async def stale(ctx: ApiContext, given: str) -> Any:
        run, found = await load_run(ctx, given)
        return run, found[:-1]

    monkeypatch.setattr(approvals, "load_run", stale)
    await approvals.approve(await ApiContext.open(stack.js._nc),
                            approvals.DecisionRequest(run_id=run_id, step_id="review"))


class FlappingBucket:
    """A KV bucket whose key is always taken, and always gone when read."""

    async def create(self, key: str, value: bytes) -> int:
        raise KeyWrongLastSequenceError()

    async def get(self, key: str) -> Any:
        raise KeyNotFoundError()


async def claim_against_a_flapping_bucket() -> None:
    await idempotency.claim(FlappingBucket(), "ab" * 32, "run")  # type: ignore[arg-type]


async def answer_with_a_broken_operation(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    async def broken(ctx: Any, req: Any) -> None:
        raise RuntimeError("disk on fire")

    op = service.OPERATIONS["run.get"]
    monkeypatch.setitem(service.OPERATIONS, "run.get", service.Operation(op.request, broken))
    return await service.answer(None, "run.get", json.dumps({"run_id": "x"}).encode())  # type: ignore[arg-type]


async def request_nobody_answers(url: str) -> None:
    """An API subject with a subscriber that never replies."""
    nc = await connect(url)
    try:
        await nc.subscribe(names.api_subject("run.get"), cb=_ignore)
        async with await AsyncClient.connect(url, request_timeout_s=0.2) as client:
            await client.get_run("abcdefgh")
    finally:
        await jetstream.close(nc)


async def _ignore(msg: Any) -> None:
    return None


async def watch_then_close(url: str, run_id: str) -> None:
    """Follow a run, and lose the connection while waiting for its next event."""
    client = await AsyncClient.connect(url)
    try:
        async for _ in client.watch(run_id):
            await client._nc.close()
    finally:
        await client.close()


async def api_that_loses_nats(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    connections: list[Any] = []

    async def keep(*args: Any, **kwargs: Any) -> Any:
        connections.append(await connect(*args, **kwargs))
        return connections[-1]

    monkeypatch.setattr(service, "connect", keep)
    ready = asyncio.Event()
    serving = asyncio.create_task(service.run_api(url, asyncio.Event(), on_ready=ready.set))
    await asyncio.wait_for(ready.wait(), 10)
    await connections[0].close()
    await asyncio.wait_for(serving, 10)


def _ctx_first(ctx: worker.TaskContext, value: int) -> int:
    return value


def registration_errors() -> list[str]:
    """The message of every refused registration."""
    def swapped(value: int, ctx: worker.TaskContext) -> int:
        return value

    def unresolved(ctx: worker.TaskContext, value: NotDefinedAnywhere) -> int:  # type: ignore[name-defined]  # noqa: F821
        return 1

    def generator(ctx: worker.TaskContext, value: int) -> Any:
        yield value

    attempts: list[tuple[str, Any]] = [
        ("bad.name", _ctx_first), ("t", 42), ("t", generator), ("t", unresolved), ("t", range),
        ("t", lambda ctx: ctx), ("t", swapped), ("t", lambda ctx, value: object),
    ]
    messages = []
    for task, fn in attempts:
        w = worker.Worker("nats://127.0.0.1:1")
        if task == "t" and fn is attempts[-1][1]:
            fn = _unadaptable()
        with contextlib.suppress(RegistrationError):
            worker.handle_typed(w, task, fn)
            raise AssertionError(f"{fn} was accepted")
        messages.append(_refusal(w, task, fn))
    w = worker.Worker("nats://127.0.0.1:1")
    worker.handle_typed(w, "t", _ctx_first)
    messages.append(_refusal(w, "t", _ctx_first))
    w._started = True
    messages.append(_refusal(w, "u", _ctx_first))
    messages.append(_no_handlers())
    return messages


class Opaque:
    """A class pydantic cannot validate."""


def _unadaptable() -> Any:
    def handler(ctx: worker.TaskContext, value: Opaque) -> int:
        return 1
    return handler


def _refusal(w: worker.Worker, task: str, fn: Any) -> str:
    try:
        worker.handle_typed(w, task, fn)
    except RegistrationError as exc:
        assert exc.exit_code == 2
        return exc.message
    raise AssertionError(f"{task} was accepted")


def _no_handlers() -> str:
    try:
        asyncio.run(worker.Worker("nats://127.0.0.1:1").run_async(asyncio.Event()))
    except RegistrationError as exc:
        return exc.message
    raise AssertionError("a worker without handlers ran")


async def worker_connection_errors(bare: str, provisioned: str,
                                   monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Unreachable NATS, missing streams, a missing bucket, and a connection closed for good."""
    monkeypatch.setattr(_worker, "CONNECT_DEADLINE_S", 0.5)
    messages = [await _worker_error("nats://127.0.0.1:1"), await _worker_error(bare)]
    nc = await connect(bare)
    try:
        for config in jetstream.stream_configs(jetstream.Limits()):
            await jetstream.ensure_stream(nc.jetstream(), config)
    finally:
        await jetstream.close(nc)
    messages.append(await _worker_error(bare))
    messages.append(await _worker_closed_for_good(provisioned, monkeypatch))
    return messages


async def _until_fetching(url: str, task: str) -> None:
    """Return once a worker waits on the task's consumer (it is past its start-up)."""
    nc = await connect(url)
    try:
        async with asyncio.timeout(10):
            while True:
                with contextlib.suppress(Exception):
                    info = await nc.jetstream().consumer_info(names.HISTORY_STREAM,
                                                              names.task_consumer(task))
                    if info.num_waiting:
                        return
                await asyncio.sleep(0.02)
    finally:
        await jetstream.close(nc)


def _echo_worker(url: str) -> worker.Worker:
    w = worker.Worker(url, lease=2, name="errors")
    worker.handle_typed(w, "errors_echo", _ctx_first)
    return w


async def _worker_error(url: str) -> str:
    try:
        await _echo_worker(url).run_async(asyncio.Event())
    except DagnatsError as exc:
        assert exc.exit_code == 3
        return exc.message
    raise AssertionError("the worker ran")


async def _worker_closed_for_good(url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    connections: list[Any] = []
    real = _worker.connection.connect

    async def keep(*args: Any, **kwargs: Any) -> Any:
        connections.append(await real(*args, **kwargs))
        return connections[-1]

    monkeypatch.setattr(_worker.connection, "connect", keep)
    running = asyncio.create_task(_echo_worker(url).run_async(asyncio.Event()))
    await _until_fetching(url, "errors_echo")
    await connections[0].close()
    try:
        await asyncio.wait_for(running, 10)
    except DagnatsError as exc:
        return exc.message
    raise AssertionError("the worker did not notice")


@contextlib.contextmanager
def api_that_starts_then_fails(url: str, run_id: str) -> Any:
    """A stand-in API on `url`: run.start answers with `run_id`, run.get with an error (as an
    API whose NATS connection broke right after the start would), while the block runs."""
    from dagnats._client_sync import LoopThread

    async def started(msg: Any) -> None:
        await msg.respond(json.dumps({"ok": True, "result": {"run_id": run_id}}).encode())

    async def broken(msg: Any) -> None:
        error = {"type": "ServerUnavailable", "message": "the API lost its NATS connection "
                 "for good; restart it"}
        await msg.respond(json.dumps({"ok": False, "error": error}).encode())

    async def subscribe() -> Any:
        nc = await connect(url)
        await nc.subscribe(names.api_subject("run.start"), cb=started)
        await nc.subscribe(names.api_subject("run.get"), cb=broken)
        return nc

    loop = LoopThread()
    nc = loop.run(subscribe())
    try:
        yield
    finally:
        loop.run(jetstream.close(nc))
        loop.stop()
