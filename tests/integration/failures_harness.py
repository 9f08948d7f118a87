"""A whole dagnats in one test process: the API (ApiThread), an engine and a worker on a
background event loop, all on the module's nats-server, for the failure-handling tests.

Tests drive it as a user does, through the CLI (CliRunner) and dagnats.Client, and read
history directly. The worker's handlers are steered per workflow through `Behaviour`: a
workflow named in `broken` makes the `flaky` task fail; every call is recorded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from click.testing import CliRunner, Result

from dagnats import jetstream, worker
from dagnats._client_sync import LoopThread
from dagnats.api.thread import ApiThread
from dagnats.cli.main import cli
from dagnats.client import Client
from dagnats.connection import connect
from dagnats.dag.events import Event, EventType
from dagnats.engine.engine import Engine
from dagnats.store import history
from dagnats.store.snapshots import Snapshots

T = TypeVar("T")
DEADLINE_S = 20.0
FAST_RETRY = {"max_attempts": 1, "strategy": "fixed", "initial_delay": "10ms"}


class Behaviour:
    """What the handlers do, decided per workflow; and what they were called with."""

    def __init__(self) -> None:
        self.broken: set[str] = set()
        self.calls: list[tuple[str, str, str, int]] = []  # (task, workflow, run, attempt)
        self.cancel_seen: list[tuple[str, str]] = []  # (task, run)
        self._lock = threading.Lock()

    def record(self, ctx: worker.TaskContext) -> None:
        """Remember one handler call."""
        with self._lock:
            self.calls.append((ctx.task, ctx.workflow, ctx.run_id, ctx.attempt))

    def saw_cancel(self, ctx: worker.TaskContext) -> None:
        """Remember that a handler noticed its run's cancellation."""
        with self._lock:
            self.cancel_seen.append((ctx.task, ctx.run_id))

    def calls_of(self, run_id: str) -> list[tuple[str, int]]:
        """(task, attempt) of every call made for one run, in order."""
        with self._lock:
            return [(task, attempt) for task, _, run, attempt in self.calls if run == run_id]


def make_worker(url: str, behaviour: Behaviour, **options: Any) -> worker.Worker:
    """A worker serving echo, flaky, gate, stubborn and polls (see each handler)."""
    options.setdefault("lease", 5)
    options.setdefault("cancel_grace", 0.3)
    w = worker.Worker(url, name="failures-worker", **options)

    @w.task("echo")
    def echo(ctx: worker.TaskContext, value: Any) -> str:
        behaviour.record(ctx)
        return f"{value}-ok"

    @w.task("flaky")
    async def flaky(ctx: worker.TaskContext, value: Any) -> str:
        behaviour.record(ctx)
        if ctx.workflow in behaviour.broken:
            raise ConnectionError("flaky network")
        return f"{value}-fixed"

    @w.task("gate")
    async def gate(ctx: worker.TaskContext, value: Any) -> str:
        """Waits for its run's cancellation on the first attempt; later attempts pass."""
        behaviour.record(ctx)
        if ctx.attempt == 1:
            await ctx.wait_cancelled()
            behaviour.saw_cancel(ctx)
            return "too late"
        return "opened"

    @w.task("stubborn")
    async def stubborn(ctx: worker.TaskContext, value: Any) -> str:
        """Ignores cancellation until it is cancelled itself."""
        behaviour.record(ctx)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            behaviour.saw_cancel(ctx)
            raise
        return "never"

    @w.task("polls")
    def polls(ctx: worker.TaskContext, value: Any) -> str:
        """A sync handler that checks ctx.cancelled as it works."""
        behaviour.record(ctx)
        deadline = time.monotonic() + DEADLINE_S
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler's own work, not a test synchronisation
        behaviour.saw_cancel(ctx)
        return "stopped"

    return w


class Stack:
    """API, engine and worker on one nats-server; `close()` stops them all."""

    def __init__(self, url: str, w: worker.Worker) -> None:
        self.url = url
        self._loop = LoopThread()
        self._nc = self._loop.run(connect(url))
        self.js = self._nc.jetstream()
        self.run(jetstream.provision(self.js))
        self.api = ApiThread(url).start()
        self._stop, self._tasks = self.run(self._start(w))
        self.client = Client.connect(url)

    async def _start(self, w: worker.Worker) -> tuple[asyncio.Event, list[asyncio.Task[Any]]]:
        stop = asyncio.Event()
        engine = Engine(self.js, await Snapshots.open(self.js))
        return stop, [asyncio.create_task(engine.run(stop)),
                      asyncio.create_task(w.run_async(stop))]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the stack's loop (where `js` lives) and return its result."""
        return self._loop.run(coro)

    def history(self, run_id: str) -> list[Event]:
        """Every event of a run."""
        return self.run(history.read(self.js, run_id))

    def until(self, probe: Callable[[], T], what: str, deadline_s: float = DEADLINE_S) -> T:
        """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
        give_up = time.monotonic() + deadline_s
        while True:
            result = probe()
            if result:
                return result
            assert time.monotonic() < give_up, f"timed out after {deadline_s}s: {what}"
            time.sleep(0.02)

    def until_event(self, run_id: str, kind: EventType, count: int = 1) -> list[Event]:
        """The run's history once it holds `count` events of `kind`."""
        return self.until(
            lambda: (lambda evs: evs if sum(e.type is kind for e in evs) >= count else None)(
                self.history(run_id)), f"{count} {kind.value} in run {run_id}")

    def dagnats(self, *args: str) -> Result:
        """Run the CLI against this stack."""
        return CliRunner().invoke(cli, list(args), env={"DAGNATS_NATS_URL": self.url},
                                  catch_exceptions=False)

    def close(self) -> None:
        """Stop the worker, the engine and the API; close the connections."""
        self.client.close()

        async def stop() -> None:
            self._stop.set()
            await asyncio.wait_for(asyncio.gather(*self._tasks), DEADLINE_S)
            await jetstream.close(self._nc)

        try:
            self.run(stop())
        finally:
            self.api.stop()
            self._loop.stop()


def running_stack(url: str, add_tasks: Callable[[worker.Worker], None]) -> Iterator[Stack]:
    """A Stack whose worker serves the failure tasks and those `add_tasks` registers; for a
    module's own `stack` fixture (`yield from running_stack(url, add)`)."""
    w = make_worker(url, Behaviour())
    add_tasks(w)
    running = Stack(url, w)
    try:
        yield running
    finally:
        running.close()


def one_error_line(result: Result, code: int) -> str:
    """The single `error: ...` line a failed command printed (asserting its exit code)."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def steps_started(events: list[Event], step_id: str) -> list[Event]:
    """One event per attempt of the step that began running: its step.started, or for a
    quick step (which has none) its outcome, which carries `started_at`."""
    return [e for e in events if e.step_id == step_id and e.begins_attempt()]
