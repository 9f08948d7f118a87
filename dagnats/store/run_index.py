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
with a cursor: O(page), not O(runs). While the whole view loads (an API starting: seconds
for 100,000 runs), `answer` reads the index's last few thousand summaries into a partial
view, which answers exactly what lies above its floor (the newest runs); anything else
waits for the whole view. See docs/architecture.md, "Listing runs".
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError
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
#: Summaries of the index's end a partial view reads while the whole view loads.
TAIL_MESSAGES = 4000
#: Summaries taken in between two turns given to other requests while a view reads.
TAKE_BETWEEN_YIELDS = 250
#: The longest the whole view's load waits between two reads for answers from the tail.
YIELD_AT_MOST_S = 0.2
#: How far the clock of a process starting runs may be ahead of nats-server's: a partial
#: view vouches only for runs created this long after its first summary was stored.
CLOCK_SKEW_S = 1.0


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

    On a status change, on any run-level event even without one, and on any event of an
    ended run: after a kill -9 between the snapshot and the summary, the redelivered event
    (or the echo of the engine's own run-level event) finds the state already moved on and
    writes it then. The last case covers a run-level event whose echo was acked unread by
    an engine that recorded it too (deduplicated) while the engine whose snapshot won died
    before its summary: a late event of an ended run is rare, and a repeat is dropped.
    """
    return (before is None or before.status is not after.status or after.status.terminal
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
    try:
        await js.get_msg(names.INDEX_STREAM, subject=names.run_index_marker_subject(),
                         direct=True)
    except NotFoundError:
        return False
    return True


@dataclass(frozen=True)
class Batch:
    """What one batched direct get of the index returned."""

    payloads: list[bytes]
    last_seq: int
    """The sequence of the last message returned (0: none)."""
    pending: int
    """How many messages after it the stream holds."""


async def read_batch(js: JetStreamContext, start_seq: int, batch: int) -> Batch:
    """Up to `batch` messages of RUN_INDEX from `start_seq` on, in order: one batched direct
    get (no consumer), payloads only (nats-py's header parsing would cost more than the rest)."""
    nc = js._nc  # nats-py offers no public accessor
    payloads: list[bytes] = []
    ended: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Msg) -> None:
        if not msg.headers:
            payloads.append(msg.data)
        elif not ended.done():  # the end of the batch (204), or nothing there (404)
            ended.set_result(msg.headers)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_message)
    request = {"seq": max(start_seq, 1), "batch": batch, "no_hdr": True,
               "next_by_subj": names.run_index_filter()}
    try:
        await nc.publish(names.direct_get_subject(names.INDEX_STREAM),
                         json.dumps(request).encode(), reply=inbox)
        async with asyncio.timeout(READ_TIMEOUT_S):
            headers = await ended
    finally:
        await sub.unsubscribe()
    status = headers.get(js_api.Header.STATUS)
    if status == "404":
        return Batch([], 0, 0)
    if status != "204":
        raise APIError(description=f"direct get of {names.INDEX_STREAM}: {status} "
                       f"{headers.get(js_api.Header.DESCRIPTION, '')}")
    return Batch(payloads, int(headers.get("Nats-Last-Sequence") or 0),
                 int(headers.get("Nats-Num-Pending") or 0))


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


class _Entry:
    """A run in the view: what filtering and sorting need, and its summary as JSON (about a
    third of the memory of the parsed summary; only a page's entries are parsed again)."""

    __slots__ = ("key", "payload", "seq", "status", "workflow")

    def __init__(self, summary: RunSummary, payload: bytes | None) -> None:
        self.key = _key(summary)
        self.seq = summary.seq
        self.status = summary.status
        self.workflow = sys.intern(summary.workflow)
        self.payload = payload if payload is not None else summary.model_dump_json().encode()

    def summary(self) -> RunSummary:
        """The run's summary."""
        return RunSummary.model_validate_json(self.payload)


class BelowFloor(Exception):
    """A partial view was asked for something that may lie below its floor."""


