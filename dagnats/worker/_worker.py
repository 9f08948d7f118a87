"""Worker: registers handlers, connects to NATS, and runs the fetch loop until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from nats.aio.client import Client as NATS

from dagnats import aio, connection, jetstream
from dagnats.errors import DagnatsError, ServerUnavailable
from dagnats.store import presence
from dagnats.worker import _runner
from dagnats.worker._cancel import Cancellations
from dagnats.worker._errors import RegistrationError
from dagnats.worker._execute import HandlerLoop, SyncThreads
from dagnats.worker._registry import Registry
from dagnats.worker._runner import Runner, Settings

log = logging.getLogger("dagnats.worker")

F = TypeVar("F", bound=Callable[..., Any])

LEASE_ENV = "DAGNATS_TASK_LEASE"
DEFAULT_LEASE_S = 30.0
#: How long a stop waits for tasks in flight before cancelling them.
GRACE_S = 30.0
#: How long a handler of a cancelled run may go on before it is cancelled.
DEFAULT_CANCEL_GRACE_S = 5.0
#: How long the first connection may take. nats-py retries a long-lived connection forever,
#: even the first one: without this a worker started with NATS down would wait in silence.
CONNECT_DEADLINE_S = 10.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def lease_seconds(lease: timedelta | float | None) -> float:
    """The lease in seconds: the argument, else DAGNATS_TASK_LEASE, else 30."""
    if lease is None:
        raw = os.environ.get(LEASE_ENV)
        if not raw:
            return DEFAULT_LEASE_S
        try:
            lease = float(raw)
        except ValueError:
            raise ValueError(f"{LEASE_ENV}={raw!r} is not a number of seconds") from None
    seconds = lease.total_seconds() if isinstance(lease, timedelta) else float(lease)
    if not seconds > 0:
        raise ValueError(f"the task lease must be positive, got {seconds}s")
    return seconds


#: The default name of a Worker (`worker list`, logs): serve sets it to the name it gives the
#: worker file, `worker run FILE` to one made from the file's name.
WORKER_NAME_ENV = "DAGNATS_WORKER_NAME"


class Worker:
    """Runs task handlers: pulls task messages from NATS and reports results to run history.

        w = worker.Worker()                    # DAGNATS_NATS_URL, else the local serve
        worker.handle_typed(w, "greet", greet)
        w.run()                                # until SIGINT/SIGTERM

    `concurrency` bounds the tasks run at once, `sync_threads` the sync handlers among them
    (they run in a thread pool; async handlers run on a handler event loop in a thread of
    its own, so the worker's own loop keeps heartbeating whatever a handler does). `lease`
    is how long a task may go without a sign of life before NATS hands it to another worker;
    the worker extends it every lease/3 while the handler runs. Every worker of a task
    should use the same lease: the task's consumer takes the lease of the worker that
    started last. When a run is cancelled, its queued tasks are dropped, its running
    handlers see `ctx.cancelled`, and async ones are cancelled `cancel_grace` later.

    A handler waiting for a signal (`ctx.wait_for_signal`) is running: it holds one of the
    `concurrency` slots, a sync one also a thread of `sync_threads`, and its lease is
    extended as usual; on the server it costs one KV watch. The wait ends at its timeout
    (at most limits.SIGNAL_WAIT_MAX_S), at the step's timeout, or when the run is
    cancelled, and the slot and thread are free again then (docs/handlers.md).
    """

    #: True once any Worker in this process began running (`dagnats worker run` checks it).
    ever_ran = False

    def __init__(self, nats_url: str | None = None, *, concurrency: int = 16,
                 sync_threads: int = 8, lease: timedelta | float | None = None,
                 name: str | None = None,
                 cancel_grace: timedelta | float = DEFAULT_CANCEL_GRACE_S) -> None:
        if concurrency < 1 or sync_threads < 1:
            raise ValueError("concurrency and sync_threads must be at least 1")
        self.nats_url = connection.resolve_url(nats_url)
        self._where = connection.redact(self.nats_url)  # for messages: no password
        self.concurrency = concurrency
        self.sync_threads = sync_threads
        self.lease_s = lease_seconds(lease)
        grace = cancel_grace.total_seconds() if isinstance(cancel_grace, timedelta) \
            else float(cancel_grace)
        if grace < 0:
            raise ValueError(f"cancel_grace must not be negative, got {grace}s")
        self.cancel_grace_s = grace
        self.name = name or os.environ.get(WORKER_NAME_ENV) \
            or f"{socket.gethostname()}-{os.getpid()}"
        self._registry = Registry()
        self._started = False
        self._stuck_threads = 0

    @property
    def tasks(self) -> list[str]:
        """The registered task names."""
        return self._registry.names()

    def task(self, name: str) -> Callable[[F], F]:
        """Decorator form of `handle_typed`: `@w.task("greet")` registers the function."""

        def register(fn: F) -> F:
            handle_typed(self, name, fn)
            return fn

        return register

    def _register(self, name: str, fn: Callable[..., Any]) -> None:
        if self._started:
            raise RegistrationError(
                f"cannot register task {name!r}: worker {self.name} is already running;"
                " register every handler before run()")
        self._registry.add(name, fn)

    def run(self) -> None:
        """Run until SIGINT or SIGTERM, then let tasks in flight finish (up to 30 s) and return.

        Configures basic logging when the application has not. A DagnatsError (such as NATS
        being unreachable) is logged in one line and exits with its exit code.
        """
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            aio.run(self.run_async())
        except DagnatsError as exc:
            log.error("%s", exc)
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:  # before the handlers were installed: nothing was running
            raise SystemExit(130) from None
        if self._stuck_threads:
            log.warning("exiting with %d sync handler(s) still running in threads",
                        self._stuck_threads)
            logging.shutdown()
            os._exit(0)  # interpreter exit would join those threads, maybe forever

    async def run_async(self, stop: asyncio.Event | None = None) -> None:
        """Run in the current event loop until `stop` is set.

        Async handlers do not run on this loop but on the worker's own handler loop (in a
        thread of its own): share state with them through thread-safe means (a
        threading.Event, asyncio.run_coroutine_threadsafe), not asyncio objects of this loop.
        Without `stop`, SIGINT/SIGTERM stop the worker (a second signal cancels tasks in
        flight); with one, the embedding application owns signals. Returns once tasks in
        flight have finished (or were cancelled after the grace period). Raises
        ServerUnavailable when NATS cannot be reached or closes for good.
        """
        if not len(self._registry):
            raise RegistrationError(f"worker {self.name} has no handlers: register some first")
        if self._started:
            raise RuntimeError(f"worker {self.name} is already running")
        self._started = True
        Worker.ever_ran = True
        own_signals = stop is None
        stop = stop or asyncio.Event()
        closed = asyncio.Event()
        threads = SyncThreads(self.sync_threads)
        handler_loop = HandlerLoop()
        try:
            nc = await self._connect(closed)
            try:
                await self._serve(nc, threads, handler_loop, stop, closed, own_signals)
            finally:
                await jetstream.close(nc)
        finally:
            await handler_loop.close()
            threads.shutdown()
            self._stuck_threads = threads.running
            self._started = False

    async def _connect(self, closed: asyncio.Event) -> NATS:
        try:
            async with asyncio.timeout(CONNECT_DEADLINE_S):
                return await connection.connect(
                    self.nats_url, name=f"dagnats-worker-{self.name}", long_lived=True,
                    role="worker",
                    on_closed=_setter(closed))
        except TimeoutError:
            raise ServerUnavailable(
                f"cannot reach NATS at {self._where} within {CONNECT_DEADLINE_S:g}s; start"
                " it with `dagnats serve`, or set DAGNATS_NATS_URL") from None

    async def _serve(self, nc: NATS, threads: SyncThreads, handler_loop: HandlerLoop,
                     stop: asyncio.Event, closed: asyncio.Event, own_signals: bool) -> None:
        settings = Settings(worker_name=self.name, lease_s=self.lease_s,
                            concurrency=self.concurrency, grace_s=GRACE_S,
                            poll_s=_runner.POLL_S, cancel_grace_s=self.cancel_grace_s)
        runner = Runner(nc.jetstream(), self._registry, threads, settings,
                        handler_loop=handler_loop,
                        cancellations=Cancellations(nc, _runner.POLL_S))
        bound = await runner.bind()
        announced = asyncio.Event()  # set: the heartbeats stop and the entry is removed
        try:
            _notify_ready()
            log.info("worker %s ready: tasks %s, concurrency %d, lease %gs", self.name,
                     ", ".join(self.tasks), self.concurrency, self.lease_s)
            async with asyncio.TaskGroup() as group:
                group.create_task(_stop_when(runner, stop, closed))
                group.create_task(presence.heartbeat(
                    nc.jetstream(), self._presence_entry(runner), announced))
                try:
                    with _signals(runner, stop) if own_signals else contextlib.nullcontext():
                        await runner.run(bound)
                finally:
                    announced.set()
        finally:
            for _, sub in bound:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        if closed.is_set() and not stop.is_set():
            raise ServerUnavailable(f"the connection to NATS at {self._where} closed for good;"
                                    " restart the worker once NATS is back")
        log.info("worker %s stopped", self.name)

    def _presence_entry(self, runner: Runner) -> Callable[[], presence.WorkerEntry]:
        """What this worker's heartbeats say, as of each heartbeat (`dagnats worker list`)."""
        worker_id = presence.new_worker_id()
        started_at = datetime.now(UTC)

        def entry() -> presence.WorkerEntry:
            return presence.entry_for(worker_id, self.name, self.tasks, runner.in_flight,
                                      self.concurrency, started_at)

        return entry


