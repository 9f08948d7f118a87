"""A fault-injection worker: one task, `fault`, whose input says how each attempt behaves.

The input is a dict that flows down the chain unchanged except for `trail`:

    n       the run's number in the test's stream (only for reading logs)
    work_s  seconds each attempt works (simulated work, in a handler thread)
    fail    {step_id: k}: the step's first k attempts raise a retryable error
    fatal   a step_id whose every attempt raises NonRetryableError
    hold    a step_id that waits for the file $FAULT_RELEASE_FILE before returning

The output is the input with [step_id, attempt, pid] appended to `trail`, so a run's output
names the process that produced each step's accepted result. Behaviour depends only on the
input and the attempt number, never on how often a delivery was repeated, so a redelivered
attempt does what the first delivery did (at-least-once stays deterministic).

With $FAULT_MARKS_DIR set, every attempt leaves `<run>.<step>.<attempt>.<pid>.start` when it
begins and `... .done` when its handler returns: tests find which process holds a task.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any

from dagnats import worker

w = worker.Worker()
MARKS = os.environ.get("FAULT_MARKS_DIR")
RELEASE = os.environ.get("FAULT_RELEASE_FILE")


def _mark(ctx: worker.TaskContext, kind: str) -> None:
    if MARKS:
        name = f"{ctx.run_id}.{ctx.step_id}.{ctx.attempt}.{os.getpid()}.{kind}"
        (pathlib.Path(MARKS) / name).touch()


def _hold() -> None:
    """Wait for the release file: the test creates it once it has done its damage."""
    if not RELEASE:
        raise worker.NonRetryableError("hold needs FAULT_RELEASE_FILE")
    release = pathlib.Path(RELEASE)
    while not release.exists():
        time.sleep(0.02)


@w.task("fault")
def fault(ctx: worker.TaskContext, job: dict[str, Any]) -> dict[str, Any]:
    """Work, hold, or fail as `job` says for this step and attempt; else pass `job` on."""
    _mark(ctx, "start")
    time.sleep(float(job.get("work_s", 0)))
    if job.get("hold") == ctx.step_id:
        _hold()
    if job.get("fatal") == ctx.step_id:
        raise worker.NonRetryableError(f"run {job.get('n')}: {ctx.step_id} is fatal")
    if ctx.attempt <= int(job.get("fail", {}).get(ctx.step_id, 0)):
        raise RuntimeError(f"run {job.get('n')}: {ctx.step_id} attempt {ctx.attempt} fails")
    _mark(ctx, "done")
    return {**job, "trail": [*job.get("trail", []), [ctx.step_id, ctx.attempt, os.getpid()]]}


if __name__ == "__main__":
    w.run()