class RunIndexView:
    """Every run's summary in memory, sorted by creation time overall, per workflow and per
    status; kept current by reading what the index gained since the last read.

    A partial view (`floor` set) has read the index from `start_seq` on only. It holds every
    run created after `floor` whole, since all of such a run's summaries were stored after
    its creation; what may lie below the floor raises BelowFloor.
    """

    def __init__(self, js: JetStreamContext, start_seq: int = 1, floor: Key | None = None,
                 between_batches: asyncio.Event | None = None) -> None:
        self.js = js
        self.floor = floor
        self._between_batches = between_batches  # set: go on reading (see _Views)
        self.loaded_at = time.monotonic()
        self._lock = asyncio.Lock()
        self._runs: dict[str, _Entry] = {}
        self._all: list[Key] = []
        self._by_workflow: dict[str, list[Key]] = {}
        self._by_status: dict[RunStatus, list[Key]] = {}
        self._next_seq = start_seq

    def __len__(self) -> int:
        return len(self._runs)

    async def sync(self) -> None:
        """Read every summary written since the last read (all of them the first time)."""
        async with self._lock:
            while True:
                if self._between_batches is not None:  # yield to answers, but not forever
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(YIELD_AT_MOST_S):
                            await self._between_batches.wait()
                batch = await read_batch(self.js, self._next_seq, READ_BATCH)
                for at, payload in enumerate(batch.payloads, 1):
                    self._take(payload)
                    if at % TAKE_BETWEEN_YIELDS == 0:  # other requests get a turn
                        await asyncio.sleep(0)
                if batch.last_seq:
                    self._next_seq = batch.last_seq + 1
                if not batch.pending or not batch.last_seq:
                    return

    def _take(self, payload: bytes) -> None:
        try:
            summary = RunSummary.model_validate_json(payload)
        except ValidationError:  # the backfill marker, or something not ours
            return
        self.apply(summary, payload)

    def apply(self, summary: RunSummary, payload: bytes | None = None) -> None:
        """Take a summary in (`payload`: its JSON, if at hand), unless the view holds a newer
        one of the run."""
        old = self._runs.get(summary.run_id)
        if old is not None:
            if old.seq > summary.seq:
                return
            self._unlist(old)
        if summary.deleted:
            self._runs.pop(summary.run_id, None)
            return
        entry = _Entry(summary, payload)
        self._runs[summary.run_id] = entry
        for keys in self._lists(entry):
            bisect.insort(keys, entry.key)

    def _lists(self, entry: _Entry) -> tuple[list[Key], list[Key], list[Key]]:
        return (self._all, self._by_workflow.setdefault(entry.workflow, []),
                self._by_status.setdefault(entry.status, []))

    def _unlist(self, entry: _Entry) -> None:
        for keys in self._lists(entry):
            at = bisect.bisect_left(keys, entry.key)
            if at < len(keys) and keys[at] == entry.key:
                del keys[at]

    def run_ids_starting_with(self, prefix: str) -> list[str]:
        """The ids of the runs listed whose id starts with `prefix`, sorted (a scan in
        memory: a run id prefix given to `run status` and the like)."""
        if self.floor is not None:  # an older run may match too
            raise BelowFloor(prefix)
        return sorted(run_id for run_id in self._runs if run_id.startswith(prefix))

    def page(self, *, workflow: str | None = None, status: RunStatus | None = None,
             since: datetime | None = None, after: str | None = None, limit: int = 100
             ) -> Page:
        """Up to `limit` runs, newest first, after the cursor `after`, filtered."""
        keys = self._candidates(workflow, status)
        start = len(keys) if after is None else bisect.bisect_left(keys, parse_cursor(after))
        oldest = (int(since.timestamp() * 1_000_000), "") if since is not None else None
        bounds = [bound for bound in (oldest, self.floor) if bound is not None]
        lowest = max(bounds) if bounds else None
        found: list[_Entry] = []
        for key in _newest_first(keys, start):
            if lowest is not None and key < lowest:
                break
            entry = self._runs[key[1]]
            if (workflow is None or entry.workflow == workflow) \
                    and (status is None or entry.status is status):
                if len(found) == limit:
                    return Page([e.summary() for e in found], format_cursor(found[-1].key))
                found.append(entry)
        if self.floor is not None and (oldest is None or oldest < self.floor):
            raise BelowFloor(after)  # the page may go on below the floor
        return Page([e.summary() for e in found], None)

    def counts(self, since: datetime | None = None) -> dict[str, int]:
        """How many runs are in each status (statuses with none left out), of those created
        at or after `since` (all when None): a bisection per status, O(statuses x log runs)."""
        oldest = (int(since.timestamp() * 1_000_000), "") if since is not None else None
        if self.floor is not None and (oldest is None or oldest < self.floor):
            raise BelowFloor(since)
        found = {status.value: len(keys) - (bisect.bisect_left(keys, oldest) if oldest else 0)
                 for status, keys in self._by_status.items()}
        return {status: n for status, n in found.items() if n}

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


T = TypeVar("T")


