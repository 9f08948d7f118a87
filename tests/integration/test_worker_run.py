"""The worker against a real nats-server: task messages in, history events out.

Each test runs a Worker in its own event loop (run_async with a stop event), publishes task
messages as the engine would, and waits (with a deadline) for the events in run history.
Task names are unique per test: the durable task consumers outlive a test on the module's
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from pydantic import BaseModel

from dagnats import jetstream, names, worker
from dagnats.connection import connect
from dagnats.dag.events import Event, EventType
from dagnats.dag.tasks import TaskMessage
from dagnats.errors import ServerUnavailable
from dagnats.server.binary import find_nats_server
from dagnats.server.nats_process import NatsServer
from dagnats.server.ready import ready_env, ready_pipe, wait_ready
from dagnats.worker import _runner, _worker
from tests.integration.tasks import publish_task, reports

pytestmark = pytest.mark.timeout(60)

LEASE_S = 2.0
DEADLINE_S = 8.0
POLL_S = 0.2  # how soon a stopping worker notices: short, so each test ends quickly


@pytest.fixture(autouse=True)
def short_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runner, "POLL_S", POLL_S)


def uid() -> str:
    return uuid.uuid4().hex[:10]


class Harness:
    """A connection to the module's server and helpers to publish tasks and read history."""

    def __init__(self, js: JetStreamContext, url: str) -> None:
        self.js = js
        self.url = url

    def worker(self, **kwargs: Any) -> worker.Worker:
        kwargs.setdefault("lease", LEASE_S)
        kwargs.setdefault("name", "test-worker")
        return worker.Worker(self.url, **kwargs)

    async def publish(self, task: str, input: Any = None, *, run_id: str | None = None,
                      step_id: str = "s1", attempt: int = 1, timeout_s: float | None = None,
                      timeout: str | None = None, not_before: datetime | None = None,
                      msg_id: str | None = None) -> TaskMessage:
        message = TaskMessage(run_id=run_id or uid(), workflow="wf", step_id=step_id,
                              task=task, attempt=attempt, max_attempts=3, input=input,
                              timeout_s=timeout_s, timeout=timeout, not_before=not_before)
        await publish_task(self.js, message, msg_id)
        return message

    async def wait_events(self, run_id: str, done: Callable[[list[Event]], bool],
                          deadline_s: float = DEADLINE_S) -> list[Event]:
        """The run's history once `done(events)` holds; fails with the history at the deadline."""
        give_up = time.monotonic() + deadline_s
        while True:
            events = await reports(self.js, run_id)
            if done(events):
                return events
            if time.monotonic() > give_up:
                pytest.fail(f"history of run {run_id} never got there: "
                            f"{[(e.type.value, e.attempt, e.data) for e in events]}")
            await asyncio.sleep(0.05)

    async def finished(self, run_id: str, deadline_s: float = DEADLINE_S) -> Event:
        """The step.completed or step.failed event of a run."""
        events = await self.wait_events(run_id, lambda evs: any(_is_final(e) for e in evs),
                                        deadline_s)
        return next(e for e in events if _is_final(e))


def _is_final(event: Event) -> bool:
    return event.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED)


#: What a quick step's outcome carries besides its report (it has no step.started event).
BEGAN_KEYS = {"delivery", "worker", "started_at"}


def reported(event: Event) -> dict[str, Any]:
    """An outcome's data without when and where its attempt began."""
    return {k: v for k, v in event.data.items() if k not in BEGAN_KEYS}


def of_type(events: list[Event], kind: EventType) -> list[Event]:
    return [e for e in events if e.type is kind]


@contextlib.asynccontextmanager
async def harness(url: str) -> AsyncIterator[Harness]:
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await jetstream.provision(js)
        yield Harness(js, url)
    finally:
        await jetstream.close(nc)


