"""`run list` and `run status` agree, always: a mixed load of runs (completed, failed and
dead-lettered, recovered, cancelled, retried, waiting, with inputs of some size), and for
every run the listing says what the run's own status says, step by step.

Written against the client API only (`list_runs`, `get_run`), so it holds whatever serves
the listing (snapshots today, an index later)."""

from __future__ import annotations

from typing import Any

import pytest

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
    """Every run whose listing differs from its status (status or any step's status)."""
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
    return (run.status, run.workflow, {sid: step.status for sid, step in run.steps.items()})


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
