"""Running a dagnats process's event loop: uvloop where it is installed, asyncio otherwise.

uvloop cut the CPU each step costs by about 20% in `dagnats bench` (bench/RESULTS.md), and
the processes on the hot path (engine, API, workers) spend most of their time in the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None (asyncio's default) when uvloop is missing."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a new loop of the fastest kind available."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
