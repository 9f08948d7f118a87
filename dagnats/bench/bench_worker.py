"""The benchmark's worker: ordinary SDK handlers, sync and async, run with `dagnats worker run`.

The chain is the tutorial's greet (sync) -> uppercase (async) -> reverse (sync); the fan-out
is fan_split (async) -> fan_work x N (sync) -> fan_join (async); the map is map_items ->
a map step of map_noop (both async). The bench sets the worker's
concurrency and sync thread pool through DAGNATS_BENCH_CONCURRENCY and
DAGNATS_BENCH_SYNC_THREADS; nothing else differs from a user's worker file.
"""

from __future__ import annotations

import os

from dagnats import worker

CONCURRENCY_ENV = "DAGNATS_BENCH_CONCURRENCY"
SYNC_THREADS_ENV = "DAGNATS_BENCH_SYNC_THREADS"


def greet(ctx: worker.TaskContext, name: str) -> str:
    """Step 1 of the chain (sync, in the thread pool)."""
    return f"Hello, {name or 'World'}!"


async def uppercase(ctx: worker.TaskContext, text: str) -> str:
    """Step 2 of the chain (async, on the event loop)."""
    return text.upper()


def reverse(ctx: worker.TaskContext, text: str) -> str:
    """Step 3 of the chain (sync)."""
    return text[::-1]


async def fan_split(ctx: worker.TaskContext, value: int) -> int:
    """The root of the fan-out: hands its input to every parallel step."""
    return value


def fan_work(ctx: worker.TaskContext, value: int) -> int:
    """One of the parallel steps (sync)."""
    return value + 1


async def fan_join(ctx: worker.TaskContext, outputs: dict[str, int]) -> int:
    """The join: sums the outputs of every parallel step."""
    return sum(outputs.values())


async def map_items(ctx: worker.TaskContext, count: int) -> list[int]:
    """The array a map step maps: 0 .. count-1."""
    return list(range(count))


async def map_noop(ctx: worker.TaskContext, item: int) -> int:
    """One instance of the map: its item, unchanged (async: the map's own cost shows)."""
    return item


def build() -> worker.Worker:
    """The bench worker with every handler registered."""
    w = worker.Worker(concurrency=int(os.environ.get(CONCURRENCY_ENV, "64")),
                      sync_threads=int(os.environ.get(SYNC_THREADS_ENV, "8")))
    for name, fn in (("greet", greet), ("uppercase", uppercase), ("reverse", reverse),
                     ("fan_split", fan_split), ("fan_work", fan_work), ("fan_join", fan_join),
                     ("map_items", map_items), ("map_noop", map_noop)):
        worker.handle_typed(w, name, fn)
    return w


if __name__ == "__main__":
    build().run()
