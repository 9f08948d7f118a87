"""The API process: a nats.micro service answering one request subject per operation.

Every reply is `{"ok": true, "result": ...}` or `{"ok": false, "error": {"type", "message"}}`
(`DagnatsError.to_wire`); an unexpected exception is logged and sent as a one-line
DagnatsError. Requests are handled concurrently, each in its own task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats import micro
from nats.aio.client import Client as NATS
from nats.micro.request import Request as MicroRequest
from nats.micro.service import Service

from dagnats import jetstream, names, strict_json
from dagnats.api import approvals, dlq, lifecycle, retention, runs, signals, workflows
from dagnats.api.context import ApiContext, Request, parse_request
from dagnats.connection import connect, redact, resolve_url
from dagnats.errors import DagnatsError, InvalidInput, ServerUnavailable
from dagnats.store import run_index

log = logging.getLogger("dagnats.api")

#: The version of the request/reply protocol, announced through $SRV.INFO.
PROTOCOL_VERSION = "1.0.0"
#: How long a stopping API lets requests in flight finish.
DRAIN_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Operation:
    """One API operation: the shape of its request and the coroutine that answers it."""

    request: type[Request]
    handler: Callable[[ApiContext, Any], Awaitable[Any]]


OPERATIONS: dict[str, Operation] = {
    "workflow.register": Operation(workflows.RegisterRequest, workflows.register),
    "workflow.get": Operation(workflows.GetRequest, workflows.get),
    "workflow.list": Operation(workflows.ListRequest, workflows.list_all),
    "workflow.delete": Operation(workflows.DeleteRequest, workflows.delete),
    "run.start": Operation(runs.StartRequest, runs.start),
    "run.get": Operation(runs.RunRequest, runs.get),
    "run.events": Operation(runs.EventsRequest, runs.events),
    "run.tree": Operation(runs.RunRequest, runs.tree),
    "run.list": Operation(runs.ListRequest, runs.list_runs),
    "run.counts": Operation(runs.CountsRequest, runs.counts),
    "run.cancel": Operation(runs.RunRequest, lifecycle.cancel),
    "run.retry": Operation(runs.RunRequest, lifecycle.retry),
    "run.rerun": Operation(lifecycle.RerunRequest, lifecycle.rerun),
    "run.approve": Operation(approvals.DecisionRequest, approvals.approve),
    "run.reject": Operation(approvals.DecisionRequest, approvals.reject),
    "run.signal": Operation(signals.SignalRequest, signals.signal),
    "dlq.list": Operation(dlq.ListRequest, dlq.list_all),
    "dlq.page": Operation(dlq.PageRequest, dlq.page),
    "dlq.replay": Operation(dlq.ReplayRequest, dlq.replay),
    "dlq.discard": Operation(dlq.DiscardRequest, dlq.discard),
    "run.delete": Operation(runs.RunRequest, retention.delete),
    "run.purge": Operation(retention.PurgeRequest, retention.purge),
}


async def answer(ctx: ApiContext, op: str, payload: bytes) -> dict[str, Any]:
    """The reply envelope for one request to `op` (never raises for a failed operation)."""
    try:
        body = strict_json.loads(payload) if payload else {}
    except strict_json.JsonRefused as exc:
        return _failure(InvalidInput(f"bad {op} request: not valid JSON ({exc})"))
    operation = OPERATIONS[op]
    try:
        result = await operation.handler(ctx, parse_request(operation.request, op, body))
    except DagnatsError as exc:
        return _failure(exc)
    except Exception as exc:
        log.exception("%s failed", op)
        detail = str(exc).splitlines()[0] if str(exc) else ""
        return _failure(DagnatsError(
            f"the API failed on {op}: {type(exc).__name__}{': ' if detail else ''}{detail}; "
            "see the API log"))
    return {"ok": True, "result": result}


def _failure(error: DagnatsError) -> dict[str, Any]:
    return {"ok": False, "error": error.to_wire()}


def fit_reply(op: str, data: bytes, max_payload: int) -> bytes:
    """`data`, or, when it is over the NATS message limit, an error reply saying so (rather
    than no reply, which the caller would see as a timeout)."""
    if len(data) <= max_payload:
        return data
    error = DagnatsError(f"the reply to {op} is {len(data) / 1e6:.1f} MB, over the NATS "
                         f"message limit of {max_payload / 1e6:.1f} MB")
    return json.dumps(_failure(error), separators=(",", ":")).encode()


class ApiService:
    """The micro service and the requests it is answering."""

    def __init__(self, ctx: ApiContext, service: Service) -> None:
        self.ctx = ctx
        self.service = service
        self._in_flight: set[asyncio.Task[None]] = set()
        self._preload = asyncio.create_task(run_index.preload(ctx.js))

    @classmethod
    async def start(cls, nc: NATS) -> ApiService:
        """Bind to the stores and start answering every operation."""
        ctx = await ApiContext.open(nc)
        service = await micro.add_service(
            nc, name=names.API_SERVICE, version=PROTOCOL_VERSION,
            description="dagnats workflow API")
        api = cls(ctx, service)
        for op in OPERATIONS:
            await service.add_endpoint(name=names.api_endpoint(op), subject=names.api_subject(op),
                                       handler=api._handler(op))
        return api

    def _handler(self, op: str) -> Callable[[MicroRequest], Awaitable[None]]:
        async def handle(request: MicroRequest) -> None:
            # nats-py runs one subscription's callbacks one at a time: answer in a task.
            task = asyncio.create_task(self._respond(op, request))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return handle

    async def _respond(self, op: str, request: MicroRequest) -> None:
        reply = await answer(self.ctx, op, request.data)
        try:
            body = json.dumps(reply, separators=(",", ":")).encode()
        except (ValueError, TypeError, RecursionError) as exc:  # the caller still gets one
            log.exception("%s: the reply cannot be encoded", op)
            body = json.dumps(_failure(DagnatsError(
                f"the API failed on {op}: its reply cannot be encoded ({exc}); see the API "
                "log"))).encode()
        data = fit_reply(op, body, self.ctx.js._nc.max_payload)  # nats-py: no public accessor
        try:
            await request.respond(data)
        except Exception as exc:  # the requester is gone, or the connection is closing
            log.warning("could not answer %s: %s", op, exc)

    async def stop(self) -> None:
        """Stop taking requests, then let those in flight finish (for a bounded time)."""
        await self.service.stop()
        self._preload.cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=DRAIN_TIMEOUT_S)


async def run_api(nats_url: str | None, stop: asyncio.Event | None = None, *,
                  on_ready: Callable[[], None] | None = None,
                  retention_s: float | None = None) -> None:
    """Serve the API until `stop` is set (or, when none is given, until SIGTERM or SIGINT).

    `on_ready` runs once it is serving; by default it tells a supervising `dagnats serve`
    (dagnats.server.ready). Losing the NATS connection for good raises ServerUnavailable.
    With `retention_s`, runs that ended longer ago than that are deleted as it goes
    (`serve --retention`).
    """
    if on_ready is None:
        from dagnats.server.ready import notify_ready

        on_ready = notify_ready
    loop = asyncio.get_running_loop()
    own_signals = stop is None
    stop = stop or asyncio.Event()
    if own_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await _serve(nats_url, stop, on_ready, retention_s)
    finally:
        if own_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


async def _serve(nats_url: str | None, stop: asyncio.Event, on_ready: Callable[[], None],
                 retention_s: float | None = None) -> None:
    lost = asyncio.Event()

    async def on_closed() -> None:
        lost.set()

    nc = await connect(nats_url, name="dagnats-api", long_lived=True, on_closed=on_closed)
    try:
        api = await ApiService.start(nc)
        await nc.flush()  # the endpoints' subscriptions reach the server before "ready"
        log.info("API serving %s.* on %s", names.API_PREFIX, redact(
            nc.connected_url.geturl() if nc.connected_url else resolve_url(nats_url)))
        on_ready()
        purging = None
        if retention_s is not None:
            purging = asyncio.create_task(retention.keep_purging(nc.jetstream(), retention_s,
                                                                 stop))
        await _first(stop, lost)
        if purging is not None:
            purging.cancel()
            await asyncio.gather(purging, return_exceptions=True)
        if not stop.is_set():
            raise ServerUnavailable("the API lost its NATS connection for good; restart it")
        await api.stop()
    finally:
        await jetstream.close(nc)


async def _first(*events: asyncio.Event) -> None:
    """Return as soon as any of `events` is set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
