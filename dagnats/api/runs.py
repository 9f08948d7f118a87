"""API operations on runs: start, get, events, list (cancel, retry and rerun: lifecycle.py).

Reads of one run fold its full history (the source of truth), so a client reads its own
writes; listings come from the run index (store/run_index.py), which the engine updates
when a run's status changes, so it may lag the history by milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from dagnats import names
from dagnats.api import idempotency
from dagnats.api.context import ApiContext, Request
from dagnats.api.workflows import check_name
from dagnats.dag.events import Event, EventType
from dagnats.dag.payload import Refs, refs_json
from dagnats.dag.state import RunState, RunStatus, StepStatus, fold
from dagnats.errors import InvalidInput, RunNotFound
from dagnats.store import history, payloads, progress, run_index

#: Run ids are uuid4 as 32 hex characters.
RUN_ID_LENGTH = 32
#: The shortest prefix accepted in place of a full run id.
MIN_PREFIX_LENGTH = 8
#: Bytes of a reply kept free for its envelope, beside a run list page.
REPLY_OVERHEAD = 1024
#: The most runs `run tree` shows (the rest are named, not read).
TREE_MAX_RUNS = 500


class StartRequest(Request):
    """run.start: a workflow (latest version unless given) and its input."""

    workflow: str
    input: Any = None
    input_refs: Refs | None = None
    """An input too large to send: the client stored it out of line under `run_id`."""
    run_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    """The id the run takes (given with `input_refs`, whose payloads are stored under it)."""
    version: str | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=512)
    #: The client's id of this start, the same on each retry of it: without an idempotency
    #: key, it stands in for one, so a retried start never starts a second run.
    request_id: str | None = Field(default=None, min_length=1, max_length=512)


class RunRequest(Request):
    """run.get, run.events, run.cancel: a run id or a unique prefix of one."""

    run_id: str


class EventsRequest(RunRequest):
    """run.events: a run's events; `paged` asks for a page after `after_seq`."""

    after_seq: int = Field(default=0, ge=0)
    paged: bool = False


class ListRequest(Request):
    """run.list: runs from the run index, newest first, filtered, a page after `after`."""

    workflow: str | None = None
    status: RunStatus | None = None
    since: datetime | None = None
    """Only runs created at or after this time."""
    after: str | None = None
    """The cursor a previous page returned as `next`."""
    limit: int = Field(default=100, ge=1, le=10_000)


class CountsRequest(Request):
    """run.counts: how many runs are in each status, of those created since a time."""

    since: datetime | None = None


async def resolve_run_id(ctx: ApiContext, given: str) -> str:
    """The full id of a run named by its id or a unique prefix of at least 8 characters."""
    if not names.is_token(given):
        raise RunNotFound(f"{given!r} is not a run id; see `dagnats run list`")
    if await history.exists(ctx.js, given):
        return given
    if len(given) < MIN_PREFIX_LENGTH:
        raise RunNotFound(f"no run {given!r}; a run id prefix needs at least "
                          f"{MIN_PREFIX_LENGTH} characters")
    matches = await run_index.answer(ctx.js, lambda index: index.run_ids_starting_with(given))
    if not matches:  # a run the index does not have yet (a store still being backfilled)
        matches = sorted(rid for rid in await ctx.snapshots.run_ids() if rid.startswith(given))
    if not matches:
        raise RunNotFound(f"no run with id or prefix {given!r}; see `dagnats run list`")
    if len(matches) > 1:
        shown = ", ".join(matches[:3]) + (", ..." if len(matches) > 3 else "")
        raise RunNotFound(f"run id prefix {given!r} is ambiguous: it matches {len(matches)} "
                          f"runs ({shown}); give more characters")
    return matches[0]


async def load_run(ctx: ApiContext, run_id: str) -> tuple[RunState, list[Event]]:
    """A run folded from its full history, with the events it was folded from."""
    events = await history.read(ctx.js, run_id)
    run = fold(events)
    if run is None:
        raise RunNotFound(f"run {run_id} has no workflow.started event in its history")
    return run, events


async def start(ctx: ApiContext, req: StartRequest) -> dict[str, Any]:
    """run.start: `start_run`, answered with the run id."""
    return {"run_id": await start_run(ctx, req)}


