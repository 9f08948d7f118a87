"""The worker's side of out-of-line payloads (`dagnats.store.payloads`): a task's input is
fetched before its handler runs, and an output too large to travel inline is put out of
line before it is reported; one over the limit fails the step at once, not retryable."""

from __future__ import annotations

import json
import logging

from nats.js import JetStreamContext

from dagnats.dag.events import Event, EventType
from dagnats.dag.payload import encode, refs_json, too_large
from dagnats.dag.tasks import TaskMessage
from dagnats.limits import PAYLOAD_INLINE_MAX_BYTES, PLAN_MAX_BYTES, STEP_ERROR_MAX_CHARS
from dagnats.store import payloads

log = logging.getLogger("dagnats.worker")

#: The error_type of a step whose output is over the payload limit.
TOO_LARGE = "PayloadTooLarge"


async def with_input(js: JetStreamContext, task: TaskMessage) -> TaskMessage:
    """The task with its out-of-line input fetched (the task itself when it has none)."""
    if not task.input_refs:
        return task
    value = await payloads.fetch(js, task.run_id, task.input, task.input_refs)
    return task.model_copy(update={"input": value, "input_refs": {}})


async def as_published(js: JetStreamContext, event: Event, kind: str
                       ) -> tuple[Event, str, bytes]:
    """An outcome as it is published: (event, message id kind, encoded body).

    The size is checked on the bytes encoded anyway, so a small output (nearly all of them)
    costs nothing more. A large one is put out of line (idempotent: a retry stores nothing
    new) and the event carries its reference; one over the limit becomes a step.failed that
    is not retried, whose error says how large it was.
    """
    body = event.encode()
    if len(body) <= PAYLOAD_INLINE_MAX_BYTES:
        return event, kind, body
    if event.type is EventType.STEP_PLANNED and len(body) > PLAN_MAX_BYTES:
        refused = (f"the plan of step {json.dumps(event.step_id)} is {len(body):,} bytes of "
                   f"JSON; a plan is at most {PLAN_MAX_BYTES:,}")
        log.warning("run %s: %s (step failed, not retried)", event.run_id, refused)
        failed = event.model_copy(update={"type": EventType.STEP_FAILED, "data": {
            "error": refused, "error_type": "PlanTooLarge", "retryable": False}})
        return failed, "failed", failed.encode()
    if event.type is EventType.STEP_FAILED:
        return _error_cut(event, kind, body)
    if event.type not in (EventType.STEP_COMPLETED, EventType.STEP_ITERATED):
        return event, kind, body
    output = event.data.get("output")
    data = encode(output)
    if len(data) <= PAYLOAD_INLINE_MAX_BYTES:
        return event, kind, body
    problem = too_large(f"output of step {json.dumps(event.step_id)}", len(data))
    if problem is not None:
        log.warning("run %s: %s (step failed, not retried)", event.run_id, problem)
        kept = {k: v for k, v in event.data.items() if k != "output"}
        failed = event.model_copy(update={"type": EventType.STEP_FAILED, "data": {
            **kept, "error": problem, "error_type": TOO_LARGE, "retryable": False}})
        return failed, "failed", failed.encode()
    ref = await payloads.put(js, event.run_id, data)
    carried = event.model_copy(update={"data": {
        **event.data, "output": None, "output_refs": refs_json({"": ref})}})
    return carried, kind, carried.encode()


def _error_cut(event: Event, kind: str, body: bytes) -> tuple[Event, str, bytes]:
    """A step.failed whose error (a handler's exception message) is over
    STEP_ERROR_MAX_CHARS, with the error cut short and saying so."""
    error = event.data.get("error")
    if not isinstance(error, str) or len(error) <= STEP_ERROR_MAX_CHARS:
        return event, kind, body
    cut = f"{error[:STEP_ERROR_MAX_CHARS]}... (cut: the message had {len(error):,} characters)"
    shorter = event.model_copy(update={"data": {**event.data, "error": cut}})
    return shorter, kind, shorter.encode()
