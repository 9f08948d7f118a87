"""`run list` and `run status` agree, always: a mixed load of runs (completed, failed and
dead-lettered, recovered, cancelled, retried, waiting, with inputs of some size), and for
every run the listing says what the run's own status says, step by step.

Written against the client API only (`list_runs`, `get_run`), so it holds whatever serves
the listing (snapshots today, an index later)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dagnats import names
from dagnats.client import Run
from dagnats.dag.state import RunStatus
from tests.integration.failures_harness import FAST_RETRY, Behaviour, Stack

pytestmark = pytest.mark.timeout(180)

WORKFLOWS: dict[str, list[dict[str, Any]]] = {
    "mix-ok": [{"id": "a", "task": "echo"}, {"id": "b", "task": "echo", "depends_on": ["a"]}],
    "mix-broken": [{"id": "a", "task": "echo"},
                   {"id": "b", "task": "flaky", "depends_on": ["a"], "retry": FAST_RETRY}],
    "mix-recover": [{"id": "a", "task": "flaky", "retry": FAST_RETRY, "on_failure": "h"},
                    {"id": "b", "task": "echo", "depends_on": ["a"]},
                    {"id": "h", "task": "echo"}],
    "mix-cancel": [{"id": "a", "task": "gate"}],
    "mix-waiting": [{"id": "a", "task": "echo"},
                    {"id": "ok", "type": "approval", "depends_on": ["a"]}],
}


def disagreements(stack: Stack, run_ids: list[str]) -> list[str]:
    """Every run whose listing differs from its status (a list row is a summary: the run's
    status, workflow, version and when it was created)."""
    listed = {run.run_id: run for name in WORKFLOWS
              for run in stack.client.list_runs(name, limit=1000)}
    found = []
    for run_id in run_ids:
        shown = stack.client.get_run(run_id)
        entry = listed.get(run_id)
        if entry is None or view(entry) != view(shown):
            found.append(f"{run_id}: list {view(entry) if entry else 'missing'}, "
                         f"status {view(shown)}")
    return found


def view(run: Run) -> tuple[Any, ...]:
    return (run.status, run.workflow, run.version, run.created_at)


def test_run_list_and_run_status_agree_for_every_run_of_a_mixed_load(
        stack: Stack, behaviour: Behaviour) -> None:
    client = stack.client
    for name, steps in WORKFLOWS.items():
        client.register_workflow({"name": name, "version": "1", "steps": steps})
    behaviour.broken.update({"mix-broken", "mix-recover"})
    runs: dict[str, list[str]] = {name: [] for name in WORKFLOWS}
    sized = {"blob": "x" * 30_000}  # inputs of some size, passed from step to step
    for n in range(8):
        for name in WORKFLOWS:
            runs[name].append(client.start(name, sized if n % 4 == 0 else {"n": n}))
    for run_id in runs["mix-cancel"]:
        stack.until(lambda r=run_id: behaviour.calls_of(r), f"gate of {run_id} started")
        client.cancel(run_id)
    ends = {"mix-ok": RunStatus.COMPLETED, "mix-broken": RunStatus.FAILED,
            "mix-recover": RunStatus.COMPLETED, "mix-cancel": RunStatus.CANCELLED}
    for name, status in ends.items():
        for run_id in runs[name]:
            assert client.wait(run_id, timeout=60).status is status, (name, run_id)
    behaviour.broken.discard("mix-broken")
    retried = runs["mix-broken"][:4]
    for run_id in retried:
        client.retry(run_id)
    for run_id in retried:
        assert client.wait(run_id, timeout=60).status is RunStatus.COMPLETED
    for run_id in runs["mix-waiting"]:
        stack.until(lambda r=run_id: client.get_run(r).steps["ok"].status == "waiting",
                    f"{run_id} waiting for approval")

    every = [run_id for ids in runs.values() for run_id in ids]
    # The listing may trail a run's last event by a moment; then it must agree, for all.
    stack.until(lambda: not disagreements(stack, every), "run list to agree with run status",
                deadline_s=60)
    assert disagreements(stack, every) == []
    failed = {e.run_id for e in client.dead_letters() if e.kind == "step"}
    assert failed == set(runs["mix-broken"][4:])  # only runs that failed by the rules


def test_they_agree_after_the_server_refused_snapshots_for_a_while(
        stack: Stack, behaviour: Behaviour) -> None:
    """A resource failure in the middle of a load (every snapshot write refused by the
    server) delays the runs; it never leaves one misreported or dead-lettered."""
    client = stack.client
    behaviour.broken.update({"mix-broken", "mix-recover"})
    before = {e.seq for e in client.dead_letters()}
    retries = Retries()
    logging.getLogger("dagnats.engine").addHandler(retries)
    stack.run(set_max_msg_size(stack, 64))
    try:
        runs = {name: [client.start(name, {"n": n}) for n in range(3)]
                for name in ("mix-ok", "mix-broken", "mix-recover")}
        stack.until(lambda: any("(delivery 3)" in line for line in retries.lines),
                    "the engine to retry an event twice while snapshots are refused")
    finally:
        stack.run(set_max_msg_size(stack, -1))
        logging.getLogger("dagnats.engine").removeHandler(retries)
    ends = {"mix-ok": RunStatus.COMPLETED, "mix-broken": RunStatus.FAILED,
            "mix-recover": RunStatus.COMPLETED}
    for name, status in ends.items():
        for run_id in runs[name]:
            assert client.wait(run_id, timeout=90).status is status, (name, run_id)
    every = [run_id for ids in runs.values() for run_id in ids]
    stack.until(lambda: not disagreements(stack, every), "run list to agree with run status",
                deadline_s=90)
    added = [e for e in client.dead_letters() if e.seq not in before]
    assert {(e.kind, e.run_id) for e in added} == {("step", r) for r in runs["mix-broken"]}


class Retries(logging.Handler):
    """The engine's "will retry" log lines, as they come."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "will retry" in record.getMessage():
            self.lines.append(record.getMessage())


async def set_max_msg_size_js(js: Any, size: int) -> None:
    info = await js.stream_info(names.kv_stream(names.RUNS_BUCKET))
    info.config.max_msg_size = size
    await js.update_stream(info.config)


def set_max_msg_size(stack: Stack, size: int) -> Any:
    """Make the server refuse (or take again) snapshot writes larger than `size` bytes."""
    return set_max_msg_size_js(stack.js, size)
