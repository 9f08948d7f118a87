"""TaskContext: what a handler knows about the task it runs, and how it keeps its lease."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from dagnats.dag.tasks import TaskMessage

_RUN_ID_SHOWN = 8


class _TaskLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every message with its run and step: "[run abcd1234 step greet#1] ..."."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        """Add the prefix, and the ids as `extra` fields for structured log handlers."""
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"{extra['prefix']} {msg}", kwargs


def task_logger(task: TaskMessage) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """The logger of one task attempt, under `dagnats.task.<task name>`."""
    prefix = f"[run {task.run_id[:_RUN_ID_SHOWN]} step {task.step_id}#{task.attempt}]"
    extra = {"prefix": prefix, "run_id": task.run_id, "step_id": task.step_id,
             "attempt": task.attempt}
    return _TaskLogger(logging.getLogger(f"dagnats.task.{task.task}"), extra)


class TaskContext:
    """The first argument of every handler: ids of the task, its attempt, a logger, heartbeat.

    The worker builds it; tests may build one from a TaskMessage to call a handler directly.
    """

    def __init__(
        self, task: TaskMessage, *, heartbeat: Callable[[], None] | None = None
    ) -> None:
        self._task = task
        self._heartbeat = heartbeat
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

        Optional: while a handler runs, the worker already extends its lease every lease/3,
        from the event loop, for sync handlers (which run in threads) and async ones alike.
        Nothing can help an async handler that blocks the event loop: no ack, heartbeat
        included, leaves until it yields. Do blocking work in a sync handler instead.
        """
        if self._heartbeat is not None:
            self._heartbeat()

    def __repr__(self) -> str:
        return (f"TaskContext(run_id={self.run_id!r}, step_id={self.step_id!r},"
                f" task={self.task!r}, attempt={self.attempt})")
