"""`sleep`: wait for a duration, until a time, or until a time named in the run input.

The wait is a durable timer (`StartTimer`): it survives restarts of every process, and a
timer that came due while everything was down fires on the next start. The step's output
is `{"slept_until": "<time>"}`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from dagnats.dag.actions import Action, CompleteStep, FailStep, WaitStep
from dagnats.dag.durations import Duration, format_duration
from dagnats.dag.paths import MISSING, lookup
from dagnats.dag.steps import StartContext, StepBase, field_problem
from dagnats.limits import TIMER_HORIZON_S

if TYPE_CHECKING:
    from dagnats.dag.state import RunState


class SleepConfig(BaseModel):
    """Exactly one of `duration`, `until` (RFC 3339) or `until_input_path`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration: Duration | None = None
    until: AwareDatetime | None = None
    until_input_path: str | None = None
    """A dot-path into the run input (`input.remind_at` or `remind_at`) holding an RFC 3339
    time, resolved when the step starts."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in ("duration", "until", "until_input_path")
                 if getattr(self, name) is not None]
        if len(given) != 1:
            raise field_problem("config", "needs exactly one of duration, until and "
                                f"until_input_path (has {len(given) or 'none'})")
        if self.duration is not None and self.duration <= 0:
            raise field_problem("config.duration", "must be positive")
        if self.duration is not None and self.duration > TIMER_HORIZON_S:
            raise field_problem("config.duration", "must be at most 365 days")
        if self.until_input_path is not None and not self.input_path():
            raise field_problem("config.until_input_path", "must name a field of the input")
        return self

    def input_path(self) -> str:
        """The path into the run input, without a leading `input.`."""
        path = self.until_input_path or ""
        return path[len("input."):] if path.startswith("input.") else path


class SleepStep(StepBase):
    """A durable pause between steps; no worker takes part."""

    kind = "sleep"

    type: Literal["sleep"]
    config: SleepConfig

    def start(self, ctx: StartContext) -> list[Action]:
        """Wait until the wake-up time with a durable timer (at once if it has passed)."""
        wake = self._wake_time(ctx)
        if isinstance(wake, str):
            return [FailStep(self.id, ctx.attempt, wake, "InvalidSleep", at_start=True)]
        wake = max(wake, ctx.now)
        return [WaitStep(self.id, ctx.attempt, ctx.input,
                         {"kind": "time", "until": wake.isoformat()}, ctx.input_refs),
                *self.wait_timer(ctx.attempt, wake)]

    def waiting_moves(self, run: RunState, now: datetime) -> list[Action]:
        """Complete once the timer has fired."""
        step = run.steps[self.id]
        if not step.timer_fired:
            return []
        until = (step.waiting_for or {}).get("until")
        return [CompleteStep(self.id, step.attempts, {"slept_until": until})]

    def rearm(self, run: RunState) -> list[Action]:
        """The wake-up timer again, at the time recorded when the step began waiting."""
        return self.recorded_wait_timer(run)

    def references(self) -> list[str]:
        """The run input's field it sleeps until, if it names one."""
        if self.config.until_input_path is None:
            return []
        return [f"input.{self.config.input_path()}"]

    def _wake_time(self, ctx: StartContext) -> datetime | str:
        """When to wake, or why it cannot be known (a one-line error)."""
        config = self.config
        if config.duration is not None:
            return ctx.now + timedelta(seconds=config.duration)
        wake = config.until if config.until is not None else _input_time(
            ctx.run.input_value(), config.input_path())
        if isinstance(wake, str):
            return f"step {self.id!r}: config.until_input_path {wake}"
        if (wake - ctx.now).total_seconds() > TIMER_HORIZON_S:
            return (f"step {self.id!r}: sleeping until {wake.isoformat()} is more than "
                    f"{format_duration(TIMER_HORIZON_S)} ahead")
        return wake


def _input_time(run_input: Any, path: str) -> datetime | str:
    """The aware time at `path` in the run input, or what is wrong with it."""
    value = lookup(run_input, path)
    if value is MISSING or value is None:
        return f"names input.{path}, which the run input does not have"
    if not isinstance(value, str):
        return f"names input.{path}, which is {value!r}, not an RFC 3339 time"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return f"names input.{path}, which is {value!r}, not an RFC 3339 time"
    if parsed.tzinfo is None:
        return f"names input.{path}, which is {value!r}: give a time zone (Z or +hh:mm)"
    return parsed
