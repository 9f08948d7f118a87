"""Failure paths through the real engine and SDK workers: dead letters, on_failure,
compensation, the run timeout and resuming a failed run."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from dagnats import names, worker
from dagnats.dag.events import Event, EventType
from dagnats.dag.state import RunStatus, StepStatus, fold
from dagnats.store import dead_letters, history
from tests.integration.test_engine import pipeline, running, start_run, wait_terminal


def failing_worker(url: str, log: list[tuple[str, Any]], broken: set[str]) -> worker.Worker:
    """Tasks named in `broken` fail without retry; every call is logged with its input."""
    w = worker.Worker(url, lease=5)

    def make(name: str) -> None:
        @w.task(name)
        async def handler(ctx: worker.TaskContext, value: Any) -> Any:
            log.append((name, value))
            if name in broken:
                raise worker.NonRetryableError(f"{name} is broken")
            return f"{name}-done"

    for name in ("reserve", "charge", "ship", "release", "refund", "fetch", "fallback",
                 "parse", "hang"):
        make(name)
    return w


SAGA = [{"id": "reserve", "task": "reserve", "compensate": "release"},
        {"id": "charge", "task": "charge", "depends_on": ["reserve"], "compensate": "refund"},
        {"id": "ship", "task": "ship", "depends_on": ["charge"]},
        {"id": "release", "task": "release"}, {"id": "refund", "task": "refund"}]


def test_failed_saga_compensates_in_reverse_without_a_dead_letter(nats_server) -> None:
    async def scenario() -> None:
        log: list[tuple[str, Any]] = []
        w = failing_worker(nats_server.url, log, {"ship"})
        async with running(nats_server.url, w) as js:
            run_id = await start_run(js, pipeline("saga", SAGA), {"order": 1})
            state, _ = await wait_terminal(js, run_id)
            assert state.status is RunStatus.COMPENSATED
            assert [name for name, _ in log] == ["reserve", "charge", "ship", "refund",
                                                 "release"]
            assert log[3][1] == {"original_step": "charge", "original_output": "charge-done",
                                 "trigger_step": "ship",
                                 "trigger_error": "step 'ship' failed (not retryable): "
                                                  "ship is broken"}
            assert await dead_letters.list_entries(js, run_id) == []
    asyncio.run(scenario())


def test_a_failed_compensation_is_dead_lettered(nats_server) -> None:
    async def scenario() -> None:
        w = failing_worker(nats_server.url, [], {"ship", "refund"})
        async with running(nats_server.url, w) as js:
            run_id = await start_run(js, pipeline("saga2", SAGA), None)
            state, _ = await wait_terminal(js, run_id)
            assert state.status is RunStatus.COMPENSATE_FAILED
            [entry] = await dead_letters.list_entries(js, run_id)
            assert (entry.step_id, entry.task, entry.attempts) == ("refund", "refund", 1)
            assert entry.input["original_step"] == "charge"
    asyncio.run(scenario())


def test_on_failure_recovers_and_the_run_completes(nats_server) -> None:
    steps = [{"id": "fetch", "task": "fetch", "on_failure": "fallback"},
             {"id": "parse", "task": "parse", "depends_on": ["fetch"]},
             {"id": "fallback", "task": "fallback"}]

    async def scenario() -> None:
        log: list[tuple[str, Any]] = []
        async with running(nats_server.url, failing_worker(nats_server.url, log, {"fetch"})
                           ) as js:
            run_id = await start_run(js, pipeline("recover", steps), "url")
            state, events = await wait_terminal(js, run_id)
            assert state.status is RunStatus.COMPLETED
            assert state.steps["fetch"].status is StepStatus.RECOVERED
            assert state.steps["parse"].status is StepStatus.SKIPPED
            assert ("fallback", {"failed_step": "fetch", "error": "fetch is broken",
                                 "error_type": "NonRetryableError"}) in log
            assert "parse" not in [name for name, _ in log]
            assert EventType.STEP_RECOVERED in [e.type for e in events]
    asyncio.run(scenario())


def test_a_step_that_fails_for_good_writes_a_dead_letter_then_resume_completes(nats_server
                                                                               ) -> None:
    steps = [{"id": "reserve", "task": "reserve"},
             {"id": "charge", "task": "charge", "depends_on": ["reserve"]}]

    async def scenario() -> None:
        log: list[tuple[str, Any]] = []
        broken = {"charge"}
        async with running(nats_server.url, failing_worker(nats_server.url, log, broken)) as js:
            run_id = await start_run(js, pipeline("dlq", steps), 5)
            state, _ = await wait_terminal(js, run_id)
            assert state.status is RunStatus.FAILED
            [entry] = await dead_letters.list_entries(js, run_id)
            assert (entry.step_id, entry.input, entry.error_type) == (
                "charge", "reserve-done", "NonRetryableError")
            broken.clear()  # the bug is fixed; resume the run in place
            resumed = Event(type=EventType.WORKFLOW_RESUMED, run_id=run_id,
                            timestamp=datetime.now(timezone.utc),
                            data={"generation": 1, "reason": "test"})
            await history.append(js, resumed, names.resumed_msg_id(run_id, 1))
            final = await _until(js, run_id, RunStatus.COMPLETED)
            assert final.steps["charge"].output == "charge-done"
            assert [name for name, _ in log].count("reserve") == 1  # not executed again
    asyncio.run(scenario())


def test_the_run_timeout_fails_a_run_that_never_ends(nats_server) -> None:
    steps = [{"id": "hang", "task": "nobody-serves-this"}]

    async def scenario() -> None:
        async with running(nats_server.url, failing_worker(nats_server.url, [], set())) as js:
            run_id = await start_run(js, pipeline("slowpoke", steps, timeout="1s"), None)
            state, events = await wait_terminal(js, run_id)
            assert state.status is RunStatus.FAILED
            assert state.error == "workflow timed out after 1s"
            fired = [e for e in events if e.type is EventType.TIMER_FIRED]
            started = events[0].timestamp
            assert (fired[0].timestamp - started).total_seconds() >= 1.0
    asyncio.run(scenario())


async def _until(js: Any, run_id: str, status: RunStatus) -> Any:
    async def poll() -> Any:
        while True:  # reads history until the resumed run reaches `status`
            run = fold(await history.read(js, run_id))
            if run is not None and run.status is status and run.generation == 1:
                return run
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(poll(), 20)