@contextlib.asynccontextmanager
async def running(w: worker.Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run `w` in this loop; stop it (and wait for it) on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(w.run_async(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def run(url: str, scenario: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with harness(url) as h:
            await scenario(h)

    asyncio.run(main())


# --- results --------------------------------------------------------------------------------

class Review(BaseModel):
    repo: str
    branch: str = "main"


class Report(BaseModel):
    issues: int
    report: str


def test_sync_and_async_handlers_complete_with_their_output(nats_server: Any) -> None:
    greet_task, upper_task = f"greet_{uid()}", f"upper_{uid()}"

    async def scenario(h: Harness) -> None:
        w = h.worker()

        def greet(ctx: worker.TaskContext, name: str) -> str:
            assert threading.current_thread() is not threading.main_thread()
            return f"Hello, {name or 'World'}!"

        worker.handle_typed(w, greet_task, greet)

        @w.task(upper_task)
        async def uppercase(ctx: worker.TaskContext, text: str) -> str:
            return text.upper()

        async with running(w):
            greeted = await h.publish(greet_task, "Ada")
            shouted = await h.publish(upper_task, "hello")
            for task, output in ((greeted, "Hello, Ada!"), (shouted, "HELLO")):
                final = await h.finished(task.run_id)
                assert final.type is EventType.STEP_COMPLETED
                assert reported(final) == {"output": output}
                assert (final.step_id, final.attempt) == ("s1", 1)
                events = await reports(h.js, task.run_id)
                # A quick handler: no step.started; its outcome says when and where it ran.
                assert [e.type for e in events] == [EventType.STEP_COMPLETED]
                assert (final.data["delivery"], final.data["worker"]) == (1, "test-worker")
                assert final.began() <= final.timestamp

    run(nats_server.url, scenario)


def test_consumers_are_ensured_with_the_lease(nats_server: Any) -> None:
    name = f"lease_{uid()}"

    async def scenario(h: Harness) -> None:
        w = h.worker()
        worker.handle_typed(w, name, lambda ctx, x: x)
        async with running(w):
            done = await h.finished((await h.publish(name, 1)).run_id)
            assert reported(done) == {"output": 1}
            info = await h.js.consumer_info(names.HISTORY_STREAM, names.task_consumer(name))
        config = info.config
        assert config.ack_wait == LEASE_S
        assert config.max_deliver == -1
        assert config.filter_subject == names.history_tasks_filter(name)
        assert config.max_ack_pending == _runner.MAX_ACK_PENDING

    run(nats_server.url, scenario)


def test_basemodel_input_and_output(nats_server: Any) -> None:
    name = f"review_{uid()}"

    async def scenario(h: Harness) -> None:
        w = h.worker()

        @w.task(name)
        def review(ctx: worker.TaskContext, inp: Review) -> Report:
            return Report(issues=len(inp.repo), report=f"{inp.repo}@{inp.branch}")

        async with running(w):
            final = await h.finished((await h.publish(name, {"repo": "dagnats"})).run_id)
        assert final.type is EventType.STEP_COMPLETED
        assert reported(final) == {"output": {"issues": 7, "report": "dagnats@main"}}

    run(nats_server.url, scenario)


# --- failures -------------------------------------------------------------------------------

def test_failures_are_classified(nats_server: Any) -> None:
    tasks = {kind: f"{kind}_{uid()}" for kind in ("invalid", "final", "flaky", "output", "coro")}
    calls: list[str] = []

    async def scenario(h: Harness) -> None:
        w = h.worker()

        @w.task(tasks["invalid"])
        def needs_review(ctx: worker.TaskContext, inp: Review) -> str:
            calls.append("invalid")
            return inp.repo

        @w.task(tasks["final"])
        async def refuses(ctx: worker.TaskContext, x: Any) -> None:
            raise worker.NonRetryableError("card declined")

        @w.task(tasks["flaky"])
        def flaky(ctx: worker.TaskContext, x: Any) -> None:
            raise ConnectionError("upstream reset")

        @w.task(tasks["output"])
        async def wrong(ctx: worker.TaskContext, x: Any) -> int:
            return "not a number"  # type: ignore[return-value]

        async def later(x: Any) -> Any:
            return x

        worker.handle_typed(w, tasks["coro"], lambda ctx, x: later(x))  # forgot async

        async with running(w):
            sent = {kind: await h.publish(name, {"branch": 3} if kind == "invalid" else 1)
                    for kind, name in tasks.items()}
            failed = {kind: await h.finished(task.run_id) for kind, task in sent.items()}
        assert all(e.type is EventType.STEP_FAILED for e in failed.values())
        assert calls == []  # invalid input never reaches the handler

        invalid = failed["invalid"].data
        assert invalid["retryable"] is False
        assert invalid["error"].startswith(f"invalid input for task '{tasks['invalid']}':")
        assert "field required (input.repo)" in invalid["error"]
        assert "expected str, got int (input.branch)" in invalid["error"]
        assert invalid["error_type"] == "InvalidTaskInput"
        assert invalid["max_attempts"] == 3

        assert reported(failed["final"]) == {"error": "card declined", "retryable": False,
                                        "error_type": "NonRetryableError", "max_attempts": 3}
        assert reported(failed["flaky"]) == {"error": "ConnectionError: upstream reset",
                                        "retryable": True, "error_type": "ConnectionError",
                                        "max_attempts": 3}
        assert failed["output"].data["retryable"] is False
        assert "invalid output" in failed["output"].data["error"]
        assert failed["coro"].data["retryable"] is False
        assert "returned a coroutine" in failed["coro"].data["error"]

    run(nats_server.url, scenario)


def test_timeouts_fail_retryable_for_async_and_sync_handlers(nats_server: Any) -> None:
    async_name, sync_name = f"slow_async_{uid()}", f"slow_sync_{uid()}"
    release = threading.Event()

    async def scenario(h: Harness) -> None:
        w = h.worker()

        @w.task(async_name)
        async def slow_async(ctx: worker.TaskContext, x: Any) -> None:
            await asyncio.Event().wait()  # never set: only the timeout ends it

        @w.task(sync_name)
        def slow_sync(ctx: worker.TaskContext, x: Any) -> None:
            release.wait(DEADLINE_S)

        try:
            async with running(w):
                tasks = [await h.publish(async_name, 1, timeout_s=1.0, timeout="1s"),
                         await h.publish(sync_name, 1, timeout_s=1.0)]
                for task in tasks:
                    final = await h.finished(task.run_id)
                    assert final.type is EventType.STEP_FAILED
                    assert final.data["error"] == "timed out after 1s"
                    assert final.data["retryable"] is True
                    assert final.data["error_type"] == "TimeoutError"
                release.set()  # the thread cannot be interrupted: let it end
        finally:
            release.set()

    run(nats_server.url, scenario)


# --- delivery -------------------------------------------------------------------------------

def test_not_before_in_the_future_is_not_run_before_then(nats_server: Any) -> None:
    name = f"later_{uid()}"

    async def scenario(h: Harness) -> None:
        w = h.worker()
        worker.handle_typed(w, name, lambda ctx, x: x)
        not_before = datetime.now(timezone.utc) + timedelta(seconds=1.5)
        async with running(w):
            task = await h.publish(name, "late", not_before=not_before)
            await h.finished(task.run_id)
            events = await reports(h.js, task.run_id)
        [completed] = of_type(events, EventType.STEP_COMPLETED)
        assert completed.began() >= not_before
        assert completed.data["delivery"] >= 2  # put back once with a delay
        assert reported(of_type(events, EventType.STEP_COMPLETED)[0]) == {"output": "late"}

    run(nats_server.url, scenario)


def test_a_republished_task_gives_one_completed_event_per_attempt(nats_server: Any) -> None:
    name = f"dup_{uid()}"
    calls: list[int] = []

    async def scenario(h: Harness) -> None:
        w = h.worker()

        @w.task(name)
        async def count(ctx: worker.TaskContext, x: int) -> int:
            calls.append(x)
            return x

        run_id = uid()
        async with running(w):
            for copy in range(2):  # as if the engine published it twice (different msg ids)
                await h.publish(name, 5, run_id=run_id, msg_id=f"copy-{copy}-{run_id}")
            await h.wait_events(run_id, lambda evs: len(calls) == 2
                                and len(of_type(evs, EventType.STEP_COMPLETED)) >= 1)
            sentinel = await h.publish(name, 6)  # once this is done, both copies are too
            await h.finished(sentinel.run_id)
            events = await reports(h.js, run_id)
        assert calls.count(5) == 2  # at-least-once: both copies ran ...
        assert len(of_type(events, EventType.STEP_COMPLETED)) == 1  # ... history has it once
        assert of_type(events, EventType.STEP_STARTED) == []  # quick: reported by outcome

    run(nats_server.url, scenario)


def test_a_message_delivered_too_often_fails_without_running(nats_server: Any) -> None:
    name = f"poison_{uid()}"
    calls: list[Any] = []

    async def scenario(h: Harness) -> None:
        task = await h.publish(name, 1)
        # Play a worker that crashes MAX_DELIVERIES times: take the message, put it back.
        sub = await jetstream.ensure_consumer(h.js, names.HISTORY_STREAM,
                                              _runner.consumer_config(name, LEASE_S), 2.0)
        for delivery in range(1, _runner.MAX_DELIVERIES + 1):
            (msg,) = await sub.pull(1)
            assert msg.metadata.num_delivered == delivery
            await msg.nak()
        await sub.unsubscribe()

        w = h.worker()
        worker.handle_typed(w, name, lambda ctx, x: calls.append(x))
        async with running(w):
            final = await h.finished(task.run_id)
        assert calls == []
        assert final.type is EventType.STEP_FAILED
        assert final.data["retryable"] is False
        assert final.data["error"] == ("task delivered 5 times without finishing"
                                       " (workers crashed or stalled)")
        info = await h.js.consumer_info(names.HISTORY_STREAM, names.task_consumer(name))
        assert info.num_ack_pending == 0 and info.num_pending == 0  # acked: gone

    run(nats_server.url, scenario)


def test_an_undecodable_message_is_terminated(nats_server: Any) -> None:
    name = f"garbage_{uid()}"

    async def scenario(h: Harness) -> None:
        w = h.worker()
        worker.handle_typed(w, name, lambda ctx, x: x)
        async with running(w):
            await h.js.publish(names.history_task_subject(uid(), name), b"{not json")
            after = await h.publish(name, "fine")
            assert reported(await h.finished(after.run_id)) == {"output": "fine"}
            give_up = time.monotonic() + DEADLINE_S
            while True:
                info = await h.js.consumer_info(names.HISTORY_STREAM,
                                                names.task_consumer(name))
                if info.num_ack_pending == 0 and info.num_pending == 0:
                    break
                assert time.monotonic() < give_up, info
                await asyncio.sleep(0.05)
            assert info.num_redelivered == 0

    run(nats_server.url, scenario)


def test_a_sync_handler_outliving_the_lease_keeps_it(nats_server: Any) -> None:
    name = f"long_{uid()}"

    async def scenario(h: Harness) -> None:
        w = h.worker(lease=0.6)

        @w.task(name)
        def long(ctx: worker.TaskContext, x: Any) -> str:
            time.sleep(0.5)  # the work itself, in a thread: blocks no event loop
            ctx.heartbeat()  # from a thread: must be harmless
            time.sleep(0.8)  # more than one lease in all
            return "done"

        async with running(w):
            task = await h.publish(name, 1)
            # A slow step: step.started says when it began, so its outcome carries no more.
            assert (await h.finished(task.run_id)).data == {"output": "done"}
            events = await reports(h.js, task.run_id)
            info = await h.js.consumer_info(names.HISTORY_STREAM, names.task_consumer(name))
        assert len(of_type(events, EventType.STEP_STARTED)) == 1
        assert info.num_redelivered == 0

    run(nats_server.url, scenario)


def test_concurrency_bounds_the_handlers_running_at_once(nats_server: Any) -> None:
    name = f"bounded_{uid()}"
    running_now: list[int] = []
    peak = [0]

    async def scenario(h: Harness) -> None:
        w = h.worker(concurrency=2)

        @w.task(name)
        async def busy(ctx: worker.TaskContext, x: int) -> int:
            running_now.append(x)
            peak[0] = max(peak[0], len(running_now))
            await asyncio.sleep(0.2)  # the work
            running_now.remove(x)
            return x

        async with running(w):
            tasks = [await h.publish(name, i) for i in range(6)]
            for task in tasks:
                assert (await h.finished(task.run_id)).type is EventType.STEP_COMPLETED
        assert peak[0] == 2

    run(nats_server.url, scenario)


# --- stopping -------------------------------------------------------------------------------

def test_stop_waits_for_a_task_in_flight(nats_server: Any) -> None:
    name = f"inflight_{uid()}"

    async def scenario(h: Harness) -> None:
        release = threading.Event()  # async handlers run on the worker's own handler loop
        w = h.worker()

        @w.task(name)
        async def waits(ctx: worker.TaskContext, x: Any) -> str:
            await asyncio.to_thread(release.wait, DEADLINE_S)
            return "finished"

        stop = asyncio.Event()
        worker_task = asyncio.create_task(w.run_async(stop))
        task = await h.publish(name, 1)
        await h.wait_events(task.run_id, lambda evs: bool(evs))  # started
        stop.set()
        done, _ = await asyncio.wait({worker_task}, timeout=3 * POLL_S)
        assert not done, "the worker returned with a task in flight"
        release.set()
        await asyncio.wait_for(worker_task, 5)
        events = await reports(h.js, task.run_id)
        assert reported(of_type(events, EventType.STEP_COMPLETED)[0]) == {"output": "finished"}
        info = await h.js.consumer_info(names.HISTORY_STREAM, names.task_consumer(name))
        assert info.num_ack_pending == 0 and info.num_pending == 0

    run(nats_server.url, scenario)


def test_stop_cancels_tasks_still_running_after_the_grace_period(
        nats_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_worker, "GRACE_S", 0.3)
    name = f"stuck_{uid()}"
    cancelled = asyncio.Event()

    async def scenario(h: Harness) -> None:
        w = h.worker()

        @w.task(name)
        async def stuck(ctx: worker.TaskContext, x: Any) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()

        stop = asyncio.Event()
        worker_task = asyncio.create_task(w.run_async(stop))
        task = await h.publish(name, 1)
        await h.wait_events(task.run_id, lambda evs: bool(evs))  # started
        stop.set()
        await asyncio.wait_for(worker_task, 5)
        assert cancelled.is_set()
        events = await reports(h.js, task.run_id)
        assert [e.type for e in events] == [EventType.STEP_STARTED]
        info = await h.js.consumer_info(names.HISTORY_STREAM, names.task_consumer(name))
        assert info.num_ack_pending == 1  # not acked: redelivered once the lease lapses

    run(nats_server.url, scenario)


def test_run_async_fails_clearly_when_nats_is_unreachable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_worker, "CONNECT_DEADLINE_S", 0.5)
    w = worker.Worker("nats://127.0.0.1:1", lease=LEASE_S)
    worker.handle_typed(w, "t", lambda ctx, x: x)
    with pytest.raises(ServerUnavailable, match=re.escape("cannot reach NATS at nats://127.0.0.1:1")):
        asyncio.run(w.run_async(asyncio.Event()))


def test_run_async_fails_clearly_without_streams(tmp_path: Path) -> None:
    async def main() -> None:
        server = NatsServer(find_nats_server(), tmp_path / "store", tmp_path / "log", port=0)
        await server.start()
        try:
            w = worker.Worker(server.url, lease=LEASE_S)
            worker.handle_typed(w, "t", lambda ctx, x: x)
            with pytest.raises(ServerUnavailable, match="stream WORKFLOW_HISTORY does not exist"):
                await w.run_async(asyncio.Event())
        finally:
            await server.stop()

    asyncio.run(main())


USER_FILE = '''
from dagnats import worker

w = worker.Worker()                       # DAGNATS_NATS_URL, else nats://127.0.0.1:4222

def greet(ctx: worker.TaskContext, name: str) -> str:
    return f"Hello, {name or 'World'}!"

worker.handle_typed(w, "greet", greet)    # input/output types come from the annotations

@w.task("uppercase")                      # decorator form, same behaviour
async def uppercase(ctx: worker.TaskContext, text: str) -> str:
    return text.upper()

if __name__ == "__main__":
    w.run()                               # blocks; SIGINT/SIGTERM drain in-flight tasks, then exit
'''


def test_the_tutorial_worker_file_runs_reports_ready_and_exits_0_on_sigterm(
        nats_server: Any, tmp_path: Path) -> None:
    script = tmp_path / "my_worker.py"
    script.write_text(textwrap.dedent(USER_FILE))

    async def scenario(h: Harness) -> None:
        read_fd, write_fd = ready_pipe()
        env = ready_env(write_fd, {**os.environ, "DAGNATS_NATS_URL": h.url,
                                   "DAGNATS_TASK_LEASE": str(LEASE_S)})
        # wait_ready watches a Popen: spawning is quick, the waiting is async
        proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, str(script)], pass_fds=(write_fd,), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        os.close(write_fd)
        try:
            assert await wait_ready(read_fd, proc, timeout_s=15), "the worker never got ready"
            greeted = await h.publish("greet", "")
            shouted = await h.publish("uppercase", "hello, world!")
            assert reported(await h.finished(greeted.run_id)) == {"output": "Hello, World!"}
            assert reported(await h.finished(shouted.run_id)) == {"output": "HELLO, WORLD!"}
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 10)
            output = proc.stdout.read().decode() if proc.stdout else ""
            assert code == 0, output
            assert "ready" in output and "stopped" in output
            assert "Traceback" not in output
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    run(nats_server.url, scenario)


STUCK_FILE = """
import os, threading
from dagnats import worker

w = worker.Worker()

@w.task(os.environ["TASK"])
def stuck(ctx: worker.TaskContext, x: int) -> int:
    threading.Event().wait()  # never returns: only a second signal ends the worker
    return x

w.run()
"""


def test_a_second_sigterm_cancels_tasks_in_flight_and_exits_0(
        nats_server: Any, tmp_path: Path) -> None:
    script = tmp_path / "stuck_worker.py"
    script.write_text(STUCK_FILE)
    name = f"blocked_{uid()}"

    async def scenario(h: Harness) -> None:
        env = {**os.environ, "DAGNATS_NATS_URL": h.url, "DAGNATS_TASK_LEASE": str(LEASE_S),
               "TASK": name}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        try:
            task = await h.publish(name, 1)
            await h.wait_events(task.run_id, lambda evs: bool(evs))  # started
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(TimeoutError):  # waiting for the task, which never ends
                await asyncio.wait_for(asyncio.shield(proc.wait()), 3 * POLL_S)
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 10)
            output = (await proc.stdout.read()).decode() if proc.stdout else ""
            assert code == 0, output
            assert "cancelling tasks in flight" in output
            assert "still running in threads" in output
            events = await reports(h.js, task.run_id)
            assert [e.type for e in events] == [EventType.STEP_STARTED]
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    run(nats_server.url, scenario)
