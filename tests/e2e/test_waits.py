"""The steps that wait, as a user runs them: serve, the order example, the CLI, kill -9."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from pathlib import Path

from tests.e2e.harness import DAGNATS, ROOT, status_json, wait_until

EXAMPLE = ROOT / "examples" / "order-approval"


def test_the_order_example_waits_for_its_payment_and_its_approval(start_serve) -> None:
    serve = start_serve([EXAMPLE / "worker.py"])
    registered = serve.cli("workflow", "register", str(EXAMPLE / "workflow.json"))
    assert registered.returncode == 0, registered.stderr
    watch = subprocess.Popen([DAGNATS, "run", "start", "order-approval", '{"order_id": "A-1"}',
                              "--watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=serve.env, cwd=ROOT)
    assert watch.stdout is not None
    first = watch.stdout.readline()
    run_id = re.fullmatch(r"Run (\w+) started\n", first).group(1)  # type: ignore[union-attr]
    wait_until(lambda: status_json(serve, run_id)["steps"]["pay"].get("waiting_for"), 30,
               "the payment wait")
    paid = serve.cli("event", "publish", "payment.received",
                     '{"order_id": "A-1", "amount": 120}')
    assert paid.returncode == 0 and "Published event payment.received" in paid.stdout
    review = wait_until(
        lambda: status_json(serve, run_id)["steps"]["review"].get("waiting_for"), 30,
        "the approval")
    assert review["description"] == "Ship order A-1, paid 120?"
    text = serve.cli("run", "status", run_id).stdout
    assert "review: waiting for approval (until " in text
    approved = serve.cli("run", "approve", run_id[:8], "review", "--by", "ana")
    assert approved.returncode == 0, approved.stderr
    again = serve.cli("run", "reject", run_id, "review")
    assert again.returncode == 2
    assert re.fullmatch(r"error: step 'review' of run \w+ was already approved by ana at \S+\n",
                        again.stderr)
    out = watch.stdout.read()  # to the end: --watch exits once the run has ended
    assert watch.wait(60) == 0, out + (watch.stderr.read() if watch.stderr else "")
    lines = out.splitlines()
    assert any(line.startswith('step.pay: waiting for event payment.received with order_id = '
                               '"A-1" (until ') for line in lines), lines
    assert any(re.fullmatch(r"step.settle: waiting until \S+Z", line) for line in lines), lines
    assert any(line.startswith("step.review: waiting for approval (until ") for line in lines)
    for expected in ("step.pay: completed", "step.settle: completed", "step.gift: completed",
                     "step.review: completed", "step.ship: completed",
                     f"Run {run_id} completed"):
        assert expected in lines
    assert lines.index("step.pay: completed") < lines.index("step.review: completed")
    final = status_json(serve, run_id)
    assert final["output"] == "shipped with gift for order A-1, approved by ana"


def test_a_sleep_survives_kill_9_of_the_engine(start_serve, tmp_path: Path) -> None:
    serve = start_serve([EXAMPLE / "worker.py"])
    doc = tmp_path / "nap.json"
    doc.write_text(json.dumps({"name": "nap", "version": "1", "steps": [
        {"id": "nap", "type": "sleep", "config": {"duration": "2s"}}]}))
    assert serve.cli("workflow", "register", str(doc)).returncode == 0
    run_id = serve.cli("run", "start", "nap").stdout.strip()
    wait_until(lambda: status_json(serve, run_id)["steps"]["nap"].get("waiting_for"), 30,
               "the sleep")
    engine = serve.child("_component engine")
    engine.kill()
    engine.wait(10)
    assert serve.cli("run", "status", run_id).returncode == 0
    final = wait_until(lambda: (lambda r: r if r["status"] == "completed" else None)(
        status_json(serve, run_id)), 30, "the run to complete")
    nap = final["steps"]["nap"]
    slept_until = datetime.fromisoformat(nap["output"]["slept_until"])
    assert datetime.fromisoformat(nap["completed_at"]) >= slept_until
    events = json.loads(serve.cli("run", "events", run_id, "--json").stdout)
    assert [e["type"] for e in events if e["step_id"] == "nap"] == [
        "step.waiting", "timer.fired", "step.completed"]


def test_waits_survive_kill_9_of_nats_server_and_of_the_api(start_serve) -> None:
    """A run waiting for an event, then for a person: nats-server and then the API are
    killed with SIGKILL while it waits (serve restarts them); the event and the decision
    sent after the restarts still complete it, once."""
    from tests.e2e.test_faults import nats_server_of

    serve = start_serve([EXAMPLE / "worker.py"])
    assert serve.cli("workflow", "register", str(EXAMPLE / "workflow.json")).returncode == 0
    run_id = serve.cli("run", "start", "order-approval", '{"order_id": "K-9"}').stdout.strip()
    wait_until(lambda: status_json(serve, run_id)["steps"]["pay"].get("waiting_for"), 30,
               "the payment wait")
    old = nats_server_of(serve)
    old.kill()
    nats_server_of(serve, not_pid=old.pid)
    wait_until(lambda: serve.cli("event", "publish", "payment.received",
                                 '{"order_id": "K-9", "amount": 5}').returncode == 0, 30,
               "NATS to take the event again")
    wait_until(lambda: status_json(serve, run_id)["steps"]["review"].get("waiting_for"), 30,
               "the approval, after the payment")
    api = serve.child("_component api")
    api.kill()
    api.wait(10)
    wait_until(lambda: serve.cli("run", "approve", run_id, "review").returncode == 0, 30,
               "the restarted API to take the decision")
    final = wait_until(lambda: (lambda r: r if r["status"] == "completed" else None)(
        status_json(serve, run_id)), 30, "the run to complete")
    assert final["steps"]["gift"]["status"] == "skipped"  # paid 5: below the gift threshold
    assert final["output"] == "shipped, approved by someone"
    events = json.loads(serve.cli("run", "events", run_id, "--json").stdout)
    completed = [e["step_id"] for e in events if e["type"] == "step.completed"]
    assert sorted(completed) == ["create", "pay", "review", "settle", "ship"]
