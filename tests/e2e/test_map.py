"""The map step as a user runs it: serve with the thumbnails example, the CLI, and a kill -9
of the engine in the middle of a map, with nothing lost or run twice."""

from __future__ import annotations

import json
import re
from collections import Counter

from tests.e2e.harness import ROOT, wait_until

EXAMPLE = ROOT / "examples" / "thumbnails"


def status_json(serve, run_id: str) -> dict:
    shown = serve.cli("run", "status", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_a_map_survives_kill_9_of_the_engine_midway(start_serve) -> None:
    serve = start_serve([EXAMPLE / "worker.py"])
    registered = serve.cli("workflow", "register", str(EXAMPLE / "workflow.json"))
    assert registered.returncode == 0, registered.stderr
    started = serve.cli("run", "start", "thumbnails",
                        '{"album": "summer", "photos": 120, "work_s": 0.1}')
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()

    def completed_items() -> int:
        step = status_json(serve, run_id)["steps"]["thumbnail"]
        return (step.get("instances") or {}).get("counts", {}).get("completed", 0)

    wait_until(lambda: completed_items() >= 16, 60, "16 photos done")
    text = serve.cli("run", "status", run_id).stdout
    assert re.search(r"thumbnail: running \d+/120", text), text
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
