"""The steps that multiply, as a user runs them: serve with the examples, the CLI, and a
kill -9 in the middle of a map (the engine), an agent loop (its worker) and sub_workflow
children (the engine), with nothing lost or run twice."""

from __future__ import annotations

import json
import re
from collections import Counter

from tests.e2e.harness import ROOT, status_json, wait_until

EXAMPLE = ROOT / "examples" / "thumbnails"


def test_a_map_survives_kill_9_of_the_engine_midway(start_serve) -> None:
    serve = start_serve([EXAMPLE / "worker.py"])
    registered = serve.cli("workflow", "register", str(EXAMPLE / "workflow.json"))
    assert registered.returncode == 0, registered.stderr
    started = serve.cli("run", "start", "thumbnails",
                        '{"album": "summer", "photos": 120, "work_s": 0.3}')
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()

    def running_items() -> int:
        text = serve.cli("run", "status", run_id).stdout
        found = re.search(r"thumbnail: running (\d+)/120", text)
        return int(found.group(1)) if found else 0

    wait_until(lambda: running_items() >= 16, 60, "`thumbnail: running 16/120` or more")
    engine = serve.child("_component engine")
    engine.kill()
    engine.wait(10)
    final = wait_until(lambda: (lambda r: r if r["status"] in ("completed", "failed") else None)(
        status_json(serve, run_id)), 90, "the run to end")
    assert final["status"] == "completed", final["error"]
    assert final["output"] == {"count": 120, "first": "summer/thumbs/0.jpg",
                               "last": "summer/thumbs/119.jpg"}
    thumbs = final["steps"]["thumbnail"]["output"]
    assert thumbs == [f"summer/thumbs/{n}.jpg" for n in range(120)]
    events = json.loads(serve.cli("run", "events", run_id, "--json").stdout)
    done = Counter(e["step_id"] for e in events if e["type"] == "step.completed")
    queued = Counter(e["step_id"] for e in events if e["type"] == "step.queued")
    items = [f"thumbnail[{n}]" for n in range(120)]
    assert [done[item] for item in items] == [1] * 120  # each photo completed once
    assert queued["thumbnail[7]"] == 2  # its retry, alone
    assert [queued[item] for item in items if item != "thumbnail[7]"] == [1] * 119
    assert done["thumbnail"] == 1 and done["publish"] == 1


AGENT = ROOT / "examples" / "research-agent"


def test_an_agent_loop_survives_kill_9_of_its_worker(start_serve) -> None:
    """The research agent's worker is killed (SIGKILL) in the middle of an iteration; serve
    restarts it, the iteration runs again from the state before it, and the state still
    passes from iteration to iteration to the end."""
    serve = start_serve([AGENT / "worker.py"], env={"DAGNATS_TASK_LEASE": "3"})
    assert serve.cli("workflow", "register", str(AGENT / "workflow.json")).returncode == 0
    started = serve.cli("run", "start", "research-agent",
                        '{"question": "q", "depth": 6, "think_s": 0.6}')
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    wait_until(lambda: (status_json(serve, run_id)["steps"]["research"].get("iteration")
                        or 0) >= 2, 60, "two iterations done")
    text = serve.cli("run", "status", run_id).stdout
    assert re.search(r"research: (queued|running) \(iteration \d\)", text), text
    worker = serve.child("research-agent/worker.py")
    worker.kill()
    worker.wait(10)
    final = wait_until(lambda: (lambda r: r if r["status"] in ("completed", "failed") else None)(
        status_json(serve, run_id)), 90, "the run to end")
    assert final["status"] == "completed", final["error"]
    assert final["output"] == ("q -> finding 1; finding 2; finding 3; finding 4; finding 5; "
                               "finding 6 (6 iterations)")
    events = json.loads(serve.cli("run", "events", run_id, "--json").stdout)
    iterated = [e["data"]["iteration"] for e in events if e["type"] == "step.iterated"]
    assert iterated == [1, 2, 3, 4, 5]
    states = [e["data"]["output"]["findings"] for e in events if e["type"] == "step.iterated"]
    assert states[-1] == [f"finding {n}" for n in range(1, 6)]


SHIPPING = ROOT / "examples" / "order-shipping"


def test_sub_workflows_survive_kill_9_of_the_engine(start_serve) -> None:
    """6 orders, each running its shipping as a child run; the engine is killed (SIGKILL)
    while children run. Every order completes with its child's output, and each order
    started exactly one child, whose history has exactly one start."""
    serve = start_serve([SHIPPING / "worker.py"])
    for doc in ("shipping.json", "order.json"):
        assert serve.cli("workflow", "register", str(SHIPPING / doc)).returncode == 0
    runs = []
    for n in range(6):
        started = serve.cli("run", "start", "order-with-shipping",
                            json.dumps({"order_id": f"K-{n}", "items": 2, "work_s": 2.0}))
        assert started.returncode == 0, started.stderr
        runs.append(started.stdout.strip())
    wait_until(lambda: "waiting for child run" in serve.cli("run", "status", runs[-1]).stdout,
               60, "the last order waiting for its shipping run")
    engine = serve.child("_component engine")
    engine.kill()
    engine.wait(10)
    for n, run_id in enumerate(runs):
        final = wait_until(lambda r=run_id: (lambda s: s if s["status"] in (
            "completed", "failed") else None)(status_json(serve, r)), 90, f"order {n}")
        assert final["status"] == "completed", final["error"]
        assert final["output"] == f"order K-{n} ships with TRK-K-{n}"
        tree = json.loads(serve.cli("run", "tree", run_id, "--json").stdout)
        assert [(c["step_id"], c["workflow"], c["status"]) for c in tree["children"]] == [
            ("ship", "shipping", "completed")]
        child = tree["children"][0]["run_id"]
        assert final["steps"]["ship"]["child_run_id"] == child
        events = json.loads(serve.cli("run", "events", child, "--json").stdout)
        assert [e["type"] for e in events].count("workflow.started") == 1
        parent_events = json.loads(serve.cli("run", "events", run_id, "--json").stdout)
        assert [(e["type"], e["step_id"]) for e in parent_events].count(
            ("step.completed", "ship")) == 1


def test_a_planner_runs_the_steps_it_planned(start_serve) -> None:
    """The research plan: the planner decides two agent loops and a merge at run time; the
    CLI shows the added steps, and the summary gets the merged answer."""
    serve = start_serve([AGENT / "worker.py"])
    for doc in ("workflow.json", "research-plan.json"):
        assert serve.cli("workflow", "register", str(AGENT / doc)).returncode == 0
    watched = serve.cli("run", "start", "research-plan",
                        '{"question": "tides", "depth": 2, "think_s": 0.05, '
                        '"angles": ["moon", "sun"]}', "--watch")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    lines = watched.stdout.splitlines()
    assert "step.plan.research-moon: iteration 1 done" in lines
    assert "step.plan.merge: completed" in lines and "step.plan: completed" in lines
    run_id = lines[0].split()[1]
    final = status_json(serve, run_id)
    assert final["output"] == ("tides -> finding 1; finding 2 / finding 1; finding 2 "
                               "(4 iterations)")
    assert list(final["steps"]) == ["plan", "plan.research-moon", "plan.research-sun",
                                    "plan.merge", "summary"]  # the plan under its planner
