"""The engine: consume history events, fold them into run state, carry out `advance`'s actions.

It decides nothing itself. For each event it loads the run (memory, else the KV snapshot,
else a replay of history), folds the event in, asks `advance` what to do, publishes what the
actions say (tasks before the events that record them, all with deterministic message ids),
folds its own events straight back in, and stores the snapshot with compare-and-set. Only
then is the event acknowledged, so a crash at any point is repaired by redelivery.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from dagnats import jetstream, names
from dagnats.dag.advance import advance
from dagnats.dag.events import RUN_TERMINAL_EVENTS, Event, EventType
from dagnats.dag.state import IllegalTransition, RunState, StaleEvent, apply_checked, fold
from dagnats.engine.effects import Effects
from dagnats.engine.timers import run_timers
from dagnats.engine.waits import run_event_matcher
from dagnats.limits import PAYLOAD_CACHE_BYTES
from dagnats.store import dead_letters, history, payloads
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
        self.effects = Effects(js)
        self.snapshots = snapshots
        self.batch = batch
        self.cache = RunCache(cache_size)
        self.max_in_flight = 4 * batch
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._in_flight = 0
        self._room = asyncio.Event()
        self._values = payloads.ValueCache(PAYLOAD_CACHE_BYTES)

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None
                  ) -> None:
        """Consume history and fire timers until `stop` is set; then call `on_ready()`."""
        puller = await jetstream.ensure_consumer(self.js, names.HISTORY_STREAM,
                                                 engine_consumer_config(), idle_timeout_s=0.5)
        timers = asyncio.create_task(run_timers(self.js, stop))
        matcher = asyncio.create_task(run_event_matcher(self.js, stop))
        if on_ready is not None:
            on_ready()
        try:
            while not stop.is_set():
                await self._wait_for_room()
                self.dispatch(await puller.pull(self.batch))
            await self.drain()
        finally:
            await puller.unsubscribe()
            await timers
            await matcher

    def dispatch(self, messages: list[Msg]) -> None:
        """Start handling a batch without waiting for it.

        Each run's events queue behind that run's earlier ones (so a run sees its events in
        order); different runs are handled concurrently, and fetching goes on meanwhile.
        """
        by_run: dict[str, list[Msg]] = {}
        for msg in messages:
            by_run.setdefault(msg.subject, []).append(msg)
        for subject, group in by_run.items():
            task = asyncio.create_task(self._after(self._tails.get(subject), group))
            self._tails[subject] = task
            self._in_flight += len(group)
            task.add_done_callback(functools.partial(self._finished, subject, len(group)))

    async def drain(self) -> None:
        """Wait until every dispatched event has been handled."""
        while self._tails:
            await asyncio.wait(list(self._tails.values()))

    async def _after(self, previous: asyncio.Task[None] | None, messages: list[Msg]) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its failure is its own; only its order matters
        await self._process_run(messages)

    def _finished(self, subject: str, count: int, task: asyncio.Task[None]) -> None:
        if self._tails.get(subject) is task:
            del self._tails[subject]
        self._in_flight -= count
        self._room.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("handling events on %s crashed: %s", subject, task.exception())

    async def _wait_for_room(self) -> None:
        while self._in_flight >= self.max_in_flight:
            self._room.clear()
            await self._room.wait()

    async def _process_run(self, messages: list[Msg]) -> None:
        """One run's delivered events, in order, stored with one snapshot write, then acked.

        If that fails, each event is tried on its own, so one bad event cannot hold back
        (or drag into the dead letters) the others. Events this engine recorded itself were
        folded in then (this run's earlier handling has finished): they are acked unread.
        """
        fresh = []
        for msg in messages:
            if self.effects.is_echo(msg.metadata.sequence.stream):
                await msg.ack()
            else:
                fresh.append(msg)
        if not fresh:
            return
        messages = fresh
        decoded = [(msg, await self._decode(msg)) for msg in messages]
        try:
            await self.handle([event for _, event in decoded if event is not None])
        except Exception:  # retried one by one below
            for msg, event in decoded:
                try:
                    await self.handle([event] if event else [])
                except Exception as exc:  # left unacked: redelivered after ack_wait
                    await self._failed(msg, exc)
                    continue
                await msg.ack()
            return
        for msg in messages:  # an ack is a buffered publish: no task per message needed
            await msg.ack()

    async def _decode(self, msg: Msg) -> Event | None:
        """The event in a history message; unreadable ones are dead-lettered raw (None)."""
        seq = msg.metadata.sequence.stream
        try:
            return Event.decode(msg.data, seq=seq)
        except ValueError as exc:
            await dead_letters.publish_poison(self.js, names.HISTORY_PREFIX, seq, msg.subject,
                                              msg.data, f"not a dagnats event: {exc}")
            return None

    async def _failed(self, msg: Msg, exc: Exception) -> None:
        """Leave a failed event for redelivery, or dead-letter it once that is hopeless."""
        seq, delivered = msg.metadata.sequence.stream, msg.metadata.num_delivered
        reason = f"{type(exc).__name__}: {exc}"
        if delivered < names.MAX_POISON_DELIVERIES:
            log.warning("event on %s (seq %s) not handled, will retry: %s",
                        msg.subject, seq, reason)
            return
        await dead_letters.publish_poison(self.js, names.HISTORY_PREFIX, seq, msg.subject, msg.data,
                                          f"failed {delivered} times: {reason}")
        await msg.term()

    async def handle(self, events: list[Event]) -> None:
        """Fold events of one run (in order), carry out the actions, store the snapshot."""
        if not events:
            return
        # A workflow.started event begins a run that has nothing stored yet; if something
        # is after all (a redelivery), creating the snapshot conflicts and we look properly.
        assume_new = events[0].type is EventType.WORKFLOW_STARTED
        for _ in range(MAX_CAS_ROUNDS):
            try:
                await self._handle_once(events, assume_new)
                return
            except SnapshotConflict:
                self.cache.drop(events[0].run_id)
                assume_new = False
        raise SnapshotConflict(f"run {events[0].run_id}: snapshot kept changing")

    async def _handle_once(self, events: list[Event], assume_new: bool) -> None:
        run_id = events[0].run_id
        current = self.cache.get(run_id)
        from_cache = current is not None
        if not from_cache and not assume_new:
            current = await self.load(run_id, events[0].seq)
        run = current.run if current else None
        if run is not None and not from_cache:
            # A stored snapshot may lag history: an engine can die between recording
            # events and storing its snapshot. Handle what it missed first.
            run = await self._catch_up(run, events[0].seq)
        for event in events:
            run = await self._handle_event(run, event, caught_up=False)
        if run is not None and (current is None or run is not current.run):
            revision = await self.snapshots.put(run, current.revision if current else 0)
            self.cache.put(Snapshot(run, revision))

    async def _handle_event(self, run: RunState | None, event: Event, caught_up: bool
                            ) -> RunState | None:
        """Fold one event in and carry out what `advance` says; the new state.

        Our state may miss events another engine handled (or recorded, then died). When an
        event would end the run, or does not fit, the gap before it is handled first.
        """
        may_miss = run is not None and not caught_up and event.seq > run.last_seq
        if may_miss and run is not None and event.type in RUN_TERMINAL_EVENTS:
            run, may_miss = await self._catch_up(run, event.seq), False
        try:
            updated = apply_checked(run, event)
        except (StaleEvent, IllegalTransition) as exc:
            if may_miss and run is not None:
                return await self._handle_event(await self._catch_up(run, event.seq), event,
                                                caught_up=True)
            if isinstance(exc, IllegalTransition):
                log.warning("%s; ignored", exc)
            return run
        return await self._advance(updated, event)

    async def _advance(self, run: RunState, event: Event) -> RunState:
        """Carry out what `advance` says after `event`. An outcome the engine recorded itself
        (a sleep that ended, a wait that timed out) moves the run on like any step's
        outcome, so it goes through `advance` too (its echo is acked unread)."""
        view = await self._with_fetched(run)
        run, recorded = await self.effects.carry_out(
            run, advance(run.definition, view, event))
        for own in recorded:
            if own.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED):
                run = await self._advance(run, own)
        return run

    async def _with_fetched(self, run: RunState) -> RunState:
        """`run` with the out-of-line values `advance` may read inside fetched (a skip_if
        on a large output, a reference into a large input); `run` itself when there are
        none, as for nearly every run. Only this view has them: nothing stores them."""
        wanted = {ref.digest: ref for ref in run.wanted_refs()}
        if not wanted:
            return run
        values = await asyncio.gather(*(self._values.get(self.js, run.run_id, ref)
                                        for ref in wanted.values()))
        fetched = {**run.fetched, **dict(zip(wanted, values, strict=True))}
        return run.model_copy(update={"fetched": fetched})

    async def _catch_up(self, run: RunState, before_seq: int) -> RunState:
        """Handle the run's events between what `run` folded and `before_seq`, if any."""
        caught: RunState | None = run
        for missed in await history.read_gap(self.js, run.run_id, run.last_seq, before_seq):
            caught = await self._handle_event(caught, missed, caught_up=True)
        return caught or run

    async def load(self, run_id: str, seq: int) -> Snapshot | None:
        """A run's state before event `seq` from KV, else by replaying history (None: new)."""
        stored = await self.snapshots.get(run_id)
        if stored is not None:
            return stored
        events = await history.read(self.js, run_id, before_seq=seq)
        replayed = fold(events)
        if replayed is not None:
            log.info("run %s: rebuilt its state from %d history events", run_id, len(events))
            return Snapshot(replayed, 0)
        return None
