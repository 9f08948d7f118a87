"""The engine: consume history events, fold them into run state, carry out `advance`'s actions.

It decides nothing itself. For each event it loads the run (memory, else the KV snapshot,
else a replay of history), folds the event in, asks `advance` what to do, publishes what the
actions say (tasks before the events that record them, all with deterministic message ids),
folds its own events straight back in, and stores the snapshot with compare-and-set. Only
then is the event acknowledged, so a crash at any point is repaired by redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from dagnats import jetstream, names
from dagnats.dag.advance import advance
from dagnats.dag.events import RUN_TERMINAL_EVENTS, Event, EventType
from dagnats.dag.state import IllegalTransition, RunState, StaleEvent, apply_checked, fold
from dagnats.engine import partitions
from dagnats.engine.effects import Effects, HistoryMoved
from dagnats.engine.timers import run_timers
from dagnats.engine.waits import run_event_matcher
from dagnats.limits import PAYLOAD_CACHE_BYTES
from dagnats.store import dead_letters, history, payloads, run_index
from dagnats.store.snapshots import Snapshot, SnapshotConflict, Snapshots

log = logging.getLogger("dagnats.engine")

#: How many times one event is re-tried against a fresher snapshot before giving up for now.
MAX_CAS_ROUNDS = 8
#: An event whose handling failed (a transient or resource failure) is tried again after
#: this long, doubling with each delivery up to RETRY_MAX_S, for as long as it takes.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0


def retry_delay_s(delivered: int, first_s: float = RETRY_FIRST_S,
                  max_s: float = RETRY_MAX_S) -> float:
    """How long to wait before handling an event again after its `delivered`-th failure."""
    return min(max_s, first_s * 2 ** min(max(delivered - 1, 0), 30))


#: The first and the longest pause before pulling a partition again after a failure.
PULL_RETRY_FIRST_S = 0.5
PULL_RETRY_MAX_S = 5.0
#: The fewest events one partition's pull asks for.
MIN_PARTITION_BATCH = 16

#: How long a run index summary that failed to be written keeps echoes from being skipped.
INDEX_OWED_S = 300.0


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
                 cache_size: int = 10_000, retry_first_s: float = RETRY_FIRST_S,
                 retry_max_s: float = RETRY_MAX_S) -> None:
        self.js = js
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        self.effects = Effects(js)
        self.snapshots = snapshots
        self.batch = batch
        self.cache = RunCache(cache_size)
        self.max_in_flight = 4 * batch
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._in_flight = 0
        self._room = asyncio.Event()
        self._values = payloads.ValueCache(PAYLOAD_CACHE_BYTES)
        self._index_owed: dict[str, float] = {}  # run -> when its index summary failed
        self.engine_id = partitions.new_engine_id()
        # partition -> its pull loop, and the event that stops it (a cancel alone can be
        # lost in Python 3.11 when it meets an expiring asyncio.timeout: the pull's idle
        # wait turns it into a TimeoutError)
        self._pulling: dict[int, tuple[asyncio.Task[None], asyncio.Event]] = {}

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None
                  ) -> None:
        """Handle the partitions this engine leases, and fire timers, until `stop` is set;
        `on_ready()` once its first share is taken."""
        timers = asyncio.create_task(run_timers(self.js, stop))
        matcher = asyncio.create_task(run_event_matcher(self.js, stop))
        backfill = asyncio.create_task(self._backfill_index())
        leases = partitions.Leases(self.js, self.engine_id, self._start_partition,
                                   self._stop_partition)
        try:
            await leases.tick()
            if on_ready is not None:
                on_ready()
            await leases.run(stop)  # gives every partition back when stopped
            await self.drain()
        finally:
            for pulling, stopping in self._pulling.values():
                stopping.set()
                pulling.cancel()
            backfill.cancel()
            await asyncio.gather(backfill, *(pulling for pulling, _ in self._pulling.values()),
                                 return_exceptions=True)
            await timers
            await matcher

    @property
    def partitions(self) -> list[int]:
        """The partitions this engine pulls now."""
        return sorted(self._pulling)

    async def _start_partition(self, partition: int) -> None:
        """Pull a partition whose lease this engine just took (in a task of its own, which
        outlives any NATS trouble: the lease says this engine must pull it)."""
        stopping = asyncio.Event()
        self._pulling[partition] = (asyncio.create_task(self._pull(partition, stopping)),
                                    stopping)

    async def _pull(self, partition: int, stopping: asyncio.Event) -> None:
        """Pull the partition's events into dispatch until `stopping` is set (or cancelled);
        on a NATS failure (a server or stream leader lost), log it and start over after a
        pause."""
        pause = PULL_RETRY_FIRST_S
        while not stopping.is_set():
            puller: jetstream.Puller | None = None
            try:
                puller = await jetstream.ensure_consumer(
                    self.js, names.HISTORY_STREAM, partitions.consumer_config(partition),
                    idle_timeout_s=0.5)
                while not stopping.is_set():
                    await self._wait_for_room()
                    self.dispatch(await puller.pull(self._partition_batch()))
                    pause = PULL_RETRY_FIRST_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("partition %d: pulling failed (%s: %s); again in %.1fs",
                            partition, type(exc).__name__, exc, pause)
            finally:
                if puller is not None:
                    with contextlib.suppress(Exception):
                        await puller.unsubscribe()
            if stopping.is_set():
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, PULL_RETRY_MAX_S)

    def _partition_batch(self) -> int:
        """How many events one partition's pull asks for: the engine's batch shared among
        the partitions it pulls (at least MIN_PARTITION_BATCH), so that all of them together
        ask for about as much as one consumer would."""
        return max(MIN_PARTITION_BATCH, self.batch // max(1, len(self._pulling)))

    async def _stop_partition(self, partition: int) -> None:
        """Stop pulling a partition, and return once its events in flight are handled, so
        the next engine to hold it never handles a run at the same time as this one."""
        if partition in self._pulling:
            pulling, stopping = self._pulling.pop(partition)
            stopping.set()
            pulling.cancel()
            await asyncio.gather(pulling, return_exceptions=True)
        while tails := [task for subject, task in self._tails.items()
                        if names.history_partition(names.history_run_of(subject)) == partition]:
            await asyncio.wait(tails)

    async def _backfill_index(self) -> None:
        """Index the runs of a store from before the run index (once per store)."""
        try:
            await run_index.backfill(self.js)
        except Exception as exc:  # the next start tries again; listing still works meanwhile
            log.warning("could not index the runs stored before the run index: %s", exc)

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
            # While a run's index summary is owed, its echoes are read too: the echo of a
            # run-level event is what writes it when another engine got the failed event's
            # redelivery.
            if self.effects.is_echo(msg.metadata.sequence.stream) \
                    and not self._owes_index(msg.subject):
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
        """Put back an event that could not be handled, to try again after a backoff.

        It was decoded, so it is a valid event: what failed is around it (a catch-up read
        refused, a snapshot too large, a NATS timeout). It is never dead-lettered for that:
        it waits and is tried again for as long as it takes, and the log says why. A run
        ends up dead-lettered only through a rule of `advance`.
        """
        seq, delivered = msg.metadata.sequence.stream, msg.metadata.num_delivered
        delay = retry_delay_s(delivered, self.retry_first_s, self.retry_max_s)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        log.warning("event on %s (seq %s) not handled (delivery %d), will retry in %gs: "
                    "%s%s%s", msg.subject, seq, delivered, delay, type(exc).__name__,
                    ": " if first else "", first)
        try:
            await msg.nak(delay=delay)
        except Exception as nak_exc:  # left unacked: redelivered after ack_wait anyway
            log.warning("could not put back the event at seq %s: %s", seq, nak_exc)

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
        if run is not None and (run_id in self._index_owed or run_index.needs_write(
                current.run if current else None, run, events)):
            # Owed once a write failed: the redelivered event finds the run unchanged (and
            # the echo of a run-level event we recorded would be acked unread).
            try:
                await run_index.publish(self.js, run)
            except Exception:
                self._index_owed.setdefault(run_id, time.monotonic())
                raise
            self._index_owed.pop(run_id, None)

    def _owes_index(self, subject: str) -> bool:
        """True while the index summary of the run of history `subject` is owed: its write
        failed lately. Forgotten after INDEX_OWED_S: by then the failed event was redelivered
        (here or to another engine, which writes the summary on it or on the echo of its
        run-level event). Only failed writes count: a write under way is not owed, or every
        echo would be read while any run's summary is being written."""
        if not self._index_owed:
            return False
        now = time.monotonic()
        for run_id, since in list(self._index_owed.items()):
            if now - since > INDEX_OWED_S:
                del self._index_owed[run_id]
        return names.history_run_of(subject) in self._index_owed

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
        reads_input, read_steps = run.definition.data_reads()
        view = await self._with_fetched(run) if reads_input or read_steps else run
        try:
            run, recorded = await self.effects.carry_out(
                run, advance(run.definition, view, event))
        except HistoryMoved:
            # An outcome the engine decides (a map's end, a wait's) met newer events of the
            # run, perhaps the next ones of this very batch: handle them first. `advance`
            # is level-triggered, so what this event called for is decided again there.
            caught = await self._catch_up(run, history.END)
            if caught.last_seq <= run.last_seq:
                raise
            return caught
        for own in recorded:  # the run's end too: it may tell a parent, cancel children
            if own.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED,
                            EventType.STEP_EXPANDED) or own.type in RUN_TERMINAL_EVENTS:
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
