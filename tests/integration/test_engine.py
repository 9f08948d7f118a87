"""The engine against a real nats-server and real SDK workers, in one event loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

from dagnats import jetstream, names, worker
from dagnats.connection import connect
from dagnats.dag.actions import DispatchStep
from dagnats.dag.advance import advance
from dagnats.dag.events import RUN_TERMINAL_EVENTS, Event, EventType, attempt_starts
from dagnats.dag.kinds.task import task_event
from dagnats.dag.state import RunState, RunStatus, StepStatus, fold
from dagnats.dag.validate import parse_definition
from dagnats.engine import partitions
from dagnats.engine.engine import Engine
from dagnats.store import history
from dagnats.store.snapshots import Snapshots

DEADLINE_S = 20.0


def pipeline(name: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": "1", "steps": steps, **extra}


async def start_run(js: Any, doc: dict[str, Any], run_input: Any) -> str:
    definition = parse_definition(doc)
    run_id = uuid.uuid4().hex
    event = Event(type=EventType.WORKFLOW_STARTED, run_id=run_id,
                  timestamp=datetime.now(timezone.utc),
                  data={"workflow": definition.name, "version": definition.version,
                        "input": run_input, "definition": definition.to_json_dict()})
    await history.append(js, event, names.started_msg_id(run_id))
    return run_id


async def wait_terminal(js: Any, run_id: str) -> tuple[RunState, list[Event]]:
    """Wait (with a deadline) until the run's history ends; return the folded state."""
    subject = names.history_run_filter(run_id)
    ended = asyncio.Event()
    sub = await js._nc.subscribe(subject, cb=_on_terminal(ended))
    try:
        events = await history.read(js, run_id)
        if not any(e.type in RUN_TERMINAL_EVENTS for e in events):
            await asyncio.wait_for(ended.wait(), DEADLINE_S)
    finally:
        await sub.unsubscribe()
    # A core subscriber may get the event before the stream has stored it: read until the
    # stored history has it too.
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    events = await history.read(js, run_id)
    while not any(e.type in RUN_TERMINAL_EVENTS for e in events):
        assert asyncio.get_running_loop().time() < deadline, "the end never reached history"
        await asyncio.sleep(0.01)
        events = await history.read(js, run_id)
    state = fold(events)
    assert state is not None
    return state, events


def _on_terminal(ended: asyncio.Event) -> Callable[[Any], Awaitable[None]]:
    async def callback(msg: Any) -> None:
        if Event.decode(msg.data).type in RUN_TERMINAL_EVENTS:
            ended.set()
    return callback


@asynccontextmanager
async def running(url: str, w: worker.Worker, engines: int = 1) -> AsyncIterator[Any]:
    """Provisioned streams, `engines` engines and the worker, all stopped on exit."""
    nc = await connect(url)
    js = nc.jetstream()
    await jetstream.provision(js)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(Engine(js, await Snapshots.open(js)).run(stop))
             for _ in range(engines)]
    tasks.append(asyncio.create_task(w.run_async(stop)))
    try:
        yield js
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S)
        await jetstream.close(nc)


def make_worker(url: str, calls: dict[str, int], fail_first: int = 0) -> worker.Worker:
    w = worker.Worker(url, lease=5)

    @w.task("greet")
    def greet(ctx: worker.TaskContext, name: str) -> str:
        calls["greet"] = calls.get("greet", 0) + 1
        if calls["greet"] <= fail_first:
            raise ConnectionError("flaky network")
        return f"Hello, {name or 'World'}!"

    @w.task("uppercase")
    async def uppercase(ctx: worker.TaskContext, text: str) -> str:
        return text.upper()

    @w.task("reverse")
    def reverse(ctx: worker.TaskContext, text: str) -> str:
        return text[::-1]

    @w.task("length")
    def length(ctx: worker.TaskContext, parts: dict[str, str]) -> int:
        return sum(len(v) for v in parts.values())

    return w


CHAIN = [{"id": "greet", "task": "greet"},
         {"id": "uppercase", "task": "uppercase", "depends_on": ["greet"]},
         {"id": "reverse", "task": "reverse", "depends_on": ["uppercase"]}]


def test_chain_completes_and_snapshot_matches_history(nats_server) -> None:
    async def scenario() -> None:
        async with running(nats_server.url, make_worker(nats_server.url, {})) as js:
            run_id = await start_run(js, pipeline("chain", CHAIN), "World")
            state, events = await wait_terminal(js, run_id)
            assert state.status is RunStatus.COMPLETED
            assert state.output == "!DLROW ,OLLEH"
            assert state.steps["uppercase"].output == "HELLO, WORLD!"
            kinds = [e.type for e in events]
            assert kinds.count(EventType.WORKFLOW_COMPLETED) == 1
            assert kinds.count(EventType.STEP_COMPLETED) == 3
            snapshots = await Snapshots.open(js)
            snapshot = await _wait_for(lambda: _terminal_snapshot(snapshots, run_id))
            assert snapshot.public() == state.public()
    asyncio.run(scenario())


