"""The run state as a fold over events, and `advance`'s decisions, replayed from histories."""

from __future__ import annotations

import ast
import pathlib
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dagnats.dag.actions import (
    ClearRunData,
    CompleteRun,
    DeadLetter,
    DispatchStep,
    FailRun,
    RecordedAction,
    event_for,
)
from dagnats.dag.advance import advance
from dagnats.dag.events import Event, EventType, attempt_starts
from dagnats.dag.kinds.task import task_event, task_for
from dagnats.dag.model import RetryPolicy
from dagnats.dag.retry import retry_delay_s, should_retry, total_attempts
from dagnats.dag.state import (
    IllegalTransition,
    RunState,
    RunStatus,
    StepStatus,
    apply,
    apply_checked,
    fold,
)
from dagnats.dag.tasks import TaskMessage, task_of
from dagnats.dag.validate import parse_definition

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
RUN = "r" * 32


def definition(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": "w", "version": "1", "steps": steps, **extra}


PIPELINE = definition([
    {"id": "greet", "task": "greet"},
    {"id": "uppercase", "task": "uppercase", "depends_on": ["greet"]},
    {"id": "reverse", "task": "reverse", "depends_on": ["uppercase"]},
])


class History:
    """Builds a history event by event, numbering them like a stream would."""

    def __init__(self, doc: dict[str, Any], run_input: Any = "World") -> None:
        self.definition = parse_definition(doc)
        self.events: list[Event] = []
        self.add(EventType.WORKFLOW_STARTED, data={
            "workflow": "w", "version": "1", "input": run_input,
            "definition": self.definition.to_json_dict()})

    def add(self, kind: EventType, step: str | None = None, attempt: int = 0,
            **data: Any) -> Event:
        payload = data.pop("data", data)
        event = Event(type=kind, run_id=RUN, step_id=step, attempt=attempt,
                      timestamp=T0 + timedelta(seconds=len(self.events)), data=payload,
                      seq=len(self.events) + 1)
        self.events.append(event)
        return event

    def run(self) -> RunState:
        state = fold(self.events)
        assert state is not None
        return state

    def decide(self) -> list:
        return self.decide_after(self.events[-1])

    def decide_after(self, event: Event) -> list:
        """What `advance` says when `event` (already in the history) reaches it: with the
        run's own definition, as the engine does (a planner's steps are in it)."""
        run = self.run()
        return advance(run.definition, run, event)

    def carry_out(self) -> list:
        """Record what advance decided, as the engine would."""
        actions = self.decide()
        for action in actions:
            if not isinstance(action, RecordedAction):
                continue  # these publish, they record nothing
            event = event_for(action, RUN, T0)
            self.add(event.type, event.step_id, event.attempt, data=event.data)
        return actions


def test_tutorial_chain_runs_in_order_with_outputs_passed_along() -> None:
    h = History(PIPELINE)
    assert h.carry_out() == [DispatchStep("greet", "greet", 1, "World")]
    outputs = {"greet": "Hello, World!", "uppercase": "HELLO, WORLD!", "reverse": "!DLROW ,OLLEH"}
    for step, nxt in (("greet", "uppercase"), ("uppercase", "reverse"), ("reverse", None)):
        h.add(EventType.STEP_STARTED, step, 1, delivery=1)
        assert h.decide() == []
        h.add(EventType.STEP_COMPLETED, step, 1, output=outputs[step])
        actions = h.carry_out()
        if nxt:
            assert actions == [DispatchStep(nxt, nxt, 1, outputs[step])]
    assert actions == [CompleteRun(output="!DLROW ,OLLEH")]
    run = h.run()
    assert run.status is RunStatus.COMPLETED
    assert {k: (v.status, v.output) for k, v in run.steps.items()} == {
        k: (StepStatus.COMPLETED, v) for k, v in outputs.items()}
    assert h.decide() == []  # it kept nothing beside history: nothing to clear


def test_a_run_that_kept_data_clears_it_when_it_ends_for_good() -> None:
    h = History(PIPELINE)
    h.carry_out()
    h.add(EventType.SIGNAL_SENT, name="go", value=1)
    assert h.run().keeps_data and h.decide() == []
    h.add(EventType.STEP_COMPLETED, "greet", 1, output="a")
    h.carry_out()
    h.add(EventType.STEP_COMPLETED, "uppercase", 1, output="b", kept_data=True)
    h.carry_out()
    h.add(EventType.STEP_COMPLETED, "reverse", 1, output="c")
    assert h.carry_out() == [CompleteRun(output="c"), ClearRunData()]
    assert h.decide() == [ClearRunData()]  # again, should its engine have died first
    h.add(EventType.SIGNAL_SENT, name="late", value=2)
    assert h.decide() == [] and h.run().status is RunStatus.COMPLETED


def test_a_signal_recorded_after_the_run_ended_still_has_its_data_cleared() -> None:
    """The API stores a signal, then records signal.sent; the handler may get the signal and
    the run end in between. The late signal.sent marks the run, and its data is cleared."""
    h = History(PIPELINE)
    h.carry_out()
    for step, output in (("greet", "a"), ("uppercase", "b"), ("reverse", "c")):
        h.add(EventType.STEP_COMPLETED, step, 1, output=output)
        actions = h.carry_out()
    assert actions == [CompleteRun(output="c")]  # nothing kept, so far as it knows
    h.add(EventType.SIGNAL_SENT, name="go", value=1)
    assert h.run().keeps_data and h.decide() == [ClearRunData()]
    h.add(EventType.SIGNAL_SENT, name="go", value=1)  # another: cleared already
    assert h.decide() == []


def test_a_signal_stored_before_the_end_but_folded_after_it_still_has_its_data_cleared(
        ) -> None:
    """The engine records the run's end while the signal.sent stored just before it is on
    its way to it: folded after the end, it still clears the run's data."""
    h = History(PIPELINE)
    h.carry_out()
    for step, output in (("greet", "a"), ("uppercase", "b"), ("reverse", "c")):
        h.add(EventType.STEP_COMPLETED, step, 1, output=output)
        h.carry_out()
    end = h.events.pop()
    signal = h.add(EventType.SIGNAL_SENT, name="go", value=1)  # stored first...
    end = h.add(end.type, data=end.data)  # ...then the end, recorded by the engine...
    h.events[-2:] = [end, signal]  # ...which folds its own end first
    assert signal.seq < end.seq
    run = h.run()
    assert run.status is RunStatus.COMPLETED and run.keeps_data
    assert h.decide_after(signal) == [ClearRunData()]


def test_a_quick_step_reported_by_its_outcome_alone_starts_when_the_outcome_says() -> None:
    h = History(PIPELINE)
    h.carry_out()
    began = T0 + timedelta(milliseconds=1500)
    done = h.add(EventType.STEP_COMPLETED, "greet", 1, output="Hello, World!", delivery=1,
                 worker="w1", started_at=began.isoformat())
    assert h.carry_out() == [DispatchStep("uppercase", "uppercase", 1, "Hello, World!")]
    greet = h.run().steps["greet"]
    assert (greet.status, greet.started_at, greet.completed_at) == (
        StepStatus.COMPLETED, began, done.timestamp)
    h.add(EventType.STEP_STARTED, "uppercase", 1, delivery=1)
    h.add(EventType.STEP_FAILED, "uppercase", 1, error="boom", retryable=True)
    assert attempt_starts(h.events, "greet") == {1: began}
    assert attempt_starts(h.events, "uppercase") == {1: h.events[-2].timestamp}


def test_parallel_roots_dispatch_together_and_join_gets_a_dict() -> None:
    h = History(definition([
        {"id": "a", "task": "t"}, {"id": "b", "task": "t"},
        {"id": "join", "task": "j", "depends_on": ["a", "b"]},
    ]), run_input={"n": 1})
    assert h.carry_out() == [DispatchStep("a", "t", 1, {"n": 1}),
                             DispatchStep("b", "t", 1, {"n": 1})]
    h.add(EventType.STEP_COMPLETED, "a", 1, output=1)
    assert h.carry_out() == []
    h.add(EventType.STEP_COMPLETED, "b", 1, output=2)
    assert h.carry_out() == [DispatchStep("join", "j", 1, {"a": 1, "b": 2})]


def test_retries_follow_the_policy_then_fail_the_run() -> None:
    retry = {"max_attempts": 2, "strategy": "exponential", "initial_delay": "1s",
             "max_delay": "30s", "multiplier": 3}
    h = History(definition([{"id": "a", "task": "t", "retry": retry}]))
    h.carry_out()
    h.add(EventType.STEP_FAILED, "a", 1, error="boom", retryable=True)
    assert h.carry_out() == [DispatchStep("a", "t", 2, "World", 1.0)]
    h.add(EventType.STEP_FAILED, "a", 2, error="boom", retryable=True)
    assert h.carry_out() == [DispatchStep("a", "t", 3, "World", 3.0)]
    h.add(EventType.STEP_FAILED, "a", 3, error="boom again", retryable=True)
    dead, fail = h.carry_out()
    assert dead == DeadLetter("a", "t", 3, "World", "boom again", None)
    assert fail == FailRun("a", "step 'a' failed (attempt 3 of 3): boom again")
    run = h.run()
    assert run.status is RunStatus.FAILED
    assert run.steps["a"].attempts == 3 and run.steps["a"].error == "boom again"


def test_non_retryable_failure_ends_the_run_at_once() -> None:
    h = History(definition([{"id": "a", "task": "t", "retry": {"max_attempts": 5}}]))
    h.carry_out()
    h.add(EventType.STEP_FAILED, "a", 1, error="bad input", retryable=False)
    assert h.carry_out()[1:] == [FailRun("a", "step 'a' failed (not retryable): bad input")]


def test_default_retry_applies_and_no_policy_means_first_failure_is_final() -> None:
    h = History(definition([{"id": "a", "task": "t"}, {"id": "b", "task": "t"}],
                           default_retry={"max_attempts": 1, "strategy": "fixed",
                                          "initial_delay": "5s"}))
    h.carry_out()
    h.add(EventType.STEP_FAILED, "a", 1, error="x")
    assert h.decide() == [DispatchStep("a", "t", 2, "World", 5.0)]
    bare = History(definition([{"id": "a", "task": "t"}]))
    bare.carry_out()
    bare.add(EventType.STEP_FAILED, "a", 1, error="x")
    assert [type(a) for a in bare.decide()] == [DeadLetter, FailRun]


def test_fold_ignores_duplicates_late_results_and_anything_after_the_end() -> None:
    h = History(definition([{"id": "a", "task": "t", "retry": {"max_attempts": 1}}]))
    h.carry_out()
    h.add(EventType.STEP_STARTED, "a", 1, delivery=1)
    h.add(EventType.STEP_FAILED, "a", 1, error="timed out after 1s")
    h.carry_out()  # attempt 2 queued
    before = h.run()
    late = h.add(EventType.STEP_COMPLETED, "a", 1, output="late")  # attempt 1 finished late
    assert apply(before, late) is before
    h.add(EventType.STEP_COMPLETED, "a", 2, output="ok")
    done = h.run()
    assert done.steps["a"].output == "ok"
    dup = h.add(EventType.STEP_COMPLETED, "a", 2, output="again")
    assert apply(done, dup) is done
    h.carry_out()
    finished = h.run()
    assert finished.status is RunStatus.COMPLETED
    for kind in (EventType.STEP_FAILED, EventType.WORKFLOW_FAILED, EventType.WORKFLOW_STARTED):
        assert apply(finished, h.add(kind, "a", 2)) is finished


def test_a_report_before_its_queueing_means_the_state_misses_events() -> None:
    h = History(PIPELINE)
    run = h.run()
    for kind in (EventType.STEP_STARTED, EventType.STEP_COMPLETED, EventType.STEP_FAILED):
        with pytest.raises(IllegalTransition):  # the engine then reads what it missed
            apply_checked(run, h.add(kind, "greet", 1))


def test_illegal_moves_name_the_run_step_and_status() -> None:
    h = History(PIPELINE)
    run = h.run()
    event = h.add(EventType.STEP_COMPLETED, "greet", 7, output="x")
    with pytest.raises(IllegalTransition, match=rf"step 'greet' of run {RUN}.*'pending'"):
        apply_checked(run, event)
    with pytest.raises(IllegalTransition):
        apply_checked(run, h.add(EventType.STEP_STARTED, "nope", 1))


def test_cancel_stops_everything_and_marks_work_in_flight() -> None:
    h = History(PIPELINE)
    h.carry_out()
    h.add(EventType.WORKFLOW_CANCELLED)
    run = h.run()
    assert run.status is RunStatus.CANCELLED
    assert run.steps["greet"].status is StepStatus.CANCELLED
    assert run.steps["reverse"].status is StepStatus.PENDING
    assert h.decide() == []


def test_replaying_any_prefix_twice_gives_the_same_state() -> None:
    h = History(PIPELINE)
    h.carry_out()
    h.add(EventType.STEP_COMPLETED, "greet", 1, output="g")
    h.carry_out()
    once = fold(h.events)
    assert fold(h.events, once) == once  # folding the same events again changes nothing


@pytest.mark.parametrize(("strategy", "delays"), [
    ("fixed", [2, 2, 2, 2]), ("linear", [2, 4, 6, 8]), ("exponential", [2, 6, 18, 20]),
])
def test_retry_delays(strategy: str, delays: list[float]) -> None:
    policy = RetryPolicy(max_attempts=4, strategy=strategy, initial_delay="2s",  # type: ignore[arg-type]
                         max_delay="20s", multiplier=3)
    assert [retry_delay_s(policy, n) for n in range(1, 5)] == delays
    assert total_attempts(policy) == 5 and total_attempts(None) == 1
    assert should_retry(policy, 4, True) and not should_retry(policy, 5, True)
    assert not should_retry(policy, 1, False)


def test_task_messages_carry_the_timeout_and_not_before() -> None:
    doc = definition([{"id": "a", "task": "t", "timeout": "1m30s", "retry": {"max_attempts": 3}}])
    defn = parse_definition(doc)
    task = task_for(DispatchStep("a", "t", 2, {"x": 1}, 4.0), defn, RUN, T0)
    assert (task.timeout_s, task.timeout, task.max_attempts) == (90.0, "1m30s", 4)
    assert task.not_before == T0 + timedelta(seconds=4)
    event = task_event(DispatchStep("a", "t", 2, {"x": 1}, 4.0), defn, RUN, T0)
    assert TaskMessage.from_event(Event.decode(event.encode())) == task


def test_events_round_trip_through_their_envelope() -> None:
    event = History(PIPELINE).events[0].model_copy(update={"seq": 0})
    assert Event.decode(event.encode()) == event
    with pytest.raises(ValueError):
        Event.decode(b'{"type": "workflow.started"}')


def _imports(path: pathlib.Path) -> set[str]:
    """Every module a source file imports (as written: dotted names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _source_of(module: str) -> pathlib.Path | None:
    """The file of one of dagnats' own modules, or None for anything else."""
    path = pathlib.Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if module.startswith("dagnats") and candidate.is_file():
            return candidate
    return None


def test_the_pure_core_imports_no_io_directly_or_not() -> None:
    forbidden = {"asyncio", "nats", "socket", "subprocess", "os", "threading", "time"}
    todo = sorted(pathlib.Path("dagnats/dag").rglob("*.py"))
    seen: dict[pathlib.Path, str] = {path: "dagnats/dag" for path in todo}
    while todo:
        path = todo.pop()
        for name in _imports(path):
            assert name.split(".")[0] not in forbidden, \
                f"{path} (reached from {seen[path]}) imports {name}"
            source = _source_of(name)
            if source is not None and source not in seen:
                seen[source] = str(path)
                todo.append(source)
    assert pathlib.Path("dagnats/limits.py") in seen  # it did follow dagnats' own imports


def test_a_queued_event_is_the_task_and_asks_for_nothing_more() -> None:
    h = History(definition([{"id": "a", "task": "t", "timeout": "30s",
                             "retry": {"max_attempts": 2, "initial_delay": "4s"}}]))
    [dispatch] = h.decide()
    assert isinstance(dispatch, DispatchStep)
    recorded = task_event(dispatch, h.definition, RUN, T0)
    assert task_of(recorded) == "t"
    task = TaskMessage.from_event(recorded)
    assert (task.run_id, task.step_id, task.task, task.attempt, task.max_attempts,
            task.input, task.timeout_s, task.timeout, task.not_before) == (
        RUN, "a", "t", 1, 3, "World", 30.0, "30s", None)
    h.add(recorded.type, recorded.step_id, recorded.attempt, data=recorded.data)
    assert h.decide() == []  # another engine's queued event: nothing to republish
    h.add(EventType.STEP_FAILED, "a", 1, error="x")
    [retry] = h.decide()
    assert isinstance(retry, DispatchStep)
    recorded = task_event(retry, h.definition, RUN, T0)
    assert recorded.data["input"] == "World" and recorded.data["delay_s"] == 4.0
    assert TaskMessage.from_event(recorded).not_before == T0 + timedelta(seconds=4)
    h.add(recorded.type, recorded.step_id, recorded.attempt, data=recorded.data)
    assert h.decide() == []


def test_only_a_queued_event_of_a_task_is_a_task() -> None:
    started = Event(type=EventType.STEP_STARTED, run_id=RUN, step_id="a", attempt=1,
                    timestamp=T0, data={"task": "t"})
    assert task_of(started) is None
    with pytest.raises(ValueError, match="not a task"):
        TaskMessage.from_event(started)
    bare = started.model_copy(update={"type": EventType.STEP_QUEUED})
    assert task_of(bare) == "t"
    with pytest.raises(ValueError, match="without 'workflow'"):
        TaskMessage.from_event(bare)


def test_a_completed_run_whose_state_missed_a_report_gets_it_filled_in() -> None:
    h = History(PIPELINE)
    h.carry_out()
    h.add(EventType.STEP_STARTED, "greet", 1)
    late = Event(type=EventType.STEP_COMPLETED, run_id=RUN, step_id="greet", attempt=1,
                 timestamp=T0, data={"output": "hi"}, seq=99)
    for step in ("uppercase", "reverse"):  # recorded by an engine whose state had greet done
        h.add(EventType.STEP_QUEUED, step, 1, task=step)
        h.add(EventType.STEP_COMPLETED, step, 1, output=step)
    h.add(EventType.WORKFLOW_COMPLETED, output="reverse")
    holed = h.run()
    assert holed.steps["greet"].status is StepStatus.RUNNING
    late = late.model_copy(update={"seq": holed.ended_seq - 1})  # it happened before the end
    mended = apply(holed, late)
    assert mended is not None and mended.steps["greet"].output == "hi"
    assert mended.status is RunStatus.COMPLETED
    assert advance(mended.definition, mended, late) == []
    assert apply(mended, late) is mended  # and only once


def test_a_failed_run_mends_reports_from_before_its_end_but_not_after() -> None:
    h = History(definition([{"id": "a", "task": "t"}, {"id": "b", "task": "t"}]))
    h.carry_out()
    h.add(EventType.STEP_STARTED, "a", 1)
    before_end = Event(type=EventType.STEP_COMPLETED, run_id=RUN, step_id="a", attempt=1,
                       timestamp=T0, data={"output": 1}, seq=len(h.events) + 1)
    h.add(EventType.STEP_FAILED, "b", 1, error="x", retryable=False)
    h.carry_out()  # the run fails; a is still running in this state, so it is cancelled
    failed = h.run()
    assert failed.status is RunStatus.FAILED
    assert failed.steps["a"].status is StepStatus.CANCELLED
    late = before_end.model_copy(update={"seq": failed.ended_seq + 5})
    assert apply(failed, late) is failed  # after the end: work cancelled in flight
    early = before_end.model_copy(update={"seq": failed.ended_seq - 1})
    mended = apply(failed, early)
    assert mended is not None and mended.steps["a"].status is StepStatus.COMPLETED
    assert mended.status is RunStatus.FAILED and advance(mended.definition, mended, early) == []
