"""The engine: consume history events, fold them into run state, carry out `advance`'s actions.

It decides nothing itself. For each event it loads the run (memory, else the KV snapshot,
else a replay of history), folds the event in, asks `advance` what to do, publishes what the
actions say (tasks before the events that record them, all with deterministic message ids),
folds its own events straight back in, and stores the snapshot with compare-and-set. Only
then is the event acknowledged, so a crash at any point is repaired by redelivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import assert_never

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from dagnats import jetstream as names
from dagnats.dag.actions import (
    Action,
    CompleteRun,
    DispatchStep,
    FailRun,
    RecordedAction,
    RequeueTask,
    event_for,
    task_for,
)
from dagnats.dag.advance import advance
from dagnats.dag.events import Event
from dagnats.dag.state import IllegalTransition, RunState, StaleEvent, apply, apply_checked, fold
from dagnats.store import history
from dagnats.store.snapshots import Snapshot, SnapshotConflict, Snapshots

log = logging.getLogger("dagnats.engine")

#: How many times one event is re-tried against a fresher snapshot before giving up for now.
MAX_CAS_ROUNDS = 8


def engine_consumer_config() -> js_api.ConsumerConfig:
    """The durable consumer every engine process shares."""
    return js_api.ConsumerConfig(
        durable_name=names.ENGINE_CONSUMER, filter_subject=names.history_filter(),
        ack_policy=js_api.AckPolicy.EXPLICIT, ack_wait=names.ENGINE_ACK_WAIT_S,
        deliver_policy=js_api.DeliverPolicy.ALL, max_deliver=-1, max_ack_pending=20_000,
    )


class RunCache:
    """The most recently used run snapshots, kept in memory (a bounded LRU)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Snapshot] = OrderedDict()

    def get(self, run_id: str) -> Snapshot | None:
        """The cached snapshot of a run, refreshed as most recent."""
        snapshot = self._items.get(run_id)
        if snapshot is not None:
            self._items.move_to_end(run_id)
        return snapshot

    def put(self, snapshot: Snapshot) -> None:
        """Remember a snapshot (finished runs are not kept)."""
        if snapshot.run.status.terminal:
            self._items.pop(snapshot.run.run_id, None)
            return
        self._items[snapshot.run.run_id] = snapshot
        self._items.move_to_end(snapshot.run.run_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def drop(self, run_id: str) -> None:
        """Forget a run (its snapshot changed elsewhere)."""
        self._items.pop(run_id, None)


class Engine:
    """Drives every run forward from the events in WORKFLOW_HISTORY."""

    def __init__(self, js: JetStreamContext, snapshots: Snapshots, *, batch: int = 256,
                 cache_size: int = 10_000) -> None:
        self.js = js
        self.snapshots = snapshots
        self.batch = batch
        self.cache = RunCache(cache_size)

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None
                  ) -> None:
        """Consume history until `stop` is set; `on_ready()` is called once consuming."""
        sub = await names.ensure_consumer(self.js, names.HISTORY_STREAM, engine_consumer_config())
        if on_ready is not None:
            on_ready()
        try:
            while not stop.is_set():
                messages = await names.fetch(sub, self.batch, timeout_s=0.5)
                if messages:
                    await self.process(messages)
        finally:
            await sub.unsubscribe()

    async def process(self, messages: list[Msg]) -> None:
        """Handle a batch: each run's events in order, different runs concurrently."""
        by_run: dict[str, list[Msg]] = {}
        for msg in messages:
            by_run.setdefault(msg.subject, []).append(msg)
        await asyncio.gather(*(self._process_run(msgs) for msgs in by_run.values()))

    async def _process_run(self, messages: list[Msg]) -> None:
        for msg in messages:
            try:
                await self.handle(msg)
            except Exception as exc:  # left unacked: JetStream redelivers it after ack_wait
                log.warning("event on %s (seq %s) not handled, will retry: %s: %s",
                            msg.subject, msg.metadata.sequence.stream, type(exc).__name__, exc)
                continue
            await msg.ack()

    async def handle(self, msg: Msg) -> None:
        """Fold one delivered history message into its run and carry out the actions."""
        seq = msg.metadata.sequence.stream
        try:
            event = Event.decode(msg.data, seq=seq)
        except ValueError as exc:
            log.warning("skipping undecodable message on %s (seq %s): %s", msg.subject, seq, exc)
            return
        for _ in range(MAX_CAS_ROUNDS):
            try:
                await self._handle_once(event)
                return
            except SnapshotConflict:
                self.cache.drop(event.run_id)
        raise SnapshotConflict(f"run {event.run_id}: snapshot kept changing")

    async def _handle_once(self, event: Event) -> None:
        current = await self.load(event.run_id, event.seq)
        run = current.run if current else None
        try:
            updated = apply_checked(run, event)
        except StaleEvent:
            return
        except IllegalTransition as exc:
            log.warning("%s; ignored", exc)
            return
        actions = advance(updated.definition, updated, event)
        updated = await self.execute(updated, actions)
        revision = await self.snapshots.put(updated, current.revision if current else 0)
        self.cache.put(Snapshot(updated, revision))

    async def load(self, run_id: str, seq: int) -> Snapshot | None:
        """A run's state before event `seq`: from memory, KV, or by replaying history."""
        cached = self.cache.get(run_id)
        if cached is not None:
            return cached
        stored = await self.snapshots.get(run_id)
        if stored is not None:
            return stored
        events = await history.read(self.js, run_id, before_seq=seq)
        replayed = fold(events)
        if replayed is not None:
            log.info("run %s: rebuilt its state from %d history events", run_id, len(events))
            return Snapshot(replayed, 0)
        return None

    async def execute(self, run: RunState, actions: list[Action]) -> RunState:
        """Carry out `actions`: record their events, then publish their tasks.

        The events are folded into `run` straight away. A step's queueing is recorded
        before its task is published, so history reads in the order things happened; if
        the engine dies in between, whoever applies the step.queued event republishes it.
        """
        now = datetime.now(timezone.utc)
        recorded: list[RecordedAction] = []
        tasks: list[DispatchStep | RequeueTask] = []
        for action in actions:
            match action:
                case DispatchStep():
                    recorded.append(action)
                    tasks.append(action)
                case RequeueTask():
                    tasks.append(action)
                case CompleteRun() | FailRun():
                    recorded.append(action)
                case _:
                    assert_never(action)
        events = await asyncio.gather(*(self._record(run, a, now) for a in recorded))
        await asyncio.gather(*(self._publish_task(run, a, now) for a in tasks))
        for event in events:
            run = apply(run, event) or run
        return run

    async def _publish_task(self, run: RunState, action: DispatchStep | RequeueTask,
                            now: datetime) -> None:
        task = task_for(action, run.definition, run.run_id, now)
        msg_id = names.task_msg_id(run.run_id, action.step_id, action.attempt)
        await self.js.publish(names.task_subject(task.task), task.encode(),
                              headers={"Nats-Msg-Id": msg_id})

    async def _record(self, run: RunState, action: RecordedAction, now: datetime) -> Event:
        event = event_for(action, run.run_id, now)
        if isinstance(action, DispatchStep):
            msg_id = names.step_event_msg_id(run.run_id, action.step_id, action.attempt,
                                             "queued")
        else:
            kind = "completed" if isinstance(action, CompleteRun) else "failed"
            msg_id = names.run_event_msg_id(run.run_id, kind)
        seq = await history.append(self.js, event, msg_id)
        return event.model_copy(update={"seq": seq})