def test_the_engine_acks_the_events_it_recorded_without_reading_them(nats_server) -> None:
    """Its own workflow.completed comes back on its consumer: it is already folded in, so it
    is acked unread (not decoded, not handled again); its step.queued events (the tasks)
    never come back."""
    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        engine = Engine(js, await Snapshots.open(js))
        handled: list[int] = []
        handle_event = engine._handle_event

        async def counting(run: Any, event: Event, caught_up: bool) -> Any:
            handled.append(event.seq)
            return await handle_event(run, event, caught_up)

        engine._handle_event = counting  # type: ignore[method-assign]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(engine.run(stop)),
                 asyncio.create_task(make_worker(nats_server.url, {}).run_async(stop))]
        try:
            run_id = await start_run(js, pipeline("echoes", CHAIN), "Ann")
            state, events = await wait_terminal(js, run_id)
            assert state.status is RunStatus.COMPLETED
            recorded = {e.seq for e in events if e.type in (EventType.STEP_QUEUED,
                                                            EventType.WORKFLOW_COMPLETED)}
            assert len(recorded) == 4

            async def all_acked() -> bool:
                return (await partitions.backlog(js)).idle
            await _wait_for(all_acked)
            assert not recorded & set(handled)  # acked without being handled again
            assert {e.seq for e in events} - recorded <= set(handled)  # the rest were
            assert (await partitions.backlog(js)).redelivered == 0
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S)
            await jetstream.close(nc)
    asyncio.run(scenario())


def test_fan_out_and_join_get_the_right_inputs(nats_server) -> None:
    steps = [{"id": "greet", "task": "greet"},
             {"id": "up", "task": "uppercase", "depends_on": ["greet"]},
             {"id": "rev", "task": "reverse", "depends_on": ["greet"]},
             {"id": "join", "task": "length", "depends_on": ["up", "rev"]}]

    async def scenario() -> None:
        async with running(nats_server.url, make_worker(nats_server.url, {})) as js:
            run_id = await start_run(js, pipeline("fan", steps), "Ann")
            state, _ = await wait_terminal(js, run_id)
            assert state.status is RunStatus.COMPLETED
            assert state.output == 2 * len("Hello, Ann!")
    asyncio.run(scenario())


def test_retries_wait_then_succeed(nats_server) -> None:
    retry = {"max_attempts": 3, "strategy": "fixed", "initial_delay": "300ms"}
    steps = [{"id": "greet", "task": "greet", "retry": retry}]

    async def scenario() -> None:
        calls: dict[str, int] = {}
        async with running(nats_server.url, make_worker(nats_server.url, calls, 2)) as js:
            run_id = await start_run(js, pipeline("flaky", steps), "Bo")
            state, events = await wait_terminal(js, run_id)
            assert state.status is RunStatus.COMPLETED
            assert state.steps["greet"].attempts == 3
            failed = [e for e in events if e.type is EventType.STEP_FAILED]
            assert [e.data["error"] for e in failed] == ["ConnectionError: flaky network"] * 2
            queued = [e for e in events if e.type is EventType.STEP_QUEUED]
            starts = attempt_starts(events, "greet")
            for retry_queued in queued[1:]:
                waited = (starts[retry_queued.attempt] - retry_queued.timestamp).total_seconds()
                assert waited >= 0.29  # the retry did not run before its delay
    asyncio.run(scenario())


def test_exhausted_retries_fail_the_run(nats_server) -> None:
    steps = [{"id": "greet", "task": "greet", "retry": {"max_attempts": 1,
                                                        "initial_delay": "10ms"}},
             {"id": "uppercase", "task": "uppercase", "depends_on": ["greet"]}]

    async def scenario() -> None:
        async with running(nats_server.url, make_worker(nats_server.url, {}, 99)) as js:
            run_id = await start_run(js, pipeline("doomed", steps), "x")
            state, _ = await wait_terminal(js, run_id)
            assert state.status is RunStatus.FAILED
            assert state.error == ("step 'greet' failed (attempt 2 of 2): "
                                   "ConnectionError: flaky network")
            assert state.steps["uppercase"].status.value == "pending"
    asyncio.run(scenario())


def test_two_engines_many_runs_no_duplicates(nats_server) -> None:
    async def scenario() -> None:
        async with running(nats_server.url, make_worker(nats_server.url, {}), engines=2) as js:
            doc = pipeline("twins", CHAIN)
            run_ids = [await start_run(js, doc, f"n{i}") for i in range(30)]
            results = await asyncio.gather(*(wait_terminal(js, r) for r in run_ids))
            for i, (state, events) in enumerate(results):
                assert state.status is RunStatus.COMPLETED
                assert state.output == f"Hello, n{i}!".upper()[::-1]
                done = [(e.step_id, e.attempt) for e in events
                        if e.type is EventType.STEP_COMPLETED]
                assert sorted(done) == [("greet", 1), ("reverse", 1), ("uppercase", 1)]
                assert [e.type for e in events].count(EventType.WORKFLOW_COMPLETED) == 1
    asyncio.run(scenario())


