"""Following a run: its stored events, past ones then live ones, in order, once each, with
no JetStream consumer, so one connection can follow any number of runs.

WORKFLOW_HISTORY republishes every message it stores on `dagnats.live.<rest>` for
`history.<rest>` (stream config `republish`; see dagnats.jetstream): a run's events and its
tasks, on `dagnats.live.<p>.<run>.>`. Only stored messages are republished: a publish that
JetStream refused (a duplicate, a wrong expected last sequence) never appears there. Each
republished message carries its stream sequence (Nats-Sequence) and the sequence of the
previous stored message on the same subject (Nats-Last-Sequence).

A follower:
1. subscribes to the run's live subjects (a plain core subscription with no pending limit,
   so the client never drops one; nothing on the server but interest),
2. reads what is stored after the last event it has (batched direct gets,
   `dagnats.store.history.read_raw`),
3. then takes live messages in order: one at or below the last sequence it has is
   dropped (it came with the read); it reads history again from where it is (which
   delivers the missed messages and this one) when one shows a gap: its previous sequence
   on its subject is above the last it has, or the connection reconnected since the last
   one (a message may have been lost while it was away),
4. after FOLLOW_IDLE_CHECK_S without a live message, looks for anything stored after the
   last sequence it has (one direct get), so a lost last event is found too.

Why nothing is missed between catch-up and live (docs/architecture.md says it too): the
subscription is sent before the read, on the same connection, so the server holds our
interest before it serves the read. A message is either stored before the read looks (the
read returns it) or after, and then its republish, which follows its storing, finds our
interest. Messages that fall in both are delivered once, by sequence. Live messages are
lost only with the connection (a reconnect, noticed) or, on a cluster, when a stream's
leader changes between storing and republishing (step 4 finds the last one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from dagnats import names
from dagnats.dag.events import Event
from dagnats.limits import FOLLOW_IDLE_CHECK_S
from dagnats.store import history

log = logging.getLogger("dagnats.follow")

#: The first and the longest pause before a history read that failed (server away) is tried
#: again; a follower waits through an outage (its caller's timeout bounds it).
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


async def follow(js: JetStreamContext, run_id: str, after_seq: int = 0, *,
                 idle_check_s: float = FOLLOW_IDLE_CHECK_S) -> AsyncGenerator[Event, None]:
    """Every decodable event of a run with seq > `after_seq`: stored ones, then live ones as
    they are stored, in history order, once each. It never ends by itself: stop iterating
    (close it with contextlib.aclosing) when done.

    Raises nats.errors.ConnectionClosedError when the connection closes.
    """
    nc = js._nc  # nats-py offers no public accessor (see jetstream.publisher)
    live = await nc.subscribe(names.live_run_filter(run_id), pending_msgs_limit=-1,
                              pending_bytes_limit=-1)
    try:
        last = after_seq
        behind = True
        reconnects = _reconnects(nc)
        while True:
            if behind:
                for seq, data in await _read_after(js, run_id, last):
                    last = seq
                    event = history.decode(run_id, seq, data)
                    if event is not None:
                        yield event
                behind = False
            msg = await _next_live(live, idle_check_s)
            if msg is None:  # quiet for a while: look for anything a lost message held
                behind = await _stored_after(js, run_id, last)
                continue
            seq, previous = _sequences(msg)
            if seq <= last:
                continue  # the read had it already
            if previous > last or _reconnects(nc) != reconnects:
                # A gap: read from where we are (this one included).
                behind, reconnects = True, _reconnects(nc)
                continue
            last = seq
            event = history.decode(run_id, seq, msg.data)
            if event is not None:
                yield event
    finally:
        with contextlib.suppress(Exception):
            await live.unsubscribe()


async def _read_after(js: JetStreamContext, run_id: str, last: int) -> list[tuple[int, bytes]]:
    """What is stored after `last`, retried through an outage with backoff."""
    pause = RETRY_FIRST_S
    while True:
        try:
            return await history.read_raw(js, run_id, after_seq=last)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError,
                nats.errors.ConnectionReconnectingError) as exc:
            if js._nc.is_closed:
                raise nats.errors.ConnectionClosedError from None
            log.debug("run %s: history read failed (%s); again in %.1fs", run_id,
                      type(exc).__name__, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)


async def _stored_after(js: JetStreamContext, run_id: str, last: int) -> bool:
    """Whether anything is stored after `last` (one plain direct get); True when the server
    cannot say, so the read that follows retries until it can."""
    try:
        return await history.has_after(js, run_id, last)
    except nats.errors.ConnectionClosedError:
        raise
    except nats.errors.Error:
        return True


async def _next_live(live: Subscription, idle_check_s: float) -> Msg | None:
    """The next live message, or None after `idle_check_s` without one."""
    try:
        return await live.next_msg(timeout=idle_check_s)
    except nats.errors.TimeoutError:
        return None


def _reconnects(nc: NATS) -> int:
    """How many times the connection reconnected so far."""
    return int(nc.stats["reconnects"])


def _sequences(msg: Msg) -> tuple[int, int]:
    """(its stream sequence, the previous stored sequence on its subject) of a live
    message."""
    headers = msg.headers or {}
    return (int(headers.get(history.SEQUENCE_HEADER) or 0),
            int(headers.get(history.LAST_SEQUENCE_HEADER) or 0))
