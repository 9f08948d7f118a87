"""The tutorial, end to end, as a user runs it: serve, register, run --watch, status, events."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import psutil

from dagnats.dag.events import Event
from tests.e2e.harness import ROOT, wait_until

EXAMPLE = ROOT / "examples" / "hello-pipeline"
SLOW_WORKER = ROOT / "tests" / "e2e" / "workers" / "slow_worker.py"
SLOW_JSON = ROOT / "tests" / "e2e" / "slow.json"


def test_the_tutorial_prints_what_it_promises(start_serve) -> None:
    serve = start_serve([EXAMPLE / "worker.py"])
    registered = serve.cli("workflow", "register", str(EXAMPLE / "pipeline.json"))
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.strip() == "Registered hello-pipeline (version 1.0, 3 steps)"

    watched = serve.cli("run", "start", "hello-pipeline", '"World"', "--watch")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    lines = watched.stdout.strip().splitlines()
    run_id = re.fullmatch(r"Run (\w+) started", lines[0]).group(1)  # type: ignore[union-attr]
    assert lines[1:] == ["step.greet: completed", "step.uppercase: completed",
                         "step.reverse: completed", f"Run {run_id} completed"]

    status = serve.cli("run", "status", run_id[:8])
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip().splitlines() == [
        f"Run: {run_id}", "Status: completed", "Steps:",
        'greet: completed "Hello, World!"', 'uppercase: completed "HELLO, WORLD!"',
        'reverse: completed "!DLROW ,OLLEH"',
    ]
    as_json = json.loads(serve.cli("run", "status", run_id, "--json").stdout)
    assert as_json["status"] == "completed"
    assert as_json["steps"]["reverse"]["output"] == "!DLROW ,OLLEH"
    assert as_json["steps"]["greet"]["attempts"] == 1

    events = json.loads(serve.cli("run", "events", run_id, "--json").stdout)
    types = [event["type"] for event in events]
    assert types[0] == "workflow.started" and types[-1] == "workflow.completed"
    assert {"step.queued", "step.completed"} <= set(types)
    # The tutorial's steps are quick: each is reported by its outcome, which says when it began.
    assert all("started_at" in e["data"] for e in events if e["type"] == "step.completed")
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)

    listed = json.loads(serve.cli("run", "list", "--json").stdout)
    assert [run["run_id"] for run in listed] == [run_id]


def test_runs_survive_kill_9_of_engine_and_of_worker_mid_task(start_serve, tmp_path: Path
                                                              ) -> None:
    release, marks = tmp_path / "release", tmp_path / "marks"
    marks.mkdir()
    serve = start_serve([SLOW_WORKER], env={
        "SLOW_RELEASE_FILE": str(release), "SLOW_MARKS_DIR": str(marks),
        "DAGNATS_TASK_LEASE": "2",
    })
    assert serve.cli("workflow", "register", str(SLOW_JSON)).returncode == 0
    run_id = serve.cli("run", "start", "slow-chain", '"payload"').stdout.strip()

    first_mark = wait_until(lambda: list(marks.glob(f"{run_id}.hold.1.*")), 30,
                            "the slow step to start")[0]
    engine = serve.child("_component engine")
    os.kill(engine.pid, signal.SIGKILL)
    worker = psutil.Process(int(first_mark.name.rsplit(".", 1)[1]))
    os.kill(worker.pid, signal.SIGKILL)

    # The supervisor restarts both; the new worker gets the task once the lease runs out.
    wait_until(lambda: len(list(marks.glob(f"{run_id}.hold.1.*"))) >= 2, 40,
               "the slow step to be redelivered to a restarted worker")
    release.touch()
    done = serve.cli("run", "start", "slow-chain", '"second"', "--watch")
    assert done.returncode == 0, done.stdout + done.stderr

    wait_until(lambda: json.loads(serve.cli("run", "status", run_id, "--json").stdout
                                  )["status"] == "completed", 30, "the first run to complete")
    status = json.loads(serve.cli("run", "status", run_id, "--json").stdout)
    assert status["steps"]["last"]["output"] == "payload"
    events = json.loads(serve.cli("run", "events", run_id, "--json").stdout)
    completed = [(e["step_id"], e["attempt"]) for e in events if e["type"] == "step.completed"]
    assert sorted(completed) == [("first", 1), ("hold", 1), ("last", 1)]
    began = [e for e in map(Event.model_validate, events)
             if e.step_id == "hold" and e.begins_attempt()]
    assert max(e.data["delivery"] for e in began) >= 2  # the killed one ran, then this one
    ends = [e["type"] for e in events if e["type"] in ("workflow.completed", "workflow.failed")]
    assert ends == ["workflow.completed"]
    serve.wait_for_output("restarting", 5)  # the supervisor said what it did
