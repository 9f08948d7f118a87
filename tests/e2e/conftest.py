"""Fixtures for end-to-end tests: a `serve` factory that always cleans up."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.harness import Serve


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator:
    """A factory that starts `serve` and stops (or kills) everything at teardown."""
    started: list[Serve] = []

    def start(workers: list[Path], env: dict[str, str] | None = None,
              data_dir: Path | None = None, args: list[str] | None = None) -> Serve:
        serve = Serve(data_dir or tmp_path / "data", workers, env, args)
        started.append(serve)
        serve.wait_for_output("Press Ctrl-C to stop")
        return serve

    yield start
    for serve in started:
        procs = serve.tree() if serve.proc.poll() is None else []
        try:
            serve.stop()
        except subprocess.TimeoutExpired:
            pass
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
    for serve in started:  # every process of serve had the permissions it needed
        if serve.violations_expected:
            continue
        nats_log = serve.data_dir / "logs" / "nats.log"
        said = nats_log.read_text(errors="replace") if nats_log.is_file() else ""
        assert "Violation" not in said, [line for line in said.splitlines() if "Violation" in line]
