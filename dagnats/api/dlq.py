"""API operations on dead letters: dlq.list, dlq.replay and dlq.discard.

A replay revives the run the dead letter belongs to (a resume, as `run retry` does, so the
failed step runs again with a fresh retry budget and the run can complete), then deletes
the replayed entries. Replaying an entry that is gone is an error, never a second resume;
replaying one whose run is not failed or cancelled is an error that keeps the entry.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from dagnats.api.context import ApiContext, Request
from dagnats.api.lifecycle import resume
from dagnats.api.runs import load_run, resolve_run_id
from dagnats.errors import DeadLetterNotFound, RunNotResumable
from dagnats.store import dead_letters
from dagnats.store.dead_letters import DeadLetterEntry


class ListRequest(Request):
    """dlq.list: every dead letter, or one run's."""

    run_id: str | None = None


class PageRequest(Request):
    """dlq.page: up to `limit` dead letters, newest first, stored before sequence `before`."""

    limit: int = Field(default=50, ge=1, le=500)
    before: int | None = Field(default=None, ge=1)


class ReplayRequest(Request):
    """dlq.replay: one dead letter by sequence, or every dead letter of a run."""

    seq: int | None = Field(default=None, ge=1)
    run_id: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ReplayRequest:
        if (self.seq is None) == (self.run_id is None):
            raise ValueError("give either seq or run_id")
        return self


class DiscardRequest(Request):
    """dlq.discard: one dead letter by sequence."""

    seq: int = Field(ge=1)


async def list_all(ctx: ApiContext, req: ListRequest) -> list[dict[str, Any]]:
    """Every dead letter, oldest first: failed steps and unreadable (poison) messages, each
    with its cause."""
    run_id = await resolve_run_id(ctx, req.run_id) if req.run_id else None
    return [entry.public() for entry in await dead_letters.list_all(ctx.js, run_id)]


async def page(ctx: ApiContext, req: PageRequest) -> dict[str, Any]:
    """dlq.page: `{"dead_letters": [...], "total": n, "next": before}`, newest first, reading
    the stream's end rather than all of it (`next` is null on the last page)."""
    found, total, after = await dead_letters.newest(ctx.js, req.limit, req.before)
    return {"dead_letters": [entry.public() for entry in found], "total": total,
            "next": after}


async def replay(ctx: ApiContext, req: ReplayRequest) -> dict[str, Any]:
    """Resume the run of the dead letter(s), then delete them."""
    if req.seq is not None:
        entries = [await _entry(ctx, req.seq)]
        run_id, label = entries[0].run_id, f"dead letter {req.seq}"
    else:
        run_id = await resolve_run_id(ctx, req.run_id or "")
        entries = await dead_letters.list_entries(ctx.js, run_id)
        if not entries:
            raise DeadLetterNotFound(f"run {run_id} has no dead letters; see `dagnats dlq list`")
        label = f"the dead letters of run {run_id}"
    seqs = [entry.seq for entry in entries]
    run, _ = await load_run(ctx, run_id)
    extra: dict[str, Any] = {"dlq_seq": seqs[0]}
    if len(seqs) > 1:
        extra["dlq_seqs"] = seqs
    try:
        seq = await resume(ctx, run, "dlq-replay", what="replay", **extra)
    except RunNotResumable as exc:
        raise RunNotResumable(f"cannot replay {label}: {exc.message}; "
                              f"{'it is' if req.seq else 'they are'} kept") from None
    for entry_seq in seqs:
        await dead_letters.delete(ctx.js, entry_seq)
    return {"run_id": run_id, "replayed": seqs, "generation": run.generation + 1, "seq": seq}


async def discard(ctx: ApiContext, req: DiscardRequest) -> dict[str, Any]:
    """Delete one dead letter (a step's, or a poison message's) without replaying it."""
    poison = await dead_letters.get_poison(ctx.js, req.seq)
    if poison is not None:
        run_id, step_id = poison.run_id(), None
    else:
        entry = await _entry(ctx, req.seq)
        run_id, step_id = entry.run_id, entry.step_id
    if not await dead_letters.delete(ctx.js, req.seq):
        raise DeadLetterNotFound(_missing(req.seq))
    return {"discarded": req.seq, "run_id": run_id, "step_id": step_id}


async def _entry(ctx: ApiContext, seq: int) -> DeadLetterEntry:
    entry = await dead_letters.get(ctx.js, seq)
    if entry is None:
        if await dead_letters.get_poison(ctx.js, seq) is not None:
            raise DeadLetterNotFound(
                f"dead letter {seq} is an unreadable message, not a failed step: there is no "
                f"run to revive; see it with `dagnats dlq list`, remove it with "
                f"`dagnats dlq discard {seq}`")
        raise DeadLetterNotFound(_missing(seq))
    return entry


def _missing(seq: int) -> str:
    return (f"no dead letter {seq}: it was replayed or discarded, or never existed; "
            "see `dagnats dlq list`")
