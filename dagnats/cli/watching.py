"""Following a run in the CLI (`run start --watch`, `run watch`, `run events --follow`).

While it waits for the run's next event, a follower wakes up every CHECK_S to say once per
step (and attempt) that a queued step has no live worker for its task (`dagnats.unserved`):
a run that cannot go on is never silent. Ctrl-C stops the watching, not the run: it says
so in one line on stderr and exits STOPPED_EXIT_CODE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import click

from dagnats._client_models import Event
from dagnats.cli.common import with_client
from dagnats.client import AsyncClient
from dagnats.limits import UNSERVED_AFTER_S
from dagnats.program import with_program
from dagnats.store.presence import served_tasks
from dagnats.unserved import QueuedSteps, unserved

log = logging.getLogger("dagnats.cli")

#: How often a follower looks for queued steps no worker serves (only when some are due).
CHECK_S = 1.0
#: The exit code of a watch stopped with Ctrl-C (128 + SIGINT, as shells report it).
STOPPED_EXIT_CODE = 130


def stopped_line(run_id: str) -> str:
    """What Ctrl-C during a watch prints: the run goes on, and how to follow it again."""
    return with_program(f"Stopped watching; run {run_id} goes on (dagnats run watch {run_id})")


def unserved_line(step_id: str, text: str) -> str:
    """'step.pack: queued 5s; no worker is serving task ...' (as a watch line)."""
    return with_program(f"step.{step_id}: {text}")


class _Tick:
    """No event came for CHECK_S."""


async def follow_run(client: AsyncClient, run_id: str, from_seq: int | None,
                     on_event: Callable[[Event], None],
                     on_notice: Callable[[str], None]) -> Event | None:
    """Pass each event of the run (from `from_seq`) to `on_event` until it ends, and each
    "no worker is serving" notice to `on_notice`; return the last event."""
    items: asyncio.Queue[Event | Exception | None] = asyncio.Queue()
    pump = asyncio.create_task(_pump(client, run_id, from_seq, items))
    notices = _Notices(client, on_notice)
    last: Event | None = None
    try:
        while True:
            try:
                item: Event | Exception | _Tick | None = await asyncio.wait_for(
                    items.get(), CHECK_S)
            except TimeoutError:
                item = _Tick()
            if item is None:
                return last
            if isinstance(item, Exception):
                raise item
            if isinstance(item, Event):
                notices.steps.see(item)
                on_event(item)
                last = item
            await notices.check()
    finally:
        pump.cancel()
        with contextlib.suppress(BaseException):
            await pump


async def _pump(client: AsyncClient, run_id: str, from_seq: int | None,
                items: asyncio.Queue[Event | Exception | None]) -> None:
    """The run's events into `items`, then None (or the exception that ended them)."""
    try:
        async for event in client.watch(run_id, from_seq):
            items.put_nowait(event)
    except Exception as exc:  # the follower raises it in order, after the events before it
        items.put_nowait(exc)
        return
    items.put_nowait(None)


class _Notices:
    """Says once per step attempt that a queued step has no live worker for its task."""

    def __init__(self, client: AsyncClient, say: Callable[[str], None]) -> None:
        self.steps = QueuedSteps()
        self._client = client
        self._say = say
        self._said: set[tuple[str, int]] = set()
        self._checked = 0.0

    async def check(self) -> None:
        """Ask who serves what when a queued step is due, at most every CHECK_S."""
        now = datetime.now(UTC)
        due = [q for q in self.steps.queued() if (q.step_id, q.attempt) not in self._said
               and (now - q.queued_at).total_seconds() >= UNSERVED_AFTER_S]
        clock = asyncio.get_running_loop().time()
        if not due or clock - self._checked < CHECK_S:
            return
        self._checked = clock
        try:
            served = served_tasks(await self._client.workers())
        except Exception as exc:  # cannot tell: say nothing rather than something wrong
            log.debug("cannot list the live workers: %s", exc)
            return
        for found in unserved(due, served, now):
            self._said.add((found.step_id, found.attempt))
            self._say(unserved_line(found.step_id, found.text()))


def watch_command(ctx: click.Context, nats_url: str | None,
                  work: Callable[[AsyncClient, list[str]], Awaitable[int]],
                  unconfirmed: str | None = None) -> None:
    """Run a command that follows a run and exit with its code. `work` gets the client and a
    list to append the run id to once it is known; Ctrl-C after that prints `stopped_line`
    on stderr and exits STOPPED_EXIT_CODE. Ctrl-C before it prints `unconfirmed` (what a
    start cut short may have done) and exits the same, or, without one, click's abort."""
    known: list[str] = []
    try:
        code = with_client(nats_url, lambda client: work(client, known))
    except KeyboardInterrupt:
        if not known and unconfirmed is None:
            raise
        click.echo(stopped_line(known[-1]) if known else with_program(unconfirmed or ""),
                   err=True)
        ctx.exit(STOPPED_EXIT_CODE)
    ctx.exit(code)


def unconfirmed_start(what: str, workflow: str | None = None) -> str:
    """What Ctrl-C prints when it cut a start short: the run may exist; where to look."""
    listing = f"dagnats run list --workflow {workflow}" if workflow else "dagnats run list"
    return f"Stopped before the {what} was confirmed: a run may have started (see {listing})"
