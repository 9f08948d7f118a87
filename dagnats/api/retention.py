"""API operations deleting ended runs: run.delete (one run) and run.purge (a round of every
run that ended before a cutoff). The deleting itself is dagnats.store.retention's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js import JetStreamContext
from pydantic import Field

from dagnats.api.context import ApiContext, Request
from dagnats.api.runs import RunRequest, resolve_run_id
from dagnats.dag.durations import format_duration
from dagnats.dag.state import RunStatus
from dagnats.store import retention

log = logging.getLogger("dagnats.retention")

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


#: The longest wait between two rounds of `serve --retention`.
RETENTION_INTERVAL_S = 3600.0


def retention_interval(max_age_s: float) -> float:
    """How often `serve --retention` purges: a quarter of the age, between 1 s and 1 h."""
    return min(RETENTION_INTERVAL_S, max(1.0, max_age_s / 4))


async def keep_purging(js: JetStreamContext, max_age_s: float, stop: asyncio.Event) -> None:
    """Delete runs that ended more than `max_age_s` ago, now and then every
    `retention_interval`, until `stop` is set. Safe with several APIs at once: each delete
    is idempotent, and a run deleted by another is skipped."""
    interval = retention_interval(max_age_s)
    while not stop.is_set():
        try:
            after: str | None = ""
            total = 0
            while after is not None and not stop.is_set():
                before = datetime.now(UTC) - timedelta(seconds=max_age_s)
                done = await retention.purge(js, before, after=after)
                total += len(done.deleted)
                after = done.next_after
            if total:
                log.info("retention: deleted %d run(s) that ended more than %s ago", total,
                         format_duration(max_age_s))
        except Exception as exc:  # NATS away for a moment: the next round tries again
            log.warning("retention: purge failed, trying again in %gs: %s", interval, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
