"""Pure formatting of CLI output: watch lines, run status, event lists and tables.

No I/O: every function takes client models and returns text, so unit tests cover the
exact output the tutorial promises.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dagnats._client_models import DeadLetter, Event, Run, StepInfo, Workflow, WorkflowInfo
from dagnats.dag.durations import format_duration
from dagnats.dag.events import EventType
from dagnats.dag.kinds import ApprovalStep, MapStep, SleepStep, TaskStep, WaitForEventStep
from dagnats.dag.model import StepBase, WorkflowDefinition
from dagnats.dag.state import StepStatus
from dagnats.program import with_program
from dagnats.unserved import START_HINT

if TYPE_CHECKING:  # a model only: render stays free of the transport
    from dagnats.store.presence import WorkerEntry

E = EventType


def compact_json(value: Any) -> str:
    """A value as one line of JSON, non-ASCII kept as is: "Hello, World!" -> '"Hello, World!"'."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


#: Values whose JSON is longer than this are cut short in human output (--json has them).
SHOWN_MAX_CHARS = 4096
#: How much of a value cut short is shown.
SHOWN_HEAD_CHARS = 200


def shown_json(value: Any) -> str:
    """`compact_json`, cut short with its size when it is long (a large payload): the
    whole value is in the command's --json output."""
    text = compact_json(value)
    if len(text) <= SHOWN_MAX_CHARS:
        return text
    size = len(text.encode())
    return f"{text[:SHOWN_HEAD_CHARS]}... ({size:,} bytes; --json shows it all)"


def pretty_json(value: Any) -> str:
    """A value as indented JSON, for --json output."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def definition_summary(definition: WorkflowDefinition) -> str:
    """'hello-pipeline (version 1.0, 3 steps)'."""
    count = len(definition.steps)
    return f"{definition.name} (version {definition.version}, {count} step{_s(count)})"


def watch_line(event: Event) -> str | None:
    """The line `--watch` prints for an event, or None for a quiet event (step.started...)."""
    if event.type is E.STEP_COMPLETED and "[" in (event.step_id or ""):
        return None  # one map instance of many: the map's own lines tell its progress
    render = _WATCH_LINES.get(event.type)
    return render(event) if render is not None else None


class MapTally:
    """The `--watch` lines of a map's progress: one each time another tenth of its items
    has completed ('step.each: 300/1000 items done'), since a line per item would drown
    the rest. Fed every event of the run, in order."""

    def __init__(self) -> None:
        self._total: dict[str, int] = {}
        self._done: dict[str, int] = {}

    def see(self, event: Event) -> str | None:
        """The line this event calls for, if any."""
        step_id = event.step_id or ""
        waits = event.data.get("waiting_for") if event.type is E.STEP_WAITING else None
        if isinstance(waits, dict) and waits.get("kind") == "map":
            self._total[step_id] = int(waits.get("items") or 0)
            self._done[step_id] = 0
            return None
        parent = step_id.partition("[")[0]
        total = self._total.get(parent)
        if event.type is not E.STEP_COMPLETED or "[" not in step_id or not total:
            return None
        before = self._done[parent]
        done = self._done[parent] = before + 1
        if done * 10 // total == before * 10 // total and done != total:
            return None  # still within the same tenth
        return f"step.{parent}: {done}/{total} items done"


def started_line(run_id: str) -> str:
    """The first line `--watch` prints for a run it starts."""
    return f"Run {run_id} started"


def _queued(event: Event) -> str | None:
    loop = event.data.get("loop")
    if isinstance(loop, dict):  # an agent_loop's iteration: its own attempts count
        attempt = loop.get("attempt")
        if not isinstance(attempt, int) or attempt <= 1:
            return None  # the next iteration: "iteration N done" said it
        return f"step.{event.step_id}: retrying iteration {loop.get('iteration')} " \
               f"(attempt {attempt})"
    if event.attempt <= 1:
        return None
    delay_s = float(event.data.get("delay_s") or 0)
    if not delay_s:  # such as the first attempt after a resume
        return f"step.{event.step_id}: retrying (attempt {event.attempt})"
    return f"step.{event.step_id}: retrying in {format_duration(delay_s)}"


def _error(event: Event) -> str:
    return str(event.data.get("error") or "failed")


def waiting_text(waiting_for: dict[str, Any] | None) -> str:
    """What a waiting step waits for: 'waiting until 2026-12-03T12:00:00Z', 'waiting for
    event payment.received', 'waiting for approval'."""
    waits = waiting_for or {}
    until = _utc_text(waits.get("until"))
    match waits.get("kind"):
        case "time":
            return f"waiting until {until}"
        case "event":
            match = waits.get("match") or {}
            where = (f" with {match.get('left')} = {compact_json(match.get('value'))}"
                     if match else "")
            limit = f" (until {until})" if until else ""
            return f"waiting for event {waits.get('event')}{where}{limit}"
        case "approval":
            limit = f" (until {until})" if until else ""
            return f"waiting for approval{limit}"
        case "signal":
            return f"waiting for signal {waits.get('signal')} (until {until})"
        case "child":
            child = str(waits.get("run_id") or "")[:8]
            return f"waiting for child run {child} ({waits.get('workflow')})"
        case "iteration":
            return f"iteration {waits.get('iteration')} done, the next one is being queued"
        case "map":
            count = waits.get("items")
            return f"mapping {count} item{_s(count if isinstance(count, int) else 0)}"
    return "waiting"


