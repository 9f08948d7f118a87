"""The run index: one small summary per run in stream RUN_INDEX, which `run list` reads.

The engine writes a run's summary (id, workflow, version, status, times, error) whenever the
run's status changes or it handles a run-level event, after storing the snapshot; a repeat
(redelivery, kill -9 between snapshot and summary) is dropped by its msg id or rewrites the
same thing. Each summary carries the history sequence of the state it sums up, and a reader
keeps the highest: the stream keeps the last two per run, so a late write of an older state
(two engines racing) never hides the newer one.

Readers (the API) hold a `RunIndexView`: every summary in memory, sorted newest first (by
creation time) overall, per workflow and per status. A list request first reads what was
written since its last read (batched direct gets: no consumer), then pages from the view
with a cursor: O(page), not O(runs). See docs/architecture.md, "Listing runs".
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError
from pydantic import BaseModel, ConfigDict, ValidationError

from dagnats import jetstream, names
from dagnats.dag.events import Event, EventType
from dagnats.dag.state import RunState, RunStatus
from dagnats.errors import InvalidInput

log = logging.getLogger("dagnats.run_index")

#: A summary keeps this much of a run's error (the full one is in `run status`).
ERROR_CHARS = 200
#: How long a deleted run's tombstone stays in the index (views older than this reload).
TOMBSTONE_TTL_S = 24 * 3600
#: A view reloads everything when its last full load is older than this (tombstones expire).
FULL_RELOAD_S = TOMBSTONE_TTL_S / 2
#: Summaries per batched direct get while reading the index.
READ_BATCH = 2000
#: How long one batched direct get may take.
READ_TIMEOUT_S = 5.0


class RunSummary(BaseModel):
    """What `run list` shows of a run, as of history sequence `seq`."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    workflow: str
    version: str
    status: RunStatus
    created_at: datetime
    completed_at: datetime | None = None
    error: str | None = None
    seq: int = 0
    deleted: bool = False

    def public(self) -> dict[str, object]:
        """The shape of one `run list` row (a `Run` with no input, output or steps)."""
        return {"run_id": self.run_id, "workflow": self.workflow, "version": self.version,
                "status": self.status.value, "created_at": self.created_at.isoformat(),
                "completed_at": self.completed_at.isoformat() if self.completed_at else None,
                "error": self.error}


def summary_of(run: RunState) -> RunSummary:
    """The index summary of a run's state."""
    error = run.error if run.error is None or len(run.error) <= ERROR_CHARS \
        else run.error[:ERROR_CHARS - 3] + "..."
    return RunSummary(run_id=run.run_id, workflow=run.workflow, version=run.version,
                      status=run.status, created_at=run.created_at,
                      completed_at=run.completed_at, error=error, seq=run.last_seq)


def needs_write(before: RunState | None, after: RunState, events: list[Event]) -> bool:
    """True when the engine must (re)write a run's summary after handling `events`.

    On a status change, and on any run-level event even without one: after a kill -9
    between the snapshot and the summary, the redelivered event (or the echo of the
    engine's own run-level event) finds the state already moved on and writes it then.
    """
    return (before is None or before.status is not after.status
            or any(event.type in RUN_LEVEL_EVENTS for event in events))


RUN_LEVEL_EVENTS = frozenset(t for t in EventType if t.value.startswith("workflow."))


async def publish(js: JetStreamContext, run: RunState) -> None:
    """Write a run's summary (engine side; idempotent)."""
    summary = summary_of(run)
    await jetstream.publisher(js).publish(
        names.run_index_subject(run.run_id), summary.model_dump_json().encode(),
        {"Nats-Msg-Id": names.run_index_msg_id(run.run_id, summary.seq)})


