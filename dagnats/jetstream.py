"""Every stream, subject, KV bucket, consumer and message id of dagnats, and their provisioning.

Nothing else in the code base spells a subject string: build and parse them here.

    WORKFLOW_HISTORY   history.<run-id>          every event of a run; the source of truth
    TASK_QUEUES        task.<task>               work for workers (work-queue retention)
    KV workflow_defs   <name>                    registered definitions, every version
    KV workflow_runs   <run-id>                  run snapshots: a cache rebuilt from history
    DEAD_LETTERS       dead.<task>.<run>.<step>  steps that failed for good (30 days)
                       dead._poison.<src>.<seq>  messages nobody could read, raw
    TIMERS             timer.<run-id>.<name>     durable timers (work queue) the engine fires
    KV run_cancellations  <run-id>               cancelled runs, watched by workers
    KV run_idempotency    <hash>                 idempotency keys -> run ids (24 h)
    KV run_signals        <run-id>.<name>        the latest value of each signal sent to a run
    KV step_checkpoints   <run-id>.<step-id>     each step's checkpoint (both: until the run ends)
    API                dagnats.api.<operation>   request/reply endpoints of the API service
    EVENTS             event.<type>              events that wait_for_event steps wait for
    KV event_waiters   <type>.<run-id>.<step>    steps waiting for an event of <type>
    (core NATS)        approval.requested.<wf>   approval requests, for notifiers
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import weakref
from collections import deque
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError
from nats.js.kv import KeyValue

from dagnats.errors import DagnatsError
from dagnats.limits import EVENT_MAX_AGE_S, RUN_DATA_MAX_AGE_S

log = logging.getLogger("dagnats.jetstream")

HISTORY_STREAM = "WORKFLOW_HISTORY"
HISTORY_PREFIX = "history"
TASK_STREAM = "TASK_QUEUES"
TASK_PREFIX = "task"
DEFS_BUCKET = "workflow_defs"
RUNS_BUCKET = "workflow_runs"
DEAD_STREAM = "DEAD_LETTERS"
DEAD_PREFIX = "dead"
POISON_TOKEN = "_poison"
TIMER_STREAM = "TIMERS"
TIMER_PREFIX = "timer"
TIMER_CONSUMER = "timers"
CANCEL_BUCKET = "run_cancellations"
IDEMPOTENCY_BUCKET = "run_idempotency"
EVENT_STREAM = "EVENTS"
EVENT_PREFIX = "event"
EVENT_CONSUMER = "event_matcher"
WAITERS_BUCKET = "event_waiters"
APPROVAL_PREFIX = "approval.requested"
API_PREFIX = "dagnats.api"
API_SERVICE = "dagnats-api"
ENGINE_CONSUMER = "engine"

#: How long JetStream remembers a Nats-Msg-Id to drop duplicate publishes.
DUPLICATE_WINDOW_S = 10 * 60
#: How long the engine may hold a history event before JetStream redelivers it.
ENGINE_ACK_WAIT_S = 10.0
#: How long dead letters are kept.
DEAD_LETTER_MAX_AGE_S = 30 * 24 * 3600
#: How long an idempotency key maps to its run.
IDEMPOTENCY_TTL_S = 24 * 3600
#: How long a cancellation is remembered for workers (far longer than any queued task waits).
CANCEL_TTL_S = 7 * 24 * 3600
#: Deliveries of an unreadable or unprocessable message before it is dead-lettered raw.
MAX_POISON_DELIVERIES = 5

TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def is_token(value: str) -> bool:
    """True when `value` can stand alone as one subject token (and a KV key, a durable name)."""
    return bool(TOKEN.match(value))


# --- KV run_signals and step_checkpoints: what handlers keep per run, deleted at its end ---
SIGNALS_BUCKET = "run_signals"
CHECKPOINTS_BUCKET = "step_checkpoints"


def signal_key(run_id: str, name: str) -> str:
    """The key of the latest value of signal `name` sent to a run (KV run_signals)."""
    return _run_key(run_id, name, "signal")


def parse_signal_key(key: str) -> tuple[str, str]:
    """(run id, signal name) of a run_signals key; ValueError for any other key."""
    return _parse_run_key(key, "signal")


def signal_filter(run_id: str) -> str:
    """The key filter matching every signal of one run."""
    return _run_key(run_id, ">", "signal filter")


def checkpoint_key(run_id: str, step_id: str) -> str:
    """The key of one step's checkpoint in a run (KV step_checkpoints)."""
    return _run_key(run_id, step_id, "checkpoint")


