"""The fetch/execute loop: pull tasks, run them, report to history, then ack.

A task is a step.queued event in history (on `history.<p>.<run>.task.<task>`). One fetch
loop per task pulls from that task's durable consumer on WORKFLOW_HISTORY, asking for as
many messages as the worker has free slots (once the cancelled runs are known). Each
message is handled in its own task of one TaskGroup:

    decode ──undecodable──▶ dead-lettered raw (dead._poison.history.<seq>), term
      │ its run is cancelled ──▶ ack, handler not run, nothing reported
      │ not_before in the future ──▶ nak(delay) (redelivered then)
      │ delivered > MAX_DELIVERIES ──▶ step.failed (not retryable), ack
      ▼
    step.started ─▶ handler (timeout) ─▶ step.completed | step.failed ─▶ ack
                      └─ run cancelled meanwhile: ctx.cancelled; after cancel_grace the
                         handler is cancelled; nothing reported, ack

The ack comes last, so a worker that dies anywhere before it leaves the message to be
redelivered (at-least-once); deterministic Nats-Msg-Ids make repeated events harmless. While
a message is held its lease is extended every lease/3 from the worker's event loop, which
runs no handler code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from dagnats import jetstream, names
from dagnats.dag.events import Event, EventType
from dagnats.dag.tasks import TaskMessage
from dagnats.errors import ServerUnavailable
from dagnats.store import dead_letters, history, payloads, progress
from dagnats.worker import _payloads as worker_payloads
from dagnats.worker._cancel import Cancellations, CancelSignal
from dagnats.worker._context import TaskContext, task_logger
from dagnats.worker._execute import (
    Completed,
    Continued,
    Failed,
    HandlerLoop,
    Outcome,
    SyncThreads,
    invoke,
)
from dagnats.worker._registry import Handler, Registry
from dagnats.worker._run_data import RunData
from dagnats.worker._slots import Lease, Slots
from dagnats.worker._telemetry import Telemetry

log = logging.getLogger("dagnats.worker")

#: A message delivered more often than this is failed for good instead of run again.
MAX_DELIVERIES = 5
#: Unacked messages the server lets out per task consumer, across all its workers.
MAX_ACK_PENDING = 10_000
#: How long one fetch waits for messages; also how soon a stop is noticed.
POLL_S = 1.0
#: Publishing an event is retried this many times (NATS may be reconnecting).
PUBLISH_ATTEMPTS = 3
PUBLISH_RETRY_S = 0.5
#: A handler that returns sooner is reported by its outcome alone (no step.started event).
STARTED_REPORT_AFTER_S = 0.1
#: Added to a not_before delay so the redelivery does not land a hair early.
NOT_BEFORE_MARGIN_S = 0.01


def consumer_config(task: str, lease_s: float) -> js_api.ConsumerConfig:
    """The durable pull consumer every worker of `task` shares: every run's step.queued
    events of that task, in history. It starts at the first one ever stored; it is the
    queue, so it is never deleted (a worker may create it, never delete it)."""
    return js_api.ConsumerConfig(
        name=names.task_consumer(task),  # named: its create request names its filter
        durable_name=names.task_consumer(task),
        filter_subject=names.history_tasks_filter(task),
        deliver_policy=js_api.DeliverPolicy.ALL,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=lease_s,
        max_deliver=-1,  # the worker fails a message after MAX_DELIVERIES itself
        max_ack_pending=MAX_ACK_PENDING,
    )


@dataclass(frozen=True)
class Settings:
    """How a Runner behaves; see Worker for the meaning of each."""

    worker_name: str
    lease_s: float
    concurrency: int
    grace_s: float = 30.0
    poll_s: float = 1.0
    cancel_grace_s: float = 5.0


class Runner:
    """Runs the handlers of a registry against their task consumers until stopped."""

    def __init__(self, js: JetStreamContext, registry: Registry, threads: SyncThreads,
                 settings: Settings, *, handler_loop: HandlerLoop,
                 cancellations: Cancellations) -> None:
        self._js = js
        self._registry = registry
        self._threads = threads
        self._handler_loop = handler_loop
        self._cancellations = cancellations
        self._settings = settings
        self._slots = Slots(settings.concurrency)
        self._running = asyncio.Semaphore(settings.concurrency)
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._run_data: RunData | None = None
        self._progress_kv: KeyValue | None = None
        self._progress_bound = False

    async def bind(self) -> list[tuple[Handler, jetstream.Puller]]:
        """Ensure each task's consumer (create, or update to this lease) and bind to it."""
        stream = names.HISTORY_STREAM
        try:
            await self._js.stream_info(stream)
        except NotFoundError:
            raise ServerUnavailable(
                f"stream {stream} does not exist on this NATS: start `dagnats serve`,"
                " which provisions the streams, or run dagnats.jetstream.provision"
            ) from None
        await self._cancellations.bind()
        self._run_data = RunData(self._js, asyncio.get_running_loop())
        bound = []
        for handler in self._registry:
            config = consumer_config(handler.task, self._settings.lease_s)
            bound.append((handler, await jetstream.ensure_consumer(
                self._js, stream, config, self._settings.poll_s)))
        return bound

    @property
    def in_flight(self) -> int:
        """How many tasks this runner holds now (for the worker's presence heartbeat)."""
        return self._slots.held

    def stop(self) -> None:
        """Stop fetching; messages fetched but not started are put back (nak)."""
        self._stopping.set()
        self._slots.wake()

    def abort(self) -> None:
        """Cancel every task in flight now; their messages are redelivered after the lease."""
        self.stop()
        for task in list(self._in_flight):
            task.cancel()

    async def run(self, bound: list[tuple[Handler, jetstream.Puller]]) -> None:
        """Fetch and run until stop(); then wait up to the grace period for tasks in flight.

        Nothing is fetched before the cancelled runs are known; they are watched until the
        last task in flight is over.
        """
        done = asyncio.Event()
        async with asyncio.TaskGroup() as support:
            support.create_task(self._cancellations.run(done))
            try:
                if await self._until_ready():
                    await self._work(bound)
            finally:
                done.set()

    async def _until_ready(self) -> bool:
        """Wait for the cancelled runs to be known; False if stopped first."""
        waits = {asyncio.ensure_future(self._cancellations.ready.wait()),
                 asyncio.ensure_future(self._stopping.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return not self._stopping.is_set()

    async def _work(self, bound: list[tuple[Handler, jetstream.Puller]]) -> None:
        async with asyncio.TaskGroup() as work:
            async with asyncio.TaskGroup() as fetchers:
                for handler, sub in bound:
                    fetchers.create_task(self._fetch_loop(handler, sub, work))
            await self._drain()

    async def _drain(self) -> None:
        if self._slots.held:
            log.info("stopping: waiting up to %gs for %d task(s) in flight",
                     self._settings.grace_s, self._slots.held)
        try:
            async with asyncio.timeout(self._settings.grace_s):
                await self._slots.wait_until(lambda: self._slots.held == 0)
        except TimeoutError:
            log.warning("%d task(s) still running after %gs: cancelled, they will be"
                        " redelivered", len(self._in_flight), self._settings.grace_s)
            self.abort()

    async def _fetch_loop(self, handler: Handler, puller: jetstream.Puller,
                          work: asyncio.TaskGroup) -> None:
        while not self._stopping.is_set():
            await self._slots.wait_until(lambda: self._slots.free > 0
                                         or self._stopping.is_set())
            if self._stopping.is_set():
                return
            for msg in await self._fetch(handler, puller, self._slots.free):
                self._slots.take()
                task = work.create_task(self._guarded(handler, msg))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def _fetch(self, handler: Handler, puller: jetstream.Puller, batch: int
                     ) -> list[Msg]:
        try:
            return await puller.pull(batch)
        except Exception as exc:  # disconnected, closing...: say so, then try again
            log.warning("fetching task %s failed: %s", handler.task, exc or type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._settings.poll_s)
            return []

    async def _guarded(self, handler: Handler, msg: Msg) -> None:
        try:
            await self._process(handler, msg)
        except Exception as exc:  # a bug here must not take the other tasks down
            log.error("task %s: unexpected error handling a message: %r", handler.task, exc,
                      exc_info=True)
        finally:
            self._slots.give_back()

    async def _process(self, handler: Handler, msg: Msg) -> None:
        task = await self._decode(handler, msg)
        if task is None:
            return
        if await self._cancellations.is_cancelled(task.run_id):
            task_logger(task).info("run %s is cancelled: task %s dropped without running",
                                   task.run_id, task.task)
            await _settle(msg.ack(), "ack", task)
            return
        delay_s = _seconds_until(task.not_before)
        if delay_s > 0:  # nak(delay=0) would mean "at once": only nak with a real delay
            await _settle(msg.nak(delay=delay_s + NOT_BEFORE_MARGIN_S), "nak", task)
            return
        lease = Lease(msg, self._settings.lease_s / 3)
        async with asyncio.TaskGroup() as group:
            beat = group.create_task(lease.keep())
            try:
                await self._attempt(handler, msg, task, lease)
            finally:
                beat.cancel()

    async def _attempt(self, handler: Handler, msg: Msg, task: TaskMessage,
                       lease: Lease) -> None:
        delivery = msg.metadata.num_delivered
        began: dict[str, Any] = {}
        if delivery > MAX_DELIVERIES:
            outcome: Outcome | None = _poisoned(task)
        else:
            async with self._running:
                if self._stopping.is_set():  # fetched, never started: let another worker take it
                    await _settle(msg.nak(), "nak", task)
                    return
                began = {"delivery": delivery, "worker": self._settings.worker_name,
                         "started_at": datetime.now(timezone.utc).isoformat()}
                signal = self._cancellations.register(task.run_id)
                telemetry = Telemetry(self._js, await self._progress_bucket(), task)
                ctx = TaskContext(task, heartbeat=lease.poke, cancel=signal,
                                  run_data=self._run_data, telemetry=telemetry)
                try:
                    outcome, recorded = await self._call_reporting_start(
                        handler, ctx, task, signal, began)
                finally:
                    ctx._close()  # a handler thread still waiting on ctx stops waiting
                    self._cancellations.unregister(task.run_id, signal)
                    await telemetry.close()
                if recorded is not None:  # step.started says when it began
                    if not await recorded:
                        return  # NATS unreachable: leave the task for redelivery
                    began = {}
                if ctx.kept_data:  # the outcome says so: the run's data goes at its end
                    began = {**began, "kept_data": True}
        if outcome is None:  # its run was cancelled: nothing to report
            await _settle(msg.ack(), "ack", task)
        elif await self._append(*_outcome_event(task, outcome, began)):
            await _settle(msg.ack(), "ack", task)

    async def _call_reporting_start(
        self, handler: Handler, ctx: TaskContext, task: TaskMessage, signal: CancelSignal,
        began: dict[str, Any],
    ) -> tuple[Outcome | None, asyncio.Future[bool] | None]:
        """Run the handler; report step.started only if it runs past STARTED_REPORT_AFTER_S.

        A quick step is reported by its outcome alone, which carries `began` (one event, its
        delivery and the engine's handling of it saved per step). A longer one gets its
        step.started, stored while the handler goes on; the outcome waits for it.
        Returns the outcome and the step.started publish, if there was one.
        """
        call = asyncio.ensure_future(self._call(handler, ctx, task, signal))
        recorded: asyncio.Future[bool] | None = None
        try:
            if not (await asyncio.wait({call}, timeout=STARTED_REPORT_AFTER_S))[0]:
                data = {k: v for k, v in began.items() if k != "started_at"}
                started = _event(EventType.STEP_STARTED, task, data,
                                 datetime.fromisoformat(began["started_at"]))
                recorded = asyncio.ensure_future(
                    self._append(started, names.started_kind(began["delivery"])))
            return await call, recorded
        finally:
            call.cancel()  # only matters when we are cancelled ourselves

    async def _call(self, handler: Handler, ctx: TaskContext, task: TaskMessage,
                    signal: CancelSignal) -> Outcome | None:
        """The handler's outcome; None when its run was cancelled before it finished.

        A cancelled run's handler gets `cancel_grace_s` to return by itself (sync handlers
        can only be waited for so long: their thread finishes on its own), then is cancelled.
        """
        call = asyncio.ensure_future(self._invoke(handler, ctx, task))
        cancelled = asyncio.ensure_future(signal.wait())
        try:
            await asyncio.wait({call, cancelled}, return_when=asyncio.FIRST_COMPLETED)
            if call.done() and not signal.is_set():
                return call.result()
            grace_s = self._settings.cancel_grace_s
            if not (await asyncio.wait({call}, timeout=grace_s))[0]:
                ctx.logger.info("run cancelled: handler still running after %gs, cancelled",
                                grace_s)
            else:
                ctx.logger.info("run cancelled: the handler's result is not reported")
            return None
        finally:
            cancelled.cancel()
            call.cancel()

    async def _invoke(self, handler: Handler, ctx: TaskContext, task: TaskMessage
                      ) -> Outcome:
        """The handler's outcome, its out-of-line input fetched first. A payload that is
        gone fails the step for good; NATS failing raises (the task is redelivered)."""
        try:
            task = await worker_payloads.with_input(self._js, task)
        except payloads.PayloadMissing as exc:
            return Failed(error=str(exc), error_type="PayloadMissing", retryable=False)
        return await invoke(handler, ctx, task, self._threads, self._handler_loop)

    async def _decode(self, handler: Handler, msg: Msg) -> TaskMessage | None:
        """The task a step.queued event carries, or None once an undecodable one is
        dead-lettered raw and termed.

        Retrying cannot make it readable; if the dead letter cannot be written now, the
        message is left for redelivery.
        """
        seq = msg.metadata.sequence.stream
        try:
            return TaskMessage.from_event(Event.decode(msg.data, seq=seq))
        except ValueError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("task %s: an undecodable message (stream seq %s): %s",
                        handler.task, seq, first)
        try:
            await dead_letters.publish_poison(self._js, names.HISTORY_PREFIX, seq, msg.subject,
                                              msg.data, f"not a dagnats task: {first}")
        except Exception as exc:
            log.warning("could not dead-letter it, it will be redelivered: %s",
                        exc or type(exc).__name__)
            return None
        await _settle(msg.term(), "term", None)
        return None

    async def _progress_bucket(self) -> KeyValue | None:
        """The step_progress bucket, bound once (None on a store provisioned before it
        existed: progress then goes to followers only)."""
        if not self._progress_bound:
            self._progress_kv = await progress.bucket(self._js)
            self._progress_bound = True
        return self._progress_kv

    async def _append(self, event: Event, kind: str) -> bool:
        """Publish a step event, retrying while NATS reconnects; False when it never landed."""
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                published, as_kind, body = await worker_payloads.as_published(
                    self._js, event, kind)
                msg_id = names.step_event_msg_id(event.run_id, event.step_id or "",
                                                 event.attempt, as_kind)
                await history.append(self._js, published, msg_id, body=body)
                return True
            except Exception as exc:
                if attempt == PUBLISH_ATTEMPTS:
                    log.warning("could not publish %s for run %s step %s (%s): not acked,"
                                " it will be redelivered", event.type, event.run_id,
                                event.step_id, exc or type(exc).__name__)
                    return False
                await asyncio.sleep(PUBLISH_RETRY_S * attempt)  # a backoff, not a sync point
        return False


def _poisoned(task: TaskMessage) -> Failed:
    error = (f"task delivered {MAX_DELIVERIES} times without finishing"
             " (workers crashed or stalled)")
    task_logger(task).warning("task %s failed (not retryable): %s", task.task, error)
    return Failed(error=error, error_type="MaxDeliveriesExceeded", retryable=False)


def _outcome_event(task: TaskMessage, outcome: Outcome, began: dict[str, Any] | None = None
                   ) -> tuple[Event, str]:
    """step.completed or step.failed; `began` (delivery, worker, started_at) is added when no
    step.started was recorded for this attempt."""
    if isinstance(outcome, Completed):
        data: dict[str, Any] = {"output": outcome.output, **(began or {})}
        if task.plan:  # a planner's output is its plan: the engine adds and runs its steps
            return _event(EventType.STEP_PLANNED, task, data), "planned"
        return _event(EventType.STEP_COMPLETED, task, data), "completed"
    if isinstance(outcome, Continued):
        data = {"output": outcome.state, "iteration": task.iteration, **(began or {})}
        return _event(EventType.STEP_ITERATED, task, data), "iterated"
    data = {"error": outcome.error, "error_type": outcome.error_type,
            "retryable": outcome.retryable, "max_attempts": task.max_attempts, **(began or {})}
    if task.iteration is not None:  # an agent_loop: which iteration, and its attempt
        data.update(iteration=task.iteration, iteration_attempt=task.iteration_attempt)
    return _event(EventType.STEP_FAILED, task, data), "failed"


def _event(kind: EventType, task: TaskMessage, data: dict[str, Any],
           timestamp: datetime | None = None) -> Event:
    return Event(type=kind, run_id=task.run_id, step_id=task.step_id, attempt=task.attempt,
                 timestamp=timestamp or datetime.now(timezone.utc), data=data)


def _seconds_until(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:  # a naive time in a task message is UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - datetime.now(timezone.utc)).total_seconds()


async def _settle(ack: Any, what: str, task: TaskMessage | None) -> None:
    """Send an ack/nak/term; if the connection is gone, the message is redelivered anyway."""
    try:
        await ack
    except Exception as exc:
        where = f" for run {task.run_id} step {task.step_id}" if task else ""
        log.warning("could not %s a task message%s: %s", what, where, exc or type(exc).__name__)
