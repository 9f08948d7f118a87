"""The machinery of the blocking `Client`: one private event loop in a daemon thread.

Every blocking method is generated from its `AsyncClient` twin (`blocking`, `blocking_iter`),
so the two can never drift apart.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A")


class LoopThread:
    """An event loop running in a daemon thread; `run` executes a coroutine on it and blocks."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dagnats-client",
                                        daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run `coro` on the loop thread and return its result (or raise its exception)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking dagnats.Client call was made from its own loop")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def iterate(self, agen: AsyncIterator[R]) -> Iterator[R]:
        """Iterate an async iterator from this (blocking) side, one item per round trip."""

        async def step() -> tuple[bool, R | None]:
            try:
                return True, await agen.__anext__()
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                more, item = self.run(step())
                if not more:
                    return
                yield item  # type: ignore[misc]
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None and self._thread.is_alive():
                self.run(aclose())

    def stop(self) -> None:
        """Stop the loop and its thread (after the caller closed what ran on it)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()


class HasLoop(Protocol):
    """A blocking twin: its async client and the loop thread that client lives on."""

    _async: Any
    _loop: LoopThread


def blocking(method: Callable[Concatenate[A, P], Coroutine[Any, Any, R]]
             ) -> Callable[Concatenate[HasLoop, P], R]:
    """The blocking twin of an async method: same arguments, same result, same errors."""

    @functools.wraps(method)
    def call(self: HasLoop, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._loop.run(method(self._async, *args, **kwargs))

    return call


def blocking_iter(method: Callable[Concatenate[A, P], AsyncIterator[R]]
                  ) -> Callable[Concatenate[HasLoop, P], Iterator[R]]:
    """The blocking twin of an async-iterator method: a plain iterator of the same items."""

    @functools.wraps(method)
    def call(self: HasLoop, *args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
        return self._loop.iterate(method(self._async, *args, **kwargs))

    return call
