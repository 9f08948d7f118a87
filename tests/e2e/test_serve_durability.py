"""Data that lasts: runs and their events survive a kill -9 of every process, and the store's
layout version is checked before nats-server touches it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil

from dagnats import Client
from dagnats.server.store_version import STORE_VERSION
from tests.e2e.harness import DAGNATS, ROOT, free_port, wait_until

EXAMPLE = ROOT / "examples" / "hello-pipeline"
RUNS = 5


def snapshot(url: str, run_ids: list[str]) -> dict[str, tuple[str, list[dict]]]:
    """Each run's status and every one of its events, read through the public client."""
    with Client.connect(url) as client:
        return {run_id: (client.get_run(run_id).status.value,
                         [e.model_dump(mode="json") for e in client.events(run_id)])
                for run_id in run_ids}


def test_every_run_and_event_survives_kill_9_of_the_whole_tree(start_serve, tmp_path: Path
                                                               ) -> None:
    data_dir = tmp_path / "data"
    serve = start_serve([EXAMPLE / "worker.py"], data_dir=data_dir)
    with Client.connect(serve.url) as client:
        client.register_workflow(EXAMPLE / "pipeline.json")
        run_ids = [client.start("hello-pipeline", f"n{n}") for n in range(RUNS)]
        for run_id in run_ids:
            assert client.wait(run_id, timeout=30).status.value == "completed"
    before = snapshot(serve.url, run_ids)
    assert all(len(events) >= 8 for _, events in before.values())

    tree = serve.tree()
    for proc in tree:
        proc.kill()  # SIGKILL: no process gets to flush or say goodbye
    psutil.wait_procs(tree, timeout=10)
    serve.proc.wait(timeout=10)

    again = start_serve([EXAMPLE / "worker.py"], data_dir=data_dir)
    assert snapshot(again.url, run_ids) == before  # history: every run and event, at once
    with Client.connect(again.url) as client:
        assert client.get_workflow("hello-pipeline").latest == "1.0"
        # `run list` reads the snapshots, a cache: one whose engine was killed between
        # recording the run's end and storing it is rebuilt when the engine's unacked
        # event is redelivered (after its ack wait), so the list may take that long.
        wait_until(lambda: set(run_ids) <= {run.run_id for run in client.list_runs()},
                   30, "every run to be listed again")


def serve_once(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`dagnats serve` that is expected to refuse to start."""
    return subprocess.run(
        [DAGNATS, "serve", "--data-dir", str(data_dir), "--nats-port", str(free_port())],
        capture_output=True, text=True, timeout=30, cwd=ROOT)


def test_a_store_written_by_a_newer_dagnats_is_refused_in_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "store-version.json").write_text('{"store_version": 99}')
    done = serve_once(data_dir)
    assert done.returncode == 3
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "layout version 99, written by a newer dagnats" in errors[0]
    assert not (data_dir / "store").exists()  # nats-server never touched it


def test_an_older_store_is_migrated_on_start(start_serve, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "store").mkdir(parents=True)  # a store from before versioning: version 0
    serve = start_serve([], data_dir=data_dir)
    written = json.loads((data_dir / "store-version.json").read_text())
    assert written["store_version"] == STORE_VERSION == 2
    serve.stop()
