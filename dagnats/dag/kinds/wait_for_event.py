"""`wait_for_event`: wait for an event of a type, optionally one whose data matches the run.

Events come from `dagnats event publish`, `client.publish_event` or a plain NATS publish on
`event.<type>`. The match's `right` side (`input.<path>` or `step.<id>.output.<path>`) is
resolved when the step starts; `left` is a dot-path into each event's data. An event
published up to EVENT_MATCH_WINDOW_S before the step starts still matches. The step
completes with the event's data; on timeout with `{"timeout": true}` (`on_timeout:
"continue"`, the default) or it fails (`"fail"`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dagnats.dag.actions import Action, AwaitEvent, CompleteStep, FailStep, WaitStep
from dagnats.dag.durations import Duration, format_duration
from dagnats.dag.paths import MISSING, check_reference, lookup, resolve
from dagnats.dag.steps import StartContext, StepBase, field_problem
from dagnats.limits import EVENT_MATCH_WINDOW_S, TIMER_HORIZON_S

if TYPE_CHECKING:
    from dagnats.dag.state import RunState

EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)


def is_event_type(value: str) -> bool:
    """True for a valid event type: dot-separated tokens such as `payment.received`."""
    return len(value) <= 200 and bool(_EVENT_TYPE.match(value))


class Match(BaseModel):
    """`left` (a dot-path into the event's data) `op` `right` (a reference to run data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    left: str = Field(min_length=1)
    op: Literal["eq"] = "eq"
    right: str

    @model_validator(mode="after")
    def _reference(self) -> Self:
        try:
            check_reference(self.right)
        except ValueError as exc:
            raise field_problem("config.match.right", f"is {exc}") from None
        return self


class WaitForEventConfig(BaseModel):
    """What to wait for, and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=200)
    match: Match | None = None
    timeout: Duration | None = None
    """How long to wait; none: until the run ends (or its own timeout)."""
    on_timeout: Literal["continue", "fail"] = "continue"

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.timeout is not None and not 0 < self.timeout <= TIMER_HORIZON_S:
            raise field_problem("config.timeout", "must be positive and at most 365 days")
        return self


class WaitForEventStep(StepBase):
    """A step that completes when a matching event arrives (or its timeout passes)."""

    kind = "wait_for_event"
    leaves_data = True  # its waiter, in KV event_waiters

    type: Literal["wait_for_event"]
    config: WaitForEventConfig

    def start(self, ctx: StartContext) -> list[Action]:
        """Begin waiting: register the waiter (which looks back over recent events), and
        set the timeout's timer."""
        config, match = self.config, self.config.match
        value: Any = None
        if match is not None:
            value = resolve(match.right, ctx.run.input_value(), ctx.outputs())
            if value is MISSING:
                return [FailStep(self.id, ctx.attempt, f"step {self.id!r}: config.match.right "
                                 f"names {match.right}, which the run does not have",
                                 "InvalidWait", at_start=True)]
        until = ctx.now + timedelta(seconds=config.timeout) if config.timeout else None
        waiting_for: dict[str, Any] = {
            "kind": "event", "event": config.event,
            "match": {"left": match.left, "op": match.op, "value": value} if match else None,
            "until": until.isoformat() if until else None}
        actions: list[Action] = [
            WaitStep(self.id, ctx.attempt, ctx.input, waiting_for, ctx.input_refs),
            AwaitEvent(self.id, ctx.attempt, config.event, match.left if match else None, value,
                       since=ctx.now - timedelta(seconds=EVENT_MATCH_WINDOW_S),
                       until=until or ctx.now + timedelta(seconds=TIMER_HORIZON_S))]
        return actions + self.wait_timer(ctx.attempt, until)

    def waiting_moves(self, run: RunState, now: datetime) -> list[Action]:
        """On timeout: complete with {"timeout": true}, or fail."""
        step = run.steps[self.id]
        if not step.timer_fired:
            return []
        if self.config.on_timeout == "continue":
            return [CompleteStep(self.id, step.attempts, {"timeout": True})]
        waited = format_duration(self.config.timeout or 0)
        return [FailStep(self.id, step.attempts,
                         f"no {self.config.event} event came within {waited}", "EventTimeout")]

    def rearm(self, run: RunState) -> list[Action]:
        """The waiter (with its look-back from when the wait began) and the timeout's timer,
        again, as recorded in the step's waiting_for."""
        step = run.steps[self.id]
        waits = step.waiting_for or {}
        began = step.started_at
        if began is None:
            return []
        until = datetime.fromisoformat(waits["until"]) if waits.get("until") else None
        match = waits.get("match") or {}
        return [AwaitEvent(
            self.id, step.attempts, self.config.event, match.get("left"), match.get("value"),
            since=began - timedelta(seconds=EVENT_MATCH_WINDOW_S),
            until=until or began + timedelta(seconds=TIMER_HORIZON_S)),
            *self.recorded_wait_timer(run)]

    def references(self) -> list[str]:
        """The match's right side."""
        return [self.config.match.right] if self.config.match else []


def matches(left: str | None, value: Any, data: Any) -> bool:
    """True when an event's data matches a waiter: the value at `left` equals `value`, as
    JSON values or as text (so "42" matches 42); any event when `left` is None."""
    if left is None:
        return True
    found = lookup(data, left)
    if found is MISSING:
        return False
    return bool(found == value) or _text(found) == _text(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