async def remove(js: JetStreamContext, run_id: str) -> None:
    """Remove a run from the index (retention): a tombstone every view drops the run for,
    which expires after TOMBSTONE_TTL_S, and nothing else left on the run's subject."""
    tombstone = {"run_id": run_id, "workflow": "-", "version": "-", "status": "completed",
                 "created_at": datetime.now(UTC).isoformat(), "seq": 2**62, "deleted": True}
    subject = names.run_index_subject(run_id)
    await jetstream.publisher(js).publish(subject, json.dumps(tombstone).encode(),
                                          {"Nats-TTL": f"{TOMBSTONE_TTL_S}s"})
    await js.purge_stream(names.INDEX_STREAM, subject=subject, keep=1)


async def backfill(js: JetStreamContext) -> int:
    """Once per store: index the runs whose snapshots predate the index; how many.

    A summary is only added where the run has none (a newer one the engine wrote wins).
    The marker is written last, so an interrupted backfill starts over (harmlessly).
    """
    from dagnats.store.snapshots import Snapshots  # the index sits below the snapshots

    if await _has_marker(js):
        return 0
    snapshots = await Snapshots.open(js)
    added = 0
    for run_id in await snapshots.run_ids():
        snapshot = await snapshots.get(run_id)
        if snapshot is None:
            continue
        try:
            await jetstream.publisher(js).publish(
                names.run_index_subject(run_id),
                summary_of(snapshot.run).model_dump_json().encode(),
                {js_api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: "0"})
            added += 1
        except APIError as exc:
            if exc.err_code not in jetstream.WRONG_LAST_SEQUENCE:
                raise
    await jetstream.publisher(js).publish(names.run_index_marker_subject(), b"{}")
    if added:
        log.info("indexed %d runs from their snapshots (stored before the run index)", added)
    return added


async def _has_marker(js: JetStreamContext) -> bool:
    found = await read_batch(js, 0, 1, names.run_index_marker_subject())
    return bool(found)


@dataclass(frozen=True)
class Stored:
    """One message of the index as a direct get returns it."""

    seq: int
    subject: str
    data: bytes


async def read_batch(js: JetStreamContext, start_seq: int, batch: int,
                     subject_filter: str | None = None) -> list[Stored]:
    """Up to `batch` messages of RUN_INDEX from `start_seq` on, matching the filter (every
    subject by default), in order: one batched direct get, no consumer."""
    nc = js._nc  # nats-py offers no public accessor
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    request = {"seq": max(start_seq, 1), "batch": batch,
               "next_by_subj": subject_filter or names.run_index_filter()}
    found: list[Stored] = []
    try:
        await nc.publish(names.direct_get_subject(names.INDEX_STREAM),
                         json.dumps(request).encode(), reply=inbox)
        async with asyncio.timeout(READ_TIMEOUT_S):
            while True:
                msg = await sub.next_msg(timeout=READ_TIMEOUT_S)
                headers = msg.headers or {}
                status = headers.get(js_api.Header.STATUS)
                if status is not None:  # 204: the end of the batch; 404: nothing (more)
                    if status not in ("204", "404"):
                        raise APIError(description=f"direct get of {names.INDEX_STREAM}: "
                                       f"{status} {headers.get('Description', '')}")
                    return found
                found.append(Stored(int(headers["Nats-Sequence"]), headers["Nats-Subject"],
                                    msg.data))
                if len(found) >= batch and batch == 1:
                    return found  # a batch of one may end without an EOB
    finally:
        await sub.unsubscribe()


Key = tuple[int, str]
"""Where a run sorts: (creation time in µs, run id); a cursor is the last key shown."""


def _key(summary: RunSummary) -> Key:
    return (int(summary.created_at.timestamp() * 1_000_000), summary.run_id)


def format_cursor(key: Key) -> str:
    """The cursor that continues a listing after `key`."""
    return f"{key[0]}.{key[1]}"


def parse_cursor(cursor: str) -> Key:
    """The key a cursor continues after; InvalidInput for anything that is not a cursor."""
    micros, _, run_id = cursor.partition(".")
    if not micros.isdigit() or not names.is_token(run_id) or "\n" in run_id:
        raise InvalidInput(f"{cursor!r} is not a run list cursor; pass the one a listing "
                           "printed")
    return (int(micros), run_id)


@dataclass(frozen=True)
class Page:
    """One page of a listing, and the cursor of the next one (None: this is the last)."""

    runs: list[RunSummary]
    next_cursor: str | None


