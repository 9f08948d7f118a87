"""The task message: what the engine asks a worker to do for one attempt of one step."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dagnats.dag.events import ENVELOPE_VERSION
from dagnats.dag.payload import Refs


class TaskMessage(BaseModel):
    """One attempt of one step, with its resolved input, as published on task.<task>."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    workflow: str
    step_id: str
    task: str
    attempt: int
    max_attempts: int
    """Attempts allowed in all (the first plus the retries)."""
    input: Any = None
    input_refs: Refs = Field(default_factory=dict)
    """The out-of-line parts of `input`: the worker fetches them before the handler runs."""
    timeout_s: float | None = None
    timeout: str | None = None
    """The timeout as the user wrote it, for messages such as "timed out after 30s"."""
    not_before: datetime | None = None
    """A retry waits until then; a worker that gets it early puts it back with a delay."""

    def encode(self) -> bytes:
        """The wire form: compact, versioned JSON."""
        body = self.model_dump(mode="json", exclude=None if self.input_refs else {"input_refs"})
        body["v"] = ENVELOPE_VERSION
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> TaskMessage:
        """Parse the wire form; ValueError when it is not a task message."""
        try:
            body = json.loads(payload)
        except RecursionError:  # anyone can publish on a task subject
            raise ValueError("JSON nested too deeply") from None
        if not isinstance(body, dict) or body.pop("v", None) != ENVELOPE_VERSION:
            raise ValueError("not a dagnats task envelope (v1)")
        return cls.model_validate(body)
