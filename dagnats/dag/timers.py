"""The names of a run's durable timers (logical names, not subjects: see dagnats.names)."""

from __future__ import annotations

RUN_TIMEOUT_PREFIX = "timeout-"
STEP_TIMER_PREFIX = "step-"


def timeout_timer_name(generation: int) -> str:
    """The name of the run-timeout timer of one generation of a run."""
    return f"{RUN_TIMEOUT_PREFIX}{generation}"


def step_timer_name(step_id: str, attempt: int) -> str:
    """The name of the timer of one attempt of a step (a sleep, a wait's timeout)."""
    return f"{STEP_TIMER_PREFIX}{step_id}-{attempt}"
