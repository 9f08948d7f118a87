"""The data-dir lock: one `dagnats serve` per data dir.

`<data_dir>/serve.lock` is held with a non-blocking exclusive flock for the life of serve and
holds its pid, so the refusal can name the holder. The kernel drops the lock when the process
dies, however it dies: a stale file never blocks a new serve.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from dagnats.errors import AlreadyRunning
from dagnats.local_auth import private_dir

LOCK_NAME = "serve.lock"


class DataDirLock:
    """An exclusive, non-blocking lock on `<data_dir>/serve.lock` naming the holder's pid."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise AlreadyRunning naming the pid that holds it."""
        if self._fd is not None:
            return
        private_dir(self.data_dir)  # it holds the logins: 0700
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(
                f"another `dagnats serve` (pid {holder}) is using data dir {self.data_dir}; "
                "stop it first or pass --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; an unlocked file means nobody holds it)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the only descriptor releases the flock
        self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    """The pid written in the lock file, or "unknown" while the holder is still writing it."""
    try:
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
