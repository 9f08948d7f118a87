"""Starting and inspecting runs through the API, the client and the CLI (no engine needed).

Where a test needs what the engine would write (snapshots, later events), it writes them
itself, as the engine does.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dagnats import jetstream, names
from dagnats.api.service import OPERATIONS
from dagnats.cli.main import cli
from dagnats.client import AsyncClient, Client
from dagnats.connection import connect
from dagnats.dag.events import Event, EventType
from dagnats.dag.state import RunStatus, fold
from dagnats.dag.validate import parse_definition
from dagnats.errors import InvalidInput, RunNotFound, WorkflowNotFound
from dagnats.store import history, run_index
from dagnats.store.snapshots import Snapshots
from tests.integration.followers import until_followed


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[Client]:
    with Client.connect(url) as connected:
        yield connected


def dagnats(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={"DAGNATS_NATS_URL": url},
                              catch_exceptions=False)


def error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    return result.stderr.strip()


PIPELINE_STEPS = [  # declared out of order on purpose: status shows topological order
    {"id": "reverse", "task": "reverse", "depends_on": ["uppercase"]},
    {"id": "greet", "task": "greet", "depends_on": []},
    {"id": "uppercase", "task": "uppercase", "depends_on": ["greet"]},
]


def register(client: Client, name: str, version: str = "1.0") -> None:
    client.register_workflow({"name": name, "version": version, "steps": PIPELINE_STEPS})


async def with_js(url: str, work: Any) -> Any:
    nc = await connect(url)
    try:
        return await work(nc.jetstream())
    finally:
        await jetstream.close(nc)


def read_history(url: str, run_id: str) -> list[Event]:
    return asyncio.run(with_js(url, lambda js: history.read(js, run_id)))


def snapshot(url: str, *run_ids: str) -> None:
    """Write each run's snapshot (and its run index summary) from its history, as the
    engine does."""
    async def write(js: Any) -> None:
        snapshots = await Snapshots.open(js)
        for run_id in run_ids:
            run = fold(await history.read(js, run_id))
            assert run is not None
            stored = await snapshots.get(run_id)
            await snapshots.put(run, stored.revision if stored else 0)
            await run_index.publish(js, run)

    asyncio.run(with_js(url, write))


def append(url: str, run_id: str, type_: EventType, msg_id: str, **data: Any) -> None:
    event = Event(type=type_, run_id=run_id, timestamp=datetime.now(UTC), data=data)
    asyncio.run(with_js(url, lambda js: history.append(js, event, msg_id)))


def test_start_writes_workflow_started_and_get_run_folds_it(url: str, client: Client) -> None:
    register(client, "greeting")
    run_id = client.start("greeting", {"who": "World"})
    assert re.fullmatch(r"[0-9a-f]{32}", run_id)

    [started] = read_history(url, run_id)
    assert started.type is EventType.WORKFLOW_STARTED
    assert started.data["workflow"] == "greeting" and started.data["version"] == "1.0"
    assert started.data["input"] == {"who": "World"}
    assert parse_definition(started.data["definition"]).name == "greeting"

    run = client.get_run(run_id)  # read-your-writes: folded from history, no snapshot yet
    assert (run.run_id, run.status, run.input) == (run_id, RunStatus.RUNNING, {"who": "World"})
    assert list(run.steps) == ["greet", "uppercase", "reverse"]
    assert all(step.status == "pending" and step.attempts == 0 for step in run.steps.values())
    shown = dagnats(url, "run", "status", run_id).stdout.splitlines()
    assert shown == [f"Run: {run_id}", "Status: running", "Steps:", "greet: pending",
                     "uppercase: pending", "reverse: pending"]


def test_cli_start_prints_the_run_id(url: str, client: Client) -> None:
    register(client, "cli-start")
    plain = dagnats(url, "run", "start", "cli-start", '"World"')
    assert plain.exit_code == 0 and re.fullmatch(r"[0-9a-f]{32}\n", plain.stdout)
    as_json = json.loads(dagnats(url, "run", "start", "cli-start", "[1, 2]", "--json").stdout)
    assert client.get_run(as_json["run_id"]).input == [1, 2]
    assert client.get_run(plain.stdout.strip()).input == "World"
    no_input = dagnats(url, "run", "start", "cli-start").stdout.strip()
    assert client.get_run(no_input).input is None


def test_unknown_workflows_and_versions_are_one_line_exit_2(url: str, client: Client) -> None:
    assert "no workflow named 'ghost'" in error_line(dagnats(url, "run", "start", "ghost"), 2)
    register(client, "versioned", "1")
    register(client, "versioned", "2")
    line = error_line(dagnats(url, "run", "start", "versioned", "--version", "3"), 2)
    assert "has no version '3'" in line and "1, 2" in line
    run_id = dagnats(url, "run", "start", "versioned", "--version", "1").stdout.strip()
    assert client.get_run(run_id).version == "1"
    assert client.get_run(client.start("versioned")).version == "2"
    with pytest.raises(WorkflowNotFound):
        client.start("ghost")


def test_unknown_runs_and_short_prefixes_are_one_line_exit_2(url: str) -> None:
    for args in (("status",), ("events",), ("cancel",)):
        line = error_line(dagnats(url, "run", *args, uuid.uuid4().hex), 2)
        assert "no run with id or prefix" in line
    assert "at least 8 characters" in error_line(dagnats(url, "run", "status", "abc"), 2)
    assert "is not a run id" in error_line(dagnats(url, "run", "status", "a.b*"), 2)


def test_a_unique_prefix_of_8_characters_names_a_run(url: str, client: Client) -> None:
    register(client, "prefixed")
    run_id = client.start("prefixed")
    snapshot(url, run_id)
    assert dagnats(url, "run", "status", run_id[:8]).stdout.splitlines()[0] == f"Run: {run_id}"
    assert client.get_run(run_id[:12]).run_id == run_id
    assert client.events(run_id[:8])[0].run_id == run_id


def test_an_ambiguous_prefix_is_refused(url: str, client: Client) -> None:
    register(client, "twins")
    definition = client.get_workflow("twins").definition.to_json_dict()
    twins = [f"feedface{uuid.uuid4().hex[8:]}" for _ in range(2)]
    for run_id in twins:
        append(url, run_id, EventType.WORKFLOW_STARTED, names.started_msg_id(run_id),
               workflow="twins", version="1.0", input=None, definition=definition)
    snapshot(url, *twins)
    line = error_line(dagnats(url, "run", "status", "feedface"), 2)
    assert "ambiguous" in line and "2 runs" in line
    assert dagnats(url, "run", "status", twins[0][:20]).exit_code == 0


def test_events_in_order(url: str, client: Client) -> None:
    register(client, "evented")
    run_id = client.start("evented", "x")
    append(url, run_id, EventType.WORKFLOW_COMPLETED, names.run_event_msg_id(run_id, "completed"),
           output="done")
    found = json.loads(dagnats(url, "run", "events", run_id, "--json").stdout)
    assert [e["type"] for e in found] == ["workflow.started", "workflow.completed"]
    assert found[0]["seq"] < found[1]["seq"] and found[1]["data"] == {"output": "done"}
    assert set(found[0]) == {"seq", "type", "run_id", "step_id", "attempt", "timestamp", "data"}
    text = dagnats(url, "run", "events", run_id).stdout.splitlines()
    assert text[0].split() == ["TIME", "EVENT", "STEP", "ATTEMPT", "DATA"]  # a header row
    assert len(text) == 3 and "workflow.completed" in text[2] and '{"output":"done"}' in text[2]
    assert [e.type for e in client.events(run_id)] == [EventType.WORKFLOW_STARTED,
                                                      EventType.WORKFLOW_COMPLETED]


def test_cancel_a_running_run_once(url: str, client: Client) -> None:
    register(client, "cancellable")
    run_id = client.start("cancellable")
    assert dagnats(url, "run", "cancel", run_id).stdout == f"Cancelled run {run_id}\n"
    again = dagnats(url, "run", "cancel", run_id)
    assert again.stdout == f"Run {run_id} is already cancelled; nothing to cancel\n"
    assert client.get_run(run_id).status is RunStatus.CANCELLED
    assert [e.type for e in client.events(run_id)][-1] is EventType.WORKFLOW_CANCELLED
    outcome = client.cancel(run_id)
    assert (outcome.status, outcome.changed) == (RunStatus.CANCELLED, False)


def test_cancel_leaves_an_ended_run_alone(url: str, client: Client) -> None:
    register(client, "finished")
    run_id = client.start("finished")
    append(url, run_id, EventType.WORKFLOW_COMPLETED, names.run_event_msg_id(run_id, "completed"))
    outcome = json.loads(dagnats(url, "run", "cancel", run_id, "--json").stdout)
    assert outcome == {"run_id": run_id, "status": "completed", "changed": False}
    assert len(read_history(url, run_id)) == 2


def test_list_runs_newest_first_with_filters(url: str, client: Client) -> None:
    register(client, "listed")
    started = [client.start("listed", n) for n in range(3)]
    client.cancel(started[1])
    snapshot(url, *started)
    listed = json.loads(dagnats(url, "run", "list", "--workflow", "listed", "--json").stdout)
    assert [run["run_id"] for run in listed] == started[::-1]
    with pytest.raises(InvalidInput, match="unknown run status 'done'"):
        client.list_runs("listed", "done")
    cancelled = client.list_runs("listed", "cancelled")
    assert [run.run_id for run in cancelled] == [started[1]]
    assert [run.run_id for run in client.list_runs("listed", limit=2)] == started[:0:-1]
    table = dagnats(url, "run", "list", "--workflow", "listed").stdout.splitlines()
    assert table[0].split() == ["RUN", "ID", "WORKFLOW", "VERSION", "STATUS", "CREATED"]
    assert table[1].startswith(started[2]) and len(table) == 4


def test_an_idempotency_key_starts_a_run_once(url: str, client: Client) -> None:
    register(client, "idempotent")
    first = client.start("idempotent", 1, idempotency_key="order-42")
    assert client.start("idempotent", 1, idempotency_key="order-42") == first
    cli_again = dagnats(url, "run", "start", "idempotent", "1", "--idempotency-key", "order-42")
    assert cli_again.stdout.strip() == first
    assert len(read_history(url, first)) == 1
    assert client.start("idempotent", 1, idempotency_key="order-43") != first
    register(client, "idempotent-other")
    assert client.start("idempotent-other", 1, idempotency_key="order-42") != first


def test_wait_times_out_then_wakes_up_when_the_run_ends(url: str, client: Client,
                                                         nats_server: Any) -> None:
    register(client, "awaited")
    run_id = client.start("awaited")
    with pytest.raises(TimeoutError, match=run_id):
        client.wait(run_id, timeout=0.2)

    async def scenario() -> None:
        async with await AsyncClient.connect(url) as waiter, \
                await AsyncClient.connect(url) as other:
            waiting = asyncio.create_task(waiter.wait(run_id, timeout=20))
            # so the end arrives live, not on the first read
            await until_followed(nats_server.monitor_port, run_id)
            await other.cancel(run_id)
            run = await waiting
            assert (run.run_id, run.status) == (run_id, RunStatus.CANCELLED)

    asyncio.run(scenario())
    assert client.wait(run_id).status is RunStatus.CANCELLED  # ended already: at once
    with pytest.raises(RunNotFound):
        client.wait(uuid.uuid4().hex)


def test_the_service_announces_every_operation(url: str) -> None:
    async def info(nc: Any) -> dict[str, Any]:
        reply = await nc.request(f"$SRV.INFO.{names.API_SERVICE}", b"", timeout=5)
        return json.loads(reply.data)

    async def scenario() -> dict[str, Any]:
        nc = await connect(url)
        try:
            return await info(nc)
        finally:
            await jetstream.close(nc)

    announced = asyncio.run(scenario())
    assert announced["name"] == names.API_SERVICE
    assert {e["subject"] for e in announced["endpoints"]} == {
        names.api_subject(op) for op in OPERATIONS}
