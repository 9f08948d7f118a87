"""API operations on approval steps: run.approve and run.reject.

The decision is written to the run's history only if the history has not grown since it
was read (Nats-Expected-Last-Subject-Sequence): of two decisions made at once, one is
stored and the other, reading again, finds the step decided and is refused with who
decided and when. What may be decided, and the event that records it, come from the
approval kind (`dagnats.dag.kinds.approval`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nats.js.errors import APIError
from pydantic import Field

from dagnats import jetstream, names
from dagnats.api.context import ApiContext, Request
from dagnats.api.runs import load_run, resolve_run_id
from dagnats.dag.kinds.approval import decision_event, decision_refused
from dagnats.errors import Contended, NotWaiting
from dagnats.store import history

#: How many times a decision is tried again when the run's history moved meanwhile.
DECISION_ATTEMPTS = 10


class DecisionRequest(Request):
    """run.approve, run.reject: a run (id or unique prefix), an approval step, who, why."""

    run_id: str
    step_id: str
    by: str | None = Field(default=None, max_length=256)
    comment: str | None = Field(default=None, max_length=4096)


async def approve(ctx: ApiContext, req: DecisionRequest) -> dict[str, Any]:
    """Approve a waiting approval step: it completes with the decision as its output."""
    return await decide(ctx, req, approved=True)


async def reject(ctx: ApiContext, req: DecisionRequest) -> dict[str, Any]:
    """Reject a waiting approval step: it fails (not retryable)."""
    return await decide(ctx, req, approved=False)


async def decide(ctx: ApiContext, req: DecisionRequest, approved: bool) -> dict[str, Any]:
    """Record one decision, once; NotWaiting when the step cannot take it (decided)."""
    run_id = await resolve_run_id(ctx, req.run_id)
    verb = "approve" if approved else "reject"
    for _ in range(DECISION_ATTEMPTS):
        run, found = await load_run(ctx, run_id)
        refused = decision_refused(run, req.step_id, verb)
        if refused is not None:
            raise NotWaiting(refused)
        event = decision_event(run, req.step_id, approved, req.by, req.comment,
                               datetime.now(UTC))
        # No message id: two different decisions must not look like duplicates of each
        # other; the expected sequence alone makes the first one the only one.
        headers = history.guard_headers(run_id, found[-1].seq)
        try:
            await ctx.js.publish(names.history_subject(run_id), event.encode(),
                                 headers=headers)
        except APIError as exc:
            if exc.err_code not in jetstream.WRONG_LAST_SEQUENCE:
                raise
            continue  # the run moved on meanwhile: look again
        return {"run_id": run_id, "step_id": req.step_id, "approved": approved,
                "by": req.by, "comment": req.comment, "at": event.timestamp.isoformat()}
    raise Contended(f"could not record the decision on step {req.step_id!r} of run "
                       f"{run_id}: its history keeps changing; try again")
