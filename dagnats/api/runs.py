"""API operations on runs: start, get, events, list, cancel.

Reads of one run fold its full history (the source of truth), so a client reads its own
writes; listings come from the KV snapshots, which may lag the history by milliseconds.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from nats.js.errors import APIError
from pydantic import Field

from dagnats import jetstream as names
from dagnats.api.context import ApiContext, Request
from dagnats.api.workflows import check_name
from dagnats.dag.events import Event, EventType
from dagnats.dag.state import RunState, RunStatus, fold
from dagnats.dag.validate import topological_order
from dagnats.errors import DagnatsError, RunNotFound
from dagnats.store import history

#: Run ids are uuid4 (or, with an idempotency key, uuid5) as 32 hex characters.
RUN_ID_LENGTH = 32
#: The shortest prefix accepted in place of a full run id.
MIN_PREFIX_LENGTH = 8
#: The namespace of run ids derived from (workflow, idempotency key).
IDEMPOTENCY_NAMESPACE = uuid.UUID("5f0f2a3e-6a7c-4f43-9f5e-4d2c8a1b7e90")
#: JetStream's error code for a failed Nats-Expected-Last-Subject-Sequence check.
WRONG_LAST_SEQUENCE = 10071
CANCEL_ATTEMPTS = 10


class StartRequest(Request):
    """run.start: a workflow (latest version unless given) and its input."""

    workflow: str
    input: Any = None
    version: str | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=512)


class RunRequest(Request):
    """run.get, run.events, run.cancel: a run id or a unique prefix of one."""

    run_id: str


class ListRequest(Request):
    """run.list: snapshots, optionally filtered, newest first."""

    workflow: str | None = None
    status: RunStatus | None = None
    limit: int = Field(default=100, ge=1, le=10_000)


def new_run_id(workflow: str, idempotency_key: str | None) -> str:
    """A fresh run id, or the one (workflow, idempotency_key) always maps to."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{workflow}\x00{idempotency_key}").hex


def public_run(run: RunState) -> dict[str, Any]:
    """A run's public shape, with its steps in topological order."""
    body = run.public()
    order = topological_order(run.definition.steps)
    body["steps"] = {step_id: body["steps"][step_id] for step_id in order
                     if step_id in body["steps"]}
    return body


async def resolve_run_id(ctx: ApiContext, given: str) -> str:
    """The full id of a run named by its id or a unique prefix of at least 8 characters."""
    if not names.is_token(given):
        raise RunNotFound(f"{given!r} is not a run id; see `dagnats run list`")
    if await history.exists(ctx.js, given):
        return given
    if len(given) < MIN_PREFIX_LENGTH:
        raise RunNotFound(f"no run {given!r}; a run id prefix needs at least "
                          f"{MIN_PREFIX_LENGTH} characters")
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
    """Start a run of a registered workflow by writing its workflow.started event."""
    definition = await ctx.definitions.get(check_name(req.workflow), req.version)
    run_id = new_run_id(definition.name, req.idempotency_key)
    if req.idempotency_key is not None and await history.exists(ctx.js, run_id):
        return {"run_id": run_id}  # started before, maybe beyond the dedup window
    data: dict[str, Any] = {"workflow": definition.name, "version": definition.version,
                            "input": req.input, "definition": definition.to_json_dict()}
    if req.idempotency_key is not None:
        data["idempotency_key"] = req.idempotency_key
    event = Event(type=EventType.WORKFLOW_STARTED, run_id=run_id,
                  timestamp=datetime.now(UTC), data=data)
    await history.append(ctx.js, event, names.started_msg_id(run_id))
    return {"run_id": run_id}


async def get(ctx: ApiContext, req: RunRequest) -> dict[str, Any]:
    """A run's state, folded from its full history."""
    run, _ = await load_run(ctx, await resolve_run_id(ctx, req.run_id))
    return public_run(run)


async def events(ctx: ApiContext, req: RunRequest) -> list[dict[str, Any]]:
    """Every event of a run, in history order."""
    run_id = await resolve_run_id(ctx, req.run_id)
    found = await history.read(ctx.js, run_id)
    if not found:
        raise RunNotFound(f"run {run_id} has no events")
    return [event.public() for event in found]


async def list_runs(ctx: ApiContext, req: ListRequest) -> list[dict[str, Any]]:
    """Runs from their snapshots, filtered, newest first."""
    runs = [run for run in await ctx.snapshots.all()
            if (req.workflow is None or run.workflow == req.workflow)
            and (req.status is None or run.status == req.status)]
    runs.sort(key=lambda run: run.created_at, reverse=True)
    return [public_run(run) for run in runs[:req.limit]]


async def cancel(ctx: ApiContext, req: RunRequest) -> dict[str, Any]:
    """Cancel a running run; a run that has ended already is left as it is.

    The cancellation is written only if the history has not grown since it was read
    (Nats-Expected-Last-Subject-Sequence), so it cannot land after the run ended.
    """
    run_id = await resolve_run_id(ctx, req.run_id)
    for _ in range(CANCEL_ATTEMPTS):
        run, found = await load_run(ctx, run_id)
        if run.status.terminal:
            return {"run_id": run_id, "status": run.status.value, "changed": False}
        event = Event(type=EventType.WORKFLOW_CANCELLED, run_id=run_id,
                      timestamp=datetime.now(UTC),
                      data={"reason": "cancelled on request"})
        headers = {"Nats-Msg-Id": names.run_event_msg_id(run_id, "cancelled"),
                   "Nats-Expected-Last-Subject-Sequence": str(found[-1].seq)}
        try:
            await ctx.js.publish(names.history_subject(run_id), event.encode(), headers=headers)
        except APIError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            continue  # the run moved on meanwhile: look again
        return {"run_id": run_id, "status": RunStatus.CANCELLED.value, "changed": True}
    raise DagnatsError(f"could not cancel run {run_id}: its history keeps changing; try again")
