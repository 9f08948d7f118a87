"""What a running `dagnats serve` tells other commands, and how `dagnats stop` stops it.

`<data_dir>/serve.json` (the pid file) is written once serve is ready and removed when it
stops: {"pid", "nats_url", "data_dir", "started_at", "detached", "auth"}. Whether serve really runs
is decided by the data-dir lock (`serve.lock`), which the kernel drops however serve dies, so
a stale serve.json never fools `stop`, `doctor` or `logs`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from dagnats.errors import DagnatsError, ServeError
from dagnats.local_auth import write_private
from dagnats.server.lock import LOCK_NAME

STATE_NAME = "serve.json"
STOP_TIMEOUT_S = 15.0
STOP_POLL_INTERVAL_S = 0.05


class NotRunning(DagnatsError):
    """No `dagnats serve` runs on the data dir."""


def write_state(data_dir: Path, nats_url: str, detached: bool, *, auth: bool = False) -> None:
    """Record this serve process (atomically; 0600). `auth`: its NATS requires a login."""
    path = Path(data_dir) / STATE_NAME
    body = {"pid": os.getpid(), "nats_url": nats_url, "data_dir": str(data_dir),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "detached": detached,
            "auth": auth}
    write_private(path, json.dumps(body, indent=2) + "\n")


def remove_state(data_dir: Path) -> None:
    """Forget the pid file (serve is stopping)."""
    with contextlib.suppress(FileNotFoundError):
        (Path(data_dir) / STATE_NAME).unlink()


def running_pid(data_dir: Path) -> int | None:
    """The pid of the serve holding the data dir's lock; None when nobody holds it."""
    path = Path(data_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 64, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1  # held, pid not written yet
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The running serve's serve.json; None when serve is not running (or not ready yet)."""
    if running_pid(data_dir) is None:
        return None
    try:
        state = json.loads((Path(data_dir) / STATE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def stop_serve(data_dir: Path, timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM the serve running on `data_dir` and wait until it let go of the data dir.

    Returns its pid. NotRunning when nothing runs there; ServeError when it does not stop in
    time (then it and its processes are killed).
    """
    pid = running_pid(data_dir)
    if pid is None:
        remove_state(data_dir)
        raise NotRunning(f"no dagnats serve is running on data dir {data_dir}")
    if pid <= 0:
        raise ServeError(f"dagnats serve on {data_dir} is still starting; try again in a moment")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while running_pid(data_dir) is not None:
        if time.monotonic() >= deadline:
            _kill_tree(pid)
            raise ServeError(f"dagnats serve (pid {pid}) did not stop within {timeout_s:g}s; "
                             "killed it and its processes")
        time.sleep(STOP_POLL_INTERVAL_S)
    return pid


def _kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(pid)
        for proc in [*parent.children(recursive=True), parent]:
            with contextlib.suppress(psutil.Error):
                proc.kill()
