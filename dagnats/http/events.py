"""Following a run over HTTP: GET /api/v1/runs/{id}/events?follow=true as Server-Sent Events.

    id: 7
    event: step.completed
    data: {"seq": 7, "type": "step.completed", "run_id": "...", ...}

Past events first, then live ones (dagnats.client.watch: no JetStream consumer, so any
number of followers are fine), then the stream ends after the event that ends the run. The
`id` is the history sequence: a client that reconnects with `Last-Event-ID` (EventSource
does so by itself) gets only what came after. A comment line every KEEPALIVE_S keeps
proxies from closing a quiet stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from dagnats import names
from dagnats._client_models import Event
from dagnats.client import AsyncClient
from dagnats.errors import DagnatsError, InvalidInput

log = logging.getLogger("dagnats.http")

#: Seconds between keep-alive comments on a quiet stream.
KEEPALIVE_S = 15.0
#: What EventSource waits before reconnecting after a dropped stream, in milliseconds.
RETRY_MS = 1000
#: The least time between two `changed` messages of the runs' stream (a burst of runs is
#: one refresh of a list, not thousands).
CHANGES_EVERY_S = 0.2


def frame(event: Event) -> bytes:
    """One event as an SSE message."""
    data = json.dumps(event.model_dump(mode="json"), separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.type.value}\ndata: {data}\n\n".encode()


def resume_after(request: Request, after: int) -> int:
    """The sequence to follow after: `Last-Event-ID` when the client sent one, else `after`."""
    given = request.headers.get("last-event-id", "").strip()
    if not given:
        return after
    if not given.isdigit():
        raise InvalidInput(f"Last-Event-ID must be a history sequence, not {given[:40]!r}")
    return max(after, int(given))


async def follow_response(client: AsyncClient, run_id: str, request: Request,
                          after: int) -> StreamingResponse:
    """The SSE response following a run; RunNotFound (a 404, before any byte is sent) for
    an unknown run."""
    after = resume_after(request, after)
    run = await client.get_run(run_id)  # the full id, or the error as a proper answer
    return stream(_events(client, run.run_id, after, run.terminal))


def stream(messages: AsyncIterator[bytes]) -> StreamingResponse:
    """An SSE response of `messages`, with keep-alives, never cached or buffered."""
    return StreamingResponse(_with_keepalive(messages), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _events(client: AsyncClient, run_id: str, after: int, ended: bool
                  ) -> AsyncIterator[bytes]:
    """The stream's messages. A run that had ended when asked gets its stored events only:
    after its last one there is nothing to wait for."""
    yield f"retry: {RETRY_MS}\n\n".encode()
    if ended:
        cursor: int | None = after
        while cursor is not None:
            page = await client.events_page(run_id, cursor)
            for event in page.events:
                yield frame(event)
            cursor = page.next
        return
    async for event in client.watch(run_id, after + 1 if after else None):
        yield frame(event)


async def _with_keepalive(messages: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`messages`, with a comment line whenever none came for KEEPALIVE_S, and a last
    `error` message when following fails midway (the status line is sent already)."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for message in messages:
                await queue.put(message)
        except DagnatsError as exc:
            data = json.dumps({"error": type(exc).__name__, "detail": exc.message})
            await queue.put(f"event: error\ndata: {data}\n\n".encode())
        except Exception:
            log.exception("following a run failed")
            await queue.put(b'event: error\ndata: {"error": "DagnatsError", '
                            b'"detail": "following the run failed; see the http log"}\n\n')
        finally:
            await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if message is None:
                return
            yield message
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def changes_response(client: AsyncClient) -> StreamingResponse:
    """SSE for the console's lists: `event: changed` soon after any run's summary is
    written (a run started, changed status, or was deleted), at most every CHANGES_EVERY_S.
    A core subscription to the run index's subjects: no consumer."""
    return stream(_changes(client))


async def _changes(client: AsyncClient) -> AsyncIterator[bytes]:
    changed = asyncio.Event()

    async def seen(msg: Any) -> None:
        changed.set()

    nc = client._nc  # the client's own connection (no public accessor, by design)
    sub = await nc.subscribe(names.run_index_filter(), cb=seen)
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        while True:
            await changed.wait()
            changed.clear()
            yield b"event: changed\ndata: {}\n\n"
            await asyncio.sleep(CHANGES_EVERY_S)  # a throttle: what comes meanwhile is one
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
