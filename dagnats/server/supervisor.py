"""The supervisor of `dagnats serve`: keeps nats-server and the children running until a signal.

Policy:
- Start: every child at once, each waiting for its ready report; one that does not become
  ready counts as a crash.
- Crash: log one line and restart after a backoff (0.5 s doubling to 30 s, back to 0.5 s
  once the unit stayed up 60 s). nats-server restarts on the same store and port; the
  children reconnect by themselves.
- Give up: a child whose spec says so (`give_up_after`, the workers) and that fails that many
  starts in a row (exit code 3, NATS unreachable, aside) is reported in one line, with the
  last line of its log, and left stopped: `failed` names it and says why.
- Stop (SIGINT/SIGTERM): children in reverse start order, SIGTERM each, a shared 6 s
  deadline, then SIGKILL to whatever is left and their descendants; nats-server last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dagnats.server.child import READY_TIMEOUT_S, ChildProcess, ChildSpec
from dagnats.server.nats_process import NatsServer
from dagnats.server.procs import log_tail

#: Shared deadline for every child to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT_S = 6.0
#: nats-server gets this long after the children; the whole stop stays under 10 s.
NATS_STOP_TIMEOUT_S = 3.0


def self_command(*args: str) -> list[str]:
    """The argv that runs dagnats itself with `args`: the zipapp (shiv) file, or `-m dagnats`."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and os.path.isfile(argv0) and zipfile.is_zipfile(argv0):
        return [sys.executable, os.path.abspath(argv0), *args]
    return [sys.executable, "-m", "dagnats", *args]


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff between restarts of a unit that crashed."""

    initial_delay_s: float = 0.5
    max_delay_s: float = 30.0
    reset_after_s: float = 60.0  # a unit up this long is healthy again: back to initial_delay_s


class Unit(Protocol):
    """What the supervisor keeps running: a ChildProcess or the NatsServer."""

    name: str

    async def start(self) -> None: ...
    async def wait(self) -> int: ...
    async def stop(self, timeout_s: float) -> int | None: ...


class Supervisor:
    """Starts the children, restarts whatever crashes, and stops everything on a signal.

    The supervisor owns `nats` when given one: it restarts it on a crash and stops it last.
    """

    def __init__(
        self,
        *,
        nats: NatsServer | None = None,
        logger: logging.Logger | None = None,
        policy: RestartPolicy | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.nats = nats
        self.log = logger or logging.getLogger("dagnats.serve")
        self.policy = policy or RestartPolicy()
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.children: list[ChildProcess] = []
        self.restarts: dict[str, int] = {}
        self.failed: dict[str, str] = {}  # children given up on: why
        self.on_change: Callable[[str, str, str], None] | None = None  # (name, state, detail)
        self.exit_code = 0
        self._stop = asyncio.Event()
        self._keepers: list[asyncio.Task[None]] = []
        self._signals: list[int] = []
        self._nats_kept = False

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Ask `run()` / `wait_stopped()` to return; `shutdown()` does the stopping."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """Make SIGINT and SIGTERM request a stop (from the running loop, main thread only)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            if sig in self._signals:
                continue
            loop.add_signal_handler(sig, self._on_signal, sig)
            self._signals.append(sig)

    def remove_signal_handlers(self) -> None:
        """Undo `install_signal_handlers`."""
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()

    def _on_signal(self, sig: int) -> None:
        if not self.stopping:
            self.log.info("received %s; stopping", signal.Signals(sig).name)
        self.request_stop()

    async def start(self, specs: Sequence[ChildSpec]) -> list[str]:
        """Start nats (unless running) and every child; return the names not ready at first.

        Those are restarted with backoff like any crash. Raises only if nats-server cannot start.
        """
        if self.nats is not None and not self._nats_kept:
            if not self.nats.running:
                await self.nats.start()
            self._keep(self.nats, None)
            self._nats_kept = True
        new = [ChildProcess(spec, self.ready_timeout_s) for spec in specs]
        self.children.extend(new)
        errors = await asyncio.gather(*(self._try_start(child) for child in new))
        for child, error in zip(new, errors, strict=True):
            self._keep(child, error)
        return [child.name for child, error in zip(new, errors, strict=True) if error is not None]

    async def wait_stopped(self) -> None:
        """Return once a stop was requested (a signal, or `request_stop()`)."""
        await self._stop.wait()

    async def run(
        self, specs: Sequence[ChildSpec], on_started: Callable[[list[str]], None] | None = None
    ) -> int:
        """Start, call `on_started(names not ready)`, wait for a signal, shut down; the exit code.

        A signal during the start cancels it: children still starting are stopped too.
        """
        if not self._signals:
            self.install_signal_handlers()
        starting = asyncio.ensure_future(self.start(specs))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not stopped.done():
                failed = starting.result()
                if on_started is not None:
                    on_started(failed)
                await stopped
        finally:
            for task in (starting, stopped):
                task.cancel()
            await asyncio.gather(starting, stopped, return_exceptions=True)
            await self.shutdown()
            self.remove_signal_handlers()
        return self.exit_code

    async def shutdown(self) -> None:
        """Stop every child (reverse start order, shared deadline), then nats-server."""
        self._stop.set()
        for task in self._keepers:
            task.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
        self._keepers.clear()
        deadline = time.monotonic() + self.stop_timeout_s
        for child in reversed(self.children):
            code = await child.stop(max(0.0, deadline - time.monotonic()))
            self.log.debug("%s stopped with code %s", child.name, code)
        if self.nats is not None:
            await self.nats.stop(NATS_STOP_TIMEOUT_S)

    def _keep(self, unit: Unit, first_error: str | None) -> None:
        task = asyncio.create_task(self._keep_running(unit, first_error), name=f"keep-{unit.name}")
        self._keepers.append(task)

    async def _keep_running(self, unit: Unit, error: str | None) -> None:
        """Restart `unit` with backoff whenever it exits or fails to start, until cancelled."""
        delay = self.policy.initial_delay_s
        failed_starts = 0
        try:
            while True:
                if error is None:
                    failed_starts = 0
                    self._changed(unit.name, "running", "")
                    up_since = time.monotonic()
                    code = await unit.wait()
                    if self.stopping:
                        return
                    if time.monotonic() - up_since >= self.policy.reset_after_s:
                        delay = self.policy.initial_delay_s
                    error = f"exited with code {code}"
                elif _counts_as_start_failure(error):
                    failed_starts += 1
                    if self._give_up(unit, error, failed_starts):
                        return
                count = self.restarts[unit.name] = self.restarts.get(unit.name, 0) + 1
                self.log.warning(
                    "%s %s; restarting in %.1fs (restart %d)", unit.name, error, delay, count
                )
                if await self._stopped_within(delay):
                    return
                delay = min(delay * 2, self.policy.max_delay_s)
                error = await self._try_start(unit)
        except Exception as exc:  # a bug here must not leave a unit silently unsupervised
            self.log.error("supervising %s failed (%r); stopping", unit.name, exc)
            self.exit_code = 1
            self.request_stop()

    def _changed(self, name: str, state: str, detail: str) -> None:
        if self.on_change is not None:
            self.on_change(name, state, detail)

    def _give_up(self, unit: Unit, error: str, failed_starts: int) -> bool:
        """True (after saying so in one line) when `unit` failed to start too often."""
        spec = getattr(unit, "spec", None)
        tries = getattr(spec, "give_up_after", None)
        if tries is None or failed_starts < tries:
            return False
        log_path = getattr(spec, "log_path", None)
        last = last_log_line(log_path) if log_path is not None else None
        reason = f"{error.split('; see ')[0]}" + (f": {last}" if last else "")
        where = f"; see {log_path}" if log_path is not None else ""
        self.log.error("%s cannot start (%d tries, given up): %s%s; fix it and restart serve",
                       unit.name, failed_starts, reason, where)
        self.failed[unit.name] = reason
        self._changed(unit.name, "failed", reason)
        return True

    async def _try_start(self, unit: Unit) -> str | None:
        """Start `unit`; None on success, else why it failed (one line)."""
        try:
            await unit.start()
        except Exception as exc:  # any start failure is a crash to back off from, not ours
            message = str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
            return message.removeprefix(f"{unit.name} ")
        return None

    async def _stopped_within(self, delay_s: float) -> bool:
        """Wait `delay_s` unless a stop comes first; True when stopping."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay_s)
        return self.stopping


def _counts_as_start_failure(error: str) -> bool:
    """A failed start counts towards giving up unless the child said NATS was unreachable
    (exit code 3, dagnats' ServerUnavailable): that passes by itself."""
    return "exited with code 3 " not in f"{error} "


def last_log_line(path: Path) -> str | None:
    """The last line a child wrote to its log (not serve's own "--- ... starting" marks)."""
    lines = [line.strip() for line in log_tail(path, 20).splitlines()]
    written = [line for line in lines if line and not line.startswith("--- ")]
    return written[-1][:300] if written else None
