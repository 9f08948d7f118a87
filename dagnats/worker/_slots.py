"""Bookkeeping for messages a worker holds: how many (Slots) and keeping each leased (Lease)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.aio.msg import Msg

log = logging.getLogger("dagnats.worker")


class Slots:
    """How many messages this worker holds (fetched, not finished) against its capacity.

    Fetch loops ask for `free` messages. With several tasks two loops may fetch at the same
    moment and hold a little more than `capacity` for a while; the handlers themselves are
    bounded separately (a semaphore), so that only means some messages wait, leased, here.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self._changed = asyncio.Event()

    @property
    def free(self) -> int:
        """How many more messages may be fetched now."""
        return max(0, self.capacity - self.held)

    def take(self) -> None:
        """Count one more message held."""
        self.held += 1
        self.wake()

    def give_back(self) -> None:
        """Count one message finished (acked, nacked, terminated or abandoned)."""
        self.held -= 1
        self.wake()

    def wake(self) -> None:
        """Make every waiter check its condition again."""
        self._changed.set()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds; it is checked again after every change."""
        while not condition():
            self._changed.clear()
            await self._changed.wait()


class Lease:
    """Keeps one message leased: in_progress every `interval_s`, and at once when poked.

    It runs on the event loop, so it keeps going whatever a sync handler (in a thread) does.
    """

    def __init__(self, msg: Msg, interval_s: float) -> None:
        self._msg = msg
        self._interval_s = interval_s
        self._loop = asyncio.get_running_loop()
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Ask for an in_progress now; callable from any thread."""
        try:
            self._loop.call_soon_threadsafe(self._poked.set)
        except RuntimeError:
            pass  # the loop has closed: the task is over

    async def keep(self) -> None:
        """Extend the lease until cancelled."""
        while True:
            try:
                async with asyncio.timeout(self._interval_s):
                    await self._poked.wait()
            except TimeoutError:
                pass
            self._poked.clear()
            try:
                await self._msg.in_progress()
            except Exception as exc:  # disconnected: the lease may lapse, redelivery follows
                log.debug("could not extend a task lease: %s", exc)
