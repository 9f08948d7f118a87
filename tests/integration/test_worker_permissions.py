"""The worker login (dagnats.server.auth.worker_permissions) is enough for everything a worker
does: tasks, retries, checkpoints, signals, cancellations and unreadable tasks; and it is no
more: nats-server logs no permission violation while the worker works, and refuses one
made on purpose.

The API, the engine and the client sign in as admin, the worker as worker, each through
its URL, on a nats-server configured as `serve` configures it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from dagnats import names, worker
from dagnats.connection import connect
from dagnats.dag.state import RunStatus
from dagnats.local_auth import ensure_logins, private_dir, url_with_login
from dagnats.server.auth import authorization_config
from dagnats.server.binary import find_nats_server
from dagnats.server.nats_process import NatsServer
from tests.integration.failures_harness import Stack

pytestmark = pytest.mark.timeout(90)
DEADLINE_S = 20.0
RETRY_ONCE = {"max_attempts": 1, "strategy": "fixed", "initial_delay": "10ms"}


def full_worker(url: str) -> worker.Worker:
    """Handlers that use every worker feature that touches NATS."""
    w = worker.Worker(url, name="permissions-worker", lease=5)

    @w.task("resumes")
    async def resumes(ctx: worker.TaskContext, value: Any) -> Any:
        loaded = await ctx.aload_checkpoint()
        if ctx.attempt == 1:
            await ctx.acheckpoint({"done": 3})
            raise ConnectionError("the first attempt fails")
        return {"loaded": loaded}

    @w.task("waits")
    async def waits(ctx: worker.TaskContext, value: Any) -> Any:
        return {"got": await ctx.wait_for_signal("go", timeout=DEADLINE_S)}

    @w.task("large")
    def large(ctx: worker.TaskContext, value: Any) -> Any:
        return {"echo": value, "more": "y" * 50_000}  # both out of line (the object store)

    @w.task("polls")
    def polls(ctx: worker.TaskContext, value: Any) -> str:
        deadline = time.monotonic() + DEADLINE_S
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler's own work, not a test synchronisation
        return "stopped"

    return w


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, dict]]:
    """A nats-server admitting only serve's two logins, as serve configures it."""
    root = private_dir(tmp_path_factory.mktemp("auth-nats"))
    logins = ensure_logins(root)
    nats_server = NatsServer(find_nats_server(), root / "store", root / "nats.log", port=0,
                             authorization=authorization_config(logins))
    asyncio.run(nats_server.start())
    try:
        yield nats_server, logins
    finally:
        asyncio.run(nats_server.stop())


@pytest.fixture(scope="module")
def stack(server: tuple[NatsServer, dict]) -> Iterator[Stack]:
    nats_server, logins = server
    admin = url_with_login(nats_server.url, logins["admin"])
    running = Stack(admin, full_worker(url_with_login(nats_server.url, logins["worker"])))
    for task in ("resumes", "waits", "polls", "large"):
        running.client.register_workflow({"name": task, "version": "1", "steps": [
            {"id": "work", "task": task, "retry": RETRY_ONCE}]})
    try:
        yield running
    finally:
        running.close()


def violations(nats_server: NatsServer) -> list[str]:
    return [line for line in Path(nats_server.log_path).read_text().splitlines()
            if "Violation" in line]


def test_a_worker_does_all_its_work_with_the_worker_login(
        stack: Stack, server: tuple[NatsServer, dict]) -> None:
    resumed = stack.client.start("resumes", 1)
    waiting = stack.client.start("waits", 2)
    polling = stack.client.start("polls", 3)
    large = stack.client.start("large", "x" * 50_000)
    stack.until(lambda: (stack.client.get_run(waiting).steps["work"].waiting_for or {}
                         ).get("signal") == "go", "the handler to wait for its signal")
    stack.client.signal(waiting, "go", "yes")
    stack.until(lambda: stack.client.get_run(polling).steps["work"].status.value == "running",
                "the polling handler to run")
    stack.client.cancel(polling)
    garbage = stack.run(stack.js.publish(names.history_task_subject("r" * 32, "resumes"),
                                         b"not a task"))

    assert stack.client.wait(resumed, timeout=DEADLINE_S).steps["work"].output == {
        "loaded": {"done": 3}}
    assert stack.client.wait(waiting, timeout=DEADLINE_S).steps["work"].output == {
        "got": "yes"}
    assert stack.client.wait(polling, timeout=DEADLINE_S).status is RunStatus.CANCELLED
    assert stack.client.wait(large, timeout=DEADLINE_S).steps["work"].output == {
        "echo": "x" * 50_000, "more": "y" * 50_000}
    stack.until(lambda: stack.run(_poison_kept(stack, garbage.seq)), "the task's dead letter")
    announced = [w for w in stack.client.workers() if w.name == "permissions-worker"]
    assert [w.tasks for w in announced] == [["large", "polls", "resumes", "waits"]]
    assert violations(server[0]) == []  # its presence heartbeats included


async def _poison_kept(stack: Stack, seq: int) -> bool:
    try:
        await stack.js.get_msg(names.DEAD_STREAM,
                               subject=names.poison_subject(names.HISTORY_PREFIX, seq))
    except nats.js.errors.NotFoundError:
        return False
    return True


def test_the_worker_login_cannot_start_runs_or_dispatch_tasks(
        server: tuple[NatsServer, dict]) -> None:
    nats_server, logins = server

    async def attempt() -> list[str]:
        refused: list[str] = []
        all_refused = asyncio.Event()

        async def note(exc: Exception) -> None:
            refused.append(str(exc))
            if len(refused) == 3:
                all_refused.set()

        nc = await nats.connect(url_with_login(nats_server.url, logins["worker"]),
                                error_cb=note, allow_reconnect=False)
        try:
            await nc.publish(names.history_task_subject("r1", "resumes"), b"{}")
            await nc.publish(names.api_subject("run.start"), b"{}")
            await nc.publish(names.kv_subject(names.RUNS_BUCKET, "x"), b"{}")
            await nc.flush()
            await asyncio.wait_for(all_refused.wait(), DEADLINE_S)
        finally:
            await nc.close()
        return refused

    refused = asyncio.run(attempt())
    assert len(refused) == 3 and all("permissions violation" in r for r in refused), refused


def test_serve_connects_as_admin_by_its_login(server: tuple[NatsServer, dict]) -> None:
    nats_server, logins = server

    async def streams() -> int:
        nc = await connect(nats_server.url, login=logins["admin"])
        try:
            return len(await nc.jetstream().streams_info())
        finally:
            await nc.close()

    assert asyncio.run(streams()) > 3
