"""`serve()` as its own process: it locks the data dir, provisions NATS, and stops cleanly.

The api and engine children are whatever `python -m dagnats _component ...` does today; this
test does not depend on them becoming ready.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nats
import psutil
import pytest

from dagnats import names
from dagnats.errors import AlreadyRunning
from dagnats.local_auth import lookup
from dagnats.server.lock import DataDirLock
from dagnats.server.procs import free_port

SERVE = """
import asyncio, sys
from pathlib import Path
from dagnats.server.serve import ServeOptions, serve
options = ServeOptions(data_dir=Path(sys.argv[1]), nats_port=int(sys.argv[2]))
sys.exit(asyncio.run(serve(options)))
"""


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll a condition until it holds; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.05)


def provisioned(url: str) -> bool:
    async def quiet(exc: Exception) -> None:
        pass

    async def check() -> bool:
        login = lookup(url)  # the registry of running serves: serve requires a login
        if login is None:
            return False
        try:
            nc = await nats.connect(
                url, allow_reconnect=False, connect_timeout=0.5, error_cb=quiet,
                reconnect_time_wait=0.05, max_reconnect_attempts=0,
                user=login.user, password=login.password,
            )
        except Exception:
            return False
        try:
            await nc.jetstream().stream_info(names.HISTORY_STREAM)
            await nc.jetstream().key_value(names.RUNS_BUCKET)
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    return asyncio.run(check())


def ours(url: str, store: Path) -> list[psutil.Process]:
    """Every live process serve started: nats-server on `store`, children told `url`."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if str(store) in " ".join(p.cmdline()) or p.environ().get("DAGNATS_NATS_URL") == url:
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_serve_provisions_locks_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    err = (tmp_path / "serve.err").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(tmp_path), str(port)],
        stdout=subprocess.DEVNULL, stderr=err,
    )
    try:
        wait_for(lambda: proc.poll() is not None or provisioned(url), "streams on the server")
        assert proc.poll() is None, (tmp_path / "serve.err").read_text()
        with pytest.raises(AlreadyRunning, match=f"pid {proc.pid}"):
            DataDirLock(tmp_path).acquire()
        assert ours(url, tmp_path / "store")

        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - began < 10
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ours(url, tmp_path / "store") == []
    assert (tmp_path / "logs" / "nats.log").exists()
    assert "received SIGTERM; stopping" in (tmp_path / "logs" / "serve.log").read_text()
