"""The layout of the store on NATS, and the one-time move from the layout of store version 1.

Version 1 kept every event of a run on `history.<run>` and each task twice: its step.queued
event in history, and a task message on the work-queue stream TASK_QUEUES. Version 2 keeps
a run's events on `history.<p>.<run>.event` and its tasks on `history.<p>.<run>.task.<task>`:
the step.queued event is the task (`dagnats.names` says why). `migrate` moves a version 1
store into version 2 in place, in WORKFLOW_HISTORY, with every engine and worker stopped:

1. each run's events are copied, in order, to the new subjects (without message ids: the
   originals' ids are still in the duplicate window). A step.queued event whose attempt is
   still open (its run going on, no outcome recorded) is copied as a task, with the fields a
   worker needs, so workers get it; every other one is copied as a plain event. A run's
   copies left by a migration that stopped are purged first;
2. events the old engine may not have handled yet (after its consumer's ack floor) are
   copied last, and the engine consumer is made anew to start at the first of them, so the
   next engine handles them as the old one would have (with no snapshot, from history);
3. the snapshots are purged (the engine rebuilds each from history, which now has new
   sequences; a store older than the run index is indexed from them first); then the old
   subjects; TASK_QUEUES goes last: while it exists (or any old subject does) the store is
   still version 1, and migrating again starts over at 1; the old engine consumer goes
   after them (it says how far the old engine got).

A version 2 store from before the engines' partitions has one engine consumer, `engine`:
the move starts the 32 partition consumers (`dagnats.engine.partitions`) where it had got
to, and deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from dagnats import jetstream, names
from dagnats.dag.actions import DispatchStep
from dagnats.dag.events import Event, EventType
from dagnats.dag.kinds.task import TaskStep, task_for
from dagnats.dag.payload import refs_of
from dagnats.dag.state import RunState, StepStatus, fold
from dagnats.engine import partitions
from dagnats.errors import DagnatsError
from dagnats.store import history, run_index

log = logging.getLogger("dagnats.layout")

#: How many runs are read and copied at once (each run's messages in order).
RUNS_AT_ONCE = 64


@dataclass(frozen=True)
class Migrated:
    """What `migrate` did."""

    runs: int
    events: int
    tasks: int
    """Open attempts copied as tasks (workers will run them)."""
    unhandled: int
    """Events the old engine had not acknowledged: the next engine handles them."""
    seconds: float


async def needs_migration(js: JetStreamContext) -> bool:
    """True when this NATS holds a store of layout version 1, one of version 2 with a single
    engine consumer (before partitions), or a migration that stopped."""
    return await _holds_version_1(js) or await _old_engine_consumer(js) is not None


async def _holds_version_1(js: JetStreamContext) -> bool:
    try:
        await js.stream_info(names.LEGACY_TASK_STREAM)
        return True
    except NotFoundError:
        pass
    try:
        await js.get_msg(names.HISTORY_STREAM, seq=1, subject=names.legacy_history_filter(),
                         next=True, direct=True)
    except NotFoundError:
        return False
    return True


async def migrate(js: JetStreamContext, progress: Callable[[str], None] | None = None
                  ) -> Migrated | None:
    """Move a version 1 store to version 2 (see the module docstring); None when there was
    nothing to move. Run it with every engine and worker of the store stopped."""
    if not await needs_migration(js):
        return None
    began = time.monotonic()
    say = progress or (lambda line: None)
    engine = await _old_engine_consumer(js)
    floor = engine.ack_floor.stream_seq if engine and engine.ack_floor else 0
    if not await _holds_version_1(js):
        # Version 2 with the single engine consumer (or a move that stopped at its very end):
        # the partitions' consumers go on from where it was.
        if engine is not None and engine.config.filter_subject != names.history_filter():
            await partitions.start_consumers_at(js, (floor or 0) + 1)
        await _delete_old_engine_consumer(js)
        return Migrated(0, 0, 0, 0, time.monotonic() - began)
    run_ids = sorted(names.parse_legacy_history_subject(s) for s in await
                     jetstream.stream_subjects(js, names.HISTORY_STREAM,
                                               names.legacy_history_filter()))
    say(f"moving {len(run_ids)} run(s) to the store layout of this dagnats")
    copier = _Copier(js)
    unhandled: dict[str, list[tuple[str, bytes]]] = {}
    for n in range(0, len(run_ids), RUNS_AT_ONCE):
        chunk = run_ids[n:n + RUNS_AT_ONCE]
        # A migration that stopped may have copied some of these runs: start them over.
        await asyncio.gather(*(jetstream.purge(js, names.HISTORY_STREAM,
                                               names.history_run_filter(r)) for r in chunk))
        copies = await asyncio.gather(*(_copies(js, r) for r in chunk))
        handled = []
        for run_id, found in zip(chunk, copies, strict=True):
            handled.append([(subject, body) for seq, subject, body in found if seq <= floor])
            late = [(subject, body) for seq, subject, body in found if seq > floor]
            if late:
                unhandled[run_id] = late
        await asyncio.gather(*(copier.copy(run) for run in handled))
        if (n // RUNS_AT_ONCE) % 20 == 19:
            say(f"  {n + len(chunk)} of {len(run_ids)} runs")
    first_unhandled = await _last_seq(js) + 1
    late_runs = list(unhandled.values())
    for n in range(0, len(late_runs), RUNS_AT_ONCE):
        await asyncio.gather(*(copier.copy(run) for run in late_runs[n:n + RUNS_AT_ONCE]))
    await partitions.start_consumers_at(js, first_unhandled)
    await run_index.backfill(js)  # a store older than the run index is listed from snapshots
    await jetstream.purge(js, names.kv_stream(names.RUNS_BUCKET), names.kv_filter(
        names.RUNS_BUCKET))
    await jetstream.purge(js, names.HISTORY_STREAM, names.legacy_history_filter())
    try:
        await js.delete_stream(names.LEGACY_TASK_STREAM)
    except NotFoundError:
        pass
    await _delete_old_engine_consumer(js)  # last: it tells how far the old engine got
    done = Migrated(len(run_ids), copier.copied, copier.tasks,
                    sum(len(run) for run in late_runs), time.monotonic() - began)
    log.info("store moved to layout 2: %d runs, %d events (%d open tasks, %d events for the "
             "engine to handle) in %.1fs", done.runs, done.events, done.tasks, done.unhandled,
             done.seconds)
    return done


async def _copies(js: JetStreamContext, run_id: str) -> list[tuple[int, str, bytes]]:
    """(old sequence, new subject, body) of each event of a run: undecodable messages are
    kept as they are, on the run's event subject."""
    raw = await _read_legacy(js, run_id)
    events = [e for e in (history.decode(run_id, seq, data) for seq, data in raw) if e]
    run = fold(events)
    by_seq = {e.seq: e for e in events}
    found = []
    for seq, data in raw:
        event = by_seq.get(seq)
        if event is not None and run is not None and _open_task(run, event):
            task = _as_task(run, event)
            found.append((seq, history.subject_of(task), task.encode()))
        else:
            found.append((seq, names.history_subject(run_id), data))
    return found


