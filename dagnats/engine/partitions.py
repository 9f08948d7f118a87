"""Several engines: each takes a share of the runs, and a run is handled by one at a time.

A run's events carry its partition in their subject (`history.<p>.<run>.event`, p < 32).
Each partition has a durable consumer (`engine_<p>`), pulled only by the engine that holds
the partition's lease: the key `partition.<p>` of the `engine_leases` bucket, holding that
engine's id, which it rewrites (compare-and-set) every RENEW_S. Every engine also rewrites
`engine.<id>` every RENEW_S, so each can count the live ones and aim at an even share,
ceil(32 / live engines): it claims free partitions up to its share and gives back those
beyond it (after its events in flight for them are handled), so a new engine gets its
share within a few seconds.

A lease is expired when its key has not changed for EXPIRY_S, as measured by whoever looks
(no clocks are compared across hosts): then another engine may claim it, with
compare-and-set on the revision it saw, so only one can. The holder stops pulling a
partition it could not renew for FENCE_S (half the expiry), before anyone may claim it; the
snapshot's compare-and-set stays as the last guard. A dead engine's share is therefore
taken over within EXPIRY_S plus a tick, and its unacknowledged events come back after the
consumer's ack wait (ENGINE_ACK_WAIT_S).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from dagnats import names
from dagnats.store import history

log = logging.getLogger("dagnats.engine.partitions")

#: How often an engine rewrites its leases and its liveness key, and looks at the others'.
RENEW_S = 1.0
#: A key unchanged this long (as its reader measures) belongs to an engine that is gone.
EXPIRY_S = 5.0
#: An engine that could not renew a lease for this long stops pulling its partition.
FENCE_S = EXPIRY_S / 2


def consumer_config(partition: int, start_seq: int | None = None) -> js_api.ConsumerConfig:
    """The durable consumer of one partition's events (from the first, or `start_seq`)."""
    config = js_api.ConsumerConfig(
        name=names.engine_consumer(partition), durable_name=names.engine_consumer(partition),
        filter_subject=names.history_partition_filter(partition),
        ack_policy=js_api.AckPolicy.EXPLICIT, ack_wait=names.ENGINE_ACK_WAIT_S,
        deliver_policy=js_api.DeliverPolicy.ALL, max_deliver=-1, max_ack_pending=20_000,
    )
    if start_seq is not None:
        config.deliver_policy = js_api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = start_seq
    return config


async def start_consumers_at(js: JetStreamContext, start_seq: int) -> None:
    """Make every partition's consumer anew, starting at history sequence `start_seq`."""
    for partition in range(names.HISTORY_PARTITIONS):
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(names.HISTORY_STREAM, names.engine_consumer(partition))
        await js.add_consumer(names.HISTORY_STREAM, consumer_config(partition, start_seq))


@dataclass
class Backlog:
    """The engine consumers' counters, summed over the partitions."""

    pending: int = 0
    ack_pending: int = 0
    redelivered: int = 0
    delivered: int = 0

    @property
    def idle(self) -> bool:
        """Nothing waiting to be handled, nothing held unacknowledged."""
        return not self.pending and not self.ack_pending


async def backlog(js: JetStreamContext) -> Backlog:
    """What every engine consumer has pending, unacknowledged, redelivered, delivered."""
    total = Backlog()
    for partition in range(names.HISTORY_PARTITIONS):
        try:
            info = await js.consumer_info(names.HISTORY_STREAM, names.engine_consumer(partition))
        except NotFoundError:
            continue
        total.pending += info.num_pending or 0
        total.ack_pending += info.num_ack_pending or 0
        total.redelivered += info.num_redelivered or 0
        total.delivered += info.delivered.consumer_seq or 0 if info.delivered else 0
    return total


async def holders(js: JetStreamContext) -> dict[int, str]:
    """Which engine holds each leased partition now (one batched direct get)."""
    found: dict[int, str] = {}
    for key, (_, holder) in (await _read_keys(js)).items():
        with contextlib.suppress(ValueError):
            found[names.parse_lease_key(key)] = holder
    return found


async def delivered_by_partition(js: JetStreamContext) -> dict[int, int]:
    """How many events each partition's consumer has delivered so far (redeliveries too)."""
    found: dict[int, int] = {}
    for partition in range(names.HISTORY_PARTITIONS):
        with contextlib.suppress(NotFoundError):
            info = await js.consumer_info(names.HISTORY_STREAM, names.engine_consumer(partition))
            found[partition] = info.delivered.consumer_seq or 0 if info.delivered else 0
    return found


async def _read_keys(js: JetStreamContext) -> dict[str, tuple[int, str]]:
    """Every key of the leases bucket with a value: (revision, the engine it names)."""
    current: dict[str, tuple[int, str]] = {}
    for seq, data in await history.direct_all(js, names.kv_stream(names.LEASES_BUCKET),
                                              names.kv_filter(names.LEASES_BUCKET)):
        key, holder = _decode(data)
        if key is not None:
            current[key] = (seq, holder)
    return current


def new_engine_id() -> str:
    """A fresh id for one engine process."""
    return uuid.uuid4().hex[:12]


@dataclass
class _Seen:
    """A key as last read: its revision, what it holds, and when that revision was new."""

    revision: int
    holder: str
    since: float


@dataclass
class Share:
    """An engine's view of the leases after a look: who is alive, what it should hold."""

    live_engines: int
    target: int
    holding: list[int] = field(default_factory=list)


