"""Checkpoints and signals as handlers reach them: written once, as coroutines on the worker's loop.

The worker's event loop owns the NATS connection and runs no handler code: sync handlers run
in threads of a pool, async ones on the handler loop (another thread). `RunData` holds the
coroutines; `Bridge` carries one attempt's calls over to the worker's loop, and back in the
caller's own way: blocking a handler thread (`blocking`), or as a future awaitable on the
handler loop (`awaitable`). Every call still pending when the attempt ends is cancelled, so
a sync handler that outlived its step timeout does not keep waiting (and its thread taken).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dagnats import names
from dagnats.dag.events import Event, EventType
from dagnats.dag.tasks import TaskMessage
from dagnats.limits import SIGNAL_WAIT_DEFAULT_S, SIGNAL_WAIT_MAX_S
from dagnats.store import checkpoints, history, run_data, signals
from dagnats.worker._cancel import CancelSignal
from dagnats.worker._errors import RunCancelled

T = TypeVar("T")
log = logging.getLogger("dagnats.worker")

#: How long a blocking call waits for the worker's loop beyond the call's own time limit
#: (it only matters when that loop is gone: the worker is exiting).
BRIDGE_MARGIN_S = 30.0


class RunData:
    """The worker's access to the checkpoint and signal buckets, bound on first use."""

    def __init__(self, js: JetStreamContext, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        """The worker's event loop, where every coroutine of this class runs."""
        self._js = js
        self._buckets: dict[str, KeyValue] = {}

    async def _bucket(self, bucket: str) -> KeyValue:
        kv = self._buckets.get(bucket)
        if kv is None:
            kv = self._buckets[bucket] = await run_data.open_bucket(self._js, bucket)
        return kv

    async def save_checkpoint(self, run_id: str, step_id: str, payload: bytes) -> None:
        """Store an encoded checkpoint (checkpoints.encode) as the step's latest."""
        await checkpoints.save(await self._bucket(names.CHECKPOINTS_BUCKET), run_id, step_id,
                               payload)

    async def load_checkpoint(self, run_id: str, step_id: str) -> checkpoints.Checkpoint | None:
        """The step's latest checkpoint, or None."""
        return await checkpoints.load(await self._bucket(names.CHECKPOINTS_BUCKET), run_id,
                                      step_id)

    async def wait_for_signal(self, task: TaskMessage, name: str, timeout_s: float,
                              cancel: CancelSignal) -> Any:
        """The value of signal `name` of the task's run, once there is one.

        TimeoutError after `timeout_s`; RunCancelled as soon as the run is cancelled. A wait
        that has to wait shows in the run (`step.waiting`, then `step.started` again).
        """
        kv = await self._bucket(names.SIGNALS_BUCKET)
        sent = await signals.latest(kv, task.run_id, name)
        if sent is not None:
            return sent.value
        wait = secrets.randbelow(2**31)  # tells this wait's two events from another wait's
        until = datetime.now(UTC) + timedelta(seconds=timeout_s)
        await self._report(task, EventType.STEP_WAITING, names.signal_waiting_kind(wait), {
            "waiting_for": {"kind": "signal", "signal": name, "until": until.isoformat()}})
        try:
            return await self._wait_for_signal(kv, task.run_id, name, timeout_s, cancel)
        finally:
            if not cancel.is_set():
                await self._report(task, EventType.STEP_STARTED,
                                   names.signal_resumed_kind(wait), {"resumed": f"signal {name}"})

    async def _report(self, task: TaskMessage, kind: EventType, msg_kind: str,
                      data: dict[str, Any]) -> None:
        """Record a step event of the waiting handler (best effort: it only informs)."""
        event = Event(type=kind, run_id=task.run_id, step_id=task.step_id,
                      attempt=task.attempt, timestamp=datetime.now(UTC), data=data)
        try:
            await history.append(self._js, event, names.step_event_msg_id(
                task.run_id, task.step_id, task.attempt, msg_kind))
        except Exception as exc:  # the wait goes on; only `run status` misses it
            log.warning("could not record %s for run %s step %s: %s", kind.value,
                        task.run_id, task.step_id, exc or type(exc).__name__)

    async def _wait_for_signal(self, kv: KeyValue, run_id: str, name: str, timeout_s: float,
                               cancel: CancelSignal) -> Any:
        waiting = asyncio.ensure_future(signals.wait_for(kv, run_id, name, timeout_s))
        cancelled = asyncio.ensure_future(cancel.wait())
        try:
            await asyncio.wait({waiting, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
            waiting.cancel()  # a no-op once it is done
        if cancel.is_set():
            if waiting.done() and not waiting.cancelled():
                waiting.exception()  # whatever it was, the cancellation wins
            raise RunCancelled(f"run {run_id} was cancelled while its step waited for"
                               f" signal {name}; return now, nothing is reported")
        return waiting.result().value


class Bridge:
    """One attempt's calls from its handler into RunData on the worker's loop."""

    def __init__(self, data: RunData, cancel: CancelSignal, attempt: str) -> None:
        self.data = data
        self._cancel = cancel
        self._attempt = attempt  # "attempt 2 of step s1 of run abc..." for messages
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._closed = False

    def blocking(self, make: Callable[[], Coroutine[Any, Any, T]], spelling: str,
                 twin: str, timeout_s: float) -> T:
        """Run `make()` on the worker's loop and wait for it, blocking this (handler) thread.

        TypeError when this thread runs an event loop: blocking it would stall every
        handler on it (in an async handler, `await ctx.<twin>` instead).
        """
        if _running_loop() is not None:
            raise TypeError(f"ctx.{spelling}() blocks, and this thread runs an event loop: in"
                            f" an async handler, use `await ctx.{twin}(...)` instead")
        future = self._submit(make, spelling)
        try:
            return future.result(timeout_s + BRIDGE_MARGIN_S)
        except concurrent.futures.CancelledError:
            raise self._ended(spelling) from None
        except TimeoutError:
            if future.done():
                raise  # the call's own TimeoutError (a signal that never came)
            future.cancel()
            raise TimeoutError(f"ctx.{spelling}(): the worker did not answer within"
                               f" {timeout_s + BRIDGE_MARGIN_S:g}s (is it stopping?)") from None

    def awaitable(self, make: Callable[[], Coroutine[Any, Any, T]], spelling: str,
                  twin: str) -> asyncio.Future[T]:
        """Run `make()` on the worker's loop; a future of its result on the caller's loop.

        TypeError when no event loop runs in this thread (a sync handler: call ctx.<twin>).
        Cancelling the future (the handler was cancelled) cancels the call.
        """
        loop = _running_loop()
        if loop is None:
            raise TypeError(f"ctx.{spelling}() is awaitable, for async handlers: in a sync"
                            f" handler, call ctx.{twin}(...) instead")
        return asyncio.wrap_future(self._submit(make, spelling), loop=loop)

    def close(self) -> None:
        """The attempt is over: cancel its pending calls and refuse new ones."""
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, set()
        for future in pending:
            future.cancel()

    def _submit(self, make: Callable[[], Coroutine[Any, Any, T]], spelling: str
                ) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._closed:
                raise self._ended(spelling)
            coro = make()
            try:
                future = asyncio.run_coroutine_threadsafe(coro, self.data.loop)
            except BaseException:
                coro.close()
                raise
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _ended(self, spelling: str) -> Exception:
        if self._cancel.is_set():
            return RunCancelled(f"ctx.{spelling}(): {self._attempt} was cancelled with its run;"
                                " return now, nothing the handler returns is reported")
        return RuntimeError(f"ctx.{spelling}(): {self._attempt} is over (it timed out, or the"
                            " worker is stopping); return now, its result is not reported")


def signal_wait_seconds(name: str, timeout: timedelta | float | None) -> float:
    """The wait's timeout in seconds (None: the default); ValueError for a bad name or one
    out of (0, limits.SIGNAL_WAIT_MAX_S]."""
    problem = signals.name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    if timeout is None:
        return SIGNAL_WAIT_DEFAULT_S
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not 0 < seconds <= SIGNAL_WAIT_MAX_S:
        raise ValueError(f"a signal wait's timeout must be more than 0 and at most"
                         f" {SIGNAL_WAIT_MAX_S:g}s (dagnats.limits.SIGNAL_WAIT_MAX_S),"
                         f" got {seconds:g}s")
    return seconds


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
