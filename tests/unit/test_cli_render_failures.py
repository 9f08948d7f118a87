"""The CLI's output for failure handling: watch lines for recovery, skips, compensation and
resumes; run status of recovered, skipped and cancelled steps; the dead-letter table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dagnats._client_models import DeadLetter, Event, Run
from dagnats.cli import render
from dagnats.cli.run_cmds import exit_code_for
from dagnats.dag import events as core
from dagnats.dag.events import EventType
from dagnats.dag.state import fold
from dagnats.dag.validate import parse_definition

E = EventType
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RUN = "0123456789abcdef0123456789abcdef"


def event(type_: EventType, step: str | None = None, attempt: int = 0, **data: Any) -> Event:
    return Event(seq=1, type=type_, run_id=RUN, step_id=step, attempt=attempt, timestamp=T0,
                 data=data)


@pytest.mark.parametrize(("given", "line"), [
    (event(E.STEP_RECOVERED, "fetch", by="fallback"), "step.fetch: recovered by fallback"),
    (event(E.STEP_SKIPPED, "parse", reason="depends on 'fetch'"), "step.parse: skipped"),
    (event(E.WORKFLOW_COMPENSATING, step_id="ship", error="step 'ship' failed"),
     f"Run {RUN} compensating: step 'ship' failed"),
    (event(E.WORKFLOW_COMPENSATED), f"Run {RUN} compensated"),
    (event(E.WORKFLOW_COMPENSATE_FAILED, step_id="refund", error="compensation failed"),
     f"Run {RUN} compensate_failed: compensation failed"),
    (event(E.WORKFLOW_FAILED, step_id="charge", error="step 'charge' failed"),
     f"Run {RUN} failed: step 'charge' failed"),
    (event(E.WORKFLOW_FAILED), f"Run {RUN} failed: failed"),
    (event(E.WORKFLOW_RESUMED, generation=1, reason="retry"), f"Run {RUN} resumed"),
    (event(E.STEP_QUEUED, "b", 3, delay_s=0.0), "step.b: retrying (attempt 3)"),
    (event(E.TIMER_FIRED, name="timeout-0"), None),
])
def test_watch_lines_of_failure_handling(given: Event, line: str | None) -> None:
    assert render.watch_line(given) == line


@pytest.mark.parametrize(("kind", "code"), [
    (E.WORKFLOW_COMPLETED, 0), (E.WORKFLOW_FAILED, 1), (E.WORKFLOW_CANCELLED, 1),
    (E.WORKFLOW_COMPENSATED, 1), (E.WORKFLOW_COMPENSATE_FAILED, 1),
])
def test_watch_exits_0_only_for_completed(kind: EventType, code: int) -> None:
    assert exit_code_for(event(kind)) == code


def core_event(type_: EventType, step: str | None = None, attempt: int = 0,
               **data: Any) -> core.Event:
    return core.Event(type=type_, run_id=RUN, step_id=step, attempt=attempt,
                      timestamp=T0 + timedelta(seconds=attempt), data=data)


def test_status_shows_recovered_and_skipped_steps() -> None:
    definition = parse_definition({"name": "w", "version": "1", "steps": [
        {"id": "fetch", "task": "fetch", "on_failure": "fallback"},
        {"id": "parse", "task": "parse", "depends_on": ["fetch"]},
        {"id": "fallback", "task": "fallback"}]})
    history = [
        core_event(E.WORKFLOW_STARTED, definition=definition.to_json_dict(), input=None),
        core_event(E.STEP_QUEUED, "fetch", 1),
        core_event(E.STEP_FAILED, "fetch", 1, error="HTTPError: 503", retryable=False),
        core_event(E.STEP_QUEUED, "fallback", 1),
        core_event(E.STEP_COMPLETED, "fallback", 1, output="cached"),
        core_event(E.STEP_RECOVERED, "fetch", 0, by="fallback"),
        core_event(E.STEP_SKIPPED, "parse", 0, reason="depends on 'fetch'"),
        core_event(E.WORKFLOW_COMPLETED, output=None)]
    state = fold(history)
    assert state is not None
    run = Run.model_validate(state.public())
    assert render.status_lines(run)[1:] == [
        "Status: completed", "Steps:",
        "fetch: recovered by fallback after 1 attempt: HTTPError: 503",
        "parse: skipped", 'fallback: completed "cached"']
    assert run.steps["fetch"].recovered_by == "fallback"
    assert "recovered_by" not in run.steps["parse"].model_dump(mode="json")


def test_dead_letter_table() -> None:
    entry = DeadLetter(seq=7, run_id=RUN, step_id="charge", task="charge-card", error="boom",
                       attempts=3, timestamp=T0)
    assert render.dead_letters_table([entry]) == [
        "SEQ  RUN ID                            STEP    TASK         ATTEMPTS  FAILED AT"
        "                  ERROR",
        f"7    {RUN}  charge  charge-card  3         2026-01-02T03:04:05+00:00  boom"]
    assert render.dead_letters_table([]) == ["No dead letters."]