class Leases:
    """Claims, renews and gives back the partitions of one engine.

    `gain(p)` starts pulling partition p; `lose(p)` stops, and returns once the events of p
    in flight are handled. Both are awaited by the loop, one at a time.
    """

    def __init__(self, js: JetStreamContext, engine_id: str,
                 gain: Callable[[int], Awaitable[None]], lose: Callable[[int], Awaitable[None]],
                 *, renew_s: float = RENEW_S, expiry_s: float = EXPIRY_S) -> None:
        self.js = js
        self.engine_id = engine_id
        self._gain, self._lose = gain, lose
        self.renew_s, self.expiry_s = renew_s, expiry_s
        self.fence_s = expiry_s / 2
        self.held: dict[int, tuple[int, float]] = {}  # partition -> (revision, renewed at)
        self._seen: dict[str, _Seen] = {}
        self._kv: KeyValue | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Keep this engine's share until `stop` is set; then give every partition back."""
        self._kv = await self.js.key_value(names.LEASES_BUCKET)
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception as exc:  # NATS away, a leader lost: fencing keeps it safe
                    log.warning("engine %s: leases not renewed this time: %s: %s",
                                self.engine_id, type(exc).__name__, exc)
                await self._fence()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.renew_s)
        finally:
            await self.release_all()

    async def tick(self) -> Share:
        """One round: say we live, read every key, renew, give back extras, claim free."""
        kv = await self._bucket()
        await kv.put(names.engine_key(self.engine_id), json.dumps(
            {"engine": self.engine_id}).encode())
        now = time.monotonic()
        await self._read(now)
        live = {key for key, seen in self._seen.items()
                if key.startswith(names.ENGINE_KEY_PREFIX + ".") and seen.holder
                and now - seen.since < self.expiry_s}
        live.add(names.engine_key(self.engine_id))
        target = math.ceil(names.HISTORY_PARTITIONS / len(live))
        for partition in list(self.held):
            await self._renew(kv, partition)
        for partition in sorted(self.held, reverse=True)[:max(0, len(self.held) - target)]:
            await self._give_back(kv, partition)
        if len(self.held) < target:
            await self._claim(kv, now, target)
        return Share(len(live), target, sorted(self.held))

    async def release_all(self) -> None:
        """Stop every partition and delete its lease, so others take them at once."""
        for partition in sorted(self.held):
            with contextlib.suppress(Exception):
                await self._give_back(await self._bucket(), partition)
        if self._kv is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(names.engine_key(self.engine_id))

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.js.key_value(names.LEASES_BUCKET)
        return self._kv

    async def _read(self, now: float) -> None:
        """Every key's latest value (one batched direct get); note which ones changed."""
        current = await _read_keys(self.js)
        for key, (revision, holder) in current.items():
            seen = self._seen.get(key)
            if seen is None or seen.revision != revision:
                self._seen[key] = _Seen(revision, holder, now)
        for key in set(self._seen) - set(current):
            del self._seen[key]  # deleted (a delete marker holds no value) or purged

    async def _renew(self, kv: KeyValue, partition: int) -> None:
        revision, _ = self.held[partition]
        try:
            new = await kv.update(names.lease_key(partition), _lease(partition, self.engine_id),
                                  last=revision)
        except KeyWrongLastSequenceError:
            log.warning("engine %s: partition %d was taken over; stopping it",
                        self.engine_id, partition)
            del self.held[partition]
            await self._lose(partition)
            return
        self.held[partition] = (new, time.monotonic())

    async def _give_back(self, kv: KeyValue, partition: int) -> None:
        revision, _ = self.held.pop(partition)
        await self._lose(partition)
        with contextlib.suppress(KeyWrongLastSequenceError):
            await kv.delete(names.lease_key(partition), last=revision)

    async def _claim(self, kv: KeyValue, now: float, target: int) -> None:
        """Take free or expired partitions until we hold `target`, starting at a place of
        our own so engines starting together try different ones first."""
        first = names.history_partition(self.engine_id)
        for step in range(names.HISTORY_PARTITIONS):
            if len(self.held) >= target:
                return
            partition = (first + step) % names.HISTORY_PARTITIONS
            if partition in self.held:
                continue
            seen = self._seen.get(names.lease_key(partition))
            try:
                if seen is None or not seen.holder:
                    revision = await kv.create(names.lease_key(partition),
                                               _lease(partition, self.engine_id))
                elif now - seen.since >= self.expiry_s:
                    revision = await kv.update(names.lease_key(partition),
                                               _lease(partition, self.engine_id),
                                               last=seen.revision)
                    log.info("engine %s: took over partition %d from %s (silent %.1fs)",
                             self.engine_id, partition, seen.holder, now - seen.since)
                else:
                    continue
            except KeyWrongLastSequenceError:
                continue  # someone else was quicker
            self.held[partition] = (revision, time.monotonic())
            await self._gain(partition)

    async def _fence(self) -> None:
        """Stop partitions whose lease could not be renewed for FENCE_S."""
        now = time.monotonic()
        for partition, (_, renewed) in list(self.held.items()):
            if now - renewed >= self.fence_s:
                log.warning("engine %s: could not renew partition %d for %.1fs; stopping it",
                            self.engine_id, partition, now - renewed)
                del self.held[partition]
                await self._lose(partition)


def _lease(partition: int, engine_id: str) -> bytes:
    return json.dumps({"partition": partition, "engine": engine_id}).encode()


def _decode(data: bytes) -> tuple[str | None, str]:
    """(key, holder) of a lease or liveness value; (None, "") for a marker or junk."""
    try:
        body = json.loads(data) if data else None
    except ValueError:
        return None, ""
    if not isinstance(body, dict) or not isinstance(body.get("engine"), str):
        return None, ""
    if isinstance(body.get("partition"), int):
        return names.lease_key(body["partition"]), body["engine"]
    return names.engine_key(body["engine"]), body["engine"]
