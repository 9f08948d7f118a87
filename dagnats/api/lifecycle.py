"""API operations that end or revive runs: run.cancel, run.retry and run.rerun.

A cancel writes `workflow.cancelled` and puts the run id into KV `run_cancellations`,
which workers watch: they drop the run's queued tasks and tell its running handlers. A
retry (and a dead-letter replay, dlq.py) resumes a failed or cancelled run in place: it
removes the cancellation first, so the revived run's tasks run, then writes
`workflow.resumed` for the run's next generation under a message id of that generation, so
two concurrent retries resume it once. A rerun starts a new run of the very definition and
input (or a new input) of an earlier run.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from nats.js.errors import APIError
from pydantic import Field

from dagnats import jetstream, names
from dagnats.api.context import ApiContext, Request
from dagnats.api.runs import (
    RunRequest,
    load_run,
    out_of_line_start,
    resolve_run_id,
    write_started,
)
from dagnats.dag.events import Event, EventType
from dagnats.dag.payload import Refs, refs_json, refs_of
from dagnats.dag.state import RunState, RunStatus
from dagnats.errors import Contended, RunNotFound, RunNotResumable
from dagnats.store import dead_letters, history, payloads

CANCEL_ATTEMPTS = 10


class RerunRequest(Request):
    """run.rerun: an earlier run, and a new input (absent: the earlier run's input)."""

    run_id: str
    input: Any = None
    input_refs: Refs | None = None
    """A new input too large to send: the client stored it out of line under `new_run_id`."""
    new_run_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")


async def cancel(ctx: ApiContext, req: RunRequest) -> dict[str, Any]:
    """Cancel a running run; a run that has ended already is left as it is.

    The cancellation is written only if the history has not grown since it was read
    (Nats-Expected-Last-Subject-Sequence), so it cannot land after the run ended.
    """
    return await cancel_run(ctx, await resolve_run_id(ctx, req.run_id),
                            "cancelled on request")


async def cancel_run(ctx: ApiContext, run_id: str, reason: str) -> dict[str, Any]:
    """The one way a run is cancelled: the API's run.cancel, and the engine for the
    children of a run that ended (`reason` says why, in the event)."""
    for _ in range(CANCEL_ATTEMPTS):
        run, found = await load_run(ctx, run_id)
        if run.status.terminal:
            if run.status is RunStatus.CANCELLED:  # repairs a cancel that stopped halfway
                await mark_cancelled(ctx, run_id)
            return {"run_id": run_id, "status": run.status.value, "changed": False}
        event = Event(type=EventType.WORKFLOW_CANCELLED, run_id=run_id,
                      timestamp=datetime.now(UTC), data={"reason": reason})
        headers = {"Nats-Msg-Id": names.run_event_msg_id(run_id, "cancelled", run.generation),
                   **history.guard_headers(run_id, found[-1].seq)}
        try:
            await ctx.js.publish(names.history_subject(run_id), event.encode(), headers=headers)
        except APIError as exc:
            if exc.err_code not in jetstream.WRONG_LAST_SEQUENCE:
                raise
            continue  # the run moved on meanwhile: look again
        await mark_cancelled(ctx, run_id)
        return {"run_id": run_id, "status": RunStatus.CANCELLED.value, "changed": True}
    raise Contended(f"could not cancel run {run_id}: its history keeps changing; try again")


async def mark_cancelled(ctx: ApiContext, run_id: str) -> None:
    """Tell workers the run is cancelled (KV `run_cancellations`)."""
    value = json.dumps({"cancelled_at": datetime.now(UTC).isoformat()}).encode()
    await ctx.cancellations.put(names.cancel_key(run_id), value)


async def retry(ctx: ApiContext, req: RunRequest) -> dict[str, Any]:
    """Resume a failed or cancelled run in place; its dead letters are settled by it."""
    run, _ = await load_run(ctx, await resolve_run_id(ctx, req.run_id))
    seq = await resume(ctx, run, "retry", what="retry")
    for entry in await dead_letters.list_entries(ctx.js, run.run_id):
        await dead_letters.delete(ctx.js, entry.seq)
    return {"run_id": run.run_id, "generation": run.generation + 1, "seq": seq}


async def resume(ctx: ApiContext, run: RunState, reason: str, *, what: str,
                 **data: Any) -> int:
    """Write the workflow.resumed event of the run's next generation; return its sequence.

    Raises RunNotResumable when the run is not failed or cancelled, or when another
    request resumed this generation first.
    """
    if not run.status.resumable:
        raise RunNotResumable(not_resumable(run, what))
    generation = run.generation + 1
    # Removed before the resume is written: the resumed run's tasks must run.
    await ctx.cancellations.delete(names.cancel_key(run.run_id))
    event = Event(type=EventType.WORKFLOW_RESUMED, run_id=run.run_id,
                  timestamp=datetime.now(UTC),
                  data={"generation": generation, "reason": reason, **data})
    ack = await ctx.js.publish(names.history_subject(run.run_id), event.encode(),
                               headers={"Nats-Msg-Id": names.resumed_msg_id(run.run_id,
                                                                            generation)})
    if ack.duplicate:
        raise RunNotResumable(f"run {run.run_id} was resumed meanwhile by another request; "
                              f"see `dagnats run status {run.run_id}`")
    return ack.seq


def not_resumable(run: RunState, what: str) -> str:
    """Why `run` cannot be resumed, and what to do instead, in one line."""
    run_id, status = run.run_id, run.status
    if status in (RunStatus.RUNNING, RunStatus.COMPENSATING):
        return (f"run {run_id} is {status.value}, not failed or cancelled: nothing to {what}; "
                f"wait for it to end (`dagnats run status {run_id}`)")
    if status is RunStatus.COMPLETED:
        return (f"run {run_id} completed: nothing to {what}; to run it again, "
                f"`dagnats run rerun {run_id}`")
    return (f"run {run_id} ended {status.value} (its completed steps were undone), so it "
            f"cannot resume; to run it again, `dagnats run rerun {run_id}`")


async def rerun(ctx: ApiContext, req: RerunRequest) -> dict[str, Any]:
    """Start a new run of an earlier run's definition, with its input or the one given."""
    original = await resolve_run_id(ctx, req.run_id)
    started = await _started_event(ctx, original)
    run_id = req.new_run_id or uuid.uuid4().hex
    extra: dict[str, Any] = {"rerun_of": original}
    if req.input_refs:  # a new input the client stored out of line under run_id
        if await out_of_line_start(ctx, run_id, req.input_refs):
            return {"run_id": run_id}
        run_input = None
        extra["input_refs"] = refs_json(req.input_refs)
    elif "input" in req.model_fields_set:
        run_input = req.input
    else:  # the earlier run's input; out-of-line parts are copied to the new run
        run_input, refs = started.data.get("input"), refs_of(started.data, "input")
        if refs:
            await payloads.copy_run(ctx.js, original, run_id, refs)
            extra["input_refs"] = refs_json(refs)
    await write_started(ctx, run_id, started.data["definition"], run_input, **extra)
    return {"run_id": run_id}


async def _started_event(ctx: ApiContext, run_id: str) -> Event:
    for event in await history.read(ctx.js, run_id):
        if event.type is EventType.WORKFLOW_STARTED:
            return event
    raise RunNotFound(f"run {run_id} has no workflow.started event in its history")
