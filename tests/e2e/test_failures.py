"""docs/failures.md, end to end, as a user runs it: `serve` with the flaky-worker example,
then retries, on_failure, compensation, dlq list / replay, run retry and run cancel."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dagnats.dag.events import Event
from tests.e2e.harness import ROOT, Serve, wait_until

EXAMPLE = ROOT / "examples" / "flaky-worker"


def watch(serve: Serve, *args: str) -> tuple[int, str, list[str]]:
    """Run a command with --watch: its exit code, the run id and the lines after the first."""
    done = serve.cli(*args, "--watch")
    lines = done.stdout.strip().splitlines()
    run_id = re.fullmatch(r"Run (\w+) (started|resumed)", lines[0]).group(1)  # type: ignore[union-attr]
    return done.returncode, run_id, lines[1:]


def events(serve: Serve, run_id: str) -> list[dict]:
    return json.loads(serve.cli("run", "events", run_id, "--json").stdout)


def test_the_failure_walkthrough(start_serve, tmp_path: Path) -> None:
    printer = tmp_path / "printer-online"
    serve = start_serve([EXAMPLE / "worker.py"], env={"FLAKY_PRINTER_FILE": str(printer)})
    for name in ("order", "labels"):
        assert serve.cli("workflow", "register", str(EXAMPLE / f"{name}.json")).returncode == 0

    code, _, lines = watch(serve, "run", "start", "order",
                           '{"order_id": 2, "email": "bob-at-example", "address": "x"}')
    assert code == 0, lines
    assert lines.count("step.charge: retrying in 200ms") == 2
    assert "step.receipt: recovered by queue_receipt" in lines

    code, run_id, lines = watch(serve, "run", "start", "order",
                                '{"order_id": 3, "email": "c@d.e", "address": "nowhere"}')
    assert code == 1
    assert lines[-3:] == ["step.refund: completed", "step.release: completed",
                          f"Run {run_id} compensated"]

    code, failed, _ = watch(serve, "run", "start", "labels", '{"order_id": 4}')
    assert code == 1
    [entry] = json.loads(serve.cli("dlq", "list", "--json").stdout)
    assert (entry["run_id"], entry["step_id"], entry["attempts"]) == (failed, "print", 2)
    printer.touch()
    replayed = serve.cli("dlq", "replay", str(entry["seq"]))
    assert replayed.stdout == f"Replayed dead letter {entry['seq']}: run {failed} resumed\n"
    wait_until(lambda: events(serve, failed)[-1]["type"] == "workflow.completed", 30,
               "the replayed run to complete")
    again = serve.cli("dlq", "replay", str(entry["seq"]))
    assert again.returncode == 2 and again.stderr.startswith(
        f"error: no dead letter {entry['seq']}")

    printer.unlink()
    code, retried, _ = watch(serve, "run", "start", "labels", '{"order_id": 5}')
    assert code == 1
    printer.touch()
    code, _, lines = watch(serve, "run", "retry", retried[:8])
    assert code == 0 and lines == ["step.print: retrying (attempt 3)", "step.print: completed",
                                   f"Run {retried} completed"]
    packs = [e for e in map(Event.model_validate, events(serve, retried))
             if e.step_id == "pack" and e.begins_attempt()]
    assert len(packs) == 1  # pack ran once: the retry did not run it again
    assert serve.cli("dlq", "list").stdout == "No dead letters.\n"

    long_run = serve.cli("run", "start", "labels", '{"order_id": 6, "copies": 2000}'
                         ).stdout.strip()
    wait_until(lambda: any(e["type"] == "step.started" and e["step_id"] == "print"
                           for e in events(serve, long_run)), 30, "printing to start")
    assert serve.cli("run", "cancel", long_run).stdout == f"Cancelled run {long_run}\n"
    logs = Path(serve.data_dir) / "logs" / "worker.log"
    wait_until(lambda: "run cancelled after" in logs.read_text(), 30,
               "the handler to notice the cancellation")
    status = serve.cli("run", "status", long_run).stdout.splitlines()
    assert status[1] == "Status: cancelled" and status[-1] == "print: cancelled"
    again = serve.cli("run", "cancel", long_run)
    assert (again.returncode, again.stdout) == (
        0, f"Run {long_run} is already cancelled; nothing to cancel\n")
