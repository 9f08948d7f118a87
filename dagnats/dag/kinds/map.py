"""`map`: run a task once for each element of a JSON array, each element its own instance.

The step's one dependency gives the array. Each element runs `task` as an instance with
the element as its input; an instance reports under the step id `<id>[<index>]` and is
retried alone under the step's retry policy. At most `concurrency` instances are in flight.
The output is the array of the instances' outputs in input order. The engine assembles it
from history once the last instance completed (`CollectMap`), so a run's state keeps one
status letter, one attempt count and (while few) the errors per instance, never their
outputs: a 10,000-item map keeps the snapshot small. An empty array completes at once
with [].
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from dagnats.dag.actions import Action, CollectMap, CompleteStep, DispatchStep, FailStep, WaitStep
from dagnats.dag.kinds.task import TaskStep
from dagnats.dag.payload import Refs, materialize
from dagnats.dag.retry import retry_delay_s, should_retry
from dagnats.dag.steps import StartContext, field_problem
from dagnats.limits import MAP_DEFAULT_MAX_ITEMS, MAP_ERRORS_KEPT, MAP_MAX_ITEMS

if TYPE_CHECKING:
    from dagnats.dag.state import RunState

#: An instance's status, one letter each in `MapInstances.states`.
PENDING, QUEUED, RUNNING, COMPLETED, FAILED, FAILED_FOR_GOOD = ".qrcfx"
#: The status words `run status --json` shows for the letters.
STATE_WORDS = {PENDING: "pending", QUEUED: "queued", RUNNING: "running",
               COMPLETED: "completed", FAILED: "failed", FAILED_FOR_GOOD: "failed"}


class MapConfig(BaseModel):
    """How many items a map takes, how many run at once, and whether one failure ends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_items: StrictInt = Field(default=MAP_DEFAULT_MAX_ITEMS, ge=1, le=MAP_MAX_ITEMS)
    concurrency: StrictInt | None = Field(default=None, ge=1)
    """Instances in flight at most (None: all of them)."""
    fail_fast: StrictBool = True
    """The first instance that fails for good fails the step, and no more are dispatched;
    with false every instance runs and the error lists the failed indexes."""


class MapInstances(BaseModel):
    """The instances of a map step's current attempt: a status letter and an attempt count
    each (attempts keep counting across the step's attempts, so message ids never repeat)."""

    model_config = ConfigDict(frozen=True)

    states: str
    attempts: tuple[int, ...]
    bases: dict[int, int] = Field(default_factory=dict)
    """Attempts made before the run was last resumed, by index: its retries count from
    there (absent: 0)."""
    errors: dict[int, str] = Field(default_factory=dict)
    """The errors of failed instances, the first `MAP_ERRORS_KEPT` of them."""

    @classmethod
    def fresh(cls, total: int) -> MapInstances:
        """Every instance pending, none attempted."""
        return cls(states=PENDING * total, attempts=(0,) * total)

    @property
    def total(self) -> int:
        """How many instances there are."""
        return len(self.states)

    def indexes(self, *letters: str) -> list[int]:
        """The indexes of instances in these statuses, in order (found with str.find: a
        10,000-item map is looked at after every event, and few are ever failed)."""
        found = []
        for letter in letters:
            at = self.states.find(letter)
            while at >= 0:
                found.append(at)
                at = self.states.find(letter, at + 1)
        return sorted(found) if len(letters) > 1 else found

    def any_in(self, *letters: str) -> bool:
        """True when some instance is in one of these statuses."""
        return any(letter in self.states for letter in letters)

    def counts(self) -> dict[str, int]:
        """How many instances are in each status (by word; both failures are "failed")."""
        found: dict[str, int] = {}
        for letter, word in STATE_WORDS.items():
            found[word] = found.get(word, 0) + self.states.count(letter)
        return found

    def with_state(self, index: int, letter: str, attempt: int,
                   error: str | None = None) -> MapInstances:
        """A copy with instance `index` at `letter` and `attempt` (and its error noted)."""
        states = f"{self.states[:index]}{letter}{self.states[index + 1:]}"
        attempts = (*self.attempts[:index], attempt, *self.attempts[index + 1:])
        errors = self.errors
        if error is not None and (index in errors or len(errors) < MAP_ERRORS_KEPT):
            errors = {**errors, index: error}
        return self.model_copy(update={"states": states, "attempts": attempts,
                                       "errors": errors})

    def resumed(self) -> MapInstances:
        """After `run retry`: completed instances keep their outputs, every other one starts
        again with a fresh retry budget."""
        bases = dict(self.bases)
        states = []
        for index, state in enumerate(self.states):
            if state != COMPLETED:
                bases[index] = self.attempts[index]
            states.append(state if state == COMPLETED else PENDING)
        return self.model_copy(update={"states": "".join(states), "bases": bases,
                                       "errors": {}})

    def public(self) -> dict[str, Any]:
        """The shape `run status --json` shows."""
        return {"total": self.total, "counts": self.counts(),
                "states": [STATE_WORDS[letter] for letter in self.states],
                "attempts": list(self.attempts),
                "errors": {str(index): error for index, error in self.errors.items()}}