def _open_task(run: RunState, event: Event) -> bool:
    """Whether a step.queued event is the latest attempt of a step that has no outcome yet,
    in a run still going on: a task some worker must still run."""
    if event.type is not EventType.STEP_QUEUED or run.status.terminal or not event.step_id:
        return False
    step = run.steps.get(event.step_id)
    return (step is not None and step.attempts == event.attempt
            and step.status in (StepStatus.QUEUED, StepStatus.RUNNING)
            and isinstance(run.definition.step(event.step_id), TaskStep))


def _as_task(run: RunState, event: Event) -> Event:
    """A version 1 step.queued event with what a worker needs to run it (version 2)."""
    data = event.data
    dispatch = DispatchStep(event.step_id or "", data["task"], event.attempt,
                            data.get("input"), 0.0, refs_of(data, "input"))
    fields = task_for(dispatch, run.definition, run.run_id, event.timestamp).event_fields()
    return event.model_copy(update={"data": {**data, **fields}, "seq": 0})


async def _read_legacy(js: JetStreamContext, run_id: str) -> list[tuple[int, bytes]]:
    return await history.direct_all(js, names.HISTORY_STREAM,
                                    names.legacy_history_subject(run_id))


async def _old_engine_consumer(js: JetStreamContext) -> js_api.ConsumerInfo | None:
    """The single engine consumer of the layouts before partitions, if it is still there."""
    try:
        return await js.consumer_info(names.HISTORY_STREAM, names.ENGINE_CONSUMER)
    except NotFoundError:
        return None


async def _delete_old_engine_consumer(js: JetStreamContext) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(names.HISTORY_STREAM, names.ENGINE_CONSUMER)


async def _last_seq(js: JetStreamContext) -> int:
    info = await js.stream_info(names.HISTORY_STREAM)
    return info.state.last_seq


class _Copier:
    """Publishes each run's copies in order (awaited one by one), counting them."""

    def __init__(self, js: JetStreamContext) -> None:
        self._publisher = jetstream.publisher(js)
        self.copied = 0
        self.tasks = 0

    async def copy(self, messages: list[tuple[str, bytes]]) -> None:
        """Store one run's messages, in their order."""
        for subject, body in messages:
            await self._publisher.publish(subject, body, {})
            self.copied += 1
            self.tasks += names.parse_history_subject(subject).task is not None


class MoveFailed(DagnatsError):
    """The move stopped half-way on a NATS failure; running it again finishes it."""


def move_failed(exc: Exception) -> str:
    """The one line saying a move stopped, and that nothing is lost."""
    return (f"could not move the store to the layout of this dagnats ({type(exc).__name__}: "
            f"{exc}); nothing is lost: run the move again (start serve, or `dagnats migrate`) "
            "to finish it")


def summary(done: Migrated) -> str:
    """One line saying what a migration did."""
    if not done.runs:
        return (f"Handed the engine's position over to the {names.HISTORY_PARTITIONS} "
                f"partition consumers of this dagnats in {done.seconds:.1f}s; no run to move")
    return (f"Moved {done.runs} run(s) to the store layout of this dagnats in "
            f"{done.seconds:.1f}s: {done.events} events, {done.tasks} open task(s) for the "
            f"workers, {done.unhandled} event(s) for the engine to handle")