def progress_text(report: dict[str, Any]) -> str:
    """A progress report as a person reads it: '40% epoch 2/5'."""
    fraction = report.get("fraction")
    percent = f"{float(fraction) * 100:.0f}%" if isinstance(fraction, int | float) else "?%"
    message = report.get("message")
    return f"{percent} {message}" if message else percent


def progress_line(step_id: str, report: dict[str, Any]) -> str:
    """The `--watch` line of a progress report: 'step.train: 40% epoch 2/5'."""
    return f"step.{step_id}: {progress_text(report)}"


def tree_lines(node: dict[str, Any], depth: int = 0) -> list[str]:
    """`run tree`: one line per run, each child indented under its parent with the step
    that started it: 'ship: 3f2a9c1e... shipping completed'."""
    step = f"{node['step_id']}: " if node.get("step_id") else ""
    what = "(not shown: too many runs)" if node.get("cut") else \
        f"{node.get('workflow') or '-'} {node.get('status')}"
    lines = [f"{'  ' * depth}{'- ' if depth else ''}{step}{node['run_id']} {what}"]
    for child in node.get("children") or []:
        lines += tree_lines(child, depth + 1)
    return lines


def map_progress(instances: dict[str, Any]) -> str:
    """A map step under way: 'running 37/100', with '(2 failed)' when some failed."""
    counts = instances.get("counts") or {}
    failed = counts.get("failed", 0)
    tail = f" ({failed} failed)" if failed else ""
    return f"running {counts.get('completed', 0)}/{instances.get('total', 0)}{tail}"


def _utc_text(value: Any) -> str | None:
    """An ISO time as '2026-12-03T12:00:00Z' (UTC, whole seconds)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _skipped(event: Event) -> str:
    reason = str(event.data.get("reason") or "")
    return f"step.{event.step_id}: skipped ({reason})" if event.data.get("satisfied") \
        else f"step.{event.step_id}: skipped"


_WATCH_LINES: dict[EventType, Callable[[Event], str | None]] = {
    E.WORKFLOW_STARTED: lambda e: started_line(e.run_id),
    E.STEP_QUEUED: _queued,
    E.STEP_WAITING: lambda e: f"step.{e.step_id}: {waiting_text(e.data.get('waiting_for'))}",
    E.STEP_COMPLETED: lambda e: f"step.{e.step_id}: completed",
    E.STEP_FAILED: lambda e: f"step.{e.step_id}: failed ({_attempt_of(e)}): {_error(e)}",
    E.STEP_RECOVERED: lambda e: f"step.{e.step_id}: recovered by {e.data.get('by', '?')}",
    E.STEP_SKIPPED: _skipped,
    E.STEP_ITERATED: lambda e: f"step.{e.step_id}: iteration {e.data.get('iteration')} done",
    E.SIGNAL_SENT: lambda e: f"signal {e.data.get('name')}: sent",
    E.WORKFLOW_COMPLETED: lambda e: f"Run {e.run_id} completed",
    E.WORKFLOW_FAILED: lambda e: f"Run {e.run_id} failed: {_error(e)}",
    E.WORKFLOW_CANCELLED: lambda e: f"Run {e.run_id} cancelled",
    E.WORKFLOW_RESUMED: lambda e: f"Run {e.run_id} resumed",
    E.WORKFLOW_COMPENSATING: lambda e: f"Run {e.run_id} compensating: {_error(e)}",
    E.WORKFLOW_COMPENSATED: lambda e: f"Run {e.run_id} compensated",
    E.WORKFLOW_COMPENSATE_FAILED: lambda e: f"Run {e.run_id} compensate_failed: {_error(e)}",
}
"""Every event type `--watch` shows; the others (and types a newer server adds) are quiet."""


def _attempt_of(event: Event) -> str:
    """'attempt 1 of 4'; 'not retryable' for a failure no retry follows whatever the budget."""
    if event.data.get("retryable") is False:
        return "not retryable"
    allowed = event.data.get("max_attempts")
    iteration, attempt = event.data.get("iteration"), event.data.get("iteration_attempt")
    if iteration is not None and attempt is not None:  # an agent_loop's iteration
        return f"iteration {iteration}, attempt {attempt} of {allowed}"
    return f"attempt {event.attempt} of {allowed}" if allowed else f"attempt {event.attempt}"


def status_lines(run: Run, now: datetime | None = None) -> list[str]:
    """The `run status` layout: run id, status, then one line per step (topological order).
    `now`: the time the queued steps' waits are counted to."""
    lines = [f"Run: {run.run_id}", f"Status: {run.status.value}"]
    if run.error:
        lines.append(f"Error: {run.error}")
    lines.append("Steps:")
    lines.extend(f"{step_id}: {step_summary(step, now)}" for step_id, step in run.steps.items())
    return lines


