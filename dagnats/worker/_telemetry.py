"""One attempt's progress reports and streamed chunks, sent from the worker's loop.

`ctx.progress` and `ctx.stream` may be called from a handler's thread or its own loop; they
never block and never wait for NATS: each call is queued onto the worker's loop, where one
task publishes them in order (`dagnats.store.progress`); that task starts with the first
call, so a handler that reports nothing costs its task nothing. The last progress also goes to KV,
at most every PROGRESS_WRITE_EVERY_S and once more at the end, for `run status`. A failure
to publish is logged, never raised into the handler: progress is not a fact of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dagnats import names
from dagnats.dag.tasks import TaskMessage
from dagnats.limits import PROGRESS_WRITE_EVERY_S
from dagnats.store.progress import Progress, checked_progress, encode_chunk, end_mark

log = logging.getLogger("dagnats.worker")

_End = object()
_Flush = object()


class Telemetry:
    """The progress and stream of one attempt (made on the worker's loop)."""

    def __init__(self, js: JetStreamContext, kv: KeyValue | None, task: TaskMessage) -> None:
        self._js = js
        self._kv = kv
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._chunks = 0  # chunks sent so far (their seq numbers)
        self._written_at = 0.0
        self._unwritten: Progress | None = None
        self._flush_due = False
        self._posted = 0  # calls made (in the handler's thread)
        self._sender: asyncio.Future[None] | None = None

    def progress(self, fraction: Any, message: Any = None) -> None:
        """Queue a progress report (ValueError at once for bad arguments)."""
        value, text = checked_progress(fraction, message)
        report = Progress(self._task.step_id, self._task.attempt, value, text,
                          datetime.now(UTC))
        self._posted += 1
        self._loop.call_soon_threadsafe(self._post, report)

    def stream(self, data: Any) -> None:
        """Queue a chunk (ValueError at once when it is not JSON or too large)."""
        self._chunks += 1
        body = encode_chunk(data, self._chunks, self._task.attempt)
        self._posted += 1
        self._loop.call_soon_threadsafe(self._post, body)

    def _post(self, item: Any) -> None:
        """On the worker's loop: queue `item`, starting the sender with the first one."""
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._send())
        self._queue.put_nowait(item)

    async def close(self) -> None:
        """Send what is queued, the stream's end mark (if it streamed) and the last
        progress (if not written yet); called by the worker when the handler is done. Nothing
        at all when the handler reported nothing."""
        if not self._posted:
            return
        queued = asyncio.Event()

        def finish() -> None:
            if self._chunks:
                self._post(end_mark(self._task.attempt, self._chunks))
            self._post(_End)
            queued.set()

        self._loop.call_soon(finish)  # after the handler's calls still on their way here
        await queued.wait()
        sender = self._sender
        if sender is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(sender), 5.0)
            sender.cancel()

    async def _send(self) -> None:
        task = self._task
        progress_subject = names.progress_subject(task.run_id, task.step_id)
        chunk_subject = names.chunk_subject(task.run_id, task.step_id)
        nc = self._js._nc  # nats-py: no public accessor
        while True:
            item = await self._queue.get()
            try:
                if item is _End or item is _Flush:
                    self._flush_due = False
                    if self._unwritten is not None:
                        await self._write(self._unwritten)
                    if item is _End:
                        return
                    continue
                if isinstance(item, Progress):
                    await nc.publish(progress_subject, item.encode())
                    await self._maybe_write(item)
                else:
                    await nc.publish(chunk_subject, item)
            except Exception as exc:  # never the handler's problem
                log.debug("run %s step %s: progress not sent: %s", task.run_id, task.step_id,
                          exc)

    async def _maybe_write(self, report: Progress) -> None:
        """Write the report to KV unless one was written a moment ago (then it waits)."""
        wait_s = self._written_at + PROGRESS_WRITE_EVERY_S - time.monotonic()
        if wait_s <= 0:
            await self._write(report)
            return
        self._unwritten = report
        if not self._flush_due:  # written when its time comes, even if no report follows
            self._flush_due = True
            self._loop.call_later(wait_s, self._queue.put_nowait, _Flush)

    async def _write(self, report: Progress) -> None:
        self._unwritten = None
        self._written_at = time.monotonic()
        if self._kv is not None:
            await self._kv.put(names.progress_key(self._task.run_id, self._task.step_id),
                               report.encode())
