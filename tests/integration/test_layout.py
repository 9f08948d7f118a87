"""Moving a store of layout version 1 (events on history.<run>, tasks on TASK_QUEUES) to
version 2 (each task is its step.queued event), then running its runs to their end."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from nats.js import api as js_api

from dagnats import jetstream, names
from dagnats.connection import connect
from dagnats.dag.actions import CompleteRun, DispatchStep, event_for
from dagnats.dag.advance import advance
from dagnats.dag.events import Event, EventType
from dagnats.dag.state import RunStatus, fold
from dagnats.dag.validate import parse_definition
from dagnats.store import history, layout
from tests.integration.test_engine import (
    CHAIN,
    make_worker,
    pipeline,
    running,
    start_run,
    wait_terminal,
)

OUTPUTS = {"greet": lambda name: f"Hello, {name}!", "uppercase": str.upper,
           "reverse": lambda text: text[::-1]}


class LegacyRun:
    """A run written as dagnats wrote them before store version 2: every event on
    `history.<run>` with its message id, decided by the same `advance`."""

    def __init__(self, js: Any, run_id: str, name: str) -> None:
        self.js, self.run_id = js, run_id
        self.definition = parse_definition(pipeline("legacy", CHAIN))
        self.events: list[Event] = []
        self.name = name

    async def add(self, event: Event, msg_id: str) -> Event:
        ack = await self.js.publish(names.legacy_history_subject(self.run_id), event.encode(),
                                    headers={"Nats-Msg-Id": msg_id})
        stored = event.model_copy(update={"seq": ack.seq})
        self.events.append(stored)
        return stored

    async def start(self) -> None:
        await self.add(Event(type=EventType.WORKFLOW_STARTED, run_id=self.run_id,
                             timestamp=datetime.now(timezone.utc), data={
                                 "workflow": "legacy", "version": "1", "input": self.name,
                                 "definition": self.definition.to_json_dict()}),
                       names.started_msg_id(self.run_id))

    async def decide(self) -> None:
        """Record what the engine decided after the last event (a dispatch or the end)."""
        run = fold(self.events)
        assert run is not None
        now = datetime.now(timezone.utc)
        for action in advance(self.definition, run, self.events[-1]):
            if isinstance(action, DispatchStep):
                await self.add(event_for(action, self.run_id, now), names.step_event_msg_id(
                    self.run_id, action.step_id, action.attempt, "queued"))
            elif isinstance(action, CompleteRun):
                await self.add(event_for(action, self.run_id, now),
                               names.run_event_msg_id(self.run_id, "completed"))

    async def complete(self, step_id: str) -> None:
        """A worker's report of the step's first attempt."""
        run = fold(self.events)
        assert run is not None
        given = run.input if step_id == "greet" else run.steps[CHAIN_BEFORE[step_id]].output
        await self.add(Event(type=EventType.STEP_COMPLETED, run_id=self.run_id,
                             step_id=step_id, attempt=1, timestamp=datetime.now(timezone.utc),
                             data={"output": OUTPUTS[step_id](given)}),
                       names.step_event_msg_id(self.run_id, step_id, 1, "completed"))


CHAIN_BEFORE = {"uppercase": "greet", "reverse": "uppercase"}


async def provision_legacy(js: Any) -> None:
    """What version 1 had beside history: the task stream, the engine's consumer on all."""
    await jetstream.provision(js)
    await js.add_stream(name=names.LEGACY_TASK_STREAM, subjects=["task.>"],
                        retention=js_api.RetentionPolicy.WORK_QUEUE)
    await js.add_consumer(names.HISTORY_STREAM, js_api.ConsumerConfig(
        durable_name=names.ENGINE_CONSUMER, filter_subject=names.history_filter(),
        ack_policy=js_api.AckPolicy.EXPLICIT, deliver_policy=js_api.DeliverPolicy.ALL))


async def engine_acks_everything(js: Any) -> None:
    """The old engine handled every event stored so far."""
    sub = await js.pull_subscribe_bind(names.ENGINE_CONSUMER, names.HISTORY_STREAM)
    while True:
        batch = await jetstream.fetch(sub, 100, timeout_s=0.5)
        if not batch:
            break
        for msg in batch:
            await msg.ack_sync()
    await sub.unsubscribe()


