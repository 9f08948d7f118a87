"""TaskContext: what a handler knows about its task, its lease, cancellation and checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from datetime import timedelta
from typing import Any

from dagnats.dag.tasks import TaskMessage
from dagnats.store import checkpoints
from dagnats.store.progress import checked_progress, encode_chunk
from dagnats.worker._cancel import CancelSignal
from dagnats.worker._run_data import Bridge, RunData, signal_wait_seconds
from dagnats.worker._telemetry import Telemetry

_RUN_ID_SHOWN = 8


class _TaskLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every message with its run and step: "[run abcd1234 step greet#1] ..."."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        """Add the prefix, and the ids as `extra` fields for structured log handlers."""
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"{extra['prefix']} {msg}", kwargs


def task_logger(task: TaskMessage) -> logging.LoggerAdapter[logging.Logger]:
    """The logger of one task attempt, under `dagnats.task.<task name>`."""
    prefix = f"[run {task.run_id[:_RUN_ID_SHOWN]} step {task.step_id}#{task.attempt}]"
    extra = {"prefix": prefix, "run_id": task.run_id, "step_id": task.step_id,
             "attempt": task.attempt}
    return _TaskLogger(logging.getLogger(f"dagnats.task.{task.task}"), extra)


class TaskContext:
    """The first argument of every handler: ids of the task, its attempt, a logger, heartbeat,
    whether its run has been cancelled, signals and checkpoints (docs/handlers.md).

    The worker builds it; tests may build one from a TaskMessage to call a handler directly
    (and pass a CancelSignal to play a cancellation). Signals and checkpoints need a
    worker: on a context built without one they raise RuntimeError.
    """

    def __init__(
        self, task: TaskMessage, *, heartbeat: Callable[[], None] | None = None,
        cancel: CancelSignal | None = None, run_data: RunData | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._task = task
        self._telemetry = telemetry
        self._heartbeat = heartbeat
        self._cancel = cancel or CancelSignal()
        self._bridge = None if run_data is None else Bridge(
            run_data, self._cancel,
            f"attempt {task.attempt} of step {task.step_id} of run {task.run_id}")
        self.kept_data = False
        """A checkpoint was saved or found in this attempt (its outcome says so, so the run's
        data is deleted when it ends)."""
        self.logger = task_logger(task)
        """A logger bound to this run and step; its messages start "[run abcd1234 step x#1]"."""

    @property
    def run_id(self) -> str:
        """The id of the workflow run this task belongs to."""
        return self._task.run_id

    @property
    def step_id(self) -> str:
        """The id of the step in the workflow definition."""
        return self._task.step_id

    @property
    def workflow(self) -> str:
        """The name of the workflow."""
        return self._task.workflow

    @property
    def task(self) -> str:
        """The task name this handler is registered under."""
        return self._task.task

    @property
    def attempt(self) -> int:
        """Which attempt of the step this is: 1 for the first (in an agent_loop, of this
        iteration: each iteration has the step's whole retry budget)."""
        return self._task.iteration_attempt or self._task.attempt

    @property
    def iteration(self) -> int | None:
        """Which iteration of an agent_loop step this call is (1 for the first); None in a
        step of any other kind."""
        return self._task.iteration

    @property
    def max_attempts(self) -> int:
        """Attempts allowed in all (the first plus the retries)."""
        return self._task.max_attempts

    def heartbeat(self) -> None:
        """Extend the task's lease now (JetStream in_progress). Thread-safe; never blocks.

        Optional: while a handler runs, the worker already extends its lease every lease/3
        from its own event loop. Sync handlers run in threads and async ones on a separate
        handler loop in a thread of its own, so even a handler that blocks keeps its lease.
        """
        if self._heartbeat is not None:
            self._heartbeat()

    @property
    def cancelled(self) -> bool:
        """True once the run this task belongs to has been cancelled (`dagnats run cancel`).

        Stop as soon as you can: nothing the handler returns is reported any more. An async
        handler still running `cancel_grace` (Worker; 5 s by default) later is cancelled
        with asyncio.CancelledError.
        """
        return self._cancel.is_set()

    async def wait_cancelled(self) -> None:
        """Return once the run is cancelled (at once if it already is)."""
        await self._cancel.wait()

    # --- progress and streaming -----------------------------------------------------------

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Say how far the step is: `fraction` from 0 to 1, and a short message (cut to
        limits.PROGRESS_MESSAGE_MAX_CHARS). Never blocks, in sync or async handlers alike.

        Followers (`run start --watch`, `run watch`) print it as it comes
        (`step.train: 40% epoch 2/5`), and `run status` shows the last one while the step
        runs. It is not kept in the run's history. ValueError for a fraction out of range.
        Outside a worker (a TaskContext built in a unit test) it checks and does nothing.
        """
        if self._telemetry is None:
            checked_progress(fraction, message)
            return
        self._telemetry.progress(fraction, message)

    def stream(self, data: Any) -> None:
        """Send one chunk of a stream (any JSON value: a model's tokens, log lines) to
        whoever follows the step (`run watch --stream`, `client.stream(run_id, step_id)`),
        in order. Never blocks; not kept in history (a follower that joins late sees only
        what comes after). ValueError when `data` is not JSON or over
        limits.STREAM_CHUNK_MAX_BYTES. Outside a worker it checks and does nothing.
        """
        if self._telemetry is None:
            encode_chunk(data, 1, self.attempt)
            return
        self._telemetry.stream(data)

    # --- signals -------------------------------------------------------------------------

    def wait_for_signal(self, name: str, timeout: timedelta | float | None = None
                        ) -> Awaitable[Any]:
        """Wait for signal `name` of this run; its JSON value (async handlers: await it).

        A signal sent before the wait counts: the wait returns it at once. Signals are kept,
        not consumed, so a later wait for the name (a retry of this step) returns the same
        value: use distinct names for distinct signals. `timeout` is seconds or a timedelta
        (5 minutes when None, at most limits.SIGNAL_WAIT_MAX_S); when it passes without the
        signal, TimeoutError: let it propagate to fail the attempt (retryable), or catch it.
        The step's own timeout still applies. RunCancelled as soon as the run is cancelled.
        While waiting the handler holds its worker slot (docs/handlers.md). TypeError in a
        sync handler, which calls `ctx.wait_for_signal_sync(...)`.
        """
        seconds = signal_wait_seconds(name, timeout)
        return self._run_data("wait_for_signal").awaitable(
            lambda: self._waiting(name, seconds), "wait_for_signal", "wait_for_signal_sync")

    def wait_for_signal_sync(self, name: str, timeout: timedelta | float | None = None) -> Any:
        """`wait_for_signal` for sync handlers: blocks the handler's thread until it returns.

        TypeError in an async handler, which uses `await ctx.wait_for_signal(...)`.
        """
        seconds = signal_wait_seconds(name, timeout)
        return self._run_data("wait_for_signal_sync").blocking(
            lambda: self._waiting(name, seconds), "wait_for_signal_sync", "wait_for_signal",
            seconds)

    def _waiting(self, name: str, seconds: float) -> Coroutine[Any, Any, Any]:
        """The wait, to run on the worker's loop (made in the handler's thread)."""
        self.logger.info("waiting for signal %s (up to %gs)", name, seconds)
        data = self._run_data("wait_for_signal").data
        return data.wait_for_signal(self._task, name, seconds, self._cancel)

    # --- checkpoints ---------------------------------------------------------------------

    def checkpoint(self, state: Any) -> None:
        """Save `state` as this step's checkpoint, replacing the last one (sync handlers).

        `state` is any JSON value (pydantic models and dataclasses are dumped as JSON). It is
        stored before this returns, and kept for every later attempt of the step, a retry or
        a redelivery after the worker died, until the run ends. ValueError (naming the run,
        the step and the sizes) when it is not JSON or over limits.CHECKPOINT_MAX_BYTES;
        TypeError in an async handler, which uses `await ctx.acheckpoint(state)`.
        """
        self._run_data("checkpoint").blocking(lambda: self._saving(state), "checkpoint",
                                              "acheckpoint", 0.0)

    def acheckpoint(self, state: Any) -> Awaitable[None]:
        """`checkpoint` for async handlers: `await ctx.acheckpoint(state)`."""
        return self._run_data("acheckpoint").awaitable(lambda: self._saving(state),
                                                       "acheckpoint", "checkpoint")

    def load_checkpoint(self) -> Any:
        """The state of this step's last checkpoint, or None when there is none (sync handlers).

        It is plain JSON: rebuild a model with `Model.model_validate(...)`. TypeError in an
        async handler, which uses `await ctx.aload_checkpoint()`.
        """
        return self._run_data("load_checkpoint").blocking(
            self._load_state, "load_checkpoint", "aload_checkpoint", 0.0)

    def aload_checkpoint(self) -> Awaitable[Any]:
        """`load_checkpoint` for async handlers: `await ctx.aload_checkpoint()`."""
        return self._run_data("aload_checkpoint").awaitable(
            self._load_state, "aload_checkpoint", "load_checkpoint")

    async def _load_state(self) -> Any:
        """Runs on the worker's loop."""
        data = self._run_data("load_checkpoint").data
        found = await data.load_checkpoint(self.run_id, self.step_id)
        if found is None:
            return None
        self.kept_data = True
        return found.state

    def _saving(self, state: Any) -> Coroutine[Any, Any, None]:
        """The save, to run on the worker's loop; `state` is encoded here, in the handler's
        thread (ValueError when it is not JSON or too large)."""
        payload = checkpoints.encode(state, run_id=self.run_id, step_id=self.step_id,
                                     attempt=self.attempt)
        self.kept_data = True
        return self._run_data("checkpoint").data.save_checkpoint(self.run_id, self.step_id,
                                                                 payload)

    def _run_data(self, spelling: str) -> Bridge:
        if self._bridge is None:
            raise RuntimeError(
                f"ctx.{spelling}() is not available outside a worker: this TaskContext was"
                " built without one (as in a unit test); run the handler in a Worker")
        return self._bridge

    def _close(self) -> None:
        """The attempt is over (the worker calls this): pending calls end, new ones fail."""
        if self._bridge is not None:
            self._bridge.close()

    def __repr__(self) -> str:
        return (f"TaskContext(run_id={self.run_id!r}, step_id={self.step_id!r},"
                f" task={self.task!r}, attempt={self.attempt})")
