"""Durable timers: messages in the TIMERS work queue that become `timer.fired` history events.

A timer that is not due yet is put back with `nak(delay=...)`, so the wait lives in
JetStream and survives any restart (one that came due while everything was down fires on
the next start); when due it is written to the run's history (with a deterministic id) and
acknowledged. A step's timer (a sleep, a wait's timeout) names its step and attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from dagnats import jetstream, names
from dagnats.dag.events import Event, EventType
from dagnats.store import dead_letters, history

log = logging.getLogger("dagnats.engine.timers")

#: The smallest delay a due-soon timer is put back with (nak(delay=0) means "at once").
MIN_NAK_DELAY_S = 0.01


def timer_consumer_config() -> js_api.ConsumerConfig:
    """The durable consumer every engine process shares for timers."""
    return js_api.ConsumerConfig(
        durable_name=names.TIMER_CONSUMER, filter_subject=names.timer_filter(),
        ack_policy=js_api.AckPolicy.EXPLICIT, ack_wait=30.0, max_deliver=-1,
        max_ack_pending=100_000,
    )


async def run_timers(js: JetStreamContext, stop: asyncio.Event) -> None:
    """Fire due timers until `stop` is set."""
    puller = await jetstream.ensure_consumer(js, names.TIMER_STREAM, timer_consumer_config(),
                                             idle_timeout_s=0.5)
    try:
        while not stop.is_set():
            for msg in await puller.pull(256):
                try:
                    await handle_timer(js, msg)
                except Exception as exc:  # unacked: redelivered after ack_wait
                    log.warning("timer %s not handled, will retry: %s", msg.subject, exc)
    finally:
        await puller.unsubscribe()


async def handle_timer(js: JetStreamContext, msg: Msg) -> None:
    """Fire one timer if it is due, else put it back until it is."""
    try:
        body = json.loads(msg.data)
        run_id, name = body["run_id"], body["name"]
        fire_at = datetime.fromisoformat(body["fire_at"])
        step_id, attempt = body.get("step_id"), int(body.get("attempt") or 0)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        await dead_letters.publish_poison(js, names.TIMER_PREFIX, msg.metadata.sequence.stream,
                                          msg.subject, msg.data, f"unreadable timer: {exc}")
        await msg.term()
        return
    remaining = (fire_at - datetime.now(timezone.utc)).total_seconds()
    if remaining > 0:
        await msg.nak(delay=max(remaining, MIN_NAK_DELAY_S))
        return
    event = Event(type=EventType.TIMER_FIRED, run_id=run_id, step_id=step_id, attempt=attempt,
                  timestamp=datetime.now(timezone.utc), data={"name": name})
    await history.append(js, event, names.timer_msg_id(run_id, name))
    await msg.ack()
