"""Dead letters through the CLI against a real engine and worker: list, replay, discard.

A replay revives the run: it goes back to running, the failed step runs again with a fresh
retry budget, and the run completes; the entry is gone, and a second replay is an error,
never a second resume.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from dagnats import names
from dagnats.dag.events import EventType
from dagnats.dag.state import RunStatus
from dagnats.store import dead_letters
from tests.integration.failures_harness import (
    FAST_RETRY,
    Behaviour,
    Stack,
    one_error_line,
    steps_started,
)

pytestmark = pytest.mark.timeout(90)
E = EventType


def chain(name: str) -> dict[str, Any]:
    """a (echo) -> b (flaky, one retry) -> c (echo)."""
    return {"name": name, "version": "1", "steps": [
        {"id": "a", "task": "echo"},
        {"id": "b", "task": "flaky", "depends_on": ["a"], "retry": FAST_RETRY},
        {"id": "c", "task": "echo", "depends_on": ["b"]}]}


def fail_a_run(stack: Stack, behaviour: Behaviour, name: str) -> str:
    """Register `name`, break its flaky step and run it to failure; return the run id."""
    stack.client.register_workflow(chain(name))
    behaviour.broken.add(name)
    result = stack.dagnats("run", "start", name, '"in"', "--watch")
    assert result.exit_code == 1, result.output
    run_id = result.stdout.splitlines()[0].split()[1]
    assert result.stdout.splitlines()[-1] == (
        f"Run {run_id} failed: step 'b' failed (attempt 2 of 2): ConnectionError: flaky network")
    return run_id


def test_a_replayed_dead_letter_revives_the_run_which_completes(
        stack: Stack, behaviour: Behaviour) -> None:
    run_id = fail_a_run(stack, behaviour, "dlq-revive")
    [entry] = json.loads(stack.dagnats("dlq", "list", "--run", run_id, "--json").stdout)
    assert entry == {**entry, "run_id": run_id, "step_id": "b", "task": "flaky",
                     "attempts": 2, "error": "ConnectionError: flaky network"}
    assert set(entry) == {"seq", "kind", "run_id", "step_id", "task", "error", "attempts",
                          "timestamp", "source", "source_seq"}
    assert (entry["kind"], entry["source"], entry["source_seq"]) == ("step", None, None)
    table = stack.dagnats("dlq", "list").stdout.splitlines()
    assert table[0].split() == ["SEQ", "RUN", "ID", "STEP", "TASK", "ATTEMPTS", "FAILED", "AT",
                                "ERROR"]
    assert any(line.startswith(f"{entry['seq']} ") and run_id in line for line in table)

    behaviour.broken.discard("dlq-revive")  # the bug is fixed
    replayed = stack.dagnats("dlq", "replay", str(entry["seq"]))
    assert replayed.stdout == f"Replayed dead letter {entry['seq']}: run {run_id} resumed\n"
    run = stack.client.wait(run_id, timeout=20)
    assert run.status is RunStatus.COMPLETED and run.output == "in-ok-fixed-ok"

    events = stack.history(run_id)
    [resumed] = [e for e in events if e.type is E.WORKFLOW_RESUMED]
    assert resumed.data == {"generation": 1, "reason": "dlq-replay", "dlq_seq": entry["seq"]}
    assert len(steps_started(events, "a")) == 1  # completed before: not executed again
    assert [e.attempt for e in steps_started(events, "b")] == [1, 2, 3]
    assert stack.client.dead_letters(run_id) == []

    again = stack.dagnats("dlq", "replay", str(entry["seq"]))
    assert f"no dead letter {entry['seq']}" in one_error_line(again, 2)
    assert len(stack.history(run_id)) == len(events)  # never a second resume


def test_a_replay_gets_a_fresh_retry_budget(stack: Stack, behaviour: Behaviour) -> None:
    run_id = fail_a_run(stack, behaviour, "dlq-budget")
    [first] = stack.client.dead_letters(run_id)
    replay = stack.client.replay(first.seq)  # still broken: two more attempts, then fails
    assert (replay.run_id, replay.replayed, replay.generation) == (run_id, [first.seq], 1)
    failed = stack.until_event(run_id, E.WORKFLOW_FAILED, count=2)
    assert failed[-1].data["error"] == ("step 'b' failed (attempt 2 of 2): "
                                        "ConnectionError: flaky network")
    [second] = stack.client.dead_letters(run_id)
    assert second.seq != first.seq and second.attempts == 4

    behaviour.broken.discard("dlq-budget")
    replayed = stack.dagnats("dlq", "replay", "--run", run_id[:10], "--json")
    assert json.loads(replayed.stdout) == {"run_id": run_id, "replayed": [second.seq],
                                           "generation": 2}
    assert stack.client.wait(run_id, timeout=20).status is RunStatus.COMPLETED
    assert [e.attempt for e in steps_started(stack.history(run_id), "b")] == [1, 2, 3, 4, 5]


def plant_dead_letter(stack: Stack, run_id: str, step_id: str = "a") -> int:
    """A dead letter for `run_id`, as the engine writes one."""
    entry = dead_letters.DeadLetterEntry(
        run_id=run_id, step_id=step_id, task="echo", attempts=1, input="x", error="boom",
        timestamp=datetime.now(UTC))
    return stack.run(dead_letters.publish(stack.js, entry, f"planted:{run_id}:{step_id}"))


def test_replaying_an_entry_of_a_live_or_completed_run_is_refused_and_kept(
        stack: Stack) -> None:
    stack.client.register_workflow({"name": "dlq-alive", "version": "1", "steps": [
        {"id": "a", "task": "gate"}]})
    live = stack.client.start("dlq-alive")
    stack.until_event(live, E.STEP_STARTED)
    seq = plant_dead_letter(stack, live)
    line = one_error_line(stack.dagnats("dlq", "replay", str(seq)), 1)
    assert line == (f"error: cannot replay dead letter {seq}: run {live} is running, not failed "
                    f"or cancelled: nothing to replay; wait for it to end (`dagnats run status "
                    f"{live}`); it is kept")
    assert [e.seq for e in stack.client.dead_letters(live)] == [seq]
    stack.client.cancel(live)

    stack.client.register_workflow({"name": "dlq-done", "version": "1", "steps": [
        {"id": "a", "task": "echo"}]})
    done = stack.client.start("dlq-done", "x")
    assert stack.client.wait(done, timeout=20).status is RunStatus.COMPLETED
    seq_done = plant_dead_letter(stack, done)
    line = one_error_line(stack.dagnats("dlq", "replay", "--run", done), 1)
    assert f"run {done} completed: nothing to replay" in line and "they are kept" in line
    assert stack.dagnats("dlq", "discard", str(seq_done)).stdout == (
        f"Discarded dead letter {seq_done}\n")
    assert stack.client.dead_letters(done) == []
    assert f"no dead letter {seq_done}" in one_error_line(
        stack.dagnats("dlq", "discard", str(seq_done)), 2)


@pytest.mark.parametrize(("args", "code", "expected"), [
    (("dlq", "replay"), 2, "give a dead letter's SEQ or --run ID, not both"),
    (("dlq", "replay", "3", "--run", "abcdefgh"), 2, "give a dead letter's SEQ or --run ID"),
    (("dlq", "replay", "three"), 2, "'three' is not a dead letter's SEQ"),
    (("dlq", "discard", "0"), 2, "'0' is not a dead letter's SEQ"),
    (("dlq", "replay", "999999"), 2, "no dead letter 999999"),
    (("dlq", "list", "--run", "0123456789abcdef0123456789abcdef"), 2, "no run with id"),
])
def test_bad_dlq_arguments_are_one_line(stack: Stack, args: tuple[str, ...], code: int,
                                        expected: str) -> None:
    assert expected in one_error_line(stack.dagnats(*args), code)


def test_poison_messages_are_listed_with_their_cause_and_can_be_discarded(stack: Stack
                                                                           ) -> None:
    run_id = "0123456789abcdef0123456789abcdef"
    on_task = names.history_task_subject(run_id, "x")
    stack.run(dead_letters.publish_poison(stack.js, names.HISTORY_PREFIX, 424242, on_task,
                                          b"\xff", "junk"))
    huge = b"\x00" * (2 * 1024 * 1024)  # larger than a NATS message: its copy is cut short
    stack.run(dead_letters.publish_poison(stack.js, names.HISTORY_PREFIX, 434343,
                                          names.history_subject(run_id), huge, "not an event"))
    poison = stack.run(stack.js.get_msg(names.DEAD_STREAM,
                                        subject=names.poison_subject(names.HISTORY_PREFIX, 424242)))
    listed = {e.seq: e for e in stack.client.dead_letters()}
    entry = listed[poison.seq]
    assert (entry.kind, entry.task, entry.run_id, entry.step_id) == ("poison", "x", run_id, None)
    assert entry.error == f"unreadable history message (seq 424242 on {on_task}): junk"
    [on_history] = [e for e in listed.values() if e.source_seq == 434343]
    assert on_history.run_id == run_id and "not an event" in on_history.error
    kept = json.loads(stack.run(stack.js.get_msg(names.DEAD_STREAM, seq=on_history.seq)).data)
    assert kept["raw_truncated"] is True and kept["size"] == len(huge)
    table = stack.dagnats("dlq", "list").stdout
    assert f"unreadable history message (seq 424242 on {on_task}): junk" in table
    assert "unreadable message, not a failed step" in one_error_line(
        stack.dagnats("dlq", "replay", str(poison.seq)), 2)
    for seq in (poison.seq, on_history.seq):
        assert stack.dagnats("dlq", "discard", str(seq)).exit_code == 0
    assert {poison.seq, on_history.seq}.isdisjoint(e.seq for e in stack.client.dead_letters())