def step_summary(step: StepInfo, now: datetime | None = None) -> str:
    """'completed "HELLO"', 'failed after 2 attempts: boom', 'running (attempt 2)',
    'running 40% epoch 2/5' (its last progress), 'running (iteration 3)', 'pending'.

    A recovered step: 'recovered by fallback after 1 attempt: boom'. A queued step no worker
    serves: "queued 12s; no worker is serving task 'pack' (start one with: ...)".
    """
    if step.unserved and step.queued_at and now is not None:
        waited = max(0, int((now - step.queued_at).total_seconds()))
        return f"queued {format_duration(waited)}; {step.unserved} ({with_program(START_HINT)})"
    if step.status is StepStatus.COMPLETED:
        return f"completed {shown_json(step.output)}"
    count = step.attempts
    failure = f"after {count} attempt{_s(count)}: {step.error or 'no error message'}"
    if step.status is StepStatus.FAILED:
        return f"failed {failure}"
    if step.status is StepStatus.RECOVERED:
        return f"recovered by {step.recovered_by or 'its on_failure step'} {failure}"
    if step.status is StepStatus.WAITING and step.instances:
        return map_progress(step.instances)
    if step.status is StepStatus.WAITING:
        return waiting_text(step.waiting_for)
    if step.status is StepStatus.SKIPPED and step.skip_reason:
        return f"skipped ({step.skip_reason})"
    if step.status not in (StepStatus.QUEUED, StepStatus.RUNNING):
        return step.status.value
    parts = [step.status.value]
    if step.iteration:
        parts.append(f"(iteration {step.iteration + 1})")
    elif step.attempts > 1:
        parts.append(f"(attempt {step.attempts})")
    if step.progress and step.status is StepStatus.RUNNING:
        parts.append(progress_text(step.progress))
    return " ".join(parts)


#: The header row of `run events`.
EVENTS_HEADER = ("TIME", "EVENT", "STEP", "ATTEMPT", "DATA")


def event_lines(events: Sequence[Event], header: bool = False,
                widths: Sequence[int] | None = None) -> list[str]:
    """`run events`: timestamp, type, step, attempt and data, one aligned line per event
    (under a header row with `header`). With `widths` (`event_widths`), the columns have
    those widths, so lines printed later (`--follow`) line up with the first ones.

    The definition copied into workflow.started is left out (`--json` has it): it would
    make the first line as long as the whole workflow.
    """
    rows = [[
        event.timestamp.isoformat(timespec="milliseconds"), event.type.value,
        event.step_id or "-", f"attempt={event.attempt}" if event.attempt else "-",
        shown_json({k: v for k, v in event.data.items() if k != "definition"}),
    ] for event in events]
    if widths is None:
        return table(rows, EVENTS_HEADER if header else None)
    shown = [list(EVENTS_HEADER), *rows] if header else rows
    return ["  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
            .rstrip() for row in shown]


