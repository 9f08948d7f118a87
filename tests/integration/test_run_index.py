"""`run list` from the run index: filters, cursor paging, pages over the message limit, late
writes of older states, deletion, the backfill of older stores, the index's end answering
while the whole view loads, and the engine keeping the index in step with history through a
mixed load.

The API-only tests write summaries into the index themselves, as the engine does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from nats.js.errors import NoStreamResponseError

from dagnats import jetstream, names
from dagnats.cli.main import cli
from dagnats.client import Client
from dagnats.connection import connect
from dagnats.dag.state import RunStatus
from dagnats.errors import InvalidInput
from dagnats.store import history, run_index
from dagnats.store.run_index import RunSummary
from dagnats.store.snapshots import Snapshots
from tests.integration.failures_harness import FAST_RETRY, Behaviour, Stack, make_worker

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STATUSES = [RunStatus.COMPLETED, RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED]


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[Client]:
    with Client.connect(url) as connected:
        yield connected


def dagnats(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={"DAGNATS_NATS_URL": url},
                              catch_exceptions=False)


async def with_js(url: str, work: Any) -> Any:
    nc = await connect(url)
    try:
        return await work(nc.jetstream())
    finally:
        await jetstream.close(nc)


def seed(url: str, summaries: list[RunSummary]) -> None:
    """Write summaries into the index (pipelined), as the engine writes them."""
    async def write(js: Any) -> None:
        publisher = jetstream.publisher(js)
        for chunk in range(0, len(summaries), 500):
            await asyncio.gather(*(
                publisher.publish(names.run_index_subject(s.run_id), s.model_dump_json().encode(),
                                  {"Nats-Msg-Id": names.run_index_msg_id(s.run_id, s.seq)})
                for s in summaries[chunk:chunk + 500]))
    asyncio.run(with_js(url, write))


def summary(workflow: str, n: int, status: RunStatus = RunStatus.COMPLETED, seq: int = 1,
            **extra: Any) -> RunSummary:
    return RunSummary(run_id=uuid.uuid4().hex, workflow=workflow, version="1", status=status,
                      created_at=NOW - timedelta(minutes=n), seq=seq, **extra)


def newest_first(summaries: list[RunSummary]) -> list[str]:
    return [s.run_id for s in sorted(summaries, key=lambda s: (s.created_at, s.run_id),
                                     reverse=True)]


def test_filters_and_a_cursor_page_through_every_run_exactly_once(url: str,
                                                                   client: Client) -> None:
    seeded = [summary(f"paged-{n % 3}", n, STATUSES[n % 4]) for n in range(250)]
    seed(url, seeded)
    mine = list(seeded)
    seen: list[str] = []
    cursor = None
    while True:
        page = client.list_runs_page("paged-1", limit=7, after=cursor)
        assert len(page.runs) <= 7
        seen.extend(run.run_id for run in page.runs)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == newest_first([s for s in mine if s.workflow == "paged-1"])
    for workflow, status in [(None, RunStatus.FAILED), ("paged-2", RunStatus.RUNNING),
                             ("paged-0", None), ("paged-none", None)]:
        listed = client.list_runs(workflow, status, limit=10_000)
        assert [run.run_id for run in listed] == newest_first(
            [s for s in mine if workflow in (None, s.workflow)
             and status in (None, s.status)])[:10_000]
    since = NOW - timedelta(minutes=30)
    recent = client.list_runs("paged-0", since=since)
    assert [run.run_id for run in recent] == newest_first(
        [s for s in mine if s.workflow == "paged-0" and s.created_at >= since])
    row = client.list_runs("paged-0", limit=1)[0]
    assert row.status is RunStatus.COMPLETED and row.input is None and row.steps == {}


def test_the_cli_prints_the_next_cursor_and_goes_on_after_it(url: str) -> None:
    seeded = [summary("cli-paged", n) for n in range(5)]
    seed(url, seeded)
    first = dagnats(url, "run", "list", "--workflow", "cli-paged", "--limit", "3", "--json")
    assert first.exit_code == 0, first.output
    assert [run["run_id"] for run in json.loads(first.stdout)] == newest_first(seeded)[:3]
    hint = first.stderr.strip()
    assert hint.startswith("More runs: add --after ")
    rest = dagnats(url, "run", "list", "--workflow", "cli-paged", "--after", hint.split()[-1])
    lines = rest.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == newest_first(seeded)[3:]
    assert rest.stderr == ""
    since = dagnats(url, "run", "list", "--workflow", "cli-paged", "--since",
                    (NOW - timedelta(minutes=2, seconds=30)).isoformat(), "--json")
    assert [run["run_id"] for run in json.loads(since.stdout)] == newest_first(seeded)[:3]
    last_hour = dagnats(url, "run", "list", "--workflow", "cli-paged", "--since", "1h", "--json")
    assert json.loads(last_hour.stdout) == []


def test_bad_cursors_and_times_are_one_line_exit_2(url: str) -> None:
    for args in (["--after", "not-a-cursor"], ["--since", "yesterday"]):
        result = dagnats(url, "run", "list", *args)
        assert result.exit_code == 2, result.output
        assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_page_over_the_message_limit_is_refused_with_the_reason(url: str,
                                                                  client: Client) -> None:
    long_error = "x" * run_index.ERROR_CHARS
    seeded = [summary("big-page", n, RunStatus.FAILED, error=long_error) for n in range(4000)]
    seed(url, seeded)

    async def ask(js: Any) -> Any:
        reply = await js._nc.request(names.api_subject("run.list"), json.dumps(
            {"workflow": "big-page", "limit": 4000}).encode(), timeout=10)
        return json.loads(reply.data)

    reply = asyncio.run(with_js(url, ask))
    assert reply["ok"] is False
    assert reply["error"]["type"] == InvalidInput.__name__
    assert "over the NATS message limit" in reply["error"]["message"]
    assert "or fewer" in reply["error"]["message"]
    # The client and the CLI ask page by page, each under the limit.
    assert len(client.list_runs("big-page", limit=10_000)) == 4000
    listed = dagnats(url, "run", "list", "--workflow", "big-page", "--limit", "4000", "--json")
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.stdout)) == 4000


def test_a_late_write_of_an_older_state_never_hides_the_newer_one(url: str,
                                                                  client: Client) -> None:
    newer = summary("raced", 1, RunStatus.COMPLETED, seq=20)
    older = newer.model_copy(update={"status": RunStatus.RUNNING, "seq": 10})
    seed(url, [newer])
    assert client.list_runs("raced")[0].status is RunStatus.COMPLETED
    seed(url, [older])  # written last, as a slow engine would
    assert client.list_runs("raced")[0].status is RunStatus.COMPLETED
    with Client.connect(url) as fresh:  # a view loaded from scratch agrees
        assert fresh.list_runs("raced")[0].status is RunStatus.COMPLETED


def test_the_index_end_answers_for_the_newest_runs_and_no_further(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_index, "CLOCK_SKEW_S", 0.0)  # one host, one clock
    seed(url, [summary("tailold", n) for n in range(20)])
    new = [RunSummary(run_id=uuid.uuid4().hex, workflow="tailnew", version="1",
                      status=RunStatus.COMPLETED, created_at=datetime.now(UTC), seq=1)
           for _ in range(20)]  # created after the old ones were stored
    seed(url, new)
    since = min(s.created_at for s in new)

    async def check(js: Any) -> None:
        partial = await run_index.tail_view(js, 21)  # the last old summary, then the new
        whole = run_index.RunIndexView(js)
        await whole.sync()
        assert partial.floor is not None and len(partial) == 21
        assert partial.page(limit=5) == whole.page(limit=5)
        assert [s.run_id for s in partial.page(limit=19).runs] == newest_first(new)[:19]
        assert partial.page(workflow="tailnew", since=since, limit=50) \
            == whole.page(workflow="tailnew", since=since, limit=50)
        assert partial.counts(since) == whole.counts(since) == {"completed": 20}
        for beyond in (lambda: partial.page(limit=21), lambda: partial.counts(),
                       lambda: partial.page(workflow="tailnew", limit=50),
                       lambda: partial.run_ids_starting_with(new[0].run_id[:8])):
            with pytest.raises(run_index.BelowFloor):
                beyond()
        # Through `answer`, what the tail cannot say waits for the whole view.
        assert await run_index.answer(js, lambda v: v.page(workflow="tailold", limit=50)) \
            == whole.page(workflow="tailold", limit=50)
        assert (await run_index.tail_view(js, 10**9)).floor is None  # the whole index

    asyncio.run(with_js(url, check))


def test_the_periodic_reload_happens_aside_while_the_old_view_answers(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(url, [summary("reloaded", n) for n in range(3)])

    async def check(js: Any) -> None:
        old = await run_index.view(js)
        monkeypatch.setattr(run_index, "FULL_RELOAD_S", 0.0)  # the old view is due for one
        page = await run_index.answer(js, lambda v: v.page(workflow="reloaded"))
        views = run_index._views_of(js)
        assert views.whole is old and views.loading is not None  # answered, reloading aside
        new = await views.loading
        assert views.whole is new is not old
        assert new.page(workflow="reloaded") == page and len(page.runs) == 3

    asyncio.run(with_js(url, check))


def test_a_removed_run_leaves_the_list(url: str, client: Client) -> None:
    kept, removed = summary("removed", 1), summary("removed", 2)
    seed(url, [kept, removed])
    assert len(client.list_runs("removed")) == 2
    asyncio.run(with_js(url, lambda js: run_index.remove(js, removed.run_id)))
    assert [run.run_id for run in client.list_runs("removed")] == [kept.run_id]
    with Client.connect(url) as fresh:
        assert [run.run_id for run in fresh.list_runs("removed")] == [kept.run_id]


def test_runs_stored_before_the_index_are_backfilled_once(url: str, client: Client) -> None:
    """A store from before the index: snapshots, no summaries (the marker is gone too)."""
    from tests.integration.test_api_runs import register, snapshot  # its runs: no engine

    register(client, "backfilled")
    old = [client.start("backfilled", n) for n in range(3)]
    snapshot(url, *old)

    async def forget_the_index(js: Any) -> None:
        for run_id in old:
            await js.purge_stream(names.INDEX_STREAM, subject=names.run_index_subject(run_id))
        await js.purge_stream(names.INDEX_STREAM, subject=names.run_index_marker_subject())

    asyncio.run(with_js(url, forget_the_index))
    with Client.connect(url) as fresh:
        assert fresh.list_runs("backfilled") == []
    assert asyncio.run(with_js(url, run_index.backfill)) >= 3
    assert asyncio.run(with_js(url, run_index.backfill)) == 0
    with Client.connect(url) as fresh:
        assert [run.run_id for run in fresh.list_runs("backfilled")] == old[::-1]


def test_a_redelivered_run_event_rewrites_a_lost_summary(url: str, client: Client) -> None:
    """kill -9 between the snapshot and the summary: the snapshot has the run completed,
    the index has it running. The redelivered event changes nothing in the run, and the
    engine still writes the summary."""
    from dagnats.dag.events import EventType
    from dagnats.engine.engine import Engine
    from tests.integration.test_api_runs import append, fold, register

    register(client, "relost")
    run_id = client.start("relost", 1)

    async def started_then_lost(js: Any) -> None:
        await run_index.publish(js, fold(await history.read(js, run_id)))

    asyncio.run(with_js(url, started_then_lost))
    append(url, run_id, EventType.WORKFLOW_COMPLETED, names.run_event_msg_id(run_id, "completed"))

    async def snapshot_then_redeliver(js: Any) -> None:
        events = await history.read(js, run_id)
        snapshots = await Snapshots.open(js)
        await snapshots.put(fold(events), 0)  # the engine died right after this
        assert (await run_index.view(js)).page(workflow="relost").runs[0].status \
            is RunStatus.RUNNING
        await Engine(js, snapshots).handle(events[-1:])  # the redelivery

    asyncio.run(with_js(url, snapshot_then_redeliver))
    listed = client.list_runs("relost")
    assert [(run.run_id, run.status) for run in listed] == [(run_id, RunStatus.COMPLETED)]


def test_a_summary_that_failed_to_be_written_is_written_on_redelivery(url: str,
                                                                     client: Client) -> None:
    """A step's outcome ends the run; the snapshot is stored, and the index cannot be
    written (no stream answers: NATS restarting, say). The redelivered outcome finds the
    run unchanged, and is not a run-level event (the engine's own workflow.completed echo
    would be acked unread), yet the summary is written."""
    from dagnats.dag.events import Event, EventType
    from dagnats.engine.engine import Engine

    client.register_workflow({"name": "owed", "version": "1",
                              "steps": [{"id": "a", "task": "owed-task"}]})
    run_id = client.start("owed", 1)

    async def fail_then_redeliver(js: Any) -> None:
        engine = Engine(js, await Snapshots.open(js))
        await engine.handle(await history.read(js, run_id))  # started: a is queued
        outcome = Event(type=EventType.STEP_COMPLETED, run_id=run_id, step_id="a", attempt=1,
                        timestamp=datetime.now(UTC), data={"output": 2})
        seq = await history.append(js, outcome, names.step_event_msg_id(run_id, "a", 1,
                                                                         "completed"))
        outcome = outcome.model_copy(update={"seq": seq})
        config = jetstream.run_index_stream_config(jetstream.Limits())
        await js.update_stream(dataclasses.replace(config, subjects=["elsewhere.>"]))
        try:
            with pytest.raises(NoStreamResponseError):
                await engine.handle([outcome])
        finally:
            await js.update_stream(config)
        stored = await (await Snapshots.open(js)).get(run_id)
        assert stored is not None and stored.run.status is RunStatus.COMPLETED
        await engine.handle([outcome])  # the redelivery

    asyncio.run(with_js(url, fail_then_redeliver))
    listed = client.list_runs("owed")
    assert [(run.run_id, run.status) for run in listed] == [(run_id, RunStatus.COMPLETED)]


def test_the_second_engine_writes_the_summary_when_the_winner_died_before_it(
        url: str, client: Client) -> None:
    """Two engines get the same step outcome, and both record workflow.completed (the second
    one's is deduplicated). Engine A's terminal snapshot wins, and A dies before its index
    summary. Engine B's snapshot write conflicts; it reloads A's snapshot, finds the run
    already ended (no status change), and would ack its own echo unread: it must write the
    summary then, or `run list` says running for ever (found by the soak)."""
    from dagnats.dag.events import Event, EventType
    from dagnats.engine.engine import Engine

    client.register_workflow({"name": "twoengines", "version": "1",
                              "steps": [{"id": "a", "task": "twoengines-task"}]})
    run_id = client.start("twoengines", 1)

    async def race(js: Any) -> None:
        engine_b = Engine(js, await Snapshots.open(js))
        await engine_b.handle(await history.read(js, run_id))  # started: a queued, cached
        outcome = Event(type=EventType.STEP_COMPLETED, run_id=run_id, step_id="a", attempt=1,
                        timestamp=datetime.now(UTC), data={"output": 2})
        seq = await history.append(js, outcome, names.step_event_msg_id(run_id, "a", 1,
                                                                         "completed"))
        outcome = outcome.model_copy(update={"seq": seq})
        # Engine A: records workflow.completed, stores the terminal snapshot, then kill -9.
        ended = Event(type=EventType.WORKFLOW_COMPLETED, run_id=run_id,
                      timestamp=datetime.now(UTC), data={"output": {"a": 2}})
        await history.append(js, ended, names.run_event_msg_id(run_id, "completed"))
        from tests.integration.test_api_runs import fold
        snapshots = await Snapshots.open(js)
        stored = await snapshots.get(run_id)
        assert stored is not None
        await snapshots.put(fold(await history.read(js, run_id)), stored.revision)
        assert (await run_index.view(js)).page(workflow="twoengines").runs[0].status \
            is RunStatus.RUNNING
        await engine_b.handle([outcome])  # B: from its stale cache, conflicts, reloads

    asyncio.run(with_js(url, race))
    listed = client.list_runs("twoengines")
    assert [(run.run_id, run.status) for run in listed] == [(run_id, RunStatus.COMPLETED)]


# --- with the engine ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(nats_server: Any) -> Iterator[Stack]:
    behaviour = Behaviour()
    behaviour.broken.add("mixed-fails")
    running = Stack(nats_server.url, make_worker(nats_server.url, behaviour))
    try:
        yield running
    finally:
        running.close()


def test_the_list_agrees_with_status_for_every_run_after_a_mixed_load(stack: Stack) -> None:
    client = stack.client
    step = {"id": "a", "task": "flaky", "retry": FAST_RETRY}
    for name in ("mixed-ok", "mixed-fails"):
        client.register_workflow({"name": name, "version": "1", "steps": [step]})
    client.register_workflow({"name": "mixed-gated", "version": "1",
                              "steps": [{"id": "g", "task": "stubborn"}]})
    started = [client.start(name, n) for n in range(15)
               for name in ("mixed-ok", "mixed-fails", "mixed-gated")]
    gated = [run_id for run_id in started if client.get_run(run_id).workflow == "mixed-gated"]
    for run_id in gated[::2]:
        stack.until(lambda r=run_id: client.get_run(r).steps["g"].status.value == "running",
                    f"run {run_id} running its step")
        client.cancel(run_id)

    def agree() -> bool:
        listed = {run.run_id: run.status for run in client.list_runs(limit=10_000)
                  if run.workflow.startswith("mixed-")}
        return listed == {run_id: client.get_run(run_id).status for run_id in started}

    stack.until(agree, "run list agreeing with run status for every run")
    statuses = {run.status for run in client.list_runs(limit=10_000)
                if run.workflow.startswith("mixed-")}
    assert statuses == {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED,
                        RunStatus.RUNNING}
    for run_id in gated[1::2]:
        client.cancel(run_id)
    stack.until(agree, "run list agreeing after the rest were cancelled")
