"""Carrying out `advance`'s actions: the engine's only effects, each with a deterministic id.

Recorded actions become history events (folded back into the run at once); the others
publish a dead letter, a timer or an approval request, register an event waiter, or clear
what an ended run kept. A DispatchStep's event is the task itself: the step.queued event,
stored on the run's subject of the task, which that task's workers consume.

A step the engine runs itself (a sleep, a wait) can also be ended by someone else (a
matching event, a person's decision). So the engine records such an outcome only if the
run's history has not grown since its state was folded (Nats-Expected-Last-Subject-
Sequence); otherwise HistoryMoved makes it handle the newer events first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, assert_never

from nats.js import JetStreamContext
from nats.js.errors import APIError
from nats.js.kv import KeyValue

from dagnats import jetstream, names
from dagnats.api.context import ApiContext
from dagnats.dag.actions import (
    Action,
    AwaitEvent,
    BeginCompensation,
    CancelChild,
    ClearRunData,
    CollectMap,
    CompleteRun,
    CompleteStep,
    DeadLetter,
    DispatchStep,
    EndCompensation,
    ExpandPlan,
    FailRun,
    FailStep,
    RecordedAction,
    RecoverStep,
    ReportToParent,
    RequestApproval,
    SkipStep,
    StartChild,
    StartTimer,
    WaitStep,
    event_for,
)
from dagnats.dag.events import Event, EventType
from dagnats.dag.kinds.task import task_event
from dagnats.dag.payload import Refs, encode, nest_list, refs_of, too_large
from dagnats.dag.state import RunState, apply
from dagnats.engine import children, waits
from dagnats.limits import PAYLOAD_INLINE_MAX_BYTES
from dagnats.store import dead_letters, history, payloads, run_data, waiters
from dagnats.store.snapshots import SnapshotConflict

log = logging.getLogger("dagnats.engine")

#: How many history sequences of events this engine recorded are remembered (see `is_echo`).
ECHOES_REMEMBERED = 50_000


class HistoryMoved(SnapshotConflict):
    """The run's history grew while the engine decided an outcome: look again."""


