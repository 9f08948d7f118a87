"""Carrying out `advance`'s actions: the engine's only effects, each with a deterministic id.

Recorded actions become history events (folded back into the run at once); the others
publish a task, a dead letter or a timer. Events go first, so history reads in the order
things happened; whoever later applies a step.queued event republishes a missing task.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import assert_never

from nats.js import JetStreamContext

from dagnats import jetstream, names
from dagnats.dag.actions import (
    Action,
    BeginCompensation,
    CompleteRun,
    DeadLetter,
    DispatchStep,
    EndCompensation,
    FailRun,
    RecordedAction,
    RecoverStep,
    RequeueTask,
    SkipStep,
    StartTimer,
    event_for,
    task_for,
)
from dagnats.dag.events import Event
from dagnats.dag.state import RunState, apply
from dagnats.store import dead_letters, history

#: How many history sequences of events this engine recorded are remembered (see `is_echo`).
ECHOES_REMEMBERED = 50_000


class Effects:
    """Publishes what actions call for, on one JetStream context."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._recorded: dict[int, None] = {}  # history seqs we recorded, oldest first

    def is_echo(self, seq: int) -> bool:
        """True (once) when history event `seq` is one this engine recorded and folded in.

        Its delivery back to the engine changes nothing, so it can be acked unread. After a
        restart nothing is remembered, and such events are read and folded as usual.
        """
        return self._recorded.pop(seq, 0) is None

    async def carry_out(self, run: RunState, actions: list[Action]) -> RunState:
        """Record the recorded actions' events, publish the rest; return `run` with the events."""
        now = datetime.now(timezone.utc)
        recorded: list[RecordedAction] = []
        publishes: list[Callable[[], Awaitable[None]]] = []  # started once events are stored
        for action in actions:
            match action:
                case DispatchStep():
                    recorded.append(action)
                    publishes.append(functools.partial(self._task, run, action, now))
                case RequeueTask():
                    publishes.append(functools.partial(self._task, run, action, now))
                case DeadLetter():
                    publishes.append(functools.partial(self._dead_letter, run, action, now))
                case StartTimer():
                    publishes.append(functools.partial(self._timer, run, action, now))
                case (RecoverStep() | SkipStep() | BeginCompensation() | EndCompensation()
                      | CompleteRun() | FailRun()):
                    recorded.append(action)
                case _:
                    assert_never(action)
        events = await asyncio.gather(*(self._record(run, a, now) for a in recorded))
        await asyncio.gather(*(publish() for publish in publishes))
        for event in events:
            run = apply(run, event) or run
        return run

    async def _record(self, run: RunState, action: RecordedAction, now: datetime) -> Event:
        event = event_for(action, run.run_id, now)
        seq = await history.append(self.js, event, msg_id_for(action, run))
        self._recorded[seq] = None
        if len(self._recorded) > ECHOES_REMEMBERED:
            del self._recorded[next(iter(self._recorded))]
        return event.model_copy(update={"seq": seq})

    async def _task(self, run: RunState, action: DispatchStep | RequeueTask,
                    now: datetime) -> None:
        task = task_for(action, run.definition, run.run_id, now)
        msg_id = names.task_msg_id(run.run_id, action.step_id, action.attempt)
        await jetstream.publisher(self.js).publish(names.task_subject(task.task), task.encode(),
                                                   {"Nats-Msg-Id": msg_id})

    async def _dead_letter(self, run: RunState, action: DeadLetter, now: datetime) -> None:
        entry = dead_letters.DeadLetterEntry(
            run_id=run.run_id, workflow=run.workflow, version=run.version,
            step_id=action.step_id, task=action.task, attempts=action.attempt,
            input=action.input, error=action.error, error_type=action.error_type,
            timestamp=now, generation=run.generation)
        msg_id = names.dead_letter_msg_id(run.run_id, action.step_id, action.attempt)
        await dead_letters.publish(self.js, entry, msg_id)

    async def _timer(self, run: RunState, action: StartTimer, now: datetime) -> None:
        fire_at = now + timedelta(seconds=action.delay_s)
        body = {"v": 1, "run_id": run.run_id, "name": action.name,
                "fire_at": fire_at.isoformat()}
        await self.js.publish(names.timer_subject(run.run_id, action.name),
                              json.dumps(body).encode(),
                              headers={"Nats-Msg-Id": names.timer_msg_id(run.run_id,
                                                                         action.name)})


def msg_id_for(action: RecordedAction, run: RunState) -> str:
    """The deterministic message id of the event that records `action`."""
    run_id, gen = run.run_id, run.generation
    match action:
        case DispatchStep():
            return names.step_event_msg_id(run_id, action.step_id, action.attempt, "queued")
        case RecoverStep():
            attempts = run.steps[action.step_id].attempts
            return names.step_event_msg_id(run_id, action.step_id, attempts,
                                           names.recovered_kind(gen))
        case SkipStep():
            return names.step_event_msg_id(run_id, action.step_id, 0, names.skipped_kind(gen))
        case BeginCompensation():
            return names.run_event_msg_id(run_id, "compensating", gen)
        case EndCompensation():
            kind = "compensated" if action.failed_step is None else "compensate_failed"
            return names.run_event_msg_id(run_id, kind, gen)
        case CompleteRun():
            return names.run_event_msg_id(run_id, "completed", gen)
        case FailRun():
            return names.run_event_msg_id(run_id, "failed", gen)
        case _:
            assert_never(action)

