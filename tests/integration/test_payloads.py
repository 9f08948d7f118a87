"""Payloads of any size (issue 10): values over the inline threshold travel out of line
(the claim check), the snapshot stays small, and over the limit nothing is retried or
started. One stack (API, engine, worker) on the module's nats-server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from dagnats import PayloadTooLarge, WorkflowNotFound, jetstream, names, worker
from dagnats.dag.events import Event, EventType
from dagnats.dag.payload import MB, encode, refs_of
from dagnats.limits import PAYLOAD_INLINE_MAX_BYTES, PAYLOAD_MAX_BYTES
from dagnats.store import history, payloads
from dagnats.worker import _payloads as worker_payloads
from tests.integration.failures_harness import Behaviour, Stack, one_error_line

#: The stored snapshot of a 3-step run stays under this, whatever its payloads.
SNAPSHOT_BOUND = 32 * 1024
DEADLINE_S = 120.0

PIPE = {
    "name": "payload-pipe", "version": "1",
    "steps": [
        {"id": "a", "task": "produce"},
        {"id": "b", "task": "measure", "depends_on": ["a"]},
        {"id": "c", "task": "measure", "depends_on": ["a"],
         "skip_if": {"step_id": "a", "field": "skip", "op": "==", "value": True}},
    ],
}


WAIT = {
    "name": "payload-wait", "version": "1",
    "steps": [
        {"id": "w", "type": "wait_for_event",
         "config": {"event": "doc.ready",
                    "match": {"left": "id", "op": "eq", "right": "input.id"}}},
        {"id": "s", "task": "size", "depends_on": ["w"]},
    ],
}
LOUD = {"name": "payload-loud", "version": "1", "steps": [{"id": "s", "task": "shout"}]}
KEYED = {"name": "payload-keyed", "version": "1", "idempotency_key": "id",
         "steps": [{"id": "s", "task": "size"}]}


def make_payload_worker(url: str, behaviour: Behaviour) -> worker.Worker:
    """produce: an output of input["out"] bytes (and the input's size); measure: sizes."""
    w = worker.Worker(url, name="payloads-worker", lease=10)

    @w.task("produce")
    def produce(ctx: worker.TaskContext, value: dict[str, Any]) -> dict[str, Any]:
        behaviour.record(ctx)
        return {"got": len(value.get("blob", "")), "out": "y" * value["out"],
                "skip": value.get("skip", False)}

    @w.task("measure")
    def measure(ctx: worker.TaskContext, value: dict[str, Any]) -> dict[str, Any]:
        behaviour.record(ctx)
        return {"got": value["got"], "out_len": len(value["out"])}

    @w.task("shout")
    def shout(ctx: worker.TaskContext, value: Any) -> None:
        behaviour.record(ctx)
        raise ValueError("e" * 2 * MB)

    @w.task("size")
    def size(ctx: worker.TaskContext, value: Any) -> int:
        behaviour.record(ctx)
        return len(encode(value))

    return w


@pytest.fixture(scope="module")
def behaviour() -> Behaviour:
    return Behaviour()


@pytest.fixture(scope="module")
def stack(nats_server: Any, behaviour: Behaviour) -> Iterator[Stack]:
    running = Stack(nats_server.url, make_payload_worker(nats_server.url, behaviour))
    for doc in (PIPE, WAIT, KEYED, LOUD):
        running.client.register_workflow(doc)
    try:
        yield running
    finally:
        running.close()


def stored_snapshot(stack: Stack, run_id: str) -> bytes:
    async def read() -> bytes:
        kv = await jetstream.runs_bucket(stack.js)
        entry = await kv.get(run_id)
        return bytes(entry.value or b"")
    return stack.run(read())


def test_a_5mb_input_and_a_5mb_output_complete_with_real_values(stack: Stack) -> None:
    size = 5 * MB
    run_id = stack.client.start("payload-pipe", {"blob": "x" * size, "out": size})
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.status == "completed", run.error
    assert len(run.input["blob"]) == size
    assert len(run.steps["a"].output["out"]) == size
    assert run.steps["b"].output == {"got": size, "out_len": size}
    assert run.output == {"b": {"got": size, "out_len": size},
                          "c": {"got": size, "out_len": size}}
    # the snapshot and every history event carry references, not the data
    snapshot = stored_snapshot(stack, run_id)
    assert len(snapshot) < SNAPSHOT_BOUND, len(snapshot)
    raw = stack.history(run_id)
    assert max(len(event.encode()) for event in raw) < SNAPSHOT_BOUND
    started = next(e for e in raw if e.type is EventType.WORKFLOW_STARTED)
    assert refs_of(started.data, "input")[""].size == len(encode(run.input))
    # run list (from the snapshots) and the CLI show it completed, with the real values
    listed = json.loads(stack.dagnats("run", "list", "--json").output)
    assert [r["status"] for r in listed if r["run_id"] == run_id] == ["completed"]
    status = json.loads(stack.dagnats("run", "status", run_id, "--json").output)
    assert len(status["steps"]["a"]["output"]["out"]) == size
    assert "output_refs" not in status["steps"]["a"]
    events = stack.client.events(run_id)
    done = next(e for e in events if e.type is EventType.STEP_COMPLETED and e.step_id == "a")
    assert len(done.data["output"]["out"]) == size and "output_refs" not in done.data
    # every read above was direct gets: no consumer on the payloads stream
    info = stack.run(stack.js.stream_info(names.payloads_stream()))
    assert info.state.consumer_count == 0


def test_skip_if_reads_inside_an_out_of_line_output(stack: Stack) -> None:
    run_id = stack.client.start("payload-pipe", {"out": 2 * PAYLOAD_INLINE_MAX_BYTES,
                                                 "skip": True})
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.status == "completed", run.error
    assert run.steps["c"].status == "skipped"
    assert run.steps["b"].status == "completed"


def test_an_output_over_the_limit_fails_the_step_once(stack: Stack,
                                                      behaviour: Behaviour) -> None:
    run_id = stack.client.start("payload-pipe", {"out": 40 * MB})
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.status == "failed"
    step = run.steps["a"]
    assert step.attempts == 1
    assert 'output of step "a" is 40.0 MB; the limit is 32 MB' in (step.error or "")
    assert behaviour.calls_of(run_id) == [("produce", 1)]


def test_a_start_over_the_limit_starts_nothing(stack: Stack) -> None:
    before = stack.client.list_runs(limit=10_000)
    objects_before = stack.run(all_objects(stack))
    too_big = {"blob": "x" * (PAYLOAD_MAX_BYTES + 1), "out": 1}
    with pytest.raises(PayloadTooLarge, match=r"the input of payload-pipe is 32\.0 MB; "
                                              r"the limit is 32 MB"):
        stack.client.start("payload-pipe", too_big)
    line = one_error_line(stack.dagnats("run", "start", "payload-pipe", json.dumps(too_big)),
                          2)
    assert "the limit is 32 MB" in line
    assert len(stack.client.list_runs(limit=10_000)) == len(before)
    assert stack.run(all_objects(stack)) == objects_before


async def all_objects(stack: Stack) -> list[str]:
    try:
        return sorted(info.name for info in await payloads.store(stack.js).list(
            ignore_deletes=True))
    except Exception:  # nats-py raises NotFoundError for an empty store
        return []


def test_a_redelivered_outcome_with_a_payload_is_harmless(stack: Stack) -> None:
    run_id = stack.client.start("payload-pipe", {"out": 3 * PAYLOAD_INLINE_MAX_BYTES})
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.status == "completed", run.error
    completed = next(e for e in stack.history(run_id)
                     if e.type is EventType.STEP_COMPLETED and e.step_id == "a")
    # the worker reporting the same outcome again (a redelivery): the same object, no
    # second upload, and the run as it was
    again = Event(type=EventType.STEP_COMPLETED, run_id=run_id, step_id="a",
                  attempt=completed.attempt, timestamp=datetime.now(UTC),
                  data={"output": run.steps["a"].output})
    objects = stack.run(all_objects(stack))
    info_before = stack.run(object_info(stack, run_id, completed))
    published, kind, body = stack.run(worker_payloads.as_published(stack.js, again,
                                                                   "completed"))
    assert kind == "completed"
    assert refs_of(published.data, "output") == refs_of(completed.data, "output")
    assert stack.run(object_info(stack, run_id, completed)) == info_before
    assert stack.run(all_objects(stack)) == objects
    stack.run(history.append(stack.js, published, "a-redelivery-after-the-dedup-window",
                             body=body))
    stack.until(lambda: stack.client.get_run(run_id).status == "completed", "still done")
    assert stack.client.get_run(run_id).steps["a"].output == run.steps["a"].output


async def object_info(stack: Stack, run_id: str, completed: Event) -> str | None:
    ref = refs_of(completed.data, "output")[""]
    info = await payloads.store(stack.js).get_info(names.payload_object(run_id, ref.digest))
    return info.nuid


def test_a_rerun_keeps_an_out_of_line_input_of_its_own(stack: Stack) -> None:
    first = stack.client.start("payload-pipe", {"blob": "z" * 100_000, "out": 10})
    assert stack.client.wait(first, timeout=DEADLINE_S).status == "completed"
    second = stack.client.rerun(first)
    run = stack.client.wait(second, timeout=DEADLINE_S)
    assert run.status == "completed", run.error
    assert run.steps["b"].output["got"] == 100_000
    assert stack.run(payloads.run_objects(stack.js, second))
    third = stack.client.rerun(first, {"blob": "n" * 2 * MB, "out": 10})  # over 1 MB
    rerun = stack.client.wait(third, timeout=DEADLINE_S)
    assert rerun.status == "completed", rerun.error
    assert rerun.steps["b"].output["got"] == 2 * MB


def test_delete_run_removes_exactly_that_runs_payloads(stack: Stack) -> None:
    keep = stack.client.start("payload-pipe", {"blob": "k" * 50_000, "out": 10})
    gone = stack.client.start("payload-pipe", {"blob": "g" * 50_000, "out": 50_000})
    for run_id in (keep, gone):
        assert stack.client.wait(run_id, timeout=DEADLINE_S).status == "completed"
    assert len(stack.run(payloads.run_objects(stack.js, gone))) == 2
    assert stack.run(payloads.delete_run(stack.js, gone)) == 2
    assert stack.run(payloads.run_objects(stack.js, gone)) == []
    assert len(stack.run(payloads.run_objects(stack.js, keep))) == 1
    assert stack.client.get_run(keep).input["blob"] == "k" * 50_000


def test_puts_are_idempotent(stack: Stack) -> None:
    async def twice() -> tuple[Any, Any, list[str]]:
        data = encode({"v": "q" * 10_000})
        first = await payloads.put(stack.js, "r" * 32, data)
        second = await payloads.put(stack.js, "r" * 32, data)
        return first, second, await payloads.run_objects(stack.js, "r" * 32)
    first, second, objects = stack.run(twice())
    assert first == second
    assert objects == [names.payload_object("r" * 32, first.digest)]


def test_a_wait_matched_on_a_large_input_completes_with_a_large_event(stack: Stack) -> None:
    run_id = stack.client.start("payload-wait", {"id": "doc-1", "blob": "x" * 100_000})
    body = {"id": "doc-1", "text": "t" * 200_000}
    stack.client.publish_event("doc.ready", body)
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.status == "completed", run.error
    assert run.steps["w"].output == body
    assert run.output == len(encode(body))
    completed = next(e for e in stack.history(run_id)
                     if e.type is EventType.STEP_COMPLETED and e.step_id == "w")
    assert refs_of(completed.data, "output")[""].size == len(encode(body))


def test_an_idempotent_start_finds_its_key_in_a_large_input(stack: Stack) -> None:
    doc = {"id": "order-9", "blob": "x" * 50_000}
    first = stack.client.start("payload-keyed", doc)
    assert stack.client.start("payload-keyed", doc) == first
    assert stack.client.wait(first, timeout=DEADLINE_S).output == len(encode(doc))


def test_a_large_input_sent_inline_to_the_api_goes_out_of_line(stack: Stack) -> None:
    """A raw request (not the client) with a 900 KB input: the API puts it out of line, so
    the snapshot stays small and `run list` shows the run completed."""
    doc = {"blob": "x" * 900_000, "out": 10}

    async def raw_start() -> str:
        body = json.dumps({"workflow": "payload-pipe", "input": doc}).encode()
        reply = await stack.js._nc.request(names.api_subject("run.start"), body, timeout=10)
        return str(json.loads(reply.data)["result"]["run_id"])
    run_id = stack.run(raw_start())
    run = stack.client.wait(run_id, timeout=DEADLINE_S)
    assert run.status == "completed", run.error
    assert run.steps["b"].output["got"] == 900_000
    assert len(stored_snapshot(stack, run_id)) < SNAPSHOT_BOUND
    listed = stack.client.list_runs(limit=10_000)
    assert [r.status for r in listed if r.run_id == run_id] == ["completed"]


def test_the_cli_starts_watches_and_shows_a_large_run(stack: Stack) -> None:
    doc = {"blob": "x" * 300_000, "out": 300_000}
    started = stack.dagnats("run", "start", "payload-pipe", json.dumps(doc), "--watch")
    assert started.exit_code == 0, started.output
    run_id = started.output.split()[1]
    assert f"Run {run_id} completed" in started.output
    status = stack.dagnats("run", "status", run_id)
    assert status.exit_code == 0 and len(status.output) < 4096, status.output
    assert "bytes; --json shows it all" in status.output
    events = stack.dagnats("run", "events", run_id)
    assert events.exit_code == 0 and len(events.output) < 16_384


def test_a_refused_or_repeated_large_start_leaves_no_payload_behind(stack: Stack) -> None:
    doc = {"id": "order-10", "blob": "w" * 60_000}
    objects = stack.run(all_objects(stack))
    with pytest.raises(WorkflowNotFound):
        stack.client.start("no-such-workflow", doc)
    assert stack.run(all_objects(stack)) == objects
    first = stack.client.start("payload-keyed", doc)
    after_first = stack.run(all_objects(stack))
    assert stack.client.start("payload-keyed", doc) == first
    assert stack.run(all_objects(stack)) == after_first


def test_a_5mb_input_passed_as_a_file_completes(stack: Stack, tmp_path: Any) -> None:
    path = tmp_path / "input.json"
    path.write_text(json.dumps({"blob": "f" * (5 * MB), "out": 10}))
    started = stack.dagnats("run", "start", "payload-pipe", f"@{path}", "--watch")
    assert started.exit_code == 0, started.output
    run_id = started.output.split()[1]
    run = stack.client.get_run(run_id)
    assert run.status == "completed" and run.steps["b"].output["got"] == 5 * MB
    listed = json.loads(stack.dagnats("run", "list", "--json").output)
    assert [r["status"] for r in listed if r["run_id"] == run_id] == ["completed"]
