"""The disk and worker-state helpers of serve, without NATS: a data dir that cannot be used,
sizes, the workers file, and when a failed start counts towards giving up."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagnats.errors import InvalidInput
from dagnats.server import disk
from dagnats.server.supervisor import _counts_as_start_failure, last_log_line
from dagnats.server.workers_state import WorkersState, read_workers
from tests.unit.test_cli_offline import invoke, one_error_line


def test_a_data_dir_that_is_a_file_cannot_be_used(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InvalidInput, match=r"data dir .*file cannot be used \(.*\); pass"):
        disk.check_usable(target)
    disk.check_usable(tmp_path / "fresh")  # created, written, probe removed
    assert list((tmp_path / "fresh").iterdir()) == []


def test_sizes_read_as_people_write_them() -> None:
    assert disk.human_bytes(512) == "512 B"
    assert disk.human_bytes(1536) == "1.5 KB"
    assert disk.human_bytes(16 * 1024 * 1024) == "16.0 MB"


def test_the_nats_log_says_full_only_since_its_last_start(tmp_path: Path) -> None:
    log = tmp_path / "nats.log"
    assert not disk.log_says_full(log)
    log.write_text("Server is ready\nwrite x: no space left on device\n")
    assert disk.log_says_full(log)
    log.write_text(log.read_text() + "Server is ready\n")
    assert not disk.log_says_full(log)


def test_workers_state_is_written_and_read(tmp_path: Path) -> None:
    state = WorkersState(tmp_path, {"worker-a": (Path("/w/a.py"), tmp_path / "a.log")})
    state.write()
    assert read_workers(tmp_path)["worker-a"]["state"] == "starting"
    state.changed("worker-a", "failed", "SyntaxError: invalid syntax")
    state.changed("engine", "running", "")  # not a worker: ignored
    assert read_workers(tmp_path) == {"worker-a": {
        "file": "/w/a.py", "state": "failed", "detail": "SyntaxError: invalid syntax",
        "log": str(tmp_path / "a.log")}}
    assert (tmp_path / "workers.json").stat().st_mode & 0o777 == 0o600


def test_a_start_that_found_nats_unreachable_does_not_count() -> None:
    assert _counts_as_start_failure("exited with code 1 before reporting ready; see x")
    assert _counts_as_start_failure("did not report ready within 15s; see x")
    assert not _counts_as_start_failure("exited with code 3 before reporting ready; see x")


def test_the_last_log_line_skips_serve_marks(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text("--- 2026 dagnats: starting w\nTraceback\nSyntaxError: bad\n\n"
                   "--- 2026 dagnats: starting w\n")
    assert last_log_line(log) == "SyntaxError: bad"
    assert last_log_line(tmp_path / "missing.log") is not None  # a note, not a crash


def test_worker_list_without_a_server_is_one_line(tmp_path: Path) -> None:
    line = one_error_line(invoke("worker", "list", "--data-dir", str(tmp_path),
                                 "--nats-url", "nats://127.0.0.1:1"), 3)
    assert "cannot reach NATS at nats://127.0.0.1:1" in line


def test_purge_needs_an_age_it_can_read() -> None:
    line = one_error_line(invoke("run", "purge", "--older-than", "soon"), 2)
    assert "--older-than: invalid age 'soon'" in line
