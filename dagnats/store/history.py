"""Appending events to a run's history and reading them back, in order."""

from __future__ import annotations

import logging
from typing import cast

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from dagnats import jetstream, names
from dagnats.dag.events import Event

log = logging.getLogger("dagnats.history")

_READ_BATCH = 256


async def append(js: JetStreamContext, event: Event, msg_id: str, *,
                 expected_last_seq: int | None = None, body: bytes | None = None) -> int:
    """Publish `event` to its run's history with a dedup id; return its stream sequence.
    `body`: the event already encoded (`event.encode()`), to encode it only once.

    With `expected_last_seq`, it is stored only if the run's last event is still that one
    (APIError with a code in WRONG_LAST_SEQUENCE otherwise).
    """
    headers = {"Nats-Msg-Id": msg_id}
    if expected_last_seq is not None:
        headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_last_seq)
    stored = await jetstream.publisher(js).publish(
        names.history_subject(event.run_id), event.encode() if body is None else body, headers)
    return stored.seq


async def read(js: JetStreamContext, run_id: str, before_seq: int | None = None,
               after_seq: int = 0) -> list[Event]:
    """Every decodable event of a run, in order, with after_seq < seq < before_seq.

    Undecodable messages are logged and skipped. An unknown run gives an empty list.
    """
    config = js_api.ConsumerConfig(
        ack_policy=js_api.AckPolicy.NONE, inactive_threshold=30.0,
        deliver_policy=(js_api.DeliverPolicy.BY_START_SEQUENCE if after_seq
                        else js_api.DeliverPolicy.ALL),
        opt_start_seq=after_seq + 1 if after_seq else None,
        max_ack_pending=-1, mem_storage=True,
    )
    sub = await js.pull_subscribe(names.history_subject(run_id), stream=names.HISTORY_STREAM,
                                  config=config)
    try:
        return await _drain(sub, run_id, before_seq)
    finally:
        await _discard(js, sub)


async def _drain(sub: JetStreamContext.PullSubscription, run_id: str,
                 before_seq: int | None) -> list[Event]:
    info = await sub.consumer_info()
    pending = cast(int, info.num_pending)  # nats-py types it optional; the server always sends it
    events: list[Event] = []
    while pending > 0:
        for msg in await jetstream.fetch(sub, min(pending, _READ_BATCH), timeout_s=5.0):
            meta = msg.metadata
            pending = meta.num_pending
            if before_seq is not None and meta.sequence.stream >= before_seq:
                return events
            try:
                events.append(Event.decode(msg.data, seq=meta.sequence.stream))
            except ValueError as exc:
                log.warning("run %s: skipping undecodable event at seq %s: %s",
                            run_id, meta.sequence.stream, exc)
    return events


async def _discard(js: JetStreamContext, sub: JetStreamContext.PullSubscription) -> None:
    try:
        name = sub._consumer  # nats-py keeps the server-assigned name here
        await sub.unsubscribe()
        await js.delete_consumer(names.HISTORY_STREAM, name)
    except Exception as exc:  # the consumer expires by itself (inactive_threshold)
        log.debug("could not delete a history reader: %s", exc)


async def exists(js: JetStreamContext, run_id: str) -> bool:
    """True when the run has at least one event in history."""
    try:
        await js.get_msg(names.HISTORY_STREAM, subject=names.history_subject(run_id),
                         seq=1, next=True, direct=True)
    except NotFoundError:
        return False
    return True


async def read_gap(js: JetStreamContext, run_id: str, after_seq: int, before_seq: int
                   ) -> list[Event]:
    """A run's events with after_seq < seq < before_seq; one cheap direct get when none."""
    try:
        first = await js.get_msg(names.HISTORY_STREAM, seq=after_seq + 1,
                                 subject=names.history_subject(run_id), next=True, direct=True)
    except NotFoundError:  # nothing after after_seq; other errors leave the event unacked
        return []
    if first.seq is None or first.seq >= before_seq:
        return []
    return await read(js, run_id, before_seq=before_seq, after_seq=after_seq)