class MapStep(TaskStep):
    """A task run once per element of its one dependency's output (a JSON array)."""

    kind = "map"

    type: Literal["map"]  # type: ignore[assignment]  # a task step of its own kind
    config: MapConfig = MapConfig()

    @model_validator(mode="after")
    def _one_dependency(self) -> Self:
        if len(self.depends_on) != 1:
            raise field_problem("depends_on", "of a map step must name exactly one step, "
                                f"whose output is the array to map (has {len(self.depends_on)})")
        return self

    @property
    def source(self) -> str:
        """The step whose output is the array."""
        return self.depends_on[0]

    def references(self) -> list[str]:
        """The array it maps: the engine fetches it when it is out of line."""
        return [f"step.{self.source}.output"]

    def start(self, ctx: StartContext) -> list[Action]:
        """Fail at once on anything but an array within max_items, complete at once with []
        on an empty one; else begin waiting for the instances and dispatch the first ones."""
        items = mapped_array(ctx.input, ctx.input_refs, ctx.run.fetched)
        problem = self._problem(items)
        if problem is not None:
            return [FailStep(self.id, ctx.attempt, problem, "InvalidMapInput", at_start=True)]
        if not items:
            return [CompleteStep(self.id, ctx.attempt, [], at_start=True)]
        before = ctx.run.steps[self.id].instances
        instances = before if before is not None and before.total == len(items) \
            else MapInstances.fresh(len(items))
        waiting = WaitStep(self.id, ctx.attempt, ctx.input,
                           {"kind": "map", "items": len(items)}, ctx.input_refs)
        return [waiting, *self._dispatches(instances, items, ctx.input_refs, [])]

    def waiting_moves(self, run: RunState, now: datetime) -> list[Action]:
        """Retry failed instances, dispatch pending ones as room allows, and end the step
        once none is left: failed when one failed for good, else collect the outputs."""
        step = run.steps[self.id]
        instances = step.instances
        if instances is None:
            return []
        policy = self.retry_policy(run.definition.default_retry)
        items = mapped_array(step.input, step.input_refs, run.fetched)
        retries: list[Action] = []
        given_up = instances.indexes(FAILED_FOR_GOOD)
        for index in instances.indexes(FAILED):
            made = instances.attempts[index] - instances.bases.get(index, 0)
            if policy is not None and should_retry(policy, made, True):
                retries.append(self._dispatch(instances, items, step.input_refs, index,
                                              retry_delay_s(policy, made)))
            else:
                given_up.append(index)
        given_up.sort()
        if given_up and (self.config.fail_fast or not (
                retries or instances.any_in(PENDING, QUEUED, RUNNING))):
            return [self._failure(instances, given_up, step.attempts, policy is not None)]
        moves = self._dispatches(instances, items, step.input_refs, retries)
        if moves or instances.any_in(QUEUED, RUNNING):
            return moves
        return [CollectMap(self.id, step.attempts)]

    def _dispatches(self, instances: MapInstances, items: Any, refs: Refs,
                    retries: list[Action]) -> list[Action]:
        """`retries`, then pending instances in index order while there is room."""
        in_flight = instances.states.count(QUEUED) + instances.states.count(RUNNING)
        room = (self.config.concurrency or instances.total) - in_flight - len(retries)
        moves = list(retries)
        start = 0
        while room > 0:
            index = instances.states.find(PENDING, start)
            if index < 0:
                break
            moves.append(self._dispatch(instances, items, refs, index))
            room -= 1
            start = index + 1
        return moves

    def _dispatch(self, instances: MapInstances, items: Any, refs: Refs, index: int,
                  delay_s: float = 0.0) -> DispatchStep:
        """Instance `index`'s next attempt, with its element as input (after `delay_s`)."""
        value, value_refs = element(items, refs, index)
        return DispatchStep(self.id, self.task, instances.attempts[index] + 1, value, delay_s,
                            value_refs, instance=index)

    def _failure(self, instances: MapInstances, given_up: list[int], attempt: int,
                 retried: bool) -> FailStep:
        """The step fails for good: which items failed, and the first one's error."""
        first = given_up[0]
        why = instances.errors.get(first, "failed")
        tries = instances.attempts[first] - instances.bases.get(first, 0)
        detail = f"after {tries} attempt{'s' if tries != 1 else ''}" if retried else \
            "not retried"
        if len(given_up) == 1:
            error = f"item {first} failed ({detail}): {why}"
        else:
            shown = ", ".join(map(str, given_up[:20])) + (", ..." if len(given_up) > 20 else "")
            error = (f"{len(given_up)} of {instances.total} items failed (indexes {shown}); "
                     f"item {first} ({detail}): {why}")
        return FailStep(self.id, attempt, error, "MapItemFailed")

    def _problem(self, items: Any) -> str | None:
        """Why `items` cannot be mapped, in one line (None: it can)."""
        if not isinstance(items, list):
            return (f"step {self.id!r} maps the output of {self.source!r}, which is "
                    f"{_json_type(items)}, not a JSON array")
        if len(items) > self.config.max_items:
            return (f"step {self.id!r}: the output of {self.source!r} has {len(items)} "
                    f"items; max_items is {self.config.max_items}")
        return None


def mapped_array(value: Any, refs: Refs, fetched: dict[str, Any]) -> Any:
    """The array a map step maps (its input) with an out-of-line whole filled in; elements
    that are out of line stay references, passed on to their instances."""
    if "" in refs:
        return materialize(value, {"": refs[""]}, fetched)
    return value


def element(items: Any, refs: Refs, index: int) -> tuple[Any, Refs]:
    """Element `index` of the mapped array, with its own out-of-line parts."""
    value = items[index] if isinstance(items, list) and index < len(items) else None
    head = f"{index}."
    own = {path[len(head):]: ref for path, ref in refs.items() if path.startswith(head)}
    if str(index) in refs:
        own[""] = refs[str(index)]
    return value, own


def _json_type(value: Any) -> str:
    """What JSON type a value is, with its article ("an object", "null")."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case dict():
            return "an object"
        case _:
            return "not JSON"
