"""`serve` as an operator meets it: a kill -9 of serve itself, workers that cannot start,
data dirs that cannot be used."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil

from tests.e2e.harness import DAGNATS, ROOT, free_port, wait_until

WORKERS = Path(__file__).parent / "workers"
SLOW_CHAIN = Path(__file__).parent / "slow.json"


def test_kill_9_of_serve_sends_workers_one_sigterm_and_they_finish_in_flight_tasks(
        start_serve, tmp_path: Path) -> None:
    release, marks = tmp_path / "release", tmp_path / "marks"
    marks.mkdir()
    serve = start_serve([WORKERS / "slow_worker.py"], env={
        "SLOW_RELEASE_FILE": str(release), "SLOW_MARKS_DIR": str(marks)})
    assert serve.cli("workflow", "register", str(SLOW_CHAIN)).returncode == 0
    started = serve.cli("run", "start", "slow-chain", '"x"')
    assert started.returncode == 0, started.stderr
    wait_until(lambda: list(marks.glob("*.hold.*")), 60, "the slow step to be in flight")
    worker = serve.child("slow_worker.py")
    serve.proc.kill()
    serve.proc.wait(timeout=10)
    release.touch()
    psutil.wait_procs([worker], timeout=90)
    assert not worker.is_running()
    log = (serve.data_dir / "logs" / "worker-slow_worker.log").read_text()
    assert log.count("SIGTERM: stopping") == 1, log
    assert "cancelling tasks in flight" not in log, log
    # the handler ran to its end (its result could not be published: nats-server went
    # down with serve, so the task stays unacked and is redelivered on the next start)
    assert list(marks.glob("done.*")), log
