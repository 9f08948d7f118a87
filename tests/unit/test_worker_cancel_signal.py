"""CancelSignal and TaskContext.cancelled: set from one thread, seen and awaited on others."""

from __future__ import annotations

import asyncio
import threading

from dagnats import worker
from dagnats.dag.tasks import TaskMessage

TASK = TaskMessage(run_id="r1", workflow="w", step_id="s", task="t", attempt=1,
                   max_attempts=1)


def test_a_context_without_a_signal_is_never_cancelled() -> None:
    ctx = worker.TaskContext(TASK)
    assert ctx.cancelled is False


def test_waiters_on_other_loops_wake_up_and_late_waiters_return_at_once() -> None:
    signal = worker.CancelSignal()
    ctx = worker.TaskContext(TASK, cancel=signal)
    woke: list[str] = []
    waiting = threading.Barrier(3)

    def waiter(name: str) -> None:
        async def wait() -> None:
            task = asyncio.ensure_future(ctx.wait_cancelled())
            await asyncio.sleep(0)  # let it register before saying so
            waiting.wait(5)
            await asyncio.wait_for(task, 5)
            woke.append(name)
        asyncio.run(wait())

    threads = [threading.Thread(target=waiter, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    waiting.wait(5)
    assert not ctx.cancelled
    signal.set()
    for thread in threads:
        thread.join(5)
    assert sorted(woke) == ["a", "b"] and ctx.cancelled
    asyncio.run(asyncio.wait_for(ctx.wait_cancelled(), 1))  # already set: returns at once


def test_a_cancelled_wait_leaves_no_waiter_behind() -> None:
    signal = worker.CancelSignal()

    async def scenario() -> None:
        task = asyncio.ensure_future(signal.wait())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert signal._waiters == []