def parse_checkpoint_key(key: str) -> tuple[str, str]:
    """(run id, step id) of a step_checkpoints key; ValueError for any other key."""
    return _parse_run_key(key, "checkpoint")


def checkpoint_filter(run_id: str) -> str:
    """The key filter matching every checkpoint of one run."""
    return _run_key(run_id, ">", "checkpoint filter")


def _run_key(run_id: str, item: str, what: str) -> str:
    if not is_token(run_id) or not (item == ">" or is_token(item)):
        raise ValueError(f"cannot build a {what} key from run {run_id!r} and {item!r}:"
                         " both must be one subject token ([A-Za-z0-9_-]+)")
    return f"{run_id}.{item}"


def _parse_run_key(key: str, what: str) -> tuple[str, str]:
    run_id, dot, item = key.partition(".")
    if not dot or not is_token(run_id) or not is_token(item):
        raise ValueError(f"not a {what} key: {key!r}")
    return run_id, item


def history_subject(run_id: str) -> str:
    """The subject that holds every event of one run."""
    return f"{HISTORY_PREFIX}.{run_id}"


def history_filter() -> str:
    """The subject filter matching every run's history."""
    return f"{HISTORY_PREFIX}.>"


def parse_history_subject(subject: str) -> str:
    """The run id of a history subject; ValueError for any other subject."""
    prefix, _, run_id = subject.partition(".")
    if prefix != HISTORY_PREFIX or not is_token(run_id):
        raise ValueError(f"not a history subject: {subject!r}")
    return run_id


def task_subject(task: str) -> str:
    """The subject workers of `task` pull from."""
    return f"{TASK_PREFIX}.{task}"


def parse_task_subject(subject: str) -> str:
    """The task name of a task subject; ValueError for any other subject."""
    prefix, _, task = subject.partition(".")
    if prefix != TASK_PREFIX or not is_token(task):
        raise ValueError(f"not a task subject: {subject!r}")
    return task


def dead_subject(task: str, run_id: str, step_id: str) -> str:
    """Where the dead letter of a step that failed for good is kept."""
    return f"{DEAD_PREFIX}.{task}.{run_id}.{step_id}"


def dead_filter(run_id: str | None = None) -> str:
    """The subject filter of every dead letter, or of one run's."""
    return f"{DEAD_PREFIX}.*.{run_id}.*" if run_id else f"{DEAD_PREFIX}.>"


def parse_dead_subject(subject: str) -> tuple[str, str, str]:
    """(task, run id, step id) of a dead-letter subject; ValueError for any other."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != DEAD_PREFIX or not all(map(is_token, parts[1:])):
        raise ValueError(f"not a dead-letter subject: {subject!r}")
    return parts[1], parts[2], parts[3]


def poison_subject(source: str, seq: int) -> str:
    """Where an unreadable message from `source` (history, task) at `seq` is kept raw."""
    return f"{DEAD_PREFIX}.{POISON_TOKEN}.{source}.{seq}"


def timer_subject(run_id: str, name: str) -> str:
    """The subject of one durable timer of a run."""
    return f"{TIMER_PREFIX}.{run_id}.{name}"


def event_subject(event_type: str) -> str:
    """The subject events of one type are published on (`event_type`: dot-separated tokens)."""
    return f"{EVENT_PREFIX}.{event_type}"


def parse_event_subject(subject: str) -> str:
    """The event type of an event subject; ValueError for any other subject."""
    prefix, _, event_type = subject.partition(".")
    if prefix != EVENT_PREFIX or not event_type or not all(map(is_token,
                                                                event_type.split("."))):
        raise ValueError(f"not an event subject: {subject!r}")
    return event_type


def waiter_key(event_type: str, run_id: str, step_id: str) -> str:
    """The event_waiters key of a step waiting for events of `event_type`."""
    return f"{event_type}.{run_id}.{step_id}"


def parse_waiter_key(key: str) -> tuple[str, str, str]:
    """(event type, run id, step id) of an event_waiters key; ValueError for others."""
    event_type, _, rest = key.rpartition(".")
    event_type, _, run_id = event_type.rpartition(".")
    step_id = rest
    if not event_type or not all(map(is_token, [*event_type.split("."), run_id, step_id])):
        raise ValueError(f"not an event waiter key: {key!r}")
    return event_type, run_id, step_id


def waiters_filter(event_type: str) -> str:
    """The KV subject filter of every waiter for events of one type."""
    return kv_subject(WAITERS_BUCKET, f"{event_type}.*.*")


def approval_subject(workflow: str) -> str:
    """Where approval requests of a workflow's steps are published (core NATS)."""
    return f"{APPROVAL_PREFIX}.{workflow}"