async def start_run(ctx: ApiContext, req: StartRequest, *, keyed: bool = True,
                    **extra: Any) -> str:
    """Start a run of a registered workflow by writing its workflow.started event; its id.

    The one way a run starts: the API's run.start, and the engine for a sub_workflow's
    child (which passes its own run id, and `parent` in `extra`, kept in the event; and
    `keyed=False`: a child's id is its idempotency, whatever its workflow's key says).

    With an idempotency key (given, or found in the input along the workflow's path), a
    second start within 24 h returns the first one's run id instead. Without one, the
    client's request id names the run (`request_run_id`), so a start it sends again (after
    a timeout) writes the same workflow.started event, which JetStream drops as a duplicate:
    no extra request on the way of every start.
    """
    definition = await ctx.definitions.get(check_name(req.workflow), req.version)
    refs = req.input_refs or {}
    run_id = req.run_id or (request_run_id(definition.name, req.request_id)
                            if req.request_id else uuid.uuid4().hex)
    if refs and await out_of_line_start(ctx, run_id, refs):
        return run_id  # a start repeated (its reply was lost): the same run
    key = req.idempotency_key
    if key is None and keyed:
        key = idempotency.key_from_input(definition, await payloads.fetch(
            ctx.js, run_id, req.input, refs) if refs and definition.idempotency_key
            else req.input)
    if key is not None:
        digest = names.idempotency_key(definition.name, key)
        proposed, run_id = run_id, await idempotency.claim(ctx.idempotency, digest, run_id)
        if refs and run_id != proposed:  # an earlier run has this key: its input is its own
            await payloads.discard(ctx.js, proposed, refs)
        if await history.exists(ctx.js, run_id):
            return run_id
        extra["idempotency_key"] = key
    if refs:
        extra["input_refs"] = refs_json(refs)
    await write_started(ctx, run_id, definition.json_view(), req.input, **extra)
    return run_id


def request_run_id(workflow: str, request_id: str) -> str:
    """The run id a start with this request id (and no idempotency key) takes: the same for
    every time the client sends it, within JetStream's duplicate window (10 minutes)."""
    return hashlib.sha256(f"{workflow}\x00{request_id}".encode()).hexdigest()[:RUN_ID_LENGTH]


async def out_of_line_start(ctx: ApiContext, run_id: str, refs: Refs) -> bool:
    """Check a start whose input the client stored out of line: True when the run exists
    already (the same start again); InvalidInput when its run id or payload is missing."""
    if not names.is_token(run_id) or len(run_id) != RUN_ID_LENGTH:
        raise InvalidInput("an input sent by reference needs the run_id it is stored under")
    if await history.exists(ctx.js, run_id):
        return True
    if not await payloads.stored(ctx.js, run_id, refs):
        raise InvalidInput(f"the input of run {run_id} is not stored; start the run again")
    return False


async def write_started(ctx: ApiContext, run_id: str, definition: dict[str, Any],
                        run_input: Any, **extra: Any) -> None:
    """Write a run's workflow.started event: its input and its own copy of the definition.

    An input sent inline but too large to carry so (a request made without the client,
    which puts it out of line itself) is put out of line here, so no snapshot outgrows
    NATS' message limit.
    """
    if "input_refs" not in extra:
        run_input, refs = await payloads.carry(ctx.js, run_id, run_input)
        if refs:
            extra["input_refs"] = refs_json(refs)
    data: dict[str, Any] = {"workflow": definition["name"], "version": definition["version"],
                            "input": run_input, "definition": definition, **extra}
    event = Event(type=EventType.WORKFLOW_STARTED, run_id=run_id,
                  timestamp=datetime.now(UTC), data=data)
    await history.append(ctx.js, event, names.started_msg_id(run_id))


async def get(ctx: ApiContext, req: RunRequest) -> dict[str, Any]:
    """A run's state as of now (`current_run`), with the last progress its handlers
    reported on the steps that run (`ctx.progress`; not in history)."""
    run = await current_run(ctx, await resolve_run_id(ctx, req.run_id))
    shown = run.public()
    busy = [step_id for step_id, step in run.steps.items()
            if step.status in (StepStatus.QUEUED, StepStatus.RUNNING)]
    for step_id, report in (await progress.latest(ctx.progress, run.run_id, busy)).items():
        if report.attempt == run.steps[step_id].attempts:  # not an older attempt's
            shown["steps"][step_id]["progress"] = report.public()
    return shown


async def tree(ctx: ApiContext, req: RunRequest) -> dict[str, Any]:
    """run.tree: the lineage of a run, from its root down: each run with its id, workflow
    and status, and under it the children its sub_workflow steps started (every attempt's),
    with the step that started each."""
    run = await current_run(ctx, await resolve_run_id(ctx, req.run_id))
    budget = [TREE_MAX_RUNS]
    return await _tree_node(ctx, run.root_run_id, None, budget)


