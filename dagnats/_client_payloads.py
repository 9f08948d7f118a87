"""The client's side of out-of-line payloads (`dagnats.store.payloads`).

A run input too large to travel inline is put out of line by the client itself (a NATS
request carries at most 1 MB) under the id the run will have, and the start request carries
its reference. Results that carry references (`<name>_refs`: a run, its steps, events) get
their values fetched and filled in, so callers see the real values.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
from nats.js import JetStreamContext

from dagnats.dag.payload import encode, refs_json, refs_of, too_large
from dagnats.errors import DagnatsError, PayloadTooLarge, ServerUnavailable
from dagnats.limits import PAYLOAD_INLINE_MAX_BYTES
from dagnats.store import payloads

#: The value fields a result may carry out of line.
_VALUE_FIELDS = ("input", "output")


async def start_fields(js: JetStreamContext, value: Any, what: str) -> dict[str, Any]:
    """The fields of a start request that carry `value` (JSON-ready): the value itself
    when small; else a run id of our choosing and a reference to the value, stored under
    that run. PayloadTooLarge (nothing stored) when it is over the limit."""
    data = encode(value)
    if len(data) <= PAYLOAD_INLINE_MAX_BYTES:
        return {"input": value}
    problem = too_large(what, len(data))
    if problem is not None:
        raise PayloadTooLarge(problem)
    run_id = uuid.uuid4().hex
    try:
        ref = await payloads.put(js, run_id, data)
    except nats.errors.Error as exc:
        raise ServerUnavailable(f"cannot store {what} in NATS: {exc}") from None
    return {"input": None, "input_refs": refs_json({"": ref}), "run_id": run_id}


@contextlib.asynccontextmanager
async def discarded_if_refused(js: JetStreamContext, fields: dict[str, Any]
                               ) -> AsyncIterator[None]:
    """Delete an input stored out of line for a start the API refused (no such workflow,
    a bad request): no run will ever own it. When the API could not be reached the start
    may have happened, so the input is kept."""
    try:
        yield
    except DagnatsError as exc:
        owner = fields.get("new_run_id", fields.get("run_id"))
        refs = refs_of(fields, "input")
        if refs and owner and not isinstance(exc, ServerUnavailable):
            with contextlib.suppress(Exception):
                await payloads.discard(js, owner, refs)
        raise


async def filled(js: JetStreamContext, run_id: str, item: dict[str, Any]) -> dict[str, Any]:
    """`item` (a run's or a step's public view, or an event's data) with its out-of-line
    values fetched in place of their references. A value that is gone (its run deleted
    meanwhile) stays null."""
    fields = [name for name in _VALUE_FIELDS if item.get(f"{name}_refs")]
    if not fields:
        return item  # no copy, no round trip
    item = dict(item)

    async def fill(name: str) -> None:
        refs = refs_of(item, name)
        del item[f"{name}_refs"]
        try:
            item[name] = await payloads.fetch(js, run_id, item.get(name), refs)
        except payloads.PayloadMissing:
            item[name] = None
        except nats.errors.Error as exc:
            raise ServerUnavailable(f"cannot fetch the {name} of run {run_id}: {exc}") from None

    await asyncio.gather(*(fill(name) for name in fields))
    return item


async def filled_run(js: JetStreamContext, run: dict[str, Any]) -> dict[str, Any]:
    """A run's public view with the out-of-line values of the run and its steps filled in."""
    run_id = run["run_id"]
    steps = run.get("steps") or {}
    step_ids = [sid for sid, step in steps.items() if _has_refs(step)]
    if not step_ids and not _has_refs(run):
        return run  # nearly every run: nothing to fetch, no task to start
    done = await asyncio.gather(filled(js, run_id, run),
                                *(filled(js, run_id, steps[sid]) for sid in step_ids))
    return {**done[0], "steps": {**steps, **dict(zip(step_ids, done[1:], strict=True))}}


def _has_refs(item: dict[str, Any]) -> bool:
    return any(item.get(f"{name}_refs") for name in _VALUE_FIELDS)


async def filled_event(js: JetStreamContext, event: dict[str, Any]) -> dict[str, Any]:
    """An event's public view with the out-of-line values in its data filled in."""
    data = event.get("data") or {}
    if not _has_refs(data):
        return event
    return {**event, "data": await filled(js, event["run_id"], data)}