def handle_typed(worker: Worker, name: str, fn: Callable[..., Any]) -> None:
    """Register `fn(ctx, input) -> output` as the handler of task `name` on `worker`.

    The input is validated into `fn`'s input annotation and the result serialized from its
    return annotation, with pydantic (no annotation: any JSON value). Raises
    RegistrationError at once for a bad name, a duplicate or an unusable signature.
    """
    worker._register(name, fn)


def _setter(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def set_event() -> None:
        event.set()

    return set_event


async def _stop_when(runner: Runner, stop: asyncio.Event, closed: asyncio.Event) -> None:
    """Stop the runner once `stop` is set or the connection closed for good."""
    async with asyncio.TaskGroup() as group:
        waits = [group.create_task(stop.wait()), group.create_task(closed.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
    runner.stop()


@contextlib.contextmanager
def _signals(runner: Runner, stop: asyncio.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop`; a second one cancels tasks in flight. Main thread only.

    Once the process that started the worker has died, a repeated signal does not cancel:
    the kernel's parent-death signal (`dagnats serve` asks for SIGTERM) comes once per
    exiting thread of the parent, so a `serve` killed with -9 sends it more than once.
    """
    loop = asyncio.get_running_loop()
    parent = os.getppid()

    def on_signal(signum: int) -> None:
        if stop.is_set() and os.getppid() != parent:
            log.info("%s again, from the death of the parent process: still finishing tasks "
                     "in flight", signal.Signals(signum).name)
            return
        if stop.is_set():
            log.warning("second %s: cancelling tasks in flight", signal.Signals(signum).name)
            runner.abort()
            return
        log.info("%s: stopping (signal again to cancel tasks in flight)",
                 signal.Signals(signum).name)
        stop.set()

    installed = []
    for signum in _STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or Windows: the embedding application owns signals
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _notify_ready() -> None:
    """Tell a supervising `dagnats serve` that this worker is ready (no-op otherwise)."""
    try:
        from dagnats.server.ready import notify_ready
    except ImportError:
        return
    notify_ready()