async def _tree_node(ctx: ApiContext, run_id: str, step_id: str | None, budget: list[int]
                     ) -> dict[str, Any]:
    budget[0] -= 1
    node: dict[str, Any] = {"run_id": run_id, "step_id": step_id}
    try:
        run = await current_run(ctx, run_id)
    except RunNotFound:
        return {**node, "workflow": None, "status": "not started", "children": []}
    node.update(workflow=run.workflow, status=run.status.value, children=[])
    for child_step, child in await _children(ctx, run_id):
        if budget[0] <= 0:
            node["children"].append({"run_id": child, "step_id": child_step, "cut": True})
            continue
        node["children"].append(await _tree_node(ctx, child, child_step, budget))
    return node


async def _children(ctx: ApiContext, run_id: str) -> list[tuple[str, str]]:
    """(step id, child run id) of every child a run's steps started, in history order."""
    found: dict[str, str] = {}
    for event in await history.read(ctx.js, run_id):
        waits = event.data.get("waiting_for") if event.type is EventType.STEP_WAITING else None
        child = waits.get("run_id") if isinstance(waits, dict) and waits.get("kind") == "child" \
            else event.data.get("child_run_id")
        if isinstance(child, str) and event.step_id:
            found.setdefault(child, event.step_id)
    return [(step_id, child) for child, step_id in found.items()]


async def current_run(ctx: ApiContext, run_id: str) -> RunState:
    """A run's state as of now: its snapshot (the engine's cache) with the history after
    it folded in, which is what folding the whole history gives, without reading it all
    (a map of 10,000 items has 30,000 events); the whole history when there is no usable
    snapshot."""
    try:
        stored = await ctx.snapshots.get(run_id)
    except ValueError:  # not a snapshot this version reads: history is the truth
        stored = None
    if stored is None:
        return (await load_run(ctx, run_id))[0]
    tail = await history.read_gap(ctx.js, run_id, stored.run.last_seq, history.END)
    return fold(tail, stored.run) or stored.run


async def events(ctx: ApiContext, req: EventsRequest) -> list[dict[str, Any]] | dict[str, Any]:
    """A run's events in history order: all of them; or, with `paged`, those after
    `after_seq` that fit in one NATS message, as `{"events": [...], "next": seq}` (`next`
    is null on the last page: a map of thousands of items has megabytes of events)."""
    run_id = await resolve_run_id(ctx, req.run_id)
    room = ctx.js._nc.max_payload - REPLY_OVERHEAD  # nats-py offers no public accessor
    page: list[dict[str, Any]] = []
    size = 0
    async for event in history.events_from(ctx.js, run_id, after_seq=req.after_seq):
        shown = event.public()
        if req.paged:
            size += len(json.dumps(shown, separators=(",", ":"))) + 1
            if page and size > room:  # read no further than the page
                return {"events": page, "next": page[-1]["seq"]}
        page.append(shown)
    if not page and not req.after_seq:
        raise RunNotFound(f"run {run_id} has no events")
    return {"events": page, "next": None} if req.paged else page


async def list_runs(ctx: ApiContext, req: ListRequest) -> dict[str, Any]:
    """A page of runs from the run index, newest first: `{"runs": [...], "next": cursor}`
    (`next` is null on the last page). A page too large for one NATS message is refused."""
    since = req.since if req.since is None or req.since.tzinfo else req.since.replace(tzinfo=UTC)
    page = await run_index.answer(ctx.js, lambda index: index.page(
        workflow=req.workflow, status=req.status, since=since, after=req.after,
        limit=req.limit))
    result = {"runs": [run.public() for run in page.runs], "next": page.next_cursor}
    size = len(json.dumps(result, separators=(",", ":")))
    room = ctx.js._nc.max_payload - REPLY_OVERHEAD  # nats-py offers no public accessor
    if size > room:
        fits = max(1, len(page.runs) * room // size)
        raise InvalidInput(
            f"a page of {len(page.runs)} runs is {size / 1e6:.1f} MB, over the NATS message "
            f"limit of {ctx.js._nc.max_payload / 1e6:.1f} MB; ask for {fits} or fewer and "
            "page on with the cursor each page returns")
    return result


async def counts(ctx: ApiContext, req: CountsRequest) -> dict[str, Any]:
    """run.counts: `{"counts": {status: n}, "total": n}` of the runs created at or after
    `since` (every run when absent), from the run index."""
    since = req.since if req.since is None or req.since.tzinfo else req.since.replace(tzinfo=UTC)
    found = await run_index.answer(ctx.js, lambda index: index.counts(since))
    return {"counts": found, "total": sum(found.values())}
