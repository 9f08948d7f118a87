"""One supervised child process: what to run (ChildSpec) and one running instance of it.

A child gets the ready pipe (see `dagnats.server.ready`), appends its stdout and stderr to its
log file, and receives SIGTERM if the supervisor dies (PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dagnats.errors import ServeError
from dagnats.server.procs import die_with_parent, open_log, terminate_tree, wait_exit
from dagnats.server.ready import ready_env, ready_pipe, wait_ready

#: How long a child may take between its spawn and `notify_ready()`.
READY_TIMEOUT_S = 15.0
#: How long a child that failed to become ready gets to exit on SIGTERM.
FAILED_STOP_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ChildSpec:
    """A child to supervise. `env` holds extra variables on top of the supervisor's own."""

    name: str
    argv: list[str]
    env: dict[str, str] | None
    log_path: Path
    #: Give up after this many starts in a row that fail (None: never): a worker file that
    #: cannot start will not start by being run again. Exit code 3 (NATS unreachable) does
    #: not count: that passes.
    give_up_after: int | None = None


class ChildProcess:
    """The running instance of a ChildSpec; `start()` again after it exited to restart it."""

    def __init__(self, spec: ChildSpec, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        self.spec = spec
        self.name = spec.name
        self.ready_timeout_s = ready_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The pid of the current (or last) process; None before the first start."""
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); the exit code once it exited."""
        return self._proc.poll() if self._proc else None

    async def start(self) -> None:
        """Spawn the child and wait for it to report ready; ServeError (one line) if it does not."""
        read_fd, write_fd = ready_pipe()
        try:
            proc = self._spawn(write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child holds its own copy; EOF must come when it dies
        self._proc = proc
        began = time.monotonic()
        try:
            ready = await wait_ready(read_fd, proc, self.ready_timeout_s)
        except BaseException:
            await terminate_tree(proc, FAILED_STOP_TIMEOUT_S)
            raise
        if not ready:
            timed_out = time.monotonic() - began >= self.ready_timeout_s
            reason = await self._not_ready_reason(proc, timed_out)
            await terminate_tree(proc, FAILED_STOP_TIMEOUT_S)
            raise ServeError(f"{self.name} {reason}; see {self.spec.log_path}")

    async def _not_ready_reason(self, proc: subprocess.Popen[bytes], timed_out: bool) -> str:
        if timed_out:
            return f"did not report ready within {self.ready_timeout_s:g}s"
        try:  # the pipe closed: the child is exiting, and its exit code shows a moment later
            code = await asyncio.wait_for(wait_exit(proc), FAILED_STOP_TIMEOUT_S)
        except TimeoutError:
            return "closed its ready pipe without reporting ready"
        return f"exited with code {code} before reporting ready"

    def _spawn(self, write_fd: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(self.spec.env or {})
        log_fd = open_log(self.spec.log_path)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(log_fd, f"--- {stamp} dagnats: starting {self.name}\n".encode())
        try:
            return subprocess.Popen(
                self.spec.argv, stdin=subprocess.DEVNULL, stdout=log_fd,
                stderr=subprocess.STDOUT, env=ready_env(write_fd, env), pass_fds=(write_fd,),
                preexec_fn=die_with_parent(),
            )
        except OSError as exc:
            raise ServeError(
                f"cannot run {self.name} ({self.spec.argv[0]}): {exc.strerror or exc}"
            ) from exc
        finally:
            os.close(log_fd)

    async def wait(self) -> int:
        """Wait until the child exits and return its code (negative: killed by that signal)."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return await wait_exit(self._proc)

    async def stop(self, timeout_s: float) -> int | None:
        """SIGTERM the child; after `timeout_s` SIGKILL it and its descendants (None: unstarted)."""
        if self._proc is None:
            return None
        return await terminate_tree(self._proc, timeout_s)
