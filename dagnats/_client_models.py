"""The public models of the client: runs, steps, events and workflows as the API returns them.

Their shapes are those of the CLI's `--json` output.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from dagnats.dag.events import RUN_TERMINAL_EVENTS, EventType
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.state import RunStatus, StepStatus


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class StepInfo(_Model):
    """One step of a run: its status, attempts so far, and its output or last error."""

    status: StepStatus
    attempts: int = 0
    output: Any = None
    error: str | None = None
    recovered_by: str | None = None
    """For a recovered step: the on_failure step that recovered it (absent from JSON else)."""
    waiting_for: dict[str, Any] | None = None
    """For a waiting step: what it waits for, {"kind": "time" | "event" | "approval", ...}
    (absent from JSON else)."""
    skip_reason: str | None = None
    """For a skipped step: why (absent from JSON else)."""
    started_at: datetime | None = None
    completed_at: datetime | None = None
    task: str | None = None
    """For a task step: its task name (absent from JSON for the other kinds)."""
    queued_at: datetime | None = None
    """For a queued step: when its current attempt was queued (absent from JSON else)."""
    unserved: str | None = None
    """For a step queued a while whose task no live worker serves: "no worker is serving
    task 'pack'" (`run status` fills it in; absent from JSON else)."""
    iteration: int | None = None
    """For an agent_loop step: how many iterations ended so far (absent from JSON else)."""
    child_run_id: str | None = None
    """For a sub_workflow step: the child run of its latest attempt (absent from JSON else)."""
    progress: dict[str, Any] | None = None
    """For a running step whose handler reported progress: the last report, {"fraction",
    "message", "attempt", "at"} (absent from JSON else)."""
    instances: dict[str, Any] | None = None
    """For a map step that began: total, counts by status, and each item's status, attempts
    and (the first failed ones') errors (absent from JSON for the other kinds)."""

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for optional in ("recovered_by", "waiting_for", "skip_reason", "task", "queued_at",
                         "unserved", "instances", "iteration", "progress",
                         "child_run_id"):
            if data.get(optional) is None:
                data.pop(optional, None)
        return data


class Run(_Model):
    """A run of a workflow: its status, input, output and steps (in topological order)."""

    run_id: str
    workflow: str
    version: str
    status: RunStatus
    input: Any = None
    output: Any = None
    error: str | None = None
    created_at: datetime
    completed_at: datetime | None = None
    steps: dict[str, StepInfo] = Field(default_factory=dict)
    parent_run_id: str | None = None
    """The run whose sub_workflow step started this one (None for a run started itself)."""
    root_run_id: str | None = None
    """The run at the top of its lineage (itself for a run started itself)."""
    children: list[str] = Field(default_factory=list)
    """The child runs its sub_workflow steps started (their latest attempts')."""

    @property
    def terminal(self) -> bool:
        """True once the run has completed, failed or been cancelled."""
        return self.status.terminal


class Decision(_Model):
    """A decision recorded on an approval step."""

    run_id: str
    step_id: str
    approved: bool
    by: str | None = None
    comment: str | None = None
    at: datetime


class Event(_Model):
    """One event of a run's history, in the order it was written (`seq`)."""

    seq: int
    type: EventType
    run_id: str
    step_id: str | None = None
    attempt: int = 0
    timestamp: datetime
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        """True for the event that ends a run."""
        return self.type in RUN_TERMINAL_EVENTS


class EventPage(_Model):
    """A page of a run's events, in history order, and the sequence to read on after (None
    on the last page)."""

    events: list[Event]
    next: int | None = None


class WorkflowInfo(_Model):
    """A registered workflow as listed: its versions and its latest one."""

    name: str
    latest: str
    versions: list[str]
    steps: int
    registered_at: datetime


class Workflow(_Model):
    """One version of a registered workflow, with every version registered under its name."""

    definition: WorkflowDefinition
    versions: list[str]
    latest: str

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self.definition.name


class Cancellation(_Model):
    """The outcome of a cancel: the run's status now, and whether this call changed it."""

    run_id: str
    status: RunStatus
    changed: bool


class DeadLetter(_Model):
    """A step that failed for good (`kind` "step"), kept 30 days to be replayed or discarded;
    or a message nobody could read (`kind` "poison"), kept raw to be looked at and
    discarded.

    A poison entry has no step; its `run_id` is known only for a run's history message, and
    its `task` only for a task message; `error` says what it was and why it is unreadable.
    """

    seq: int
    kind: Literal["step", "poison"] = "step"
    run_id: str | None
    step_id: str | None
    task: str | None
    error: str
    attempts: int
    timestamp: datetime
    source: str | None = None
    """A poison message's origin: history, task, timer or event."""
    source_seq: int | None = None
    """A poison message's sequence in its own stream."""


class DeadLetterPage(_Model):
    """A page of dead letters, newest first; how many are kept in all (of one run, when
    asked for one run's); and the `before` of the next page (None on the last)."""

    dead_letters: list[DeadLetter]
    total: int
    next: int | None = None


class Replay(_Model):
    """The outcome of a dead-letter replay: the revived run and the entries replayed."""

    run_id: str
    replayed: list[int]
    generation: int
    """The run's generation after the replay (how many times it has been resumed)."""


class RunCounts(_Model):
    """How many runs are in each status (statuses with none are left out), and in all."""

    counts: dict[str, int]
    total: int


class RunPage(_Model):
    """One page of `list_runs_page`: runs newest first (summaries: no input, output or
    steps; `get_run` has those), and the cursor of the next page (None on the last)."""

    runs: list[Run]
    next_cursor: str | None = None
class RunDeleted(_Model):
    """What `delete_run` removed: the run, the status it had ended with, and how many stored
    messages of each kind (events, snapshot, timers, dead letters, ...) went."""

    run_id: str
    status: str
    removed: dict[str, int]