def event_widths(events: Sequence[Event]) -> list[int]:
    """Column widths of `run events` wide enough for `events` and for any event type, a
    millisecond UTC timestamp and attempts up to 99 (the columns before the data)."""
    steps = [len(e.step_id) for e in events if e.step_id]
    return [len("2026-12-03T12:00:00.000+00:00"), max(len(t.value) for t in EventType),
            max([len(EVENTS_HEADER[2]), *steps]), len("attempt=99")]


def runs_table(runs: Sequence[Run]) -> list[str]:
    """`run list`: one line per run under a header."""
    if not runs:
        return ["No runs."]
    rows = [[run.run_id, run.workflow, run.version, run.status.value,
             run.created_at.isoformat(timespec="seconds")] for run in runs]
    return table(rows, ["RUN ID", "WORKFLOW", "VERSION", "STATUS", "CREATED"])


def workers_table(workers: Sequence[WorkerEntry], now: datetime) -> list[str]:
    """`worker list`: one line per live worker under a header (or how to start one)."""
    if not workers:
        return [f"No live workers ({with_program(START_HINT)})."]
    rows = [[w.id, w.name, w.host, str(w.pid), ", ".join(w.tasks),
             f"{w.in_flight}/{w.concurrency}" if w.concurrency else str(w.in_flight),
             f"{w.started_at.isoformat(timespec='seconds')} "
             f"({format_duration(max(0, int((now - w.started_at).total_seconds())))} ago)"]
            for w in workers]
    return table(rows, ["ID", "NAME", "HOST", "PID", "TASKS", "IN FLIGHT", "UP SINCE"])


def dead_letters_table(entries: Sequence[DeadLetter]) -> list[str]:
    """`dlq list`: one line per dead letter under a header, the error last."""
    if not entries:
        return ["No dead letters."]
    rows = [[str(e.seq), e.run_id or "-", e.step_id or "-", e.task or "-",
             str(e.attempts) if e.kind == "step" else "-",
             e.timestamp.isoformat(timespec="seconds"), e.error] for e in entries]
    return table(rows, ["SEQ", "RUN ID", "STEP", "TASK", "ATTEMPTS", "FAILED AT", "ERROR"])


def workflows_table(workflows: Sequence[WorkflowInfo]) -> list[str]:
    """`workflow list`: one line per workflow under a header."""
    if not workflows:
        return ["No workflows registered."]
    rows = [[wf.name, wf.latest, ", ".join(wf.versions), str(wf.steps),
             wf.registered_at.isoformat(timespec="seconds")] for wf in workflows]
    return table(rows, ["NAME", "LATEST", "VERSIONS", "STEPS", "REGISTERED"])


def workflow_lines(workflow: Workflow) -> list[str]:
    """`workflow show`: name, versions, then each step with its task and dependencies."""
    definition = workflow.definition
    shown = definition.version
    lines = [f"Workflow: {definition.name}",
             f"Version: {shown}{' (latest)' if shown == workflow.latest else ''}",
             f"Versions: {', '.join(workflow.versions)}"]
    if definition.description:
        lines.append(f"Description: {definition.description}")
    lines.append("Steps:")
    for step in definition.steps:
        after = f" after {', '.join(step.depends_on)}" if step.depends_on else ""
        lines.append(f"{step.id}: {step_kind_text(step)}{after}")
    return lines


def step_kind_text(step: StepBase) -> str:
    """'task greet', 'map resize over list', 'sleep 2s', 'wait_for_event payment.received',
    'approval'."""
    match step:
        case MapStep():
            limit = f", {step.config.concurrency} at a time" if step.config.concurrency else ""
            return f"map {step.task} over {step.source}{limit}"
        case TaskStep():
            return f"task {step.task}"
        case SleepStep():
            config = step.config
            if config.duration is not None:
                return f"sleep {format_duration(config.duration)}"
            if config.until is not None:
                return f"sleep until {config.until.isoformat()}"
            return f"sleep until input.{config.input_path()}"
        case WaitForEventStep():
            return f"wait_for_event {step.config.event}"
        case ApprovalStep():
            return "approval"
    return step.kind


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> list[str]:
    """Rows as left-aligned columns two spaces apart (the last column is not padded)."""
    all_rows = [list(header), *rows] if header else [list(row) for row in rows]
    if not all_rows:
        return []
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(all_rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
            .rstrip() for row in all_rows]


def _s(count: int) -> str:
    return "" if count == 1 else "s"
