"""API operations deleting ended runs: run.delete (one run) and run.purge (a round of every
run that ended before a cutoff). The deleting itself is dagnats.store.retention's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from dagnats.api.context import ApiContext, Request
from dagnats.api.runs import RunRequest, resolve_run_id
from dagnats.dag.state import RunStatus
from dagnats.store import retention

#: Runs deleted per run.purge request, so each answers well within the request timeout.
PURGE_BATCH = 100


class PurgeRequest(Request):
    """run.purge: runs that ended more than `older_than_s` ago (with `status`, if given);
    `after`: where the previous round stopped."""

    older_than_s: float = Field(ge=0)
    status: RunStatus | None = None
    after: str = ""
    limit: int = Field(default=PURGE_BATCH, ge=1, le=1000)


async def delete(ctx: ApiContext, req: RunRequest) -> dict[str, Any]:
    """Delete one ended run and everything kept for it; refuse one still running."""
    run_id = await resolve_run_id(ctx, req.run_id)
    deleted = await retention.delete_run(ctx.js, run_id)
    return {"run_id": deleted.run_id, "status": deleted.status, "removed": deleted.removed}


async def purge(ctx: ApiContext, req: PurgeRequest) -> dict[str, Any]:
    """One round of deleting ended runs older than the cutoff: the ids deleted, and the
    `after` to pass for the next round (null: every run was visited)."""
    before = datetime.now(UTC) - timedelta(seconds=req.older_than_s)
    done = await retention.purge(ctx.js, before, req.status, after=req.after, limit=req.limit)
    return {"deleted": done.deleted, "after": done.next_after}
