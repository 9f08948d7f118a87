"""Deleting ended runs: one run (`delete_run`), or every run that ended before a cutoff
(`purge`). Running runs are never touched.

What one run leaves in NATS, deleted by `delete_run` in this order:

1. its snapshot (KV workflow_runs) and its run index entry (stream RUN_INDEX, replaced by
   a tombstone that expires): first, so the run leaves `run list` at once;
2. its event waiters (KV event_waiters), signals (KV run_signals) and checkpoints
   (KV step_checkpoints): the engine deletes these when a run ends; again here, for a run
   whose end never did;
3. its cancellation marker (KV run_cancellations) and its idempotency key
   (KV run_idempotency, when the run was started with one);
4. its timers (stream TIMERS): a timer of an ended run does nothing, but takes room;
5. its step dead letters (stream DEAD_LETTERS, `dead.<task>.<run>.<step>`): a dead letter
   can only be replayed into its run, so it goes with it. Poison entries (raw unreadable
   messages) name no run: they stay until DEAD_LETTER_MAX_AGE_S;
   [the run's payload objects, when there are some, go here];
6. its history (stream WORKFLOW_HISTORY): last, in one purge.

Interrupted at any point (kill -9), the run is either whole in its history (so `run status`
shows it as it was, and a second `run delete` or `purge` finishes the job), or gone: the
history is the truth and the one thing that goes in a single step. Everything is purged by
subject, leaving no delete markers behind. Before the history goes, its last sequence is
checked again: a run resumed meanwhile (`run retry`) is left alone.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from dagnats import jetstream, names
from dagnats.dag.durations import parse_duration
from dagnats.dag.events import RUN_TERMINAL_EVENTS, Event, EventType
from dagnats.dag.state import RunStatus, fold
from dagnats.errors import RunNotEnded, RunNotFound
from dagnats.store import history, run_data, run_index, waiters

log = logging.getLogger("dagnats.retention")

#: The status each run-ending event leaves.
_ENDED_BY: dict[EventType, RunStatus] = {
    EventType.WORKFLOW_COMPLETED: RunStatus.COMPLETED,
    EventType.WORKFLOW_FAILED: RunStatus.FAILED,
    EventType.WORKFLOW_CANCELLED: RunStatus.CANCELLED,
    EventType.WORKFLOW_COMPENSATED: RunStatus.COMPENSATED,
    EventType.WORKFLOW_COMPENSATE_FAILED: RunStatus.COMPENSATE_FAILED,
}


@dataclass
class Deleted:
    """What `delete_run` removed: the run, its status, and how many messages of each kind."""

    run_id: str
    status: str
    removed: dict[str, int] = field(default_factory=dict)


async def _purge_key(js: JetStreamContext, bucket: str, key: str) -> int:
    return await jetstream.purge(js, names.kv_stream(bucket), names.kv_subject(bucket, key))


async def last_seq(js: JetStreamContext, run_id: str) -> int:
    """The stream sequence of the run's last event (0: no history)."""
    try:
        msg = await js.get_msg(names.HISTORY_STREAM, subject=names.history_run_filter(run_id),
                               direct=True)
    except NotFoundError:
        return 0
    return msg.seq or 0


async def delete_run(js: JetStreamContext, run_id: str) -> Deleted:
    """Delete everything dagnats keeps of one ended run (see the module docstring).

    RunNotEnded (nothing deleted) while it runs; RunNotFound when nothing of it is left.
    Idempotent: deleting a half-deleted run finishes the job.
    """
    events = await history.read(js, run_id)
    run = fold(events) if events else None
    if run is not None and not run.status.terminal:
        raise RunNotEnded(f"run {run_id} is {run.status.value}: only ended runs can be "
                          f"deleted; cancel it first (`dagnats run cancel {run_id}`)")
    status = run.status.value if run is not None else "unknown"
    removed: dict[str, int] = {}
    removed["snapshot"] = await _purge_key(js, names.RUNS_BUCKET, names.run_key(run_id))
    if not events and not removed["snapshot"]:
        raise RunNotFound(f"no run {run_id}; see `dagnats run list`")
    await run_index.remove(js, run_id)
    if run is not None:
        await waiters.clear_run(await js.key_value(names.WAITERS_BUCKET), run)
    await run_data.delete_run_data(js, run_id)
    removed["cancellation"] = await _purge_key(js, names.CANCEL_BUCKET,
                                               names.cancel_key(run_id))
    removed["idempotency key"] = await _purge_idempotency(js, events)
    purge = jetstream.purge
    removed["timers"] = await purge(js, names.TIMER_STREAM, names.timer_run_filter(run_id))
    removed["dead letters"] = await purge(js, names.DEAD_STREAM, names.dead_filter(run_id))
    if events:
        seen = max(event.seq for event in events)
        if await last_seq(js, run_id) != seen:
            raise RunNotEnded(f"run {run_id} changed while it was being deleted (resumed?); "
                              "its history was kept: look at `dagnats run status` and try again")
        removed["events"] = await purge(js, names.HISTORY_STREAM,
                                        names.history_run_filter(run_id))
    log.info("deleted run %s (%s): %s", run_id, status,
             ", ".join(f"{n} {what}" for what, n in removed.items() if n))
    return Deleted(run_id, status, removed)