def test_deleted_snapshot_is_rebuilt_from_history(nats_server) -> None:
    steps = [{"id": "a", "task": "greet"}, {"id": "b", "task": "uppercase", "depends_on": ["a"]}]

    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        snapshots = await Snapshots.open(js)
        run_id = await start_run(js, pipeline("rebuild", steps), "Cy")
        stop = asyncio.Event()
        engine = asyncio.create_task(Engine(js, snapshots).run(stop))
        await _wait_for(lambda: snapshots.get(run_id))  # the engine saw the start
        stop.set()
        await engine
        await snapshots.delete(run_id)  # lost cache; a fresh engine must rebuild it
        async with running(nats_server.url, make_worker(nats_server.url, {})) as js2:
            state, _ = await wait_terminal(js2, run_id)
            assert state.status is RunStatus.COMPLETED
            rebuilt = await _wait_for(lambda: _terminal_snapshot(snapshots, run_id))
            assert rebuilt.output == "HELLO, CY!"
        await jetstream.close(nc)
    asyncio.run(scenario())


async def _terminal_snapshot(snapshots: Snapshots, run_id: str) -> RunState | None:
    snapshot = await snapshots.get(run_id)
    return snapshot.run if snapshot and snapshot.run.status.terminal else None


async def _wait_for(probe: Callable[[], Awaitable[Any]]) -> Any:
    async def loop() -> Any:
        while True:
            result = await probe()
            if result:
                return result
            await asyncio.sleep(0.02)
    return await asyncio.wait_for(loop(), DEADLINE_S)


def test_an_engine_that_died_after_queueing_before_its_snapshot_is_covered(nats_server
                                                                            ) -> None:
    """History holds greet's task (its step.queued event) but the stored snapshot lags: the
    task runs anyway (the event is the task), and the engine that gets its outcome reads
    what its snapshot missed first."""
    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        run_id = await start_run(js, pipeline("orphaned", CHAIN), "Di")
        # The dead engine had folded the start into a snapshot (so redelivering the start
        # dispatches nothing) and recorded greet's queueing, then died.
        started = fold(await history.read(js, run_id))
        assert started is not None
        await (await Snapshots.open(js)).put(started, 0)
        [dispatch] = [a for a in advance(started.definition, started, (await history.read(
            js, run_id))[-1]) if isinstance(a, DispatchStep)]
        queued = task_event(dispatch, started.definition, run_id, datetime.now(timezone.utc))
        await history.append(js, queued, names.step_event_msg_id(run_id, "greet", 1, "queued"))
        async with running(nats_server.url, make_worker(nats_server.url, {})) as js2:
            state, events = await wait_terminal(js2, run_id)
            assert state.status is RunStatus.COMPLETED and state.output == "!ID ,OLLEH"
            greet = [e.type for e in events if e.step_id == "greet"]
            assert greet == [EventType.STEP_QUEUED, EventType.STEP_COMPLETED]
        await jetstream.close(nc)
    asyncio.run(scenario())


def test_an_engine_whose_cache_went_stale_catches_up_from_history(nats_server) -> None:
    """E1 caches 'a running #1'; E2 handles a#1's failure and dispatches a#2; the reports of
    a#2 then reach E1, whose cache does not know a#2: it must read what it missed."""
    doc = pipeline("stale", [{"id": "a", "task": "t"}],
                   default_retry={"max_attempts": 2, "initial_delay": "10ms"})

    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        e1, e2 = Engine(js, await Snapshots.open(js)), Engine(js, await Snapshots.open(js))
        run_id = await start_run(js, doc, {"x": 1})

        async def record(kind: EventType, attempt: int, **data: Any) -> Event:
            event = Event(type=kind, run_id=run_id, step_id="a", attempt=attempt,
                          timestamp=datetime.now(timezone.utc), data=data)
            kind_id = f"{kind.value}-test"
            seq = await history.append(js, event, names.step_event_msg_id(run_id, "a", attempt,
                                                                           kind_id))
            return event.model_copy(update={"seq": seq})

        [started] = await history.read(js, run_id)
        await e1.handle([started])
        await e1.handle([await record(EventType.STEP_STARTED, 1)])
        await e2.handle([await record(EventType.STEP_FAILED, 1, error="boom")])
        await e1.handle([await record(EventType.STEP_STARTED, 2)])
        await e1.handle([await record(EventType.STEP_COMPLETED, 2, output=1)])
        snapshot = await (await Snapshots.open(js)).get(run_id)
        assert snapshot is not None
        assert snapshot.run.steps["a"].status is StepStatus.COMPLETED
        assert snapshot.run.status is RunStatus.COMPLETED
        assert snapshot.run.public() == fold(await history.read(js, run_id)).public()
        await jetstream.close(nc)
    asyncio.run(scenario())
