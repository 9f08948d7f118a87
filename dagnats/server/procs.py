"""Process and port helpers shared by NatsServer and the Supervisor.

Children are plain `subprocess.Popen` objects, not asyncio subprocesses: a Popen does not
belong to one event loop, so a server started under one `asyncio.run` (a pytest fixture)
can be stopped under another. Waiting for exit stays event-driven through a pidfd on Linux.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

from dagnats.errors import PortInUse
from dagnats.local_auth import private_dir
from dagnats.server.logs import rotate_if_large

PR_SET_PDEATHSIG = 1
#: How often exit is polled where no pidfd exists (macOS); Linux never polls.
EXIT_POLL_INTERVAL_S = 0.05


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved once in the parent so the forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` making the child receive `sig` when its parent dies (Linux only).

    Returns None where the kernel offers no such thing. Spawn from the thread that lives as
    long as the child should: the kernel ties the signal to the forking thread. The kernel
    sends it again each time the child is handed to another thread of the dying parent, so
    a parent with several threads killed -9 can send it more than once: serve keeps to one
    thread while it supervises, and workers ignore a repeat once their parent is gone.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl ran: act as the kernel would
            os.kill(os.getpid(), sig)

    return preexec


def open_log(path: Path) -> int:
    """Open `path` for appending (creating its folder; rotating it when large) and return the
    fd, for a child's output. Logs are private: 0600 in a 0700 folder."""
    private_dir(path.parent)
    rotate_if_large(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)  # a log written by an older version may be world-readable
    return fd


def log_tail(path: Path, lines: int = 15) -> str:
    """The last `lines` lines of a log file, or a note when it cannot be read."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_owner(port: int) -> str | None:
    """Best effort "pid N name X" of the process listening on `port`; None when unknown."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in conns:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                return None
            with contextlib.suppress(psutil.Error):
                return f"pid {conn.pid} name {psutil.Process(conn.pid).name()}"
            return f"pid {conn.pid}"
    return None


def check_port_free(host: str, port: int, flag: str) -> None:
    """Raise PortInUse (naming the owner when psutil can tell) when `port` cannot be listened on.

    SO_REUSEADDR is set on purpose, as nats-server (Go) sets it: on Linux it still refuses a
    port someone listens on, but ignores the TIME_WAIT connections a just-stopped server leaves,
    which would otherwise block every quick restart for a minute.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if os.name == "posix":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            owner = port_owner(port)
            who = f" ({owner})" if owner else ""
            raise PortInUse(
                f"port {port} on {host} is taken by another process{who}; "
                f"choose another with {flag}"
            ) from exc


async def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """Wait until `proc` exits and return its code (negative: killed by that signal)."""
    if proc.returncode is not None:
        return proc.returncode
    if not hasattr(os, "pidfd_open"):
        # No pidfd (macOS): a waiting thread could outlive the loop, so poll instead.
        while (code := proc.poll()) is None:  # noqa: ASYNC110
            await asyncio.sleep(EXIT_POLL_INTERVAL_S)
        return code
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # already reaped by someone else
        return int(proc.wait())
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return int(proc.wait())


async def terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM `proc`, wait up to `timeout_s`, then SIGKILL it; return its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            return await asyncio.wait_for(wait_exit(proc), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    return await wait_exit(proc)


async def terminate_tree(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """`terminate` for a process that may have children: SIGKILL its leftover descendants too.

    The family is noted before the signals, because once `proc` dies its orphans are
    reparented and can no longer be found from it.
    """
    if proc.poll() is not None:
        return int(proc.returncode)  # reaped: its pid may belong to someone else by now
    family = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(wait_exit(proc), timeout_s)
    except TimeoutError:
        family += descendants(proc.pid)  # not reaped yet, so the pid is still its own
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    code = await wait_exit(proc)
    kill_all(family)
    return code


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of `pid` (empty when it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_all(procs: Iterable[psutil.Process]) -> None:
    """SIGKILL every process still alive (psutil checks the pid was not reused)."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