class RunIndexView:
    """Every run's summary in memory, sorted by creation time overall, per workflow and per
    status; kept current by reading what the index gained since the last read."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._lock = asyncio.Lock()
        self._reset()

    def _reset(self) -> None:
        self._runs: dict[str, RunSummary] = {}
        self._all: list[Key] = []
        self._by_workflow: dict[str, list[Key]] = {}
        self._by_status: dict[RunStatus, list[Key]] = {}
        self._next_seq = 1
        self._loaded_at = time.monotonic()

    def __len__(self) -> int:
        return len(self._runs)

    async def sync(self) -> None:
        """Read every summary written since the last read (all of them the first time)."""
        async with self._lock:
            if time.monotonic() - self._loaded_at > FULL_RELOAD_S:
                self._reset()
            while True:
                found = await read_batch(self.js, self._next_seq, READ_BATCH)
                for stored in found:
                    self._take(stored)
                    self._next_seq = stored.seq + 1
                if len(found) < READ_BATCH:
                    return

    def _take(self, stored: Stored) -> None:
        try:
            names.parse_run_index_subject(stored.subject)
            summary = RunSummary.model_validate_json(stored.data)
        except (ValueError, ValidationError):  # the marker, or something not ours
            return
        self.apply(summary)

    def apply(self, summary: RunSummary) -> None:
        """Take a summary in, unless the view holds a newer one of the run."""
        old = self._runs.get(summary.run_id)
        if old is not None:
            if old.seq > summary.seq:
                return
            self._unlist(old)
        if summary.deleted:
            self._runs.pop(summary.run_id, None)
            return
        self._runs[summary.run_id] = summary
        key = _key(summary)
        for keys in self._lists(summary):
            bisect.insort(keys, key)

    def _lists(self, summary: RunSummary) -> tuple[list[Key], list[Key], list[Key]]:
        return (self._all, self._by_workflow.setdefault(summary.workflow, []),
                self._by_status.setdefault(summary.status, []))

    def _unlist(self, summary: RunSummary) -> None:
        key = _key(summary)
        for keys in self._lists(summary):
            at = bisect.bisect_left(keys, key)
            if at < len(keys) and keys[at] == key:
                del keys[at]

    def page(self, *, workflow: str | None = None, status: RunStatus | None = None,
             since: datetime | None = None, after: str | None = None, limit: int = 100
             ) -> Page:
        """Up to `limit` runs, newest first, after the cursor `after`, filtered."""
        keys = self._candidates(workflow, status)
        start = len(keys) if after is None else bisect.bisect_left(keys, parse_cursor(after))
        oldest = (int(since.timestamp() * 1_000_000), "") if since is not None else None
        found: list[RunSummary] = []
        for key in _newest_first(keys, start):
            if oldest is not None and key < oldest:
                break
            summary = self._runs[key[1]]
            if (workflow is None or summary.workflow == workflow) \
                    and (status is None or summary.status is status):
                if len(found) == limit:
                    return Page(found, format_cursor(_key(found[-1])))
                found.append(summary)
        return Page(found, None)

    def _candidates(self, workflow: str | None, status: RunStatus | None) -> list[Key]:
        """The shortest sorted list holding every run the filters can match."""
        lists = [self._all]
        if workflow is not None:
            lists.append(self._by_workflow.get(workflow, []))
        if status is not None:
            lists.append(self._by_status.get(status, []))
        return min(lists, key=len)


def _newest_first(keys: list[Key], start: int) -> Iterator[Key]:
    for at in range(start - 1, -1, -1):
        yield keys[at]


_views: weakref.WeakKeyDictionary[object, RunIndexView] = weakref.WeakKeyDictionary()


async def view(js: JetStreamContext) -> RunIndexView:
    """The up-to-date view of the connection behind `js` (one per connection)."""
    nc = js._nc  # nats-py offers no public accessor
    found = _views.get(nc)
    if found is None:
        found = _views[nc] = RunIndexView(js)
    await found.sync()
    return found
