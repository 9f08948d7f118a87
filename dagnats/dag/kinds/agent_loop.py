"""`agent_loop`: a handler called again and again, each time with the state it returned,
until it returns a plain value (the step's output) or a limit is reached.

Each iteration is one task. A handler that returns `worker.Continue(state)` ends its
iteration with a `step.iterated` event carrying `state`; the step then waits (briefly) and
the next iteration is dispatched with `state` as its input, after `loop_delay`. The
iteration number travels in the task (`ctx.iteration`). A failed iteration is retried under
the step's retry policy from the last iteration's state, not from scratch: each iteration
gets the whole retry budget. Past `max_iterations` iterations, or once `max_duration` has
passed since the first one was dispatched, the step fails (not retryable), naming the
limit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from dagnats.dag.actions import Action, DispatchStep, FailStep
from dagnats.dag.durations import Duration, format_duration
from dagnats.dag.kinds.task import TaskStep
from dagnats.dag.payload import Refs
from dagnats.dag.steps import StartContext, field_problem
from dagnats.limits import AGENT_LOOP_MAX_ITERATIONS, TIMER_HORIZON_S

if TYPE_CHECKING:
    from dagnats.dag.state import RunState


class AgentLoopConfig(BaseModel):
    """How many iterations at most, for how long, and the pause between two."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_iterations: StrictInt = Field(default=10, ge=1, le=AGENT_LOOP_MAX_ITERATIONS)
    max_duration: Duration | None = None
    """From the dispatch of the first iteration; None: no limit but max_iterations."""
    loop_delay: Duration = 0.0
    """The pause between an iteration's end and the next one's dispatch."""

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if self.max_duration is not None and not 0 < self.max_duration <= TIMER_HORIZON_S:
            raise field_problem("config.max_duration", "must be positive and at most 365 days")
        if self.loop_delay < 0 or self.loop_delay > 24 * 3600:
            raise field_problem("config.loop_delay", "must be between 0s and 24h")
        return self


class AgentLoopStep(TaskStep):
    """A task called once per iteration with the previous iteration's state."""

    kind = "agent_loop"

    type: Literal["agent_loop"]  # type: ignore[assignment]  # a task step of its own kind
    config: AgentLoopConfig = AgentLoopConfig()

    def start(self, ctx: StartContext) -> list[Action]:
        """Dispatch the next iteration: the first with the step's input, a later one (or a
        retry of one) with the last iteration's state; fail once a limit is reached."""
        return self._next(ctx.run, ctx.attempt, ctx.input, ctx.input_refs, ctx.now,
                          ctx.delay_s)

    def waiting_moves(self, run: RunState, now: datetime) -> list[Action]:
        """An iteration ended with a state: dispatch the next one after loop_delay."""
        step = run.steps[self.id]
        if (step.waiting_for or {}).get("kind") != "iteration":
            return []
        return self._next(run, step.attempts + 1, None, {}, now, self.config.loop_delay)

    def _next(self, run: RunState, attempt: int, first_input: Any, first_refs: Refs,
              now: datetime, delay_s: float) -> list[Action]:
        """The next iteration's dispatch, or the failure a reached limit calls for."""
        step = run.steps[self.id]
        iteration = step.iteration + 1
        # a limit met between iterations fails the attempt that ended; else a new one
        failing = step.attempts if step.status == "waiting" else attempt
        done = f"after {step.iteration} iteration{'s' if step.iteration != 1 else ''}"
        if iteration > self.config.max_iterations:
            return [FailStep(self.id, failing, f"step {self.id!r} reached max_iterations "
                             f"({self.config.max_iterations}) without finishing",
                             "MaxIterationsReached", at_start=True)]
        deadline = step.deadline
        if deadline is None and self.config.max_duration is not None:
            deadline = now + timedelta(seconds=self.config.max_duration)
        if deadline is not None and now >= deadline:
            limit = format_duration(self.config.max_duration or 0)
            return [FailStep(self.id, failing, f"step {self.id!r} exceeded max_duration "
                             f"({limit}) {done}", "MaxDurationExceeded", at_start=True)]
        value, refs = (step.output, step.output_refs) if step.iteration else (first_input,
                                                                             first_refs)
        loop = {"iteration": iteration, "attempt": attempt - step.retry_base,
                "max_iterations": self.config.max_iterations,
                "deadline": deadline.isoformat() if deadline else None}
        return [DispatchStep(self.id, self.task, attempt, value, delay_s, refs, loop=loop)]