def test_a_version_1_store_is_moved_and_its_runs_go_on(nats_server: Any) -> None:
    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await provision_legacy(js)
        ended, open_task, unhandled = (LegacyRun(js, f"{n}" * 32, name) for n, name in
                                       (("a", "Ann"), ("b", "Bo"), ("c", "Cy")))
        for run in (ended, open_task, unhandled):
            await run.start()
            await run.decide()  # greet queued
        for step in ("greet", "uppercase", "reverse"):
            await ended.complete(step)
            await ended.decide()
        await open_task.complete("greet")
        await open_task.decide()  # uppercase queued: its task is open
        await engine_acks_everything(js)
        await unhandled.complete("greet")  # stored after the old engine's last ack
        # An earlier migration stopped after copying part of the second run.
        await js.publish(names.history_subject(open_task.run_id), b"a partial copy")
        assert await layout.needs_migration(js)

        done = await layout.migrate(js)
        assert done is not None
        assert (done.runs, done.events, done.tasks, done.unhandled) == (
            3, len(ended.events) + len(open_task.events) + len(unhandled.events), 1, 1)
        assert not await layout.needs_migration(js)
        assert await layout.migrate(js) is None  # once is enough
        assert await jetstream.stream_subjects(js, names.HISTORY_STREAM,
                                               names.legacy_history_filter()) == []
        for run in (ended, open_task, unhandled):
            moved = await history.read(js, run.run_id)
            assert [(e.type, e.step_id, e.data.get("output")) for e in moved] == [
                (e.type, e.step_id, e.data.get("output")) for e in run.events]
        stored = await jetstream.stream_subject_counts(
            js, names.HISTORY_STREAM, names.history_run_filter(open_task.run_id))
        task_subject = names.history_task_subject(open_task.run_id, "uppercase")
        assert stored == {names.history_subject(open_task.run_id): len(open_task.events) - 1,
                          task_subject: 1}
        [task] = [e for e in await history.read(js, open_task.run_id)
                  if e.type is EventType.STEP_QUEUED and e.step_id == "uppercase"]
        assert (task.step_id, task.data["workflow"], task.data["max_attempts"]) == (
            "uppercase", "legacy", 1)

        calls: dict[str, int] = {}
        async with running(nats_server.url, make_worker(nats_server.url, calls)) as js2:
            for run, output in ((open_task, "!OB ,OLLEH"), (unhandled, "!YC ,OLLEH")):
                state, _ = await wait_terminal(js2, run.run_id)
                assert (state.status, state.output) == (RunStatus.COMPLETED, output)
        assert "greet" not in calls  # no step that had ended ran again
        state = fold(await history.read(js, ended.run_id))
        assert state is not None and state.output == "!NNA ,OLLEH"
        await jetstream.close(nc)

    asyncio.run(scenario())


def test_the_single_engine_consumer_of_layout_2_hands_over_to_the_partitions(nats_server: Any
                                                                             ) -> None:
    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        await js.add_consumer(names.HISTORY_STREAM, js_api.ConsumerConfig(
            durable_name=names.ENGINE_CONSUMER, filter_subject=names.history_events_filter(),
            ack_policy=js_api.AckPolicy.EXPLICIT, deliver_policy=js_api.DeliverPolicy.ALL))
        run_id = await start_run(js, pipeline("handover", CHAIN), "Hal")  # not handled yet
        assert await layout.needs_migration(js)
        done = await layout.migrate(js)
        assert done is not None and done.runs == 0  # no run moved: only the consumers
        assert layout.summary(done).startswith("Handed the engine's position over to the 32")
        assert await layout.migrate(js) is None
        assert not await layout.needs_migration(js)
        consumers = {c.name for c in await js.consumers_info(names.HISTORY_STREAM)}
        assert names.ENGINE_CONSUMER not in consumers
        assert {names.engine_consumer(p) for p in range(names.HISTORY_PARTITIONS)} <= consumers
        async with running(nats_server.url, make_worker(nats_server.url, {})) as js2:
            state, _ = await wait_terminal(js2, run_id)
            assert (state.status, state.output) == (RunStatus.COMPLETED, "!LAH ,OLLEH")
        await jetstream.close(nc)

    asyncio.run(scenario())
