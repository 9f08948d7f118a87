"""Progress reports and streamed chunks from handlers: live on core NATS, never in history.

A handler's `ctx.progress(fraction, message)` goes out on the step's progress subject (for
followers) and, at most every PROGRESS_WRITE_EVERY_S, into KV `step_progress` (for `run
status` while the step runs). `ctx.stream(data)` chunks go out on the step's chunk subject
only, numbered from 1 per attempt; after the handler returns, an end mark says the
attempt's stream is over. Nothing here is a fact of the run: a follower that misses a
message misses only that message.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from dagnats import names, strict_json
from dagnats.limits import PROGRESS_MESSAGE_MAX_CHARS, STREAM_CHUNK_MAX_BYTES

log = logging.getLogger("dagnats.progress")

VERSION = 1


@dataclass(frozen=True)
class Progress:
    """A step's progress: how far (0 to 1), what it says, which attempt, when."""

    step_id: str
    attempt: int
    fraction: float
    message: str | None
    at: datetime

    def public(self) -> dict[str, Any]:
        """The shape `run status --json` shows on the step."""
        return {"fraction": self.fraction, "message": self.message, "attempt": self.attempt,
                "at": self.at.isoformat()}

    def encode(self) -> bytes:
        """The wire form (compact JSON with a version)."""
        return json.dumps({"v": VERSION, **self.public(), "step_id": self.step_id},
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Progress:
        """The report in `data`; ValueError when it is not one."""
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("v") != VERSION:
            raise ValueError("not a dagnats progress report (v1)")
        fraction = body.get("fraction")
        if not isinstance(fraction, int | float) or isinstance(fraction, bool):
            raise ValueError("a progress report without a fraction")
        message = body.get("message")
        return cls(str(body.get("step_id")), int(body.get("attempt") or 0), float(fraction),
                   message if isinstance(message, str) else None,
                   datetime.fromisoformat(str(body.get("at"))))


def checked_progress(fraction: Any, message: Any) -> tuple[float, str | None]:
    """A handler's progress arguments, or ValueError naming what is wrong."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) \
            or not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"ctx.progress(fraction): a number from 0 to 1, not {fraction!r}")
    if message is not None and not isinstance(message, str):
        raise ValueError(f"ctx.progress(message=...): a string, not {type(message).__name__}")
    if message is not None and len(message) > PROGRESS_MESSAGE_MAX_CHARS:
        message = message[:PROGRESS_MESSAGE_MAX_CHARS - 3] + "..."
    return float(fraction), message


def encode_chunk(data: Any, seq: int, attempt: int) -> bytes:
    """A streamed chunk's wire form, or ValueError when `data` is not JSON or too large."""
    try:
        strict_json.check(data)
        body = json.dumps({"v": VERSION, "seq": seq, "attempt": attempt, "data": data},
                          separators=(",", ":")).encode()
    except (strict_json.JsonRefused, TypeError, ValueError) as exc:
        raise ValueError(f"ctx.stream(data): not a JSON value ({exc})") from None
    if len(body) > STREAM_CHUNK_MAX_BYTES:
        raise ValueError(f"ctx.stream(data): a chunk of {len(body):,} bytes; the limit is "
                         f"{STREAM_CHUNK_MAX_BYTES:,} (stream smaller pieces)")
    return body


def end_mark(attempt: int, seq: int) -> bytes:
    """What ends an attempt's stream (after its `seq` chunks)."""
    return json.dumps({"v": VERSION, "end": True, "seq": seq, "attempt": attempt},
                      separators=(",", ":")).encode()


def decode_chunk(data: bytes) -> dict[str, Any]:
    """A chunk or an end mark as sent; ValueError when it is neither."""
    body = json.loads(data)
    if not isinstance(body, dict) or body.get("v") != VERSION or "seq" not in body:
        raise ValueError("not a dagnats stream chunk (v1)")
    return body


async def bucket(js: JetStreamContext) -> KeyValue | None:
    """The step_progress bucket; None on a store provisioned before it existed (progress
    then goes to followers only)."""
    try:
        return await js.key_value(names.PROGRESS_BUCKET)
    except Exception as exc:  # nats-py: NotFoundError, or the bucket's stream missing
        log.info("no %s bucket (%s: %s): progress goes to followers only",
                 names.PROGRESS_BUCKET, type(exc).__name__, exc)
        return None


async def latest(kv: KeyValue | None, run_id: str, step_ids: list[str]
                 ) -> dict[str, Progress]:
    """The last progress report of each of these steps that has one (by step id)."""
    if kv is None or not step_ids:
        return {}
    found: dict[str, Progress] = {}
    for step_id in step_ids:
        try:
            entry = await kv.get(names.progress_key(run_id, step_id))
        except KeyNotFoundError:
            continue
        try:
            found[step_id] = Progress.decode(entry.value or b"")
        except (ValueError, TypeError) as exc:
            log.debug("run %s step %s: unreadable progress: %s", run_id, step_id, exc)
    return found
