"""The run index view's paging, as a property: any summaries, any updates (stale ones
included), any filters and page size: paging with the cursor yields exactly the matching
runs, newest first, each once. A partial view (the index's end, read while the whole view
loads) answers exactly as the whole view does, or says it cannot. And an API reply over the
message limit becomes an error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagnats.api.service import fit_reply
from dagnats.dag.state import RunStatus
from dagnats.errors import InvalidInput
from dagnats.store.run_index import BelowFloor, RunIndexView, RunSummary, _key

T0 = datetime(2026, 12, 1, tzinfo=UTC)
statuses = st.sampled_from(list(RunStatus))
#: (run number, workflow, status, seq, created minute): few runs and minutes, so runs are
#: updated, stale writes happen and creation times tie.
writes = st.lists(st.tuples(st.integers(0, 15), st.sampled_from(["a", "b"]), statuses,
                            st.integers(1, 5), st.integers(0, 4)), max_size=60)


def summary(n: int, workflow: str, status: RunStatus, seq: int, minute: int) -> RunSummary:
    return RunSummary(run_id=f"{n:032x}", workflow=workflow, version="1", status=status,
                      created_at=T0 + timedelta(minutes=minute), seq=seq)


def written_in_order(found: list[Any]) -> list[RunSummary]:
    """The summaries `found` describes, in the order they are stored: a run keeps its
    workflow and creation time (its first write's); only status and seq change."""
    latest: dict[int, RunSummary] = {}
    stored = []
    for n, wf, st_, seq, minute in found:
        first = latest.setdefault(n, summary(n, wf, st_, seq, minute))
        stored.append(summary(n, first.workflow, st_, seq,
                              int((first.created_at - T0).total_seconds() // 60)))
    return stored


@settings(max_examples=200, deadline=None)
@given(writes, st.sampled_from([None, "a", "b"]), st.one_of(st.none(), statuses),
       st.one_of(st.none(), st.integers(0, 4)), st.integers(1, 7))
def test_paging_yields_every_matching_run_once_newest_first(
        found: list[Any], workflow: str | None, status: RunStatus | None,
        since_minute: int | None, limit: int) -> None:
    view = RunIndexView(None)  # type: ignore[arg-type]  # paging never reads the stream
    latest: dict[str, RunSummary] = {}
    for written in written_in_order(found):
        view.apply(written)
        first = latest.get(written.run_id)
        if first is None or written.seq >= first.seq:
            latest[written.run_id] = written
    since = T0 + timedelta(minutes=since_minute) if since_minute is not None else None
    expected = sorted((s for s in latest.values()
                       if workflow in (None, s.workflow) and status in (None, s.status)
                       and (since is None or s.created_at >= since)),
                      key=lambda s: (s.created_at, s.run_id), reverse=True)
    seen: list[RunSummary] = []
    cursor = None
    while True:
        page = view.page(workflow=workflow, status=status, since=since, after=cursor,
                         limit=limit)
        assert len(page.runs) <= limit
        seen.extend(page.runs)
        if page.next_cursor is None:
            break
        assert len(page.runs) == limit
        cursor = page.next_cursor
    assert seen == expected
    assert len(view) == len(latest)


@settings(max_examples=300, deadline=None)
@given(writes, st.integers(0, 60), st.sampled_from([None, "a", "b"]),
       st.one_of(st.none(), statuses), st.one_of(st.none(), st.integers(0, 4)),
       st.integers(1, 7))
def test_a_partial_view_answers_as_the_whole_one_or_says_it_cannot(
        found: list[Any], cut: int, workflow: str | None, status: RunStatus | None,
        since_minute: int | None, limit: int) -> None:
    stored = written_in_order(found)
    whole = RunIndexView(None)  # type: ignore[arg-type]
    for s in stored:
        whole.apply(s)
    # The floor is what tail_view vouches for: every run created above it was stored
    # whole after the cut (its first summary is stored after its creation).
    before = [_key(s) for s in stored[:cut]]
    floor = (max(before)[0] + 1, "") if before else (0, "")
    partial = RunIndexView(None, floor=floor)  # type: ignore[arg-type]
    for s in stored[cut:]:
        partial.apply(s)
    since = T0 + timedelta(minutes=since_minute) if since_minute is not None else None
    since_key = (int(since.timestamp() * 1_000_000), "") if since else None
    cursor = None
    while True:
        expected = whole.page(workflow=workflow, status=status, since=since, after=cursor,
                              limit=limit)
        try:
            got = partial.page(workflow=workflow, status=status, since=since, after=cursor,
                               limit=limit)
        except BelowFloor:
            assert since_key is None or since_key < floor  # it could not have known
            break
        assert got == expected
        if expected.next_cursor is None:
            break
        cursor = expected.next_cursor
    try:
        assert partial.counts(since) == whole.counts(since)
    except BelowFloor:
        assert since_key is None or since_key < floor
    with pytest.raises(BelowFloor):
        partial.run_ids_starting_with("0")


def test_a_deleted_run_leaves_every_list() -> None:
    view = RunIndexView(None)  # type: ignore[arg-type]
    view.apply(summary(1, "a", RunStatus.COMPLETED, 3, 0))
    view.apply(summary(1, "a", RunStatus.COMPLETED, 2**62, 0).model_copy(
        update={"deleted": True}))
    assert len(view) == 0
    assert view.page(workflow="a").runs == [] and view.page(status=RunStatus.COMPLETED).runs == []


@pytest.mark.parametrize("cursor", ["", "12", "x.abc", "12.a b", "12.abc\n", "-1.abc"])
def test_malformed_cursors_are_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput, match="is not a run list cursor"):
        RunIndexView(None).page(after=cursor)  # type: ignore[arg-type]


def test_a_reply_over_the_message_limit_becomes_an_error_reply() -> None:
    small = json.dumps({"ok": True, "result": [1, 2, 3]}).encode()
    assert fit_reply("run.events", small, 1000) == small
    big = json.dumps({"ok": True, "result": "x" * 2000}).encode()
    reply = json.loads(fit_reply("run.events", big, 1000))
    assert reply["ok"] is False
    assert "reply to run.events is 0.0 MB, over the NATS message limit" in reply["error"]["message"]
