"""Deleting ended runs (`run delete`, `run purge`) against a real engine, API and worker:
everything kept for a run goes, running runs are refused, an interrupted delete leaves the
run whole in its history and a second one finishes the job."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dagnats import jetstream, names
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus
from dagnats.store import retention
from tests.integration.failures_harness import Behaviour, Stack, one_error_line

pytestmark = pytest.mark.timeout(120)
E = EventType


def ended(stack: Stack, run_id: str) -> RunStatus:
    return stack.until(lambda: (lambda run: run.status if run.status.terminal else None)(
        stack.client.get_run(run_id)), f"run {run_id} to end")


def kept(stack: Stack, run_id: str) -> dict[str, Any]:
    """What NATS still holds of a run, by kind."""
    def subjects(stream: str, subject: str) -> list[str]:
        return stack.run(jetstream.stream_subjects(stack.js, stream, subject))
    return {
        "events": subjects(names.HISTORY_STREAM, names.history_run_filter(run_id)),
        "snapshot": subjects(names.kv_stream(names.RUNS_BUCKET),
                             names.kv_subject(names.RUNS_BUCKET, names.run_key(run_id))),
        "dead letters": subjects(names.DEAD_STREAM, names.dead_filter(run_id)),
        "idempotency": subjects(names.kv_stream(names.IDEMPOTENCY_BUCKET),
                                names.kv_filter(names.IDEMPOTENCY_BUCKET)),
    }


def listed(stack: Stack, workflow: str) -> set[str]:
    """The run ids `run list` shows for a workflow (through the client, full ids)."""
    return {run.run_id for run in stack.client.list_runs(workflow, limit=1000)}


@pytest.fixture(scope="module", autouse=True)
def workflows(stack: Stack) -> None:
    stack.client.register_workflow({"name": "keep-echo", "version": "1", "steps": [
        {"id": "a", "task": "echo"}, {"id": "b", "task": "echo", "depends_on": ["a"]}]})
    stack.client.register_workflow({"name": "keep-flaky", "version": "1", "steps": [
        {"id": "f", "task": "flaky", "retry": {"max_attempts": 1}}]})
    stack.client.register_workflow({"name": "keep-gate", "version": "1", "steps": [
        {"id": "g", "task": "gate"}]})


def test_run_delete_removes_everything_kept_for_an_ended_run(
        stack: Stack, behaviour: Behaviour) -> None:
    behaviour.broken.add("keep-flaky")
    run_id = stack.client.start("keep-flaky", "x", idempotency_key="once")
    assert ended(stack, run_id) is RunStatus.FAILED
    stack.until(lambda: kept(stack, run_id)["dead letters"], "the dead letter")
    before = kept(stack, run_id)
    assert before["events"] and before["snapshot"] and before["idempotency"]
    stack.until(lambda: run_id in listed(stack, "keep-flaky"), "the run in run list")

    result = stack.dagnats("run", "delete", run_id[:12], "--json")  # a prefix does
    assert result.exit_code == 0, result.output
    removed = json.loads(result.stdout)["removed"]
    assert removed["events"] >= 3 and removed["snapshot"] == 1
    assert removed["dead letters"] == 1 and removed["idempotency key"] == 1
    after = kept(stack, run_id)
    assert after["events"] == [] and after["snapshot"] == [] and after["dead letters"] == []
    assert len(after["idempotency"]) == len(before["idempotency"]) - 1
    assert run_id not in stack.dagnats("run", "list").stdout
    assert run_id not in listed(stack, "keep-flaky")  # its run index entry went too
    assert run_id not in stack.dagnats("dlq", "list").stdout
    gone = one_error_line(stack.dagnats("run", "status", run_id), 2)
    assert f"no run with id or prefix {run_id!r}" in gone
    assert "no run" in one_error_line(stack.dagnats("run", "delete", run_id), 2)


def test_a_running_run_is_refused_in_one_line_and_kept(stack: Stack) -> None:
    run_id = stack.client.start("keep-gate", "x")
    stack.until_event(run_id, E.STEP_STARTED)
    line = one_error_line(stack.dagnats("run", "delete", run_id), 1)
    assert line == (f"error: run {run_id} is running: only ended runs can be deleted; cancel "
                    f"it first (`dagnats run cancel {run_id}`)")
    assert kept(stack, run_id)["events"]
    stack.client.cancel(run_id)
    assert ended(stack, run_id) is RunStatus.CANCELLED
    assert stack.dagnats("run", "delete", run_id).exit_code == 0


def test_an_interrupted_delete_leaves_the_run_whole_and_a_second_one_finishes(
        stack: Stack) -> None:
    run_id = stack.client.start("keep-echo", "x")
    assert ended(stack, run_id) is RunStatus.COMPLETED
    # kill -9 right after the first thing a delete removes: the snapshot
    stack.run(retention._purge_key(stack.js, names.RUNS_BUCKET, names.run_key(run_id)))
    status = stack.dagnats("run", "status", run_id)
    assert status.exit_code == 0 and "Status: completed" in status.stdout, status.output
    assert stack.dagnats("run", "delete", run_id).exit_code == 0
    assert kept(stack, run_id)["events"] == []


def test_purge_deletes_ended_runs_older_than_the_cutoff_with_the_status_given(
        stack: Stack, behaviour: Behaviour) -> None:
    behaviour.broken.add("keep-flaky")
    done = [stack.client.start("keep-echo", str(i)) for i in range(3)]
    failed = stack.client.start("keep-flaky", "x")
    running = stack.client.start("keep-gate", "x")
    for run_id in done:
        assert ended(stack, run_id) is RunStatus.COMPLETED
    assert ended(stack, failed) is RunStatus.FAILED
    stack.until_event(running, E.STEP_STARTED)

    young = stack.dagnats("run", "purge", "--older-than", "1d", "--json")
    assert json.loads(young.stdout) == {"deleted": []}
    result = stack.dagnats("run", "purge", "--older-than", "0s", "--status", "completed")
    assert result.exit_code == 0, result.output
    for run_id in done:
        assert kept(stack, run_id)["events"] == []
    assert kept(stack, failed)["events"] and kept(stack, running)["events"]
    every = set(stack.client.purge_runs(0))
    assert failed in every and running not in every
    assert kept(stack, running)["events"]
    stack.client.cancel(running)


def test_purge_goes_round_by_round(stack: Stack) -> None:
    runs = [stack.client.start("keep-echo", str(i)) for i in range(5)]
    for run_id in runs:
        ended(stack, run_id)
    from datetime import UTC, datetime

    deleted, after = [], ""
    while after is not None:
        done = stack.run(retention.purge(stack.js, datetime.now(UTC), after=after, limit=2))
        assert len(done.deleted) <= 2
        deleted += done.deleted
        after = done.next_after
    assert set(runs) <= set(deleted)


def test_two_purges_at_once_delete_every_run_and_fail_nothing(stack: Stack) -> None:
    import asyncio
    from datetime import UTC, datetime

    runs = [stack.client.start("keep-echo", str(i)) for i in range(8)]
    for run_id in runs:
        ended(stack, run_id)

    async def both() -> list[retention.Purged]:
        now = datetime.now(UTC)
        return list(await asyncio.gather(retention.purge(stack.js, now),
                                         retention.purge(stack.js, now)))

    first, second = stack.run(both())
    assert set(runs) <= set(first.deleted) | set(second.deleted)
    for run_id in runs:
        assert kept(stack, run_id)["events"] == [] and kept(stack, run_id)["snapshot"] == []


def test_an_age_is_days_then_a_duration() -> None:
    assert retention.parse_age("30d") == 30 * 86400
    assert retention.parse_age("1d12h") == 86400 + 12 * 3600
    assert retention.parse_age("90m") == 5400
    with pytest.raises(ValueError, match="invalid age"):
        retention.parse_age("soon")


def test_serve_retention_keeps_deleting_ended_runs(stack: Stack) -> None:
    import asyncio

    from dagnats.api.retention import keep_purging
    from dagnats.cli.serve_cmds import RETENTION_ENV
    from dagnats.server import serve

    assert RETENTION_ENV == serve.RETENTION_ENV
    specs = serve.child_specs([], "nats://x", stack_logs(), 60.0)
    api = next(s for s in specs if s.name == "api")
    assert api.env is not None and float(api.env[RETENTION_ENV]) == 60.0
    run_id = stack.client.start("keep-echo", "x")
    assert ended(stack, run_id) is RunStatus.COMPLETED

    async def purge_until_gone() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(keep_purging(stack.js, 0.0, stop))
        try:
            async with asyncio.timeout(60):
                while await retention.last_seq(stack.js, run_id):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # polling NATS: there is no event to wait on
        finally:
            stop.set()
            await task

    stack.run(purge_until_gone())
    assert kept(stack, run_id)["snapshot"] == []


def stack_logs() -> Any:
    from pathlib import Path

    return Path("/nonexistent-logs")