def task_consumer(task: str) -> str:
    """The durable pull consumer shared by every worker of `task`."""
    return f"task_{task}"


def api_subject(operation: str) -> str:
    """The request subject of one API operation, such as `run.start`."""
    return f"{API_PREFIX}.{operation}"


# Message ids: deterministic, so a publish repeated after a crash or redelivery is dropped.
def started_msg_id(run_id: str) -> str:
    """Msg id of a run's workflow.started event."""
    return f"{run_id}:started"


def step_event_msg_id(run_id: str, step_id: str, attempt: int, kind: str) -> str:
    """Msg id of a step event (`kind` is queued, started-<delivery>, completed or failed)."""
    return f"{run_id}:{step_id}:{attempt}:{kind}"


def run_event_msg_id(run_id: str, kind: str, generation: int = 0) -> str:
    """Msg id of a run-level event (completed, failed, ...) in one generation of the run."""
    return f"{run_id}:g{generation}:{kind}" if generation else f"{run_id}:{kind}"


def resumed_msg_id(run_id: str, generation: int) -> str:
    """Msg id of the workflow.resumed event that starts `generation` (so one retry wins)."""
    return f"{run_id}:resumed:{generation}"


def dead_letter_msg_id(run_id: str, step_id: str, attempt: int) -> str:
    """Msg id of the dead letter of a step's last attempt."""
    return f"{run_id}:{step_id}:{attempt}:dead"


def timer_msg_id(run_id: str, name: str) -> str:
    """Msg id of a timer, and of the timer.fired event it becomes."""
    return f"{run_id}:timer:{name}"


def task_msg_id(run_id: str, step_id: str, attempt: int) -> str:
    """Msg id of the task message for one attempt of one step."""
    return f"{run_id}:{step_id}:{attempt}:task"


@dataclass(frozen=True)
class Limits:
    """Storage settings for provisioning; replicas > 1 only on a clustered NATS."""

    replicas: int = 1
    history_max_age_s: float = 0  # 0 keeps history forever


def stream_configs(limits: Limits) -> list[js_api.StreamConfig]:
    """The streams dagnats needs, as they should be."""
    dup = float(DUPLICATE_WINDOW_S)
    return [
        js_api.StreamConfig(
            name=HISTORY_STREAM, subjects=[history_filter()],
            retention=js_api.RetentionPolicy.LIMITS, storage=js_api.StorageType.FILE,
            max_age=limits.history_max_age_s, duplicate_window=dup,
            num_replicas=limits.replicas, allow_direct=True,
        ),
        js_api.StreamConfig(
            name=TASK_STREAM, subjects=[f"{TASK_PREFIX}.>"],
            retention=js_api.RetentionPolicy.WORK_QUEUE, storage=js_api.StorageType.FILE,
            duplicate_window=dup, num_replicas=limits.replicas, allow_direct=False,
        ),
        js_api.StreamConfig(
            name=DEAD_STREAM, subjects=[f"{DEAD_PREFIX}.>"],
            retention=js_api.RetentionPolicy.LIMITS, storage=js_api.StorageType.FILE,
            max_age=float(DEAD_LETTER_MAX_AGE_S), duplicate_window=dup,
            num_replicas=limits.replicas, allow_direct=True,
        ),
        js_api.StreamConfig(
            name=TIMER_STREAM, subjects=[f"{TIMER_PREFIX}.>"],
            retention=js_api.RetentionPolicy.WORK_QUEUE, storage=js_api.StorageType.FILE,
            duplicate_window=dup, num_replicas=limits.replicas, allow_direct=False,
        ),
        js_api.StreamConfig(
            name=EVENT_STREAM, subjects=[f"{EVENT_PREFIX}.>"],
            retention=js_api.RetentionPolicy.LIMITS, storage=js_api.StorageType.FILE,
            max_age=EVENT_MAX_AGE_S, duplicate_window=dup, num_replicas=limits.replicas,
            allow_direct=True,
        ),
    ]


