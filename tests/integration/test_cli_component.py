"""`dagnats _component api` as serve runs it: a subprocess that says ready, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dagnats.cli.main import cli
from dagnats.client import Client
from dagnats.server.ready import ready_env, ready_pipe, wait_ready
from tests.integration.conftest import provision_at

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def url(nats_server: Any) -> str:
    asyncio.run(provision_at(nats_server.url))
    return nats_server.url


def spawn_api(url: str) -> tuple[subprocess.Popen[bytes], bool]:
    """Start the API process the way serve does; return it and whether it said ready."""
    read_fd, write_fd = ready_pipe()
    env = ready_env(write_fd, {**os.environ, "DAGNATS_NATS_URL": url})
    proc = subprocess.Popen([sys.executable, "-m", "dagnats", "_component", "api"], env=env,
                            pass_fds=(write_fd,), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    os.close(write_fd)
    return proc, asyncio.run(wait_ready(read_fd, proc, timeout_s=15))


def test_the_api_process_reports_ready_serves_and_stops_on_sigterm(url: str) -> None:
    proc, ready = spawn_api(url)
    try:
        assert ready, proc.stderr.read() if proc.poll() is not None else "not ready"
        with Client.connect(url) as client:
            client.register_workflow({"name": "from-subprocess", "version": "1",
                                      "steps": [{"id": "a", "task": "a"}]})
            assert client.get_workflow("from-subprocess").latest == "1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"API serving dagnats.api.*" in proc.stderr.read()


def test_the_api_process_without_nats_is_one_line_exit_3(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"nats://127.0.0.1:{sock.getsockname()[1]}"
    done = subprocess.run([sys.executable, "-m", "dagnats", "_component", "api"],
                          env={**os.environ, "DAGNATS_NATS_URL": dead},
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1].startswith("error: cannot reach NATS")


def test_nats_without_the_api_is_one_line_exit_3(url: str) -> None:
    result = CliRunner().invoke(cli, ["workflow", "list", "--nats-url", url])
    assert result.exit_code == 3
    assert result.stderr == (f"error: no dagnats API is answering on {url}; "
                             "start it with `dagnats serve`\n")
