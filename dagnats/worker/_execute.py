"""Running one handler call under the step timeout, and classifying how it ended.

Sync handlers run in a bounded thread pool, async handlers on a handler event loop in a
thread of its own (HandlerLoop), never on the worker's loop: a handler that blocks cannot
stop the worker's heartbeats, acks and fetches. A thread cannot be interrupted: when a sync
handler outlives its timeout, the step fails (retryable) at once, but its thread slot stays
taken until the function returns, so the pool never runs more than `sync_threads` handlers.
An async handler that outlives its timeout is cancelled on its loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from dagnats import aio, strict_json
from dagnats.dag.durations import format_duration
from dagnats.dag.tasks import TaskMessage
from dagnats.worker._context import TaskContext
from dagnats.worker._errors import NonRetryableError
from dagnats.worker._registry import Handler

log = logging.getLogger("dagnats.worker")


@dataclass(frozen=True)
class Continue:
    """What an agent_loop's handler returns to be called again with `state` as its input
    (`return worker.Continue({"notes": notes})`); any other return ends the loop with
    that value as the step's output."""

    state: Any = None


@dataclass(frozen=True)
class Continued:
    """An agent_loop's iteration ended with `state` (a JSON value) for the next one."""

    state: Any


@dataclass(frozen=True)
class Completed:
    """The handler returned; `output` is its result as a JSON value."""

    output: Any


@dataclass(frozen=True)
class Failed:
    """The handler failed; the engine retries a retryable failure per the retry policy."""

    error: str
    error_type: str
    retryable: bool


Outcome = Completed | Failed | Continued


class StepTimeout(Exception):
    """The step's timeout expired before the handler returned."""


class SyncThreads:
    """A bounded pool for sync handlers; a slot is free only once its function has returned."""

    def __init__(self, size: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="dagnats-task")
        self._free = asyncio.Semaphore(size)
        self._lock = threading.Lock()
        self._running = 0

    @property
    def running(self) -> int:
        """How many sync handlers are running now, timed-out ones included."""
        with self._lock:
            return self._running

    async def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None) -> Any:
        """Run `fn(*args)` in a thread; StepTimeout once `timeout_s` passed since it started."""
        await self._free.acquire()
        loop = asyncio.get_running_loop()
        try:
            future = self._pool.submit(contextvars.copy_context().run, fn, *args)
        except BaseException:
            self._free.release()
            raise
        with self._lock:
            self._running += 1
        future.add_done_callback(lambda _: self._on_done(loop))
        return await _within(asyncio.wrap_future(future), timeout_s)

    def _on_done(self, loop: asyncio.AbstractEventLoop) -> None:
        # Runs in the pool's thread: hand the slot back on the loop that owns the semaphore.
        with self._lock:
            self._running -= 1
        try:
            loop.call_soon_threadsafe(self._free.release)
        except RuntimeError:
            pass  # the loop is closed: nobody waits for a slot any more

    def shutdown(self) -> None:
        """Stop taking work; do not wait for running threads (they cannot be interrupted)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class HandlerLoop:
    """The event loop async handlers run on, in a daemon thread of its own (one per worker)."""

    def __init__(self) -> None:
        self._loop = (aio.loop_factory() or asyncio.new_event_loop)()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="dagnats-handlers")
        self._thread.start()

    async def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float | None) -> Any:
        """Run `coro` on the handler loop; StepTimeout after `timeout_s` (it is cancelled).

        Cancelling the caller cancels the coroutine on the handler loop too.
        """
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return await _within(asyncio.wrap_future(future), timeout_s)

    async def close(self, timeout_s: float = 1.0) -> None:
        """Cancel what still runs there and stop the loop; a blocked loop is left behind."""
        if not self._thread.is_alive():
            return
        cancelling = asyncio.run_coroutine_threadsafe(_cancel_all(timeout_s), self._loop)
        try:
            await asyncio.wait_for(asyncio.wrap_future(cancelling), timeout_s + 0.5)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("an async handler is blocking its event loop; leaving it behind")
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, timeout_s)
        if not self._thread.is_alive():
            self._loop.close()


async def _cancel_all(timeout_s: float) -> None:
    """Cancel every other task of the running loop and give them `timeout_s` to finish."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _within(awaitable: Awaitable[Any], timeout_s: float | None) -> Any:
    """Await under a timeout: StepTimeout when it expires, unlike a TimeoutError from inside."""
    if timeout_s is None:
        return await awaitable
    try:
        async with asyncio.timeout(timeout_s) as scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise StepTimeout() from None
        raise


async def invoke(handler: Handler, ctx: TaskContext, task: TaskMessage,
                 threads: SyncThreads, handler_loop: HandlerLoop) -> Outcome:
    """Validate the input, run the handler under the step timeout, serialize the output.

    Never raises (cancellation aside): every failure becomes a Failed outcome, logged in one
    line, with the traceback at debug level.
    """
    try:
        value = handler.parse_input(task.input)
        if handler.is_async:
            result = await handler_loop.call(_awaited(handler.fn(ctx, value)), task.timeout_s)
        else:
            result = await threads.call(handler.fn, ctx, value, timeout_s=task.timeout_s)
            if inspect.iscoroutine(result):
                result.close()
                raise NonRetryableError(f"handler {handler.label} returned a coroutine:"
                                        " declare it `async def` so the worker awaits it")
        if isinstance(result, Continue):
            return _continued(ctx, task, result)
        return Completed(handler.dump_output(result))
    except StepTimeout:
        return _failed(ctx, f"timed out after {timeout_label(task)}", "TimeoutError", True, None)
    except NonRetryableError as exc:
        return _failed(ctx, str(exc) or type(exc).__name__, type(exc).__name__, False, exc)
    except Exception as exc:
        return _failed(ctx, f"{type(exc).__name__}: {exc}", type(exc).__name__, True, exc)


def _continued(ctx: TaskContext, task: TaskMessage, result: Continue) -> Outcome:
    """A handler's Continue: the next iteration's state, if its step is an agent_loop."""
    if task.iteration is None:
        return _failed(ctx, f"the handler returned worker.Continue, but step {task.step_id!r} "
                       "is not an agent_loop step", "InvalidTaskOutput", False, None)
    try:
        strict_json.check(result.state)
        state = _STATE.dump_python(result.state, mode="json", warnings="error")
    except (strict_json.JsonRefused, ValueError, TypeError) as exc:
        return _failed(ctx, f"the state of worker.Continue is not JSON: {exc}",
                       "InvalidTaskOutput", False, None)
    return Continued(state)


#: Dumps an agent_loop's state (any JSON-able value, pydantic models included) to JSON.
_STATE: TypeAdapter[Any] = TypeAdapter(Any)


def timeout_label(task: TaskMessage) -> str:
    """The step timeout as the user wrote it ("30s"), else formatted from seconds."""
    if task.timeout:
        return task.timeout
    return format_duration(task.timeout_s or 0)


def _failed(ctx: TaskContext, error: str, error_type: str, retryable: bool,
            exc: BaseException | None) -> Failed:
    kind = "retryable" if retryable else "not retryable"
    ctx.logger.warning("task %s failed (%s): %s", ctx.task, kind, error)
    if exc is not None:
        ctx.logger.debug("traceback of the failure", exc_info=exc)
    return Failed(error=error, error_type=error_type, retryable=retryable)
