"""Following runs as they happen: `run start --watch`, Client.watch and Client.wait.

A scripted stand-in for the engine answers every workflow.started with a fixed history
(as the engine and workers would write it), so the output can be checked line by line.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dagnats import jetstream, names
from dagnats._client_sync import LoopThread
from dagnats.api.thread import ApiThread
from dagnats.cli.main import cli
from dagnats.client import AsyncClient, Client
from dagnats.connection import connect
from dagnats.dag.events import Event, EventType
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.state import RunStatus, fold
from dagnats.dag.validate import topological_order
from dagnats.store import history, run_index
from dagnats.store.snapshots import Snapshots
from tests.integration.conftest import provision_at

E = EventType
PIPELINE = {"name": "hello-pipeline", "version": "1.0", "steps": [
    {"id": "greet", "task": "greet", "depends_on": []},
    {"id": "uppercase", "task": "uppercase", "depends_on": ["greet"]},
    {"id": "reverse", "task": "reverse", "depends_on": ["uppercase"]},
]}
TASKS = {"greet": lambda name: f"Hello, {name}!", "uppercase": str.upper,
         "reverse": lambda text: text[::-1]}
BOOM = "ValueError: boom"
Script = list[tuple[EventType, str | None, int, dict[str, Any]]]


def script_for(started: Event) -> Script:
    """What engine and workers would write: all steps complete, or greet fails twice."""
    definition = WorkflowDefinition.model_validate(started.data["definition"])
    value = started.data["input"]
    if value == "fail":
        failed = {"error": BOOM, "retryable": True, "max_attempts": 2}
        return [(E.STEP_QUEUED, "greet", 1, {"delay_s": 0}), (E.STEP_STARTED, "greet", 1, {}),
                (E.STEP_FAILED, "greet", 1, failed), (E.STEP_QUEUED, "greet", 2, {"delay_s": 2.0}),
                (E.STEP_STARTED, "greet", 2, {}), (E.STEP_FAILED, "greet", 2, failed),
                (E.WORKFLOW_FAILED, "greet", 0,
                 {"error": f"step 'greet' failed (attempt 2 of 2): {BOOM}"})]
    script: Script = []
    for step_id in topological_order(definition.steps):
        value = TASKS[step_id](value)
        script += [(E.STEP_QUEUED, step_id, 1, {"delay_s": 0}), (E.STEP_STARTED, step_id, 1, {}),
                   (E.STEP_COMPLETED, step_id, 1, {"output": value})]
    return [*script, (E.WORKFLOW_COMPLETED, None, 0, {"output": value})]


class ScriptedEngine:
    """Plays `script_for` on every new run, then writes its snapshot and index summary.
    Input "gated" waits for `gate` before playing, so a test can be watching before anything
    happens."""

    def __init__(self, url: str) -> None:
        self.gate = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = LoopThread()
        self._nc = self._loop.run(connect(url))
        self._loop.run(self._subscribe())

    async def _subscribe(self) -> None:
        self._js = self._nc.jetstream()
        self._snapshots = await Snapshots.open(self._js)
        await self._nc.subscribe(names.history_filter(), cb=self._on_event)

    async def _on_event(self, msg: Any) -> None:
        event = Event.decode(msg.data)
        if event.type is E.WORKFLOW_STARTED:
            task = asyncio.create_task(self._play(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _play(self, started: Event) -> None:
        if started.data["input"] == "gated":
            await asyncio.to_thread(self.gate.wait, 30)
            started = started.model_copy(update={"data": {**started.data, "input": "World"}})
        for n, (type_, step_id, attempt, data) in enumerate(script_for(started)):
            event = Event(type=type_, run_id=started.run_id, step_id=step_id, attempt=attempt,
                          timestamp=datetime.now(UTC), data=data)
            await history.append(self._js, event, f"{started.run_id}:scripted:{n}")
        run = fold(await history.read(self._js, started.run_id))
        assert run is not None
        await self._snapshots.put(run, 0)
        await run_index.publish(self._js, run)

    def close(self) -> None:
        self._loop.run(jetstream.close(self._nc))
        self._loop.stop()


@pytest.fixture(scope="module")
def engine(nats_server: Any) -> Iterator[ScriptedEngine]:
    """A provisioned nats-server with the scripted engine following it."""
    asyncio.run(provision_at(nats_server.url))
    scripted = ScriptedEngine(nats_server.url)
    try:
        yield scripted
    finally:
        scripted.close()


@pytest.fixture(scope="module")
def url(nats_server: Any, engine: ScriptedEngine) -> Iterator[str]:
    """The API answering, and the pipeline registered."""
    with ApiThread(nats_server.url), Client.connect(nats_server.url) as client:
        client.register_workflow(PIPELINE)
        yield nats_server.url


def dagnats(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={"DAGNATS_NATS_URL": url},
                              catch_exceptions=False)


def test_watch_prints_the_tutorial_lines_and_exits_0(url: str) -> None:
    result = dagnats(url, "run", "start", "hello-pipeline", '"World"', "--watch")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    run_id = lines[0].removeprefix("Run ").removesuffix(" started")
    assert len(run_id) == 32
    assert lines == [f"Run {run_id} started", "step.greet: completed",
                     "step.uppercase: completed", "step.reverse: completed",
                     f"Run {run_id} completed"]

    status = dagnats(url, "run", "status", run_id[:8])
    assert status.stdout.splitlines() == [
        f"Run: {run_id}", "Status: completed", "Steps:", 'greet: completed "Hello, World!"',
        'uppercase: completed "HELLO, WORLD!"', 'reverse: completed "!DLROW ,OLLEH"']
    as_json = json.loads(dagnats(url, "run", "status", run_id, "--json").stdout)
    assert set(as_json) >= {"run_id", "workflow", "version", "status", "input", "created_at",
                            "completed_at", "steps"}
    assert as_json["steps"]["reverse"] == {**as_json["steps"]["reverse"], "status": "completed",
                                           "attempts": 1, "output": "!DLROW ,OLLEH",
                                           "error": None}
    assert set(as_json["steps"]["greet"]) == {"status", "attempts", "output", "error",
                                              "started_at", "completed_at", "task"}
    assert as_json["steps"]["greet"]["task"] == "greet"


def test_watch_prints_failures_and_retries_and_exits_1(url: str) -> None:
    result = dagnats(url, "run", "start", "hello-pipeline", '"fail"', "--watch")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    run_id = lines[0].removeprefix("Run ").removesuffix(" started")
    assert lines[1:] == [
        f"step.greet: failed (attempt 1 of 2): {BOOM}", "step.greet: retrying in 2s",
        f"step.greet: failed (attempt 2 of 2): {BOOM}",
        f"Run {run_id} failed: step 'greet' failed (attempt 2 of 2): {BOOM}"]
    status = dagnats(url, "run", "status", run_id).stdout.splitlines()
    assert status[1:5] == ["Status: failed", f"Error: step 'greet' failed (attempt 2 of 2): {BOOM}",
                           "Steps:", f"greet: failed after 2 attempts: {BOOM}"]
    assert status[5:] == ["uppercase: pending", "reverse: pending"]


def test_watch_json_prints_one_event_per_line(url: str) -> None:
    result = dagnats(url, "run", "start", "hello-pipeline", '"World"', "--watch", "--json")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["type"] == "workflow.started" and events[-1]["type"] == "workflow.completed"
    assert len(events) == 11 and result.exit_code == 0


def test_watch_streams_live_events_in_order_once_each(url: str, engine: ScriptedEngine
                                                      ) -> None:
    async def scenario() -> list[Any]:
        async with await AsyncClient.connect(url) as client:
            run_id = await client.start("hello-pipeline", "gated")
            seen = []
            async for event in client.watch(run_id):
                seen.append(event)
                if event.type is E.WORKFLOW_STARTED:
                    engine.gate.set()  # only now does anything else happen
            return seen

    seen = asyncio.run(scenario())
    assert [e.seq for e in seen] == sorted({e.seq for e in seen})
    assert seen[0].type is E.WORKFLOW_STARTED and seen[-1].type is E.WORKFLOW_COMPLETED
    assert [e.step_id for e in seen if e.type is E.STEP_COMPLETED] == [
        "greet", "uppercase", "reverse"]
    assert seen[-1].data["output"] == "!DLROW ,OLLEH"


def test_the_blocking_client_waits_and_watches(url: str) -> None:
    with Client.connect(url) as client:
        run = client.wait(client.start("hello-pipeline", "Ada"), timeout=20)
        assert run.status is RunStatus.COMPLETED
        assert run.steps["greet"].output == "Hello, Ada!" and run.steps["greet"].attempts == 1
        assert run.output == "!ADA ,OLLEH" and run.completed_at is not None
        replayed = list(client.watch(run.run_id))
        assert [e.type for e in replayed] == [e.type for e in client.events(run.run_id)]
        for event in client.watch(run.run_id):  # leaving early closes the follower
            assert event.type is E.WORKFLOW_STARTED
            break
        newest = client.list_runs("hello-pipeline", limit=1)
        assert newest[0].run_id == run.run_id