class Effects:
    """Publishes what actions call for, on one JetStream context."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._recorded: dict[int, None] = {}  # history seqs we recorded, oldest first
        self._waiters_kv: KeyValue | None = None
        self._api_ctx: ApiContext | None = None

    def is_echo(self, seq: int) -> bool:
        """True (once) when history event `seq` is one this engine recorded and folded in.

        Its delivery back to the engine changes nothing, so it can be acked unread. After a
        restart nothing is remembered, and such events are read and folded as usual.
        """
        return self._recorded.pop(seq, 0) is None

    async def carry_out(self, run: RunState, actions: list[Action]
                        ) -> tuple[RunState, list[Event]]:
        """Record the recorded actions' events, publish the rest; return `run` with the
        events folded in, and the events."""
        now = datetime.now(timezone.utc)
        guarded: list[RecordedAction] = []  # outcomes someone else may also write
        recorded: list[RecordedAction] = []
        publishes: list[Callable[[], Awaitable[None]]] = []  # started once events are stored
        for action in actions:
            if isinstance(action, CollectMap):
                action = await self._collected(run, action)
            if isinstance(action, StartChild) and action.detached:
                await children.start_child(await self._api(), run, action)  # before its step
                continue                                                    # completes
            match action:
                case CompleteStep() | FailStep():
                    guarded.append(action)
                case DispatchStep() | WaitStep() | RecoverStep() | SkipStep() \
                        | BeginCompensation() | EndCompensation() | CompleteRun() | FailRun() \
                        | ExpandPlan():
                    recorded.append(action)
                case _:
                    publishes.append(self._publish(run, action, now))
        events = []
        for action in guarded:
            event = await self._record(run, action, now, expected_last=run.last_seq or None)
            run = apply(run, event) or run
            events.append(event)
        # A step.waiting goes first when it has company: a map's instances, dispatched with
        # it, must follow it in history for a replay to fold them.
        opening = [a for a in recorded if isinstance(a, WaitStep)] \
            if len(recorded) > 1 else []
        stored = [await self._record(run, action, now) for action in opening]
        stored += await asyncio.gather(*(self._record(run, a, now) for a in recorded
                                         if a not in opening))
        await asyncio.gather(*(publish() for publish in publishes))
        for event in stored:
            run = apply(run, event) or run
        return run, [*events, *stored]

    def _publish(self, run: RunState, action: Action, now: datetime
                 ) -> Callable[[], Awaitable[None]]:
        """What carries out an action that records nothing."""
        match action:
            case DeadLetter():
                return functools.partial(self._dead_letter, run, action, now)
            case StartTimer():
                return functools.partial(self._timer, run, action)
            case AwaitEvent():
                return functools.partial(self._await_event, run, action)
            case RequestApproval():
                return functools.partial(self._request_approval, run, action)
            case ClearRunData():
                return functools.partial(self._clear_run, run)
            case StartChild():
                return functools.partial(self._with_api, children.start_child, run, action)
            case ReportToParent():
                return functools.partial(self._with_api, children.report_to_parent, run)
            case CancelChild():
                return functools.partial(self._with_api, children.cancel_child, run, action)
            case CollectMap():
                raise TypeError("CollectMap becomes the step's outcome before publishing")
            case DispatchStep() | WaitStep() | CompleteStep() | FailStep() | RecoverStep() \
                    | SkipStep() | BeginCompensation() | EndCompensation() | CompleteRun() \
                    | FailRun() | ExpandPlan():
                raise TypeError(f"{type(action).__name__} is recorded, not published")
            case _:
                assert_never(action)

    async def _record(self, run: RunState, action: RecordedAction, now: datetime,
                      expected_last: int | None = None) -> Event:
        if isinstance(action, DispatchStep):
            if action.instance is not None and not action.input_refs:
                action = await self._element_carried(run, action)
            event = task_event(action, run.definition, run.run_id, now)
        else:
            event = event_for(action, run.run_id, now)
        try:
            seq = await history.append(self.js, event, msg_id_for(action, run),
                                       expected_last_seq=expected_last)
        except APIError as exc:
            if expected_last is None or exc.err_code not in jetstream.WRONG_LAST_SEQUENCE:
                raise
            raise HistoryMoved(f"run {run.run_id}: history grew while deciding "
                               f"{event.type.value} of {event.step_id}") from None
        if not isinstance(action, DispatchStep):  # a task never comes back to the engine
            self._recorded[seq] = None
        if len(self._recorded) > ECHOES_REMEMBERED:
            del self._recorded[next(iter(self._recorded))]
        return event.model_copy(update={"seq": seq})

    async def _element_carried(self, run: RunState, action: DispatchStep) -> DispatchStep:
        """A map instance's dispatch with a large element put out of line first (an element
        of an array that was itself out of line, or just under the limit inline)."""
        data = encode(action.input)
        if len(data) <= PAYLOAD_INLINE_MAX_BYTES:
            return action
        value, refs = await payloads.carry(self.js, run.run_id, action.input, data)
        return dataclasses.replace(action, input=value, input_refs=refs)

    async def _collected(self, run: RunState, action: CollectMap) -> CompleteStep | FailStep:
        """The outcome of a map step whose instances all completed: their outputs in input
        order, read from the run's history (out of line when large); a failure when the
        array is over the payload limit."""
        instances = run.steps[action.step_id].instances
        if instances is None:
            raise RuntimeError(f"run {run.run_id}: step {action.step_id!r} has no instances")
        wanted = {names.instance_step_id(action.step_id, index): (index, attempt)
                  for index, attempt in enumerate(instances.attempts)}
        parts: dict[int, tuple[Any, Refs]] = {}
        for event in await history.read(self.js, run.run_id):
            place = wanted.get(event.step_id or "")
            if event.type is EventType.STEP_COMPLETED and place and place[1] == event.attempt:
                parts.setdefault(place[0], (event.data.get("output"),
                                            refs_of(event.data, "output")))
        if len(parts) != instances.total:  # history is read after the state: never short
            raise RuntimeError(f"run {run.run_id}: history has {len(parts)} of the "
                               f"{instances.total} outputs of step {action.step_id!r}")
        value, refs = nest_list([parts[index] for index in range(instances.total)])
        if refs:  # instances' large outputs: the array is carried as one value
            value = await payloads.fetch(self.js, run.run_id, value, refs)
        data = encode(value)
        problem = too_large(f"the output of map step {action.step_id!r}", len(data))
        if problem is not None:
            return FailStep(action.step_id, action.attempt, problem, "OutputTooLarge")
        value, refs = await payloads.carry(self.js, run.run_id, value, data)
        return CompleteStep(action.step_id, action.attempt, value, refs)

    async def _dead_letter(self, run: RunState, action: DeadLetter, now: datetime) -> None:
        entry = dead_letters.DeadLetterEntry(
            run_id=run.run_id, workflow=run.workflow, version=run.version,
            step_id=action.step_id, task=action.task, attempts=action.attempt,
            input=action.input, input_refs=action.input_refs, error=action.error,
            error_type=action.error_type,
            timestamp=now, generation=run.generation)
        msg_id = names.dead_letter_msg_id(run.run_id, action.step_id, action.attempt)
        await dead_letters.publish(self.js, entry, msg_id)

    async def _timer(self, run: RunState, action: StartTimer) -> None:
        body = {"v": 1, "run_id": run.run_id, "name": action.name,
                "fire_at": action.at.isoformat(), "step_id": action.step_id,
                "attempt": action.attempt}
        await jetstream.publisher(self.js).publish(
            names.timer_subject(run.run_id, action.name), json.dumps(body).encode(),
            {"Nats-Msg-Id": names.timer_msg_id(run.run_id, action.name)})

    async def _api(self) -> ApiContext:
        """The stores the API's own services use (a child's start and cancel), bound once."""
        if self._api_ctx is None:
            self._api_ctx = await ApiContext.open(self.js._nc)  # nats-py: no accessor
        return self._api_ctx

    async def _with_api(self, service: Callable[..., Awaitable[None]], *args: Any) -> None:
        await service(await self._api(), *args)

    async def _waiters(self) -> KeyValue:
        """The event_waiters bucket, bound once."""
        if self._waiters_kv is None:
            self._waiters_kv = await self.js.key_value(names.WAITERS_BUCKET)
        return self._waiters_kv

    async def _await_event(self, run: RunState, action: AwaitEvent) -> None:
        await waits.register(self.js, await self._waiters(), run, action)

    async def _clear_run(self, run: RunState) -> None:
        """Delete what an ended run kept beside history: its waiters (if a step's kind left
        some), its signals and checkpoints (if it kept any)."""
        if run.definition.leaves_data():
            await waiters.clear_run(await self._waiters(), run)
        if run.keeps_data:
            await run_data.delete_run_data(self.js, run.run_id)

    async def _request_approval(self, run: RunState, action: RequestApproval) -> None:
        """Publish the request for notifiers (core NATS: nobody listening is fine)."""
        body = {"v": 1, "run_id": run.run_id, "workflow": run.workflow,
                "step_id": action.step_id, "attempt": action.attempt,
                "description": action.description, "approvers": list(action.approvers),
                "metadata": action.metadata,
                "until": action.until.isoformat() if action.until else None,
                "approve": f"dagnats run approve {run.run_id} {action.step_id}",
                "reject": f"dagnats run reject {run.run_id} {action.step_id}"}
        subject = action.subject or names.approval_subject(run.workflow)
        await self.js._nc.publish(subject, json.dumps(body).encode())  # nats-py: no accessor


def msg_id_for(action: RecordedAction, run: RunState) -> str:
    """The deterministic message id of the event that records `action`."""
    run_id, gen = run.run_id, run.generation
    match action:
        case DispatchStep():
            return names.step_event_msg_id(run_id, action.event_step_id, action.attempt,
                                           "queued")
        case WaitStep():
            return names.step_event_msg_id(run_id, action.step_id, action.attempt, "waiting")
        case CompleteStep():  # not "completed": a matching event may write that one
            return names.step_event_msg_id(run_id, action.step_id, action.attempt,
                                           "engine-completed")
        case FailStep():
            return names.step_event_msg_id(run_id, action.step_id, action.attempt,
                                           "engine-failed")
        case ExpandPlan():
            return names.step_event_msg_id(run_id, action.step_id, action.attempt, "expanded")
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
