"""Carrying out a sub_workflow's actions: start a child run, tell a parent how its child
ended, cancel a child. Each goes through the same service as the API's own start and
cancel (`dagnats.api.runs.start_run`, `dagnats.api.lifecycle.cancel_run`), and each is
harmless to repeat: the child's id is derived from its parent's step and attempt, and the
parent's outcome event has a message id of its own.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from dagnats import names
from dagnats.api.context import ApiContext
from dagnats.api.lifecycle import cancel_run
from dagnats.api.runs import StartRequest, start_run
from dagnats.dag.actions import CancelChild, StartChild
from dagnats.dag.events import Event, EventType
from dagnats.dag.payload import refs_json
from dagnats.dag.state import RunState, RunStatus
from dagnats.errors import DagnatsError
from dagnats.store import history, payloads

log = logging.getLogger("dagnats.engine")


async def start_child(ctx: ApiContext, run: RunState, action: StartChild) -> None:
    """Start the child run (nothing when it exists). A child that cannot start (its workflow
    is not registered) fails the parent's step at once, not retryable."""
    if await history.exists(ctx.js, action.run_id):
        return
    parent = {"run_id": run.run_id, "step_id": action.step_id, "attempt": action.attempt,
              "detached": action.detached, "root_run_id": run.root_run_id,
              "chain": run.chain()}
    if action.input_refs:  # out-of-line parts are kept per run: the child gets its copy
        await payloads.copy_run(ctx.js, run.run_id, action.run_id, action.input_refs)
    request = StartRequest(workflow=action.workflow, version=action.version,
                           input=action.input, input_refs=action.input_refs or None,
                           run_id=action.run_id)
    try:
        await start_run(ctx, request, keyed=False, parent=parent)
    except DagnatsError as exc:
        if action.detached:  # its step completed already: nobody waits to be told
            log.warning("run %s step %s: the detached child could not start: %s",
                        run.run_id, action.step_id, exc)
            return
        await _record_outcome(ctx, run.run_id, action.step_id, action.attempt, failed={
            "error": f"step {action.step_id!r} could not start its child run: {exc}",
            "error_type": type(exc).__name__, "retryable": False,
            "child_run_id": action.run_id})


async def report_to_parent(ctx: ApiContext, run: RunState) -> None:
    """Record how this child run ended as its parent step's outcome: its output, or a
    failure (retryable: the step's retry policy starts a fresh child), not retryable when
    the child was cancelled."""
    link = run.parent
    if link is None:
        return
    if run.status is RunStatus.COMPLETED:
        if run.output_refs:
            await payloads.copy_run(ctx.js, run.run_id, link.run_id, run.output_refs)
        done: dict[str, Any] = {"output": run.output, "child_run_id": run.run_id}
        if run.output_refs:
            done["output_refs"] = refs_json(run.output_refs)
        await _record_outcome(ctx, link.run_id, link.step_id, link.attempt, completed=done)
        return
    cancelled = run.status is RunStatus.CANCELLED
    why = "was cancelled" if cancelled else f"ended {run.status.value}: {run.error}"
    await _record_outcome(ctx, link.run_id, link.step_id, link.attempt, failed={
        "error": f"child run {run.run_id} ({run.workflow}) {why}",
        "error_type": "ChildRunCancelled" if cancelled else "ChildRunFailed",
        "retryable": not cancelled, "child_run_id": run.run_id})


async def cancel_child(ctx: ApiContext, run: RunState, action: CancelChild) -> None:
    """Cancel a child whose parent ended (or began compensating) with it in flight."""
    try:
        await cancel_run(ctx, action.run_id, f"its parent run {run.run_id} ended "
                         f"({run.status.value}) while step {action.step_id!r} waited for it")
    except DagnatsError as exc:  # no such run (it never started): nothing to cancel
        log.info("run %s: child %s not cancelled: %s", run.run_id, action.run_id, exc)


async def _record_outcome(ctx: ApiContext, parent_run_id: str, step_id: str, attempt: int, *,
                          completed: dict[str, Any] | None = None,
                          failed: dict[str, Any] | None = None) -> None:
    kind = EventType.STEP_COMPLETED if completed is not None else EventType.STEP_FAILED
    event = Event(type=kind, run_id=parent_run_id, step_id=step_id, attempt=attempt,
                  timestamp=datetime.now(UTC), data=completed or failed or {})
    msg_kind = "child-completed" if completed is not None else "child-failed"
    await history.append(ctx.js, event, names.step_event_msg_id(
        parent_run_id, step_id, attempt, msg_kind))