def bucket_configs(limits: Limits) -> list[js_api.KeyValueConfig]:
    """The KV buckets dagnats needs, as they should be."""
    return [
        js_api.KeyValueConfig(
            bucket=DEFS_BUCKET, history=5, direct=True, replicas=limits.replicas,
            storage=js_api.StorageType.FILE,
        ),
        js_api.KeyValueConfig(
            bucket=RUNS_BUCKET, history=1, direct=True, replicas=limits.replicas,
            storage=js_api.StorageType.FILE,
        ),
        js_api.KeyValueConfig(
            bucket=CANCEL_BUCKET, history=1, direct=True, replicas=limits.replicas,
            storage=js_api.StorageType.FILE, ttl=float(CANCEL_TTL_S),
        ),
        js_api.KeyValueConfig(
            bucket=IDEMPOTENCY_BUCKET, history=1, direct=True, replicas=limits.replicas,
            storage=js_api.StorageType.FILE, ttl=float(IDEMPOTENCY_TTL_S),
        ),
        js_api.KeyValueConfig(
            bucket=WAITERS_BUCKET, history=1, direct=True, replicas=limits.replicas,
            storage=js_api.StorageType.FILE,
        ),
        js_api.KeyValueConfig(
            bucket=SIGNALS_BUCKET, history=1, direct=True, replicas=limits.replicas,
            storage=js_api.StorageType.FILE, ttl=float(RUN_DATA_MAX_AGE_S),
        ),
        js_api.KeyValueConfig(
            bucket=CHECKPOINTS_BUCKET, history=1, direct=True, replicas=limits.replicas,
            storage=js_api.StorageType.FILE, ttl=float(RUN_DATA_MAX_AGE_S),
        ),
    ]


async def ensure_stream(js: JetStreamContext, config: js_api.StreamConfig) -> None:
    """Create the stream, or update it when its live config differs from `config`."""
    try:
        info = await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
        log.info("created stream %s", config.name)
        return
    live = info.config
    drifted = (
        sorted(live.subjects or []) != sorted(config.subjects or [])
        or live.duplicate_window != config.duplicate_window
        or (live.max_age or 0) != (config.max_age or 0)
        or bool(live.allow_direct) != bool(config.allow_direct)
    )
    if live.retention != config.retention:
        raise DagnatsError(
            f"stream {config.name} has retention {live.retention}, expected {config.retention};"
            " it cannot be changed in place: back it up and delete it"
        )
    if drifted:
        await js.update_stream(config)
        log.info("updated stream %s to the expected config", config.name)


async def provision(js: JetStreamContext, limits: Limits | None = None) -> None:
    """Ensure every stream and KV bucket exists with the expected config (idempotent)."""
    limits = limits or Limits()
    for stream in stream_configs(limits):
        await ensure_stream(js, stream)
    for bucket in bucket_configs(limits):
        await js.create_key_value(bucket)


async def defs_bucket(js: JetStreamContext) -> KeyValue:
    """The workflow definitions bucket (provisioned)."""
    return await js.key_value(DEFS_BUCKET)


async def runs_bucket(js: JetStreamContext) -> KeyValue:
    """The run snapshots bucket (provisioned)."""
    return await js.key_value(RUNS_BUCKET)


def kv_subject(bucket: str, key: str) -> str:
    """The subject a KV bucket stores `key` under."""
    return f"$KV.{bucket}.{key}"


def kv_stream(bucket: str) -> str:
    """The stream that holds a KV bucket."""
    return f"KV_{bucket}"


async def stream_subjects(js: JetStreamContext, stream: str, subjects_filter: str) -> list[str]:
    """Every subject of `stream` matching the filter that holds a message, as the server counts
    them at that moment (stream info, page by page).

    Unlike a KV key listing (a consumer that ends at a marker), a key rewritten meanwhile is
    not missed: its subject never stops holding a message.
    """
    found: list[str] = []
    while True:
        request = {"subjects_filter": subjects_filter, "offset": len(found)}
        answer = await js._nc.request(f"$JS.API.STREAM.INFO.{stream}",  # see publisher()
                                      json.dumps(request).encode(), timeout=PUBLISH_TIMEOUT_S)
        body = json.loads(answer.data)
        if "error" in body:
            raise APIError.from_error(body["error"])
        page = list((body.get("state") or {}).get("subjects") or {})
        found.extend(page)
        if not page or len(found) >= int(body.get("total") or 0):
            return found


