"""The readiness protocol between the supervisor and its children.

The parent makes a pipe, hands the write end to the child (`pass_fds`) and names it in the
env var DAGNATS_READY_FD. The child calls `notify_ready()` once it can do its job (connected,
subscribed); that writes b"ready\\n" and closes the fd. Run without a supervisor, the env var
is absent and `notify_ready()` does nothing.

    read_fd, write_fd = ready_pipe()
    proc = subprocess.Popen(argv, pass_fds=(write_fd,), env=ready_env(write_fd, env))
    os.close(write_fd)                       # else EOF never comes when the child dies
    ok = await wait_ready(read_fd, proc, timeout_s=15)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Mapping

from dagnats.server.procs import wait_exit

READY_FD_ENV = "DAGNATS_READY_FD"
READY_MESSAGE = b"ready\n"


def claim_ready_fd() -> str | None:
    """Take the ready fd out of the environment (so our own children do not see it)."""
    return os.environ.pop(READY_FD_ENV, None)


def notify_ready(value: str | None = None) -> None:
    """Tell the supervisor this process is ready; a no-op when not supervised or said already.

    `value` is a fd claimed earlier with `claim_ready_fd`; by default it is taken from the
    environment.
    """
    value = value if value is not None else claim_ready_fd()
    if not value or not value.isdigit():
        return
    fd = int(value)
    try:
        os.write(fd, READY_MESSAGE)
    except OSError:
        pass  # the supervisor is gone or stopped listening; nothing useful to do
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def ready_pipe() -> tuple[int, int]:
    """A (read_fd, write_fd) pair, neither inherited by children unless passed explicitly."""
    return os.pipe()


def ready_env(write_fd: int, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: `env` (default: ours) plus DAGNATS_READY_FD."""
    child_env = dict(os.environ if env is None else env)
    child_env[READY_FD_ENV] = str(write_fd)
    return child_env


def _read_all(fd: int, buffer: bytearray) -> bool:
    """Read what the pipe holds into `buffer`; True at EOF (every write end closed)."""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        buffer.extend(chunk)


async def wait_ready(read_fd: int, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """True once the child wrote "ready"; False when it exited, closed the pipe or timed out.

    Event-driven (the loop watches the pipe and the process). Closes `read_fd`.
    """
    loop = asyncio.get_running_loop()
    os.set_blocking(read_fd, False)
    buffer = bytearray()
    verdict: asyncio.Future[bool] = loop.create_future()

    def on_readable() -> None:
        eof = _read_all(read_fd, buffer)
        if verdict.done():
            return
        if READY_MESSAGE.strip() in buffer:
            verdict.set_result(True)
        elif eof:
            verdict.set_result(False)

    loop.add_reader(read_fd, on_readable)
    exited = asyncio.ensure_future(wait_exit(proc))
    watched: set[asyncio.Future[bool] | asyncio.Future[int]] = {verdict, exited}
    try:
        await asyncio.wait(watched, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if not verdict.done():
            on_readable()  # it may have written "ready" just before exiting
        return verdict.done() and verdict.result()
    finally:
        exited.cancel()
        loop.remove_reader(read_fd)
        os.close(read_fd)
