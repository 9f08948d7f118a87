"""TaskContext: what a handler knows about its task, how it keeps its lease, and cancellation."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from dagnats.dag.tasks import TaskMessage
from dagnats.worker._cancel import CancelSignal

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
    and whether its run has been cancelled.

    The worker builds it; tests may build one from a TaskMessage to call a handler directly
    (and pass a CancelSignal to play a cancellation).
    """

    def __init__(
        self, task: TaskMessage, *, heartbeat: Callable[[], None] | None = None,
        cancel: CancelSignal | None = None,
    ) -> None:
        self._task = task
        self._heartbeat = heartbeat
        self._cancel = cancel or CancelSignal()
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
        """Which attempt of the step this is: 1 for the first."""
        return self._task.attempt

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

    def __repr__(self) -> str:
        return (f"TaskContext(run_id={self.run_id!r}, step_id={self.step_id!r},"
                f" task={self.task!r}, attempt={self.attempt})")
