"""Dead letters in the DEAD_LETTERS stream: steps that failed for good, and raw poison messages.

Both are listed (`list_all`, what `dlq list` shows); only a step's dead letter can be
replayed (its run resumed), and either can be discarded.

A dead letter keeps everything needed to understand and replay a step: the run, step and
task, the resolved input, the error, its type and the attempts made.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timezone
from typing import Any, TypeVar, cast

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from pydantic import BaseModel, Field

from dagnats import jetstream, names
from dagnats.dag.payload import Refs
from dagnats.limits import POISON_RAW_MAX_BYTES
from dagnats.store import history

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
        return {"seq": self.seq, "kind": "step", "run_id": self.run_id,
                "step_id": self.step_id, "task": self.task, "error": self.error,
                "attempts": self.attempts, "timestamp": self.timestamp.isoformat()}


class PoisonEntry(BaseModel):
    """A message nobody could read, kept raw (base64) with where it came from and why."""

    seq: int = 0
    source: str
    """The prefix of the subject it was on: history (a run's event or task), timer or event
    (task: a task message of store version 1)."""
    source_seq: int
    subject: str
    reason: str
    timestamp: datetime
    raw: str = ""
    raw_truncated: bool = False
    size: int | None = None

    def _history_subject(self) -> names.HistorySubject | None:
        if self.source != names.HISTORY_PREFIX:
            return None
        try:
            return names.parse_history_subject(self.subject)
        except ValueError:
            return None

    def run_id(self) -> str | None:
        """The run it was about, when its subject says (a run's history)."""
        found = self._history_subject()
        return found.run_id if found else None

    def public(self) -> dict[str, Any]:
        """The shape of one `dlq list --json` entry for a poison message."""
        found = self._history_subject()
        task = found.task if found else None
        return {"seq": self.seq, "kind": "poison", "run_id": self.run_id(), "step_id": None,
                "task": task, "error": f"unreadable {self.source} message (seq "
                                       f"{self.source_seq} on {self.subject}): {self.reason}",
                "attempts": 0, "timestamp": self.timestamp.isoformat(),
                "source": self.source, "source_seq": self.source_seq,
                "subject": self.subject}


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
    """Keep an unreadable message, raw (base64), with where it came from and why.

    Only its first POISON_RAW_MAX_BYTES are kept (`raw_truncated`, with its `size`), so the
    copy always fits in one NATS message; the original stays at `source_seq` in its stream.
    """
    body: dict[str, Any] = {
        "v": 1, "source": source, "source_seq": seq, "subject": subject, "reason": reason,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "raw": base64.b64encode(payload[:POISON_RAW_MAX_BYTES]).decode()}
    if len(payload) > POISON_RAW_MAX_BYTES:
        body.update(raw_truncated=True, size=len(payload))
    await js.publish(names.poison_subject(source, seq), json.dumps(body).encode(),
                     headers={"Nats-Msg-Id": names.poison_msg_id(source, seq)})
    log.warning("dead-lettered an unreadable %s message (seq %s): %s", source, seq, reason)


async def list_entries(js: JetStreamContext, run_id: str | None = None
                       ) -> list[DeadLetterEntry]:
    """Every step dead letter (optionally of one run), oldest first (no poison messages:
    these are what a replay revives)."""
    entries: list[DeadLetterEntry] = []
    for subject, data, seq in await _read(js, names.dead_filter(run_id)):
        entry = _decode(subject, data, seq)
        if entry is not None:
            entries.append(entry)
    return entries


async def _read(js: JetStreamContext, subject_filter: str) -> list[tuple[str, bytes, int]]:
    """(subject, data, stream sequence) of every message on `subject_filter`, in order."""
    config = js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.NONE, inactive_threshold=30.0,
                                   deliver_policy=js_api.DeliverPolicy.ALL, mem_storage=True)
    sub = await js.pull_subscribe(subject_filter, stream=names.DEAD_STREAM, config=config)
    found: list[tuple[str, bytes, int]] = []
    try:
        # nats-py types it optional; the server always sends it
        pending = cast(int, (await sub.consumer_info()).num_pending)
        while pending > 0:
            for msg in await jetstream.fetch(sub, min(pending, 256), timeout_s=5.0):
                pending = msg.metadata.num_pending
                found.append((msg.subject, msg.data, msg.metadata.sequence.stream))
    finally:
        await sub.unsubscribe()
    return found


async def list_all(js: JetStreamContext, run_id: str | None = None
                   ) -> list[DeadLetterEntry | PoisonEntry]:
    """Every dead letter, poison messages included (optionally only one run's), oldest
    first: what `dlq list` shows."""
    found: list[DeadLetterEntry | PoisonEntry] = []
    for subject, data, seq in await _read(js, names.dead_filter()):
        entry = _decode_any(subject, data, seq)
        if entry is None:
            continue
        owner = entry.run_id() if isinstance(entry, PoisonEntry) else entry.run_id
        if run_id is None or owner == run_id:
            found.append(entry)
    return found


#: Sequences a backward page reads per batched direct get.
PAGE_WINDOW = 256


async def newest(js: JetStreamContext, limit: int, before: int | None = None
                 ) -> tuple[list[DeadLetterEntry | PoisonEntry], int, int | None]:
    """Up to `limit` dead letters, newest first, of those stored before sequence `before`
    (all when None); how many are kept in all; and the `before` of the next page (None on
    the last). Reads windows of the stream's end, not the whole stream."""
    state = (await js.stream_info(names.DEAD_STREAM)).state
    first = max(1, state.first_seq)
    high = min(before, state.last_seq + 1) if before is not None else state.last_seq + 1
    found: list[DeadLetterEntry | PoisonEntry] = []
    left = False  # entries read but not returned: older ones remain
    while len(found) < limit and high > first:
        low = max(first, high - PAGE_WINDOW)
        window = await history.direct_window(js, names.DEAD_STREAM, names.dead_filter(), low,
                                             high)
        for seq, subject, data in reversed(window):
            entry = _decode_any(subject, data, seq)
            if entry is None:
                continue
            if len(found) == limit:
                left = True
                break
            found.append(entry)
        high = low
    more = len(found) == limit and (left or high > first)
    return found, state.messages, found[-1].seq if more else None


async def _stored(js: JetStreamContext, seq: int) -> tuple[str, bytes] | None:
    """(subject, data) of the DEAD_LETTERS message at `seq`, or None when there is none."""
    try:
        msg = await js.get_msg(names.DEAD_STREAM, seq=seq)
    except NotFoundError:
        return None
    return msg.subject or "", msg.data or b""


async def get(js: JetStreamContext, seq: int) -> DeadLetterEntry | None:
    """The dead letter at `seq`, or None (unknown, deleted, or not a step dead letter)."""
    stored = await _stored(js, seq)
    return _decode(*stored, seq) if stored else None


async def delete(js: JetStreamContext, seq: int) -> bool:
    """Remove one dead letter; False when there was none at `seq`."""
    try:
        return await js.delete_msg(names.DEAD_STREAM, seq)
    except NotFoundError:
        return False


_Entry = TypeVar("_Entry", DeadLetterEntry, PoisonEntry)


def _decode_any(subject: str, data: bytes, seq: int) -> DeadLetterEntry | PoisonEntry | None:
    if not names.is_poison_subject(subject):
        return _decode(subject, data, seq)
    return _entry(PoisonEntry, data, seq, "poison dead letter")


async def get_poison(js: JetStreamContext, seq: int) -> PoisonEntry | None:
    """The poison dead letter at `seq`, or None."""
    stored = await _stored(js, seq)
    entry = _decode_any(*stored, seq) if stored else None
    return entry if isinstance(entry, PoisonEntry) else None


def _decode(subject: str, data: bytes, seq: int) -> DeadLetterEntry | None:
    if names.is_poison_subject(subject):
        return None
    return _entry(DeadLetterEntry, data, seq, "dead letter")


def _entry(model: type[_Entry], data: bytes, seq: int, what: str) -> _Entry | None:
    """A stored entry as `model` (its seq added), or None, logged, when it is unreadable."""
    try:
        body = json.loads(data)
        body.pop("v", None)
        return model.model_validate({**body, "seq": seq})
    except ValueError as exc:
        log.warning("skipping an unreadable %s at seq %s: %s", what, seq, exc)
        return None
