"""`serve` as an operator meets it: a kill -9 of serve itself, workers that cannot start,
data dirs that cannot be used."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.harness import DAGNATS, ROOT, wait_until

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
    assert "SIGTERM again" not in log, log  # serve keeps to one thread: the kernel sends one
    assert "cancelling tasks in flight" not in log, log
    # the handler ran to its end (its result could not be published: nats-server went
    # down with serve, so the task stays unacked and is redelivered on the next start)
    assert list(marks.glob("done.*")), log


HELLO = ROOT / "examples" / "hello-pipeline"


def test_an_unusable_data_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([DAGNATS, "serve", "--data-dir", "/proc/1", "--nats-port", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("error: data dir /proc/1 cannot be used (No such file or "
                                   "directory); pass another --data-dir"), done.stderr


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs of our own (mounting needs root; the test is skipped otherwise)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(mount: Path) -> Path:
    """Fill the file system of `mount` to the last byte with one file; return it."""
    filler = mount / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (1024 * 1024, 4096, 1):
            try:
                while f.write(b"\0" * size):
                    pass
            except OSError:
                pass
    return filler


def test_serve_on_a_full_disk_is_one_line(small_tmpfs: Path) -> None:
    fill(small_tmpfs)
    done = subprocess.run([DAGNATS, "serve", "--data-dir", str(small_tmpfs / "data"),
                           "--nats-port", "0"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is full" in lines[0] and str(small_tmpfs) in lines[0], lines


def test_a_full_data_dir_is_reported_and_recovers_once_space_is_freed(
        start_serve, small_tmpfs: Path) -> None:
    serve = start_serve([HELLO / "worker.py"], data_dir=small_tmpfs / "data")
    assert serve.cli("workflow", "register", str(HELLO / "pipeline.json")).returncode == 0
    before = serve.cli("run", "start", "hello-pipeline", '"before"', "--watch")
    assert before.returncode == 0, before.stderr
    filler = fill(small_tmpfs)
    # a start while the disk is full fails (or is refused); nothing is acknowledged wrongly
    during = serve.cli("run", "start", "hello-pipeline", '"during"', timeout_s=120)
    line = serve.wait_for_output("is full", timeout_s=60)
    assert str(small_tmpfs / "data") in line and "purge" in line, line
    doctor = serve.cli("doctor", "--data-dir", str(serve.data_dir))
    assert doctor.returncode == 1, doctor.stdout
    assert "FAIL  disk" in doctor.stdout, doctor.stdout
    assert "no space left on device" in doctor.stdout, doctor.stdout
    filler.unlink()
    serve.wait_for_output("restarting nats-server", timeout_s=60)
    wait_until(lambda: serve.cli("run", "list").returncode == 0, 60,
               "the API to answer again after nats-server restarted")
    after = serve.cli("run", "start", "hello-pipeline", '"after"', "--watch", timeout_s=120)
    assert after.returncode == 0, after.stdout + after.stderr
    listed = serve.cli("run", "list", "--json")
    runs = {run["run_id"]: run for run in json.loads(listed.stdout)}
    first = before.stdout.split()[1]
    assert runs[first]["status"] == "completed", runs
    if during.returncode == 0:  # acknowledged before the disk filled up: it must finish
        rid = during.stdout.strip()
        wait_until(lambda: serve.cli("run", "status", rid).stdout.count("completed"), 90,
                   "the run started as the disk filled to complete")


def test_a_bad_retention_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([DAGNATS, "serve", "--data-dir", str(tmp_path), "--retention",
                           "soon"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --retention: invalid age 'soon'"), done.stderr


def test_worker_files_that_cannot_start_are_given_up_on_and_reported(
        start_serve, tmp_path: Path) -> None:
    bad = {"noworker": "x = 1\n", "importerror": "import no_such_module_here\n",
           "syntaxerror": "def broken(:\n"}
    for stem, text in bad.items():
        (tmp_path / f"{stem}.py").write_text(text)
    serve = start_serve([HELLO / "worker.py", *(tmp_path / f"{s}.py" for s in bad)])
    lines = [serve.wait_for_output("cannot start", timeout_s=90) for _ in bad]
    reasons = {stem: next(line for line in lines if f"worker-{stem} cannot start" in line)
               for stem in bad}
    assert "ended without running a worker" in reasons["noworker"]
    assert "No module named 'no_such_module_here'" in reasons["importerror"]
    assert "is not Python source" in reasons["syntaxerror"]  # cli/worker_file.py
    listed = serve.cli("worker", "list", "--data-dir", str(serve.data_dir), "--json")
    assert listed.returncode == 0, listed.stderr
    states = {w["name"]: w for w in json.loads(listed.stdout)["supervised"]}
    assert states["worker"]["state"] == "running"  # worker.py: not worker-worker
    live = json.loads(listed.stdout)["workers"]
    assert [w["name"] for w in live] == ["worker"]  # the name serve gave it, not host-pid
    for stem in bad:
        assert states[f"worker-{stem}"]["state"] == "failed"
    doctor = serve.cli("doctor", "--data-dir", str(serve.data_dir))
    assert doctor.returncode == 1
    assert "FAIL  worker-importerror" in doctor.stdout, doctor.stdout
    # given up on: not started again (the log holds exactly the tries made)
    log = (serve.data_dir / "logs" / "worker-noworker.log").read_text()
    assert log.count("dagnats: starting worker-noworker") == 3, log
    assert serve.cli("run", "list").returncode == 0  # the rest of serve runs on