async def _purge_idempotency(js: JetStreamContext, events: list[Event]) -> int:
    """Free the idempotency key the run was started with, if any (it names this run)."""
    started = events[0].data if events and events[0].type is EventType.WORKFLOW_STARTED \
        else {}
    key, workflow = started.get("idempotency_key"), started.get("workflow")
    if not isinstance(key, str) or not isinstance(workflow, str):
        return 0
    return await _purge_key(js, names.IDEMPOTENCY_BUCKET, names.idempotency_key(workflow, key))


@dataclass(frozen=True)
class Ended:
    """How and when a run ended (from its last event)."""

    run_id: str
    status: RunStatus
    ended_at: datetime


async def ended(js: JetStreamContext, run_id: str, before: datetime | None = None
                ) -> Ended | None:
    """How `run_id` ended, from its last event (one direct get); None while it runs (or,
    with `before`, when it cannot have ended before then).

    A run whose last event does not end it (a late report after its end) is folded whole,
    unless that event is not older than `before`.
    """
    try:
        msg = await js.get_msg(names.HISTORY_STREAM, subject=names.history_run_filter(run_id),
                               direct=True)
        last = Event.decode(msg.data or b"", seq=msg.seq or 0)
    except (NotFoundError, ValueError):
        return None
    if last.type in RUN_TERMINAL_EVENTS:
        return Ended(run_id, _ENDED_BY[last.type], last.timestamp)
    if before is not None and last.timestamp >= before:
        return None  # it ended (if at all) after the cutoff: no need to read it all
    run = fold(await history.read(js, run_id))
    if run is None or not run.status.terminal:
        return None
    return Ended(run_id, run.status, last.timestamp)


@dataclass
class Purged:
    """One round of `purge`: the runs deleted, and where to go on from (None: done)."""

    deleted: list[str]
    next_after: str | None


async def purge(js: JetStreamContext, before: datetime, status: RunStatus | None = None, *,
                after: str = "", limit: int = 100) -> Purged:
    """Delete up to `limit` runs that ended before `before` (with `status`, if given).

    Runs are visited in run-id order from just past `after`, so repeated calls (passing
    `next_after` back) make progress through any number of runs; `next_after` is None once
    every run was visited. Runs still running are skipped, never deleted.
    """
    subjects = await jetstream.stream_subjects(js, names.HISTORY_STREAM,
                                               names.history_events_filter())
    run_ids = sorted(rid for rid in map(names.history_run_of, subjects) if rid > after)
    deleted: list[str] = []
    for run_id in run_ids:
        if len(deleted) >= limit:
            return Purged(deleted, deleted[-1])
        end = await ended(js, run_id, before)
        if end is None or end.ended_at >= before or (status is not None and
                                                     end.status != status):
            continue
        try:
            await delete_run(js, run_id)
        except (RunNotEnded, RunNotFound) as exc:  # resumed or deleted meanwhile
            log.info("purge: run %s skipped: %s", run_id, exc)
            continue
        deleted.append(run_id)
    return Purged(deleted, None)


_DAYS = re.compile(r"^(\d+)d")


def parse_age(text: str) -> float:
    """Seconds in an age such as "30d", "12h", "1d12h" or "90m" (days, then a duration);
    ValueError saying what is accepted."""
    value = text.strip()
    days = _DAYS.match(value)
    rest = value[days.end():] if days else value
    try:
        seconds = parse_duration(rest) if rest else 0.0
    except ValueError:
        raise ValueError(f"invalid age {text!r}: use a number with a unit (d, h, m, s), such "
                         "as \"30d\", \"12h\" or \"1d12h\"") from None
    return (int(days.group(1)) * 86400 if days else 0) + seconds
