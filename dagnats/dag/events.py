"""Events: the facts written to a run's history, and the JSON envelope they travel in.

A run's state is a fold over its events (`dagnats.dag.state`). Envelopes are plain,
versioned JSON so any NATS tool can read a history.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ENVELOPE_VERSION = 1


class EventType(StrEnum):
    """Every kind of event a history can hold."""

    WORKFLOW_STARTED = "workflow.started"
    WORKFLOW_COMPLETED = "workflow.completed"
    WORKFLOW_FAILED = "workflow.failed"
    WORKFLOW_CANCELLED = "workflow.cancelled"
    WORKFLOW_RESUMED = "workflow.resumed"
    WORKFLOW_COMPENSATING = "workflow.compensating"
    WORKFLOW_COMPENSATED = "workflow.compensated"
    WORKFLOW_COMPENSATE_FAILED = "workflow.compensate_failed"
    STEP_QUEUED = "step.queued"
    STEP_WAITING = "step.waiting"
    STEP_STARTED = "step.started"
    STEP_COMPLETED = "step.completed"
    STEP_FAILED = "step.failed"
    STEP_RECOVERED = "step.recovered"
    STEP_SKIPPED = "step.skipped"
    STEP_ITERATED = "step.iterated"
    STEP_PLANNED = "step.planned"
    STEP_EXPANDED = "step.expanded"
    TIMER_FIRED = "timer.fired"
    SIGNAL_SENT = "signal.sent"


RUN_TERMINAL_EVENTS = frozenset({
    EventType.WORKFLOW_COMPLETED, EventType.WORKFLOW_FAILED, EventType.WORKFLOW_CANCELLED,
    EventType.WORKFLOW_COMPENSATED, EventType.WORKFLOW_COMPENSATE_FAILED,
})
"""Events that end a run (until a `workflow.resumed` revives a failed or cancelled one)."""


class Event(BaseModel):
    """One fact about a run. `seq` is the stream sequence, known once it is stored."""

    model_config = ConfigDict(frozen=True)

    type: EventType
    run_id: str
    step_id: str | None = None
    attempt: int = 0
    timestamp: datetime
    data: dict[str, Any] = Field(default_factory=dict)
    seq: int = 0

    def encode(self) -> bytes:
        """The wire form: compact JSON with an envelope version, without `seq`."""
        body = self.model_dump(mode="json", exclude={"seq"})
        body["v"] = ENVELOPE_VERSION
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes, seq: int = 0) -> Event:
        """Parse the wire form; ValueError (or pydantic's subclass) when it is not an event."""
        body = _json_body(payload)
        if not isinstance(body, dict) or body.pop("v", None) != ENVELOPE_VERSION:
            raise ValueError("not a dagnats event envelope (v1)")
        return cls.model_validate({**body, "seq": seq})

    def public(self) -> dict[str, Any]:
        """The shape shown by `run events --json`."""
        return {
            "seq": self.seq, "type": self.type.value, "run_id": self.run_id,
            "step_id": self.step_id, "attempt": self.attempt,
            "timestamp": self.timestamp.isoformat(), "data": self.data,
        }

    def begins_attempt(self) -> bool:
        """True for the event that says when its attempt began: a step.started, or the
        outcome of a quick step, which carries `started_at` instead (see `began`)."""
        return self.type is EventType.STEP_STARTED or (
            self.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED)
            and "started_at" in self.data)

    def began(self) -> datetime:
        """When the attempt this step event belongs to began running.

        A step.started says so by its own time. A quick step has none (workers report a
        handler that returns within a moment by its outcome alone): its step.completed or
        step.failed carries `started_at` instead. Any other event: its own time.
        """
        began = self.data.get("started_at") if self.type is not EventType.STEP_STARTED else None
        if isinstance(began, str):
            try:
                return datetime.fromisoformat(began)
            except ValueError:
                pass
        return self.timestamp


def attempt_starts(events: list[Event], step_id: str) -> dict[int, datetime]:
    """When each attempt of a step began, by attempt number (see `Event.began`)."""
    starts: dict[int, datetime] = {}
    for event in events:
        if event.step_id == step_id and event.begins_attempt():
            starts.setdefault(event.attempt, event.began())
    return starts


def _json_body(payload: bytes) -> Any:
    """json.loads, with nesting too deep to parse reported as the ValueError it is (anyone
    can publish on a history or task subject; a RecursionError would escape every handler).
    """
    try:
        return json.loads(payload)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
