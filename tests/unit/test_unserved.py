"""The unserved rule (dagnats.unserved) and how the CLI shows it, a non-retryable failure's
watch line, the live workers table, and the `run events` header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dagnats._client_models import Event, Run
from dagnats.cli import render
from dagnats.dag import events as core
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus, fold
from dagnats.dag.validate import parse_definition
from dagnats.store.presence import WorkerEntry, served_tasks
from dagnats.unserved import QueuedSteps, QueuedTask, unserved, unserved_steps

E = EventType
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RUN = "0123456789abcdef0123456789abcdef"
HINT = "(start one with: dagnats worker run FILE)"


def event(type_: EventType, step: str | None = None, attempt: int = 0, seconds: float = 0,
          **data: Any) -> Event:
    return Event(seq=1, type=type_, run_id=RUN, step_id=step, attempt=attempt,
                 timestamp=T0 + timedelta(seconds=seconds), data=data)


def queued_run() -> Run:
    definition = parse_definition({"name": "w", "version": "1", "steps": [
        {"id": "pack", "task": "pack-order"},
        {"id": "nap", "type": "sleep", "config": {"duration": "1h"}},
        {"id": "ship", "task": "ship", "depends_on": ["pack"]}]})
    history = [core.Event(type=E.WORKFLOW_STARTED, run_id=RUN, timestamp=T0,
                          data={"definition": definition.to_json_dict(), "input": None}),
               core.Event(type=E.STEP_QUEUED, run_id=RUN, step_id="pack", attempt=1,
                          timestamp=T0, data={"task": "pack-order", "input": None})]
    state = fold(history)
    assert state is not None
    return Run.model_validate(state.public())


def test_a_queued_task_step_is_unserved_after_a_while_and_only_without_a_worker() -> None:
    run = queued_run()
    pack = run.steps["pack"]
    assert (pack.task, pack.queued_at) == ("pack-order", T0)
    assert run.steps["nap"].task is None and run.steps["ship"].queued_at is None
    later = T0 + timedelta(seconds=5)
    found = unserved_steps(run, set(), later)
    assert [(u.step_id, u.task) for u in found] == [("pack", "pack-order")]
    assert found[0].text() == f"queued 5s; no worker is serving task 'pack-order' {HINT}"
    assert unserved_steps(run, {"pack-order"}, later) == []  # a worker serves it
    assert unserved_steps(run, set(), T0 + timedelta(seconds=4.9)) == []  # not yet
    ended = run.model_copy(update={"status": RunStatus.COMPLETED})
    assert unserved_steps(ended, set(), later) == []


def test_run_status_shows_it_on_the_step() -> None:
    run = queued_run()
    marked = run.model_copy(update={"steps": {**run.steps, "pack": run.steps["pack"].model_copy(
        update={"unserved": "no worker is serving task 'pack-order'"})}})
    lines = render.status_lines(marked, T0 + timedelta(seconds=12))
    assert f"pack: queued 12s; no worker is serving task 'pack-order' {HINT}" in lines
    shown = marked.model_dump(mode="json")["steps"]
    assert shown["pack"]["unserved"] == "no worker is serving task 'pack-order'"
    assert "unserved" not in shown["ship"] and "queued_at" not in shown["ship"]
    assert "task" not in shown["nap"]


def test_a_follower_tracks_what_is_queued_now() -> None:
    steps = QueuedSteps()
    steps.see(event(E.STEP_QUEUED, "pack", 1, task="pack-order"))
    steps.see(event(E.STEP_QUEUED, "ship", 1, task="ship"))
    steps.see(event(E.STEP_STARTED, "ship", 1))
    assert steps.queued() == [QueuedTask("pack", "pack-order", 1, T0)]
    assert unserved(steps.queued(), {"ship"}, T0 + timedelta(seconds=6))[0].attempt == 1
    steps.see(event(E.STEP_COMPLETED, "pack", 1))
    assert steps.queued() == []


def test_a_failure_that_is_not_retried_claims_no_attempt_budget() -> None:
    failed = event(E.STEP_FAILED, "greet", 1, error="ValidationError: input", retryable=False,
                   max_attempts=4)
    assert render.watch_line(failed) == "step.greet: failed (not retryable): ValidationError: input"


def test_the_workers_table_and_the_events_header() -> None:
    entry = WorkerEntry(id="ab12", name="w1", host="h", pid=7, tasks=["a", "b"], in_flight=1,
                        concurrency=16, started_at=T0, heartbeat_at=T0)
    lines = render.workers_table([entry], T0 + timedelta(minutes=2))
    assert lines[0].split() == ["ID", "NAME", "HOST", "PID", "TASKS", "IN", "FLIGHT", "UP",
                                "SINCE"]
    assert lines[1].split() == ["ab12", "w1", "h", "7", "a,", "b", "1/16",
                                "2026-01-02T03:04:05+00:00", "(2m", "ago)"]
    assert served_tasks([entry]) == {"a", "b"}
    assert render.workers_table([], T0) == [f"No live workers ({HINT[1:-1]})."]
    events = [event(E.WORKFLOW_STARTED), event(E.STEP_QUEUED, "pack", 1, task="pack")]
    widths = render.event_widths(events)
    first = render.event_lines(events, header=True, widths=widths)
    later = render.event_lines([event(E.STEP_COMPLETED, "pack", 1)], widths=widths)
    assert first[0].split() == ["TIME", "EVENT", "STEP", "ATTEMPT", "DATA"]
    assert first[2].index("pack") == later[0].index("pack")  # the columns line up
