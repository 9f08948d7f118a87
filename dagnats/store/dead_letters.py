"""Dead letters in the DEAD_LETTERS stream: steps that failed for good, and raw poison messages.

A dead letter keeps everything needed to understand and replay a step: the run, step and
task, the resolved input, the error, its type and the attempts made.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timezone
from typing import Any, cast

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from pydantic import BaseModel, Field

from dagnats import jetstream, names
from dagnats.dag.payload import Refs
from dagnats.limits import POISON_RAW_INLINE_MAX_BYTES
from dagnats.store import payloads

log = logging.getLogger("dagnats.dead_letters")


class DeadLetterEntry(BaseModel):
    """One dead letter as stored (`seq` is its stream sequence, set when read)."""

    seq: int = 0
    run_id: str
    workflow: str | None = None
    version: str | None = None
    step_id: str
    task: str
    attempts: int
    input: Any = None
    input_refs: Refs = Field(default_factory=dict)
    """The out-of-line parts of `input` (kept with the run's payloads)."""
    error: str
    error_type: str | None = None
    timestamp: datetime
    generation: int = 0

    def public(self) -> dict[str, Any]:
        """The shape of one `dlq list --json` entry."""
        return {"seq": self.seq, "run_id": self.run_id, "step_id": self.step_id,
                "task": self.task, "error": self.error, "attempts": self.attempts,
                "timestamp": self.timestamp.isoformat()}


async def publish(js: JetStreamContext, entry: DeadLetterEntry, msg_id: str) -> int:
    """Store a dead letter (deduplicated by `msg_id`); return its sequence."""
    body = entry.model_dump(mode="json", exclude={"seq"})
    body["v"] = 1
    ack = await js.publish(names.dead_subject(entry.task, entry.run_id, entry.step_id),
                           json.dumps(body, separators=(",", ":")).encode(),
                           headers={"Nats-Msg-Id": msg_id})
    return ack.seq


async def publish_poison(js: JetStreamContext, source: str, seq: int, subject: str,
                         payload: bytes, reason: str) -> None:
    """Keep an unreadable message, raw (base64), with where it came from and why. One too
    large to keep inline (it would not fit in a message once encoded) goes to the payloads
    object store, and the dead letter names the object (`raw_object`) instead."""
    body: dict[str, Any] = {
        "v": 1, "source": source, "source_seq": seq, "subject": subject, "reason": reason,
        "timestamp": datetime.now(timezone.utc).isoformat(), "raw_size": len(payload)}
    if len(payload) <= POISON_RAW_INLINE_MAX_BYTES:
        body["raw"] = base64.b64encode(payload).decode()
    else:
        owner = names.poison_payload_owner(source, seq)
        ref = await payloads.put(js, owner, payload)
        body["raw_object"] = names.payload_object(owner, ref.digest)
    await js.publish(names.poison_subject(source, seq), json.dumps(body).encode(),
                     headers={"Nats-Msg-Id": names.poison_msg_id(source, seq)})
    log.warning("dead-lettered an unreadable %s message (seq %s): %s", source, seq, reason)


async def list_entries(js: JetStreamContext, run_id: str | None = None
                       ) -> list[DeadLetterEntry]:
    """Every step dead letter (optionally of one run), oldest first."""
    config = js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.NONE, inactive_threshold=30.0,
                                   deliver_policy=js_api.DeliverPolicy.ALL, mem_storage=True)
    sub = await js.pull_subscribe(names.dead_filter(run_id), stream=names.DEAD_STREAM,
                                  config=config)
    entries: list[DeadLetterEntry] = []
    try:
        # nats-py types it optional; the server always sends it
        pending = cast(int, (await sub.consumer_info()).num_pending)
        while pending > 0:
            for msg in await jetstream.fetch(sub, min(pending, 256), timeout_s=5.0):
                pending = msg.metadata.num_pending
                entry = _decode(msg.subject, msg.data, msg.metadata.sequence.stream)
                if entry is not None:
                    entries.append(entry)
    finally:
        await sub.unsubscribe()
    return entries


async def get(js: JetStreamContext, seq: int) -> DeadLetterEntry | None:
    """The dead letter at `seq`, or None (unknown, deleted, or not a step dead letter)."""
    try:
        msg = await js.get_msg(names.DEAD_STREAM, seq=seq)
    except NotFoundError:
        return None
    return _decode(msg.subject or "", msg.data or b"", seq)


async def delete(js: JetStreamContext, seq: int) -> bool:
    """Remove one dead letter; False when there was none at `seq`."""
    try:
        return await js.delete_msg(names.DEAD_STREAM, seq)
    except NotFoundError:
        return False


def _decode(subject: str, data: bytes, seq: int) -> DeadLetterEntry | None:
    if names.is_poison_subject(subject):
        return None
    try:
        body = json.loads(data)
        body.pop("v", None)
        return DeadLetterEntry.model_validate({**body, "seq": seq})
    except ValueError as exc:
        log.warning("skipping an unreadable dead letter at seq %s: %s", seq, exc)
        return None