async def bucket_keys(js: JetStreamContext, bucket: str) -> list[str]:
    """Every key of a KV bucket that holds a message (deleted keys keep a marker, so callers
    still read each one), as the server counts them.

    Used instead of a KV key listing (`kv.keys()`), which can end early: a key rewritten
    during the listing is missed, and nats-py may report the end before the first key arrives.
    """
    prefix = kv_subject(bucket, "")
    subjects = await stream_subjects(js, kv_stream(bucket), prefix + ">")
    return [subject[len(prefix):] for subject in subjects]


#: JetStream's error codes for "the subject's last sequence is not the one expected".
WRONG_LAST_SEQUENCE = (10071, 10164)
#: How long an awaited publish waits for JetStream's acknowledgement.
PUBLISH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Stored:
    """Where JetStream stored a published message (`duplicate`: an earlier copy, by msg id)."""

    seq: int
    duplicate: bool


class Publisher:
    """Awaited JetStream publishes of one connection, over one shared reply subscription.

    What nats-py's `js.publish` does, without a request and `wait_for` per message: each
    publish gets a future keyed by its reply subject and a timer for its timeout. That is
    about 18% less client CPU per publish (measured: 79 -> 65 us), on the engine's and the
    workers' hot paths.
    """

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self._count = 0
        self._sub: Subscription | None = None
        self._subscribing = asyncio.Lock()

    async def publish(self, subject: str, payload: bytes,
                      headers: dict[str, str] | None = None) -> Stored:
        """Publish and wait for JetStream to store it; APIError, NoStreamResponseError or
        nats.errors.TimeoutError as js.publish raises them."""
        if self._sub is None:
            async with self._subscribing:
                if self._sub is None:
                    self._sub = await self._nc.subscribe(f"{self._prefix}.*",
                                                         cb=self._on_reply)
        self._count += 1
        reply = f"{self._prefix}.{self._count}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._pending[reply] = future
        timer = loop.call_later(PUBLISH_TIMEOUT_S, self._expire, reply)
        try:
            await self._nc.publish(subject, payload, reply=reply, headers=headers)
            answer = await future
        finally:
            timer.cancel()
            self._pending.pop(reply, None)
        if answer.headers and answer.headers.get(js_api.Header.STATUS) == "503":
            raise nats.js.errors.NoStreamResponseError
        body = json.loads(answer.data)
        if "error" in body:
            raise APIError.from_error(body["error"])
        return Stored(seq=int(body["seq"]), duplicate=bool(body.get("duplicate", False)))

    def _expire(self, reply: str) -> None:
        future = self._pending.pop(reply, None)
        if future is not None and not future.done():
            future.set_exception(nats.errors.TimeoutError())

    async def _on_reply(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject, None)
        if future is not None and not future.done():
            future.set_result(msg)


_publishers: weakref.WeakKeyDictionary[NATS, Publisher] = weakref.WeakKeyDictionary()


def publisher(js: JetStreamContext) -> Publisher:
    """The Publisher of the connection behind `js` (one per connection)."""
    nc = js._nc  # nats-py offers no public accessor
    found = _publishers.get(nc)
    if found is None:
        found = _publishers[nc] = Publisher(nc)
    return found


def consumer_next_subject(stream: str, durable: str) -> str:
    """The JetStream API subject a pull request for a consumer's next messages goes to."""
    return f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"


async def ensure_consumer(
    js: JetStreamContext, stream: str, config: js_api.ConsumerConfig, idle_timeout_s: float
) -> Puller:
    """Create or update a durable pull consumer to match `config`; a Puller of its messages.

    nats-py's pull_subscribe silently keeps an existing durable's old config, so this
    compares and updates explicitly.
    """
    name = config.durable_name or ""
    try:
        info = await js.consumer_info(stream, name)
        live = info.config
        if (
            live.ack_wait != config.ack_wait
            or live.max_ack_pending != config.max_ack_pending
            or live.filter_subject != config.filter_subject
            or live.max_deliver != config.max_deliver
        ):
            await js.add_consumer(stream, config)  # consumer create-or-update
            log.info("updated consumer %s on %s", name, stream)
    except NotFoundError:
        await js.add_consumer(stream, config)
    puller = Puller(js._nc, stream, name, idle_timeout_s)  # see publisher()
    await puller.start()
    return puller


async def fetch(sub: JetStreamContext.PullSubscription, batch: int, timeout_s: float) -> list:
    """Pull up to `batch` messages; no message within `timeout_s` is an empty list, not an error."""
    try:
        return await sub.fetch(batch, timeout=timeout_s)
    except (nats.errors.TimeoutError, TimeoutError):
        return []


