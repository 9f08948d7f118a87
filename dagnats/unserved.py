"""Which queued steps no live worker serves: the one rule `run start --watch`, `run watch`
and `run status` share (and any other view of a run). Pure: no I/O.

A task step queued for UNSERVED_AFTER_S or more whose task no live worker announces
(`dagnats.store.presence`) is unserved: it will wait until a worker of its task starts.
Nothing about the run changes; the rule only says so, so a newcomer who forgot the worker
(or mistyped a task name) is not left watching a silent run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from dagnats._client_models import Event, Run
from dagnats.dag.durations import format_duration
from dagnats.dag.events import EventType
from dagnats.dag.state import StepStatus
from dagnats.limits import UNSERVED_AFTER_S

#: What to do about an unserved step.
START_HINT = "start one with: dagnats worker run FILE"


@dataclass(frozen=True)
class QueuedTask:
    """A task step whose current attempt is queued (not yet taken by a worker)."""

    step_id: str
    task: str
    attempt: int
    queued_at: datetime


@dataclass(frozen=True)
class Unserved:
    """A queued step no live worker serves, and for how long it has waited."""

    step_id: str
    task: str
    attempt: int
    queued_s: float

    @property
    def reason(self) -> str:
        """"no worker is serving task 'pack'" (`run status --json`: the step's `unserved`)."""
        return f"no worker is serving task '{self.task}'"

    def text(self) -> str:
        """"queued 5s; no worker is serving task 'pack' (start one with: ...)"."""
        return (f"queued {format_duration(int(self.queued_s))}; {self.reason} "
                f"({START_HINT})")


def unserved(queued: Iterable[QueuedTask], served: set[str], now: datetime,
             after_s: float = UNSERVED_AFTER_S) -> list[Unserved]:
    """The steps of `queued` waiting `after_s` or more for a task none of `served` is."""
    found = []
    for step in queued:
        waited = (now - step.queued_at).total_seconds()
        if step.task not in served and waited >= after_s:
            found.append(Unserved(step.step_id, step.task, step.attempt, waited))
    return found


def unserved_steps(run: Run, served: set[str], now: datetime,
                   after_s: float = UNSERVED_AFTER_S) -> list[Unserved]:
    """The unserved steps of a run (none once it has ended)."""
    return [] if run.terminal else unserved(queued_tasks(run), served, now, after_s)


def queued_tasks(run: Run) -> list[QueuedTask]:
    """The task steps of a run that are queued now (from `run status`'s view of it)."""
    return [QueuedTask(step_id, step.task, step.attempts, step.queued_at)
            for step_id, step in run.steps.items()
            if step.status is StepStatus.QUEUED and step.task and step.queued_at]


class QueuedSteps:
    """The queued task steps of a run, from its events as a follower sees them."""

    def __init__(self) -> None:
        self._queued: dict[str, QueuedTask] = {}

    def see(self, event: Event) -> None:
        """Take one event into account (in history order)."""
        if event.step_id is None:
            return
        task = event.data.get("task")
        if event.type is EventType.STEP_QUEUED and isinstance(task, str):
            self._queued[event.step_id] = QueuedTask(event.step_id, task, event.attempt,
                                                     event.timestamp)
        else:  # started, completed, failed, waiting, skipped...: no longer waiting for one
            self._queued.pop(event.step_id, None)

    def queued(self) -> list[QueuedTask]:
        """The steps queued now."""
        return list(self._queued.values())