class _Views:
    """One connection's views of the index: the whole view once loaded, its load (or its
    12-hourly reload, which the old view answers through) and, until the first load ends,
    a partial view of the index's end."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.whole: RunIndexView | None = None
        self.loading: asyncio.Task[RunIndexView] | None = None
        self.tail: asyncio.Task[RunIndexView] | None = None
        self._answering_from_tail = 0
        self._load_may_read = asyncio.Event()  # clear while answers come from the tail
        self._load_may_read.set()

    def load(self) -> asyncio.Task[RunIndexView]:
        """The load of a whole view, started if none is under way."""
        if self.loading is None:
            self.loading = asyncio.create_task(self._load())
            self.loading.add_done_callback(_log_failed_load)
        return self.loading

    async def _load(self) -> RunIndexView:
        try:
            loaded = RunIndexView(self.js, between_batches=self._load_may_read)
            await loaded.sync()
            self.whole, self.tail = loaded, None
            return loaded
        finally:
            self.loading = None  # a failed load is tried again by the next call

    async def answer(self, ask: Callable[[RunIndexView], T]) -> T:
        """`ask` of the up-to-date whole view; while it loads, of the partial view of the
        index's end when it can answer exactly (else the load is waited for)."""
        whole = self.whole
        if whole is not None:
            if time.monotonic() - whole.loaded_at > FULL_RELOAD_S:
                self.load()  # tombstones expire: rebuild aside, answer from this one meanwhile
            await whole.sync()
            return ask(whole)
        loading = self.load()
        if self.tail is None:
            self.tail = asyncio.create_task(tail_view(self.js, TAIL_MESSAGES))
        tail = self.tail
        self._answering_from_tail += 1
        self._load_may_read.clear()  # the load reads on between answers, not during them
        try:
            partial = await asyncio.shield(tail)
            await partial.sync()
            return ask(partial)
        except BelowFloor:
            pass
        except Exception as exc:  # the whole view's load says it again if it lasts
            log.debug("could not read the run index's end: %s", exc)
            if self.tail is tail:
                self.tail = None
        finally:
            self._answering_from_tail -= 1
            if not self._answering_from_tail:
                self._load_may_read.set()
        whole = await asyncio.shield(loading)
        await whole.sync()
        return ask(whole)


def _log_failed_load(task: asyncio.Task[RunIndexView]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not load the run index (the next listing tries again): %s",
                    task.exception())


async def tail_view(js: JetStreamContext, messages: int) -> RunIndexView:
    """A view of the index's last `messages` summaries, its floor the creation time after
    which it holds every run whole (None: it holds the whole index)."""
    state = (await js.stream_info(names.INDEX_STREAM)).state
    first = max(1, state.first_seq)
    start = max(first, state.last_seq - messages + 1)
    floor: Key | None = None
    if start > first:
        try:
            oldest = await js.get_msg(names.INDEX_STREAM, seq=start, direct=True, next=True,
                                      subject=names.run_index_filter())
        except NotFoundError:  # everything from `start` on was removed meanwhile
            oldest = None
        stored = (oldest.time if oldest is not None else None) or datetime.now(UTC)
        floor = (int((stored + timedelta(seconds=CLOCK_SKEW_S)).timestamp() * 1_000_000), "")
    partial = RunIndexView(js, start_seq=start, floor=floor)
    await partial.sync()
    return partial


_views: weakref.WeakKeyDictionary[object, _Views] = weakref.WeakKeyDictionary()


def _views_of(js: JetStreamContext) -> _Views:
    nc = js._nc  # nats-py offers no public accessor
    found = _views.get(nc)
    if found is None:
        found = _views[nc] = _Views(js)
    return found


async def answer(js: JetStreamContext, ask: Callable[[RunIndexView], T]) -> T:
    """`ask` (a page, counts, a prefix lookup) of the index as read through `js`'s
    connection: exact, and fast even while that connection's view first loads."""
    return await _views_of(js).answer(ask)


async def view(js: JetStreamContext) -> RunIndexView:
    """The up-to-date whole view of the connection behind `js` (one per connection)."""
    views = _views_of(js)
    whole = views.whole if views.whole is not None else await asyncio.shield(views.load())
    await whole.sync()
    return whole


async def preload(js: JetStreamContext) -> None:
    """Load the view ahead of the first listing (an API starting); a failure only logs, and
    the first listing tries again."""
    with contextlib.suppress(Exception):  # logged by the load; the next listing tries again
        await asyncio.shield(_views_of(js).load())
