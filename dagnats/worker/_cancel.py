"""Cancelled runs as a worker sees them: a watch on KV `run_cancellations`, and task signals.

The watch delivers every key first and each change after. The worker fetches no task before
the initial values are in, so a task of a run cancelled while the worker was away is
dropped too. KV watchers do not recover after a reconnect, so the watch is re-created, and
the set rebuilt, whenever the connection has reconnected.

A run id in the set can be stale for a moment after a retry removed it; before a task is
dropped the bucket is asked directly, so a revived run's tasks always run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import nats.errors
from nats.aio.client import Client as NATS
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from dagnats import jetstream, names
from dagnats.errors import ServerUnavailable

log = logging.getLogger("dagnats.worker")

_REMOVED = ("DEL", "PURGE")


class CancelSignal:
    """Set once a task's run is cancelled: readable from any thread, awaitable on any loop."""

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def is_set(self) -> bool:
        """True once the run is cancelled."""
        return self._flag.is_set()

    def set(self) -> None:
        """Mark the run cancelled and wake every waiter, on whatever loop it waits."""
        with self._lock:
            self._flag.set()
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(event.set)

    async def wait(self) -> None:
        """Return once the run is cancelled (at once if it is already)."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self._flag.is_set():
                return
            self._waiters.append(waiter)
        try:
            await waiter[1].wait()
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove(waiter)


class Cancellations:
    """The ids of cancelled runs, kept current by a supervised watch of the bucket."""

    def __init__(self, nc: NATS, poll_s: float) -> None:
        self._nc = nc
        self._poll_s = poll_s
        self._kv: KeyValue | None = None
        self._cancelled: set[str] = set()
        self._signals: dict[str, set[CancelSignal]] = {}
        self.ready = asyncio.Event()
        """Set once the initial values have been read: tasks may be fetched from then on."""

    async def bind(self) -> None:
        """Bind to the provisioned bucket (ServerUnavailable if it does not exist)."""
        try:
            self._kv = await self._nc.jetstream().key_value(names.CANCEL_BUCKET)
        except BucketNotFoundError:
            raise ServerUnavailable(
                f"KV bucket {names.CANCEL_BUCKET} does not exist on this NATS: start "
                "`dagnats serve`, which provisions it, or run dagnats.jetstream.provision"
            ) from None

    def register(self, run_id: str) -> CancelSignal:
        """A signal for one task of `run_id`, set now or whenever the run is cancelled."""
        signal = CancelSignal()
        if run_id in self._cancelled:
            signal.set()
        self._signals.setdefault(run_id, set()).add(signal)
        return signal

    def unregister(self, run_id: str, signal: CancelSignal) -> None:
        """Forget a finished task's signal."""
        signals = self._signals.get(run_id)
        if signals is not None:
            signals.discard(signal)
            if not signals:
                del self._signals[run_id]

    async def is_cancelled(self, run_id: str) -> bool:
        """True when the run is cancelled (a hit is confirmed with the bucket itself)."""
        if run_id not in self._cancelled or self._kv is None:
            return False
        try:
            await self._kv.get(names.cancel_key(run_id))
        except KeyNotFoundError:  # removed by a retry the watch has not shown us yet
            self._cancelled.discard(run_id)
            return False
        except Exception as exc:  # cannot ask: trust the watch
            log.debug("could not confirm the cancellation of run %s: %s", run_id, exc)
        return True

    async def run(self, done: asyncio.Event) -> None:
        """Keep the watch going until `done` is set; re-create it after every reconnect."""
        while not done.is_set():
            reconnects = self._nc.stats["reconnects"]
            try:
                assert self._kv is not None, "bind() first"
                watcher = await self._kv.watchall()
            except Exception as exc:  # disconnected: try again shortly
                log.warning("cannot watch run cancellations yet: %s", exc or type(exc).__name__)
                await self._pause(done)
                continue
            try:
                await self._follow(watcher, done, reconnects)
            except Exception as exc:  # a broken watch: start a new one
                log.warning("watching run cancellations failed, watching again: %s",
                            exc or type(exc).__name__)
                await self._pause(done)
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()

    async def _pause(self, done: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), self._poll_s)

    async def _follow(self, watcher: KeyValue.KeyWatcher, done: asyncio.Event,
                      reconnects: int) -> None:
        """Apply the watch's entries; set `ready` once the initial values are in.

        The initial values end with the entry that has nothing pending after it (`delta`
        0). nats-py's own end marker (None) can come before the first value, so it is
        believed only while the bucket holds no entry at all, as the server tells.
        """
        initial: set[str] | None = set()  # run ids seen before the initial values ended
        while not done.is_set() and self._nc.stats["reconnects"] == reconnects:
            try:
                entry = await watcher.updates(timeout=self._poll_s)
            except (nats.errors.TimeoutError, TimeoutError):
                entry = None  # nothing within the poll: an empty bucket sends no value
            if entry is None:
                if initial is not None and not initial and not await self._holds_entries():
                    self._initial_values_in(initial)
                    initial = None
                continue
            if not isinstance(entry, KeyValue.Entry):
                return  # the watcher was stopped
            if entry.operation in _REMOVED:
                self._cancelled.discard(entry.key)
            else:
                if initial is not None:
                    initial.add(entry.key)
                self._cancel(entry.key)
            if initial is not None and entry.delta == 0:
                self._initial_values_in(initial)
                initial = None
        if not done.is_set():
            log.info("reconnected to NATS: watching run cancellations again")

    def _initial_values_in(self, initial: set[str]) -> None:
        """Drop ids no longer cancelled (removed while we were not watching); tasks may run."""
        self._cancelled &= initial
        self.ready.set()

    async def _holds_entries(self) -> bool:
        return bool(await jetstream.bucket_keys(self._nc.jetstream(), names.CANCEL_BUCKET))

    def _cancel(self, run_id: str) -> None:
        if run_id not in self._cancelled:
            log.info("run %s was cancelled", run_id)
        self._cancelled.add(run_id)
        for signal in self._signals.get(run_id, ()):
            signal.set()
