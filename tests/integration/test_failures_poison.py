"""Poison messages: garbage on a history or task subject is dead-lettered raw, and the engine
and the worker go on with everything else."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from nats.js.errors import NotFoundError

from dagnats import names
from dagnats.dag.state import RunStatus
from tests.integration.failures_harness import Behaviour, Stack, make_worker

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def stack(nats_server: Any) -> Iterator[Stack]:
    running = Stack(nats_server.url, make_worker(nats_server.url, Behaviour()))
    try:
        yield running
    finally:
        running.close()


def poison(stack: Stack, source: str, seq: int) -> dict[str, Any] | None:
    """The raw dead letter of message `seq` of `source`, once it is there."""
    try:
        msg = stack.run(stack.js.get_msg(names.DEAD_STREAM,
                                         subject=names.poison_subject(source, seq)))
    except NotFoundError:
        return None
    return json.loads(msg.data)


def test_garbage_is_dead_lettered_raw_and_runs_go_on(stack: Stack) -> None:
    garbage = b"\x00not json at all"
    history_subject = names.history_subject(uuid.uuid4().hex)
    on_history = stack.run(stack.js.publish(history_subject, garbage))
    task_subject = names.history_task_subject(uuid.uuid4().hex, "echo")
    on_task = stack.run(stack.js.publish(task_subject, b'{"v": 1, "what": "no task"}'))

    kept = stack.until(lambda: poison(stack, names.HISTORY_PREFIX, on_history.seq),
                       "history poison")
    assert (kept["subject"], base64.b64decode(kept["raw"])) == (history_subject, garbage)
    kept = stack.until(lambda: poison(stack, names.HISTORY_PREFIX, on_task.seq), "task poison")
    assert kept["subject"] == task_subject and kept["reason"].startswith("not a dagnats task")
    assert json.loads(base64.b64decode(kept["raw"])) == {"v": 1, "what": "no task"}

    stack.client.register_workflow({"name": "after-poison", "version": "1", "steps": [
        {"id": "a", "task": "echo"}, {"id": "b", "task": "echo", "depends_on": ["a"]}]})
    run_id = stack.client.start("after-poison", "x")
    assert stack.client.wait(run_id, timeout=20).status is RunStatus.COMPLETED
    info = stack.run(stack.js.consumer_info(names.HISTORY_STREAM, names.task_consumer("echo")))
    assert info.num_ack_pending == 0  # the garbage was terminated, not left to redeliver
    listed = stack.client.dead_letters()  # listed with their cause, beside failed steps
    assert {(e.kind, e.source, e.source_seq) for e in listed} == {
        ("poison", names.HISTORY_PREFIX, on_history.seq),
        ("poison", names.HISTORY_PREFIX, on_task.seq)}
    assert all(e.error.startswith("unreadable ") for e in listed)


def test_deeply_nested_garbage_is_poison_not_an_endless_retry(stack: Stack) -> None:
    deep = b"[" * 50_000 + b"]" * 50_000
    on_history = stack.run(stack.js.publish(names.history_subject(uuid.uuid4().hex), deep))
    on_task = stack.run(stack.js.publish(names.history_task_subject(uuid.uuid4().hex, "echo"),
                                         deep))
    on_timer = stack.run(stack.js.publish(names.timer_subject("r", "t"), deep))
    for source, ack in ((names.HISTORY_PREFIX, on_history), (names.HISTORY_PREFIX, on_task),
                        (names.TIMER_PREFIX, on_timer)):
        kept = stack.until(lambda s=source, a=ack: poison(stack, s, a.seq), f"{source} poison")
        assert "nested too deeply" in kept["reason"] or "recursion" in kept["reason"]