#: How long one pull request waits on the server for messages before it expires and is renewed
#: (a request lost with a restarted server costs at most about this long).
PULL_EXPIRES_S = 1.0
#: After its expiry, how long to wait for the server's word before a request counts as lost.
PULL_LOST_AFTER_S = 1.0
#: On a pull request's end: how many messages it still owed when it ended.
PENDING_MESSAGES_HEADER = "Nats-Pending-Messages"
#: Status codes of a pull request that ended: request timeout (expired), no messages.
_REQUEST_ENDED = {"408", "404"}


class Puller:
    """A durable pull consumer's messages, handed over the moment the server sends them.

    `pull(batch)` keeps pull requests standing on the server for up to `batch` messages in
    all (messages received and not yet taken count too; it tops up once no more than half are
    on their way), then returns what has arrived, waiting up to `idle_timeout_s` for the
    first. A message that is published while a request stands is pushed to us at once: no
    fetch round trip after it, and no waiting for a batch to fill (nats-py's fetch(n) can
    hold the first message until its timeout when fewer than n come). Nothing beyond what the
    last pull asked for is requested, so a worker never holds more tasks than it has free
    slots.
    """

    def __init__(self, nc: NATS, stream: str, durable: str, idle_timeout_s: float) -> None:
        self._nc = nc
        self._next_subject = consumer_next_subject(stream, durable)
        self.idle_timeout_s = idle_timeout_s
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._received: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._owed = 0  # messages the standing requests may still deliver, in all
        self._last_expiry = 0.0  # when the newest standing request expires
        self._waiting_for = 0  # the batch of the pull() waiting now, else 0
        self._error: Msg | None = None

    async def start(self) -> None:
        """Subscribe to the inbox the server delivers to."""
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)

    async def pull(self, batch: int) -> list[Msg]:
        """Up to `batch` messages; an empty list after `idle_timeout_s` without any."""
        self._forget_lost()
        await self._request_up_to(batch)
        if not self._received and self._error is None:
            self._arrived.clear()
            self._waiting_for = batch
            try:
                async with asyncio.timeout(self.idle_timeout_s):
                    await self._arrived.wait()
            except TimeoutError:
                pass
            finally:
                self._waiting_for = 0
        if self._error is not None and not self._received:
            error, self._error = self._error, None
            raise APIError.from_msg(error)
        return [self._received.popleft() for _ in range(min(batch, len(self._received)))]

    async def unsubscribe(self) -> None:
        """Stop receiving; messages received but not taken are put back at once (nak)."""
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        while self._received:
            with contextlib.suppress(Exception):
                await self._received.popleft().nak()

    async def _request_up_to(self, batch: int) -> None:
        # Top up in bulk once at most half the batch is on its way, not after each message:
        # a pull request is a message, and each message costs the server and us CPU.
        on_the_way = len(self._received) + self._owed
        if on_the_way > batch // 2:
            return
        wanted = batch - on_the_way
        request = {"batch": wanted, "expires": int(PULL_EXPIRES_S * 1e9)}
        self._owed += wanted
        self._last_expiry = time.monotonic() + PULL_EXPIRES_S
        await self._nc.publish(self._next_subject, json.dumps(request).encode(),
                               reply=self._inbox)

    def _forget_lost(self) -> None:
        # Every request has expired, and the server never said so (it restarted, say).
        if self._owed and time.monotonic() > self._last_expiry + PULL_LOST_AFTER_S:
            self._owed = 0

    async def _on_message(self, msg: Msg) -> None:
        # The server serves standing requests in turn, so only the total owed is tracked:
        # each message takes one, and an expired request returns what it still owed.
        status = msg.headers.get(js_api.Header.STATUS) if msg.headers else None
        if status is None:
            self._owed = max(0, self._owed - 1)
            self._received.append(msg)
            self._arrived.set()
        elif status in _REQUEST_ENDED:
            unfilled = int((msg.headers or {}).get(PENDING_MESSAGES_HEADER, 0) or 0)
            self._owed = max(0, self._owed - unfilled)
            if self._waiting_for:  # renew at once, so a waiting pull misses nothing
                await self._request_up_to(self._waiting_for)
        elif status != "100":  # not a heartbeat: the consumer is gone, or another error
            self._owed = 0
            self._error = msg
            self._arrived.set()


async def close(nc: NATS) -> None:
    """Close a connection without waiting on drain (pull subscriptions can stall drain)."""
    if not nc.is_closed:
        await nc.close()
