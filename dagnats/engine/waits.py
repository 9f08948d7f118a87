"""The executor of wait_for_event steps: waiters in KV `event_waiters`, and the matcher.

A waiting step is registered under `<type>.<run>.<step>` first, then the events of that
type published since the step began waiting, less EVENT_MATCH_WINDOW_S, are looked through
(an event that came a little before the wait still counts). The matcher (one durable
consumer shared by every engine) looks up the waiters of each new event's type. Whoever
finds a match first writes the step's step.completed with the event's data; its
deterministic message id, and the fold's refusal of a second outcome, make one event
complete a waiter once even with two engines, and many waiters (in many runs) at once.
Registration before the look-back, and storage before matching, leave no gap between them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone
from typing import Any, cast

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from dagnats import jetstream, names, strict_json
from dagnats.dag.actions import AwaitEvent
from dagnats.dag.events import Event, EventType
from dagnats.dag.kinds.wait_for_event import matches
from dagnats.dag.payload import refs_json
from dagnats.dag.state import RunState
from dagnats.store import dead_letters, history, payloads

log = logging.getLogger("dagnats.engine.waits")

_LOOK_BACK_BATCH = 256


def matcher_consumer_config() -> js_api.ConsumerConfig:
    """The durable consumer every engine process shares for new events."""
    return js_api.ConsumerConfig(
        durable_name=names.EVENT_CONSUMER, filter_subject=names.event_filter(),
        ack_policy=js_api.AckPolicy.EXPLICIT, ack_wait=30.0, max_deliver=-1,
        deliver_policy=js_api.DeliverPolicy.NEW, max_ack_pending=10_000,
    )


async def register(js: JetStreamContext, kv: KeyValue, run: RunState, action: AwaitEvent
                   ) -> None:
    """Register a waiting step (in `kv`, the event_waiters bucket), then complete it at once
    if a recent event matches."""
    waiter = {"v": 1, "run_id": run.run_id, "step_id": action.step_id,
              "attempt": action.attempt, "event": action.event, "left": action.left,
              "value": action.value, "until": action.until.isoformat()}
    key = names.waiter_key(action.event, run.run_id, action.step_id)
    await kv.put(key, json.dumps(waiter).encode())
    for seq, data, published in await recent_events(js, action.event, action.since):
        if matches(action.left, action.value, data):
            await complete(js, kv, key, waiter, action.event, seq, data, published)
            return


async def recent_events(js: JetStreamContext, event_type: str, since: datetime
                        ) -> list[tuple[int, Any, datetime]]:
    """(seq, data, published at) of the stored events of a type published since `since`."""
    config = js_api.ConsumerConfig(
        ack_policy=js_api.AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
        deliver_policy=js_api.DeliverPolicy.BY_START_TIME, opt_start_time=since,
        max_ack_pending=-1)
    sub = await js.pull_subscribe(names.event_subject(event_type), stream=names.EVENT_STREAM,
                                  config=config)
    found: list[tuple[int, Any, datetime]] = []
    try:
        # nats-py types the count as optional; the server always sends it
        pending = cast(int, (await sub.consumer_info()).num_pending)
        while pending > 0:
            batch = await jetstream.fetch(sub, min(pending, _LOOK_BACK_BATCH), timeout_s=5.0)
            if not batch:
                break
            for msg in batch:
                pending = cast(int, msg.metadata.num_pending)
                data = _decode(msg.data)
                if data is not _UNREADABLE:
                    found.append((msg.metadata.sequence.stream, data,
                                  msg.metadata.timestamp))
    finally:
        await sub.unsubscribe()
    return found


_UNREADABLE: Any = object()


def _decode(payload: bytes) -> Any:
    """An event's data, decoded strictly (any NATS client may publish on event.<type>):
    _UNREADABLE for anything that is not strict JSON (NaN, too deep, not UTF-8...)."""
    try:
        return strict_json.loads(payload) if payload else None
    except strict_json.JsonRefused:
        return _UNREADABLE


def _unreadable_reason(payload: bytes, event_type: str | None) -> str:
    if event_type is None:
        return "not on a subject event.<type>"
    try:
        strict_json.loads(payload)
    except strict_json.JsonRefused as exc:
        return f"its data is not strict JSON: {exc}"
    return "not a JSON event on event.<type>"


async def complete(js: JetStreamContext, kv: KeyValue, key: str, waiter: dict[str, Any],
                   event_type: str, seq: int, data: Any, published: datetime) -> None:
    """Write the waiting step's completion with the event's data, then drop the waiter."""
    run_id, step_id, attempt = waiter["run_id"], waiter["step_id"], int(waiter["attempt"])
    output, refs = await payloads.carry(js, run_id, data)  # an event's data: up to 256 KiB
    body: dict[str, Any] = {"output": output, "event": {
        "type": event_type, "seq": seq, "published_at": published.isoformat()}}
    if refs:
        body["output_refs"] = refs_json(refs)
    event = Event(type=EventType.STEP_COMPLETED, run_id=run_id, step_id=step_id,
                  attempt=attempt, timestamp=datetime.now(timezone.utc), data=body)
    await history.append(js, event, names.step_event_msg_id(run_id, step_id, attempt,
                                                            "completed"))
    await _forget(kv, key, attempt)


async def _forget(kv: KeyValue, key: str, attempt: int) -> None:
    """Delete a waiter, unless a newer attempt registered under the key meanwhile."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return
    current = json.loads(entry.value or b"{}")
    if int(current.get("attempt", 0)) <= attempt:
        try:
            await kv.delete(key, last=entry.revision)
        except Exception as exc:  # rewritten meanwhile: the newer waiter stays
            log.debug("waiter %s kept: %s", key, exc)


async def run_event_matcher(js: JetStreamContext, stop: asyncio.Event) -> None:
    """Match each new event against the waiters of its type until `stop` is set."""
    puller = await jetstream.ensure_consumer(js, names.EVENT_STREAM, matcher_consumer_config(),
                                         idle_timeout_s=0.5)
    kv = await js.key_value(names.WAITERS_BUCKET)
    try:
        while not stop.is_set():
            for msg in await puller.pull(64):
                try:
                    await handle_event(js, kv, msg)
                except Exception as exc:  # unacked: redelivered after ack_wait
                    log.warning("event %s not matched yet, will retry: %s", msg.subject, exc)
                    continue
                await msg.ack()
    finally:
        await puller.unsubscribe()


async def handle_event(js: JetStreamContext, kv: KeyValue, msg: Any) -> None:
    """Complete every waiter the event matches; an unreadable event is dead-lettered raw."""
    seq = msg.metadata.sequence.stream
    data = _decode(msg.data)
    try:
        event_type = names.parse_event_subject(msg.subject)
    except ValueError:
        event_type = None
    if data is _UNREADABLE or event_type is None:
        await dead_letters.publish_poison(js, names.EVENT_PREFIX, seq, msg.subject, msg.data,
                                          _unreadable_reason(msg.data, event_type))
        return
    now = datetime.now(timezone.utc)
    for subject in await jetstream.stream_subjects(js, names.kv_stream(names.WAITERS_BUCKET),
                                               names.waiters_filter(event_type)):
        key = subject[len(names.kv_subject(names.WAITERS_BUCKET, "")):]
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            continue
        waiter = json.loads(entry.value or b"{}")
        if datetime.fromisoformat(waiter["until"]) < now:
            await _forget(kv, key, int(waiter["attempt"]))  # its timeout decides
            continue
        if matches(waiter.get("left"), waiter.get("value"), data):
            await complete(js, kv, key, waiter, event_type, seq, data,
                           msg.metadata.timestamp)
