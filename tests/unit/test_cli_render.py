"""The CLI's output, formatted from hand-built events and run states (no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dagnats._client_models import Event, Run, StepInfo, Workflow, WorkflowInfo
from dagnats.cli import render
from dagnats.cli.run_cmds import exit_code_for, parse_input
from dagnats.dag import events as core
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus, StepStatus, fold
from dagnats.dag.validate import parse_definition
from dagnats.errors import InvalidInput

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
RUN = "0123456789abcdef0123456789abcdef"
PIPELINE = {"name": "hello-pipeline", "version": "1.0", "steps": [
    {"id": "reverse", "task": "reverse", "depends_on": ["uppercase"]},
    {"id": "greet", "task": "greet"},
    {"id": "uppercase", "task": "uppercase", "depends_on": ["greet"]},
]}


def event(type_: EventType, step: str | None = None, attempt: int = 0, seq: int = 1,
          **data: Any) -> Event:
    return Event(seq=seq, type=type_, run_id=RUN, step_id=step, attempt=attempt,
                 timestamp=T0 + timedelta(seconds=seq), data=data)


def core_event(type_: EventType, step: str | None = None, attempt: int = 0,
               **data: Any) -> core.Event:
    return core.Event(type=type_, run_id=RUN, step_id=step, attempt=attempt, timestamp=T0,
                      data=data)


def started() -> core.Event:
    definition = parse_definition(PIPELINE)
    return core_event(EventType.WORKFLOW_STARTED, input="World", workflow="hello-pipeline",
                      version="1.0", definition=definition.to_json_dict())


def completed(step: str, output: Any) -> list[core.Event]:
    return [core_event(EventType.STEP_QUEUED, step, 1), core_event(EventType.STEP_STARTED, step, 1),
            core_event(EventType.STEP_COMPLETED, step, 1, output=output)]


def as_run(history: list[core.Event]) -> Run:
    state = fold(history)
    assert state is not None
    return Run.model_validate(state.public())


def test_watch_lines_match_the_tutorial() -> None:
    history = [
        event(EventType.WORKFLOW_STARTED),
        event(EventType.STEP_QUEUED, "greet", 1), event(EventType.STEP_STARTED, "greet", 1),
        event(EventType.STEP_COMPLETED, "greet", 1, output="Hello, World!"),
        event(EventType.WORKFLOW_COMPLETED, output="x"),
    ]
    lines = [line for e in history if (line := render.watch_line(e)) is not None]
    assert lines == [f"Run {RUN} started", "step.greet: completed", f"Run {RUN} completed"]


def test_watch_lines_for_failures_and_retries() -> None:
    failed = event(EventType.STEP_FAILED, "greet", 1, error="ValueError: boom", max_attempts=4)
    assert render.watch_line(failed) == "step.greet: failed (attempt 1 of 4): ValueError: boom"
    no_max = event(EventType.STEP_FAILED, "greet", 2, error="boom")
    assert render.watch_line(no_max) == "step.greet: failed (attempt 2): boom"
    retry = event(EventType.STEP_QUEUED, "greet", 2, task="greet", delay_s=2.0)
    assert render.watch_line(retry) == "step.greet: retrying in 2s"
    slow = event(EventType.STEP_QUEUED, "greet", 3, delay_s=90.0)
    assert render.watch_line(slow) == "step.greet: retrying in 1m30s"
    run_failed = event(EventType.WORKFLOW_FAILED, "greet", error="step 'greet' failed")
    assert render.watch_line(run_failed) == f"Run {RUN} failed: step 'greet' failed"
    assert render.watch_line(event(EventType.WORKFLOW_CANCELLED)) == f"Run {RUN} cancelled"


def test_quiet_events_print_nothing() -> None:
    assert render.watch_line(event(EventType.STEP_QUEUED, "greet", 1, delay_s=0)) is None
    assert render.watch_line(event(EventType.STEP_STARTED, "greet", 1)) is None


def test_status_matches_the_tutorial_in_topological_order() -> None:
    history = [started(), *completed("greet", "Hello, World!"),
               *completed("uppercase", "HELLO, WORLD!"), *completed("reverse", "!DLROW ,OLLEH"),
               core_event(EventType.WORKFLOW_COMPLETED, output="!DLROW ,OLLEH")]
    assert render.status_lines(as_run(history)) == [
        f"Run: {RUN}", "Status: completed", "Steps:",
        'greet: completed "Hello, World!"', 'uppercase: completed "HELLO, WORLD!"',
        'reverse: completed "!DLROW ,OLLEH"',
    ]


def test_status_of_a_running_run_shows_pending_steps() -> None:
    history = [started(), core_event(EventType.STEP_QUEUED, "greet", 1)]
    assert render.status_lines(as_run(history))[1:] == [
        "Status: running", "Steps:", "greet: queued", "uppercase: pending", "reverse: pending"]


def test_status_of_a_failed_run_shows_the_error_and_attempts() -> None:
    history = [
        started(), core_event(EventType.STEP_QUEUED, "greet", 1),
        core_event(EventType.STEP_FAILED, "greet", 1, error="boom"),
        core_event(EventType.STEP_QUEUED, "greet", 2),
        core_event(EventType.STEP_FAILED, "greet", 2, error="boom again"),
        core_event(EventType.WORKFLOW_FAILED, "greet", error="step 'greet' failed"),
    ]
    lines = render.status_lines(as_run(history))
    assert lines[1:4] == ["Status: failed", "Error: step 'greet' failed", "Steps:"]
    assert lines[4] == "greet: failed after 2 attempts: boom again"


def test_step_summaries() -> None:
    assert render.step_summary(StepInfo(status=StepStatus.COMPLETED, attempts=1,
                                        output={"n": 1, "s": "é"})) == 'completed {"n":1,"s":"é"}'
    assert render.step_summary(StepInfo(status=StepStatus.RUNNING, attempts=2)) == \
        "running (attempt 2)"
    assert render.step_summary(StepInfo(status=StepStatus.FAILED, attempts=1, error="x")) == \
        "failed after 1 attempt: x"


def test_event_lines_are_aligned_and_leave_the_definition_out() -> None:
    history = [
        event(EventType.WORKFLOW_STARTED, seq=1, input="World", definition={"big": True}),
        event(EventType.STEP_COMPLETED, "uppercase", 1, seq=2, output="HI"),
    ]
    lines = render.event_lines(history)
    assert lines[0] == "2026-01-02T03:04:06.678+00:00  workflow.started  -          -" \
        '          {"input":"World"}'
    assert lines[1] == "2026-01-02T03:04:07.678+00:00  step.completed    uppercase  attempt=1" \
        '  {"output":"HI"}'


def test_tables() -> None:
    run = Run(run_id=RUN, workflow="w", version="1", status=RunStatus.RUNNING, created_at=T0)
    assert render.runs_table([run]) == [
        "RUN ID                            WORKFLOW  VERSION  STATUS   CREATED",
        f"{RUN}  w         1        running  2026-01-02T03:04:05+00:00",
    ]
    assert render.runs_table([]) == ["No runs."]
    info = WorkflowInfo(name="w", latest="2", versions=["1", "2"], steps=3, registered_at=T0)
    assert render.workflows_table([info])[1] == "w     2       1, 2      3      " \
        "2026-01-02T03:04:05+00:00"
    assert render.workflows_table([]) == ["No workflows registered."]


def test_workflow_lines_and_summary() -> None:
    definition = parse_definition(PIPELINE)
    shown = Workflow(definition=definition, versions=["0.9", "1.0"], latest="1.0")
    assert render.workflow_lines(shown) == [
        "Workflow: hello-pipeline", "Version: 1.0 (latest)", "Versions: 0.9, 1.0", "Steps:",
        "reverse: task reverse after uppercase", "greet: task greet",
        "uppercase: task uppercase after greet",
    ]
    assert render.definition_summary(definition) == "hello-pipeline (version 1.0, 3 steps)"


def test_compact_json_keeps_unicode() -> None:
    assert render.compact_json("Hello, Wörld!") == '"Hello, Wörld!"'
    assert render.compact_json(None) == "null"


def test_run_input_is_any_json_value_and_bad_json_is_one_line() -> None:
    assert parse_input('"World"') == "World"
    assert parse_input('{"a": [1, 2]}') == {"a": [1, 2]}
    assert parse_input(None) is None
    with pytest.raises(InvalidInput, match="line 1, column 7") as caught:
        parse_input('{"a": }')
    assert "\n" not in caught.value.message and caught.value.exit_code == 2


def test_exit_code_of_a_watched_run() -> None:
    assert exit_code_for(event(EventType.WORKFLOW_COMPLETED)) == 0
    assert exit_code_for(event(EventType.WORKFLOW_FAILED)) == 1
    assert exit_code_for(event(EventType.WORKFLOW_CANCELLED)) == 1
    assert exit_code_for(None) == 1


def test_what_a_waiting_step_waits_for_reads_plainly() -> None:
    until = "2026-12-03T12:00:00.250000+00:00"
    assert render.waiting_text({"kind": "time", "until": until}) == \
        "waiting until 2026-12-03T12:00:00Z"
    assert render.waiting_text({"kind": "event", "event": "payment.received",
                                "match": {"left": "order_id", "op": "eq", "value": 42},
                                "until": None}) == \
        "waiting for event payment.received with order_id = 42"
    assert render.waiting_text({"kind": "event", "event": "x", "match": None,
                                "until": until}) == \
        "waiting for event x (until 2026-12-03T12:00:00Z)"
    assert render.waiting_text({"kind": "approval", "until": None}) == "waiting for approval"
    waiting = Event.model_validate({
        "seq": 3, "type": "step.waiting", "run_id": "r", "step_id": "nap", "attempt": 1,
        "timestamp": until, "data": {"waiting_for": {"kind": "time", "until": until}}})
    assert render.watch_line(waiting) == "step.nap: waiting until 2026-12-03T12:00:00Z"


def test_workflow_show_names_each_kind() -> None:
    from dagnats.dag.validate import parse_definition
    definition = parse_definition({"name": "w", "version": "1", "steps": [
        {"id": "a", "task": "t"},
        {"id": "nap", "type": "sleep", "depends_on": ["a"], "config": {"duration": "90s"}},
        {"id": "pay", "type": "wait_for_event", "config": {"event": "paid"}},
        {"id": "ok", "type": "approval"}]})
    assert [render.step_kind_text(step) for step in definition.steps] == [
        "task t", "sleep 1m30s", "wait_for_event paid", "approval"]


def test_a_large_value_is_cut_short_in_human_output() -> None:
    from dagnats.cli.render import SHOWN_HEAD_CHARS, shown_json

    assert shown_json({"a": 1}) == '{"a":1}'
    text = shown_json("x" * 10_000)
    assert text.startswith('"' + "x" * (SHOWN_HEAD_CHARS - 1) + "...")
    assert text.endswith("(10,002 bytes; --json shows it all)")


def test_watch_and_status_lines_of_the_steps_that_multiply() -> None:
    instance_done = event(EventType.STEP_COMPLETED, "each[3]", 1, output=9)
    assert render.watch_line(instance_done) is None  # one of many: the map says it
    instance_failed = event(EventType.STEP_FAILED, "each[3]", 1, error="boom", max_attempts=2)
    assert render.watch_line(instance_failed) == "step.each[3]: failed (attempt 1 of 2): boom"
    mapping = event(EventType.STEP_WAITING, "each", 1, waiting_for={"kind": "map", "items": 40})
    assert render.watch_line(mapping) == "step.each: mapping 40 items"
    iterated = event(EventType.STEP_ITERATED, "agent", 2, iteration=2, output={})
    assert render.watch_line(iterated) == "step.agent: iteration 2 done"
    next_one = event(EventType.STEP_QUEUED, "agent", 3, loop={"iteration": 3, "attempt": 1})
    assert render.watch_line(next_one) is None
    again = event(EventType.STEP_QUEUED, "agent", 4, loop={"iteration": 3, "attempt": 2})
    assert render.watch_line(again) == "step.agent: retrying iteration 3 (attempt 2)"
    loop_failed = event(EventType.STEP_FAILED, "agent", 4, error="x", max_attempts=3,
                        iteration=3, iteration_attempt=2)
    assert render.watch_line(loop_failed) == ("step.agent: failed (iteration 3, attempt 2 of "
                                              "3): x")
    assert render.progress_line("train", {"fraction": 0.4, "message": "epoch 2/5"}) == \
        "step.train: 40% epoch 2/5"
    map_step = StepInfo(status=StepStatus.WAITING, instances={
        "total": 100, "counts": {"completed": 37, "failed": 2}})
    assert render.step_summary(map_step) == "running 37/100 (2 failed)"
    loop_step = StepInfo(status=StepStatus.RUNNING, attempts=5, iteration=3,
                         progress={"fraction": 0.5, "message": "half"})
    assert render.step_summary(loop_step) == "running (iteration 4) 50% half"
    child = StepInfo(status=StepStatus.WAITING, waiting_for={
        "kind": "child", "run_id": "0123456789abcdef" * 2, "workflow": "shipping"})
    assert render.step_summary(child) == "waiting for child run 01234567 (shipping)"


def test_run_tree_lines_indent_children_under_their_step() -> None:
    tree = {"run_id": "r1", "workflow": "order", "status": "completed", "step_id": None,
            "children": [{"run_id": "c1", "workflow": "shipping", "status": "failed",
                          "step_id": "ship", "children": [
                              {"run_id": "g1", "step_id": "label", "cut": True}]}]}
    assert render.tree_lines(tree) == ["r1 order completed", "  - ship: c1 shipping failed",
                                       "    - label: g1 (not shown: too many runs)"]


def test_a_map_s_progress_is_a_line_per_tenth_of_its_items() -> None:
    tally = render.MapTally()
    assert tally.see(event(EventType.STEP_WAITING, "each", 1,
                           waiting_for={"kind": "map", "items": 25})) is None
    lines = [tally.see(event(EventType.STEP_COMPLETED, f"each[{n}]", 1, output=n))
             for n in range(25)]
    assert [line for line in lines if line] == [
        f"step.each: {n}/25 items done" for n in (3, 5, 8, 10, 13, 15, 18, 20, 23, 25)]
    assert tally.see(event(EventType.STEP_COMPLETED, "other", 1, output=1)) is None
