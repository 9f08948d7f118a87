"""Step checkpoints in KV `step_checkpoints`: one JSON state per run and step.

A handler saves its progress with `ctx.checkpoint(state)`; a later attempt, or a redelivery
after its worker died, reads it back with `ctx.load_checkpoint()`. The value is a versioned
envelope any NATS tool can read: {"v": 1, "attempt": N, "saved_at": ..., "state": ...}
(the attempt that saved it is informational). Deleted when the run ends (run_data).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic_core import to_jsonable_python

from dagnats import names
from dagnats.limits import CHECKPOINT_MAX_BYTES
from dagnats.store.run_data import ENVELOPE_VERSION, open_envelope

log = logging.getLogger("dagnats.checkpoints")



@dataclass(frozen=True)
class Checkpoint:
    """A saved checkpoint: the state and which attempt of the step saved it, when."""

    state: Any
    attempt: int
    saved_at: datetime


def encode(state: Any, *, run_id: str, step_id: str, attempt: int,
           saved_at: datetime | None = None) -> bytes:
    """The stored form of a checkpoint.

    `state` is any JSON value (pydantic models and dataclasses are dumped as JSON). Raises
    ValueError naming the run, the step and the sizes when it is not JSON-serialisable or
    larger than limits.CHECKPOINT_MAX_BYTES.
    """
    where = f"run {run_id} step {step_id}"
    try:
        body = json.dumps(to_jsonable_python(state), separators=(",", ":"), ensure_ascii=False)
    except Exception as exc:
        raise ValueError(f"the checkpoint of {where} is not JSON-serialisable: {exc}") from None
    size = len(body.encode())
    if size > CHECKPOINT_MAX_BYTES:
        raise ValueError(
            f"the checkpoint of {where} is {size} bytes of JSON, over the limit of "
            f"{CHECKPOINT_MAX_BYTES} (dagnats.limits.CHECKPOINT_MAX_BYTES); checkpoint a"
            " reference to large data kept elsewhere")
    moment = (saved_at or datetime.now(UTC)).isoformat()
    return (f'{{"v":{ENVELOPE_VERSION},"attempt":{int(attempt)},'
            f'"saved_at":{json.dumps(moment)},"state":{body}}}').encode()


def decode(payload: bytes) -> Checkpoint:
    """A stored checkpoint; ValueError when it is not a dagnats checkpoint envelope (v1)."""
    return open_envelope(payload, "checkpoint", lambda body: Checkpoint(
        state=body.get("state"), attempt=int(body.get("attempt", 0)),
        saved_at=datetime.fromisoformat(body["saved_at"])))


async def save(kv: KeyValue, run_id: str, step_id: str, payload: bytes) -> None:
    """Store an encoded checkpoint (see `encode`) as the step's latest."""
    await kv.put(names.checkpoint_key(run_id, step_id), payload)


async def load(kv: KeyValue, run_id: str, step_id: str) -> Checkpoint | None:
    """The step's latest checkpoint, or None.

    One that cannot be read (written by another tool) is logged and treated as none: the
    step starts over rather than failing for good.
    """
    try:
        entry = await kv.get(names.checkpoint_key(run_id, step_id))
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    try:
        return decode(entry.value)
    except ValueError as exc:
        log.warning("ignoring the checkpoint of run %s step %s: %s", run_id, step_id, exc)
        return None


async def delete(kv: KeyValue, run_id: str, step_id: str) -> None:
    """Remove the step's checkpoint (a later load returns None)."""
    await kv.delete(names.checkpoint_key(run_id, step_id))
