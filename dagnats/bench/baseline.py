"""The physical limit, measured in the same run: raw JetStream operations from one process.

On a stream and a KV bucket of their own (removed afterwards), from this process:
sequentially awaited publishes (the round trip), publishes pipelined with asyncio.gather
(~200 in flight), fetch(100) plus an ack per message, and KV compare-and-set updates
(`update(key, value, last=revision)`), each awaited before the next.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import api as js_api

from dagnats import jetstream, names
from dagnats.bench.config import BenchConfig

STREAM = "BENCH_BASELINE"
SUBJECT = "bench.baseline"
BUCKET = "bench_baseline"
PAYLOAD = b"x" * 200  # about the size of a step event


async def measure(nc: NATS, config: BenchConfig) -> dict[str, Any]:
    """Every baseline figure, on a fresh stream and bucket that are deleted afterwards."""
    js = nc.jetstream()
    await js.add_stream(js_api.StreamConfig(
        name=STREAM, subjects=[f"{SUBJECT}.>"], storage=js_api.StorageType.FILE,
        duplicate_window=float(names.DUPLICATE_WINDOW_S)))
    try:
        return {
            "sequential_publish": await sequential_publish(js, config.seq_publishes),
            "pipelined_publish": await pipelined_publish(js, config.pipelined_publishes,
                                                         config.pipeline_window),
            "fetch_ack": await fetch_ack(js, config.fetch_messages, config.fetch_batch),
            "kv_cas": await kv_cas(js, config.kv_cas),
        }
    finally:
        await js.delete_stream(STREAM)


async def sequential_publish(js: JetStreamContext, count: int) -> dict[str, Any]:
    """Awaited publishes with a Nats-Msg-Id, one at a time: the JetStream round trip."""
    rtts = []
    started = time.perf_counter()
    for n in range(count):
        t0 = time.perf_counter()
        await js.publish(f"{SUBJECT}.seq", PAYLOAD, headers={"Nats-Msg-Id": f"seq-{n}"})
        rtts.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    return {"count": count, "per_s": round(count / elapsed),
            "rtt_us_p50": round(statistics.median(rtts) * 1e6, 1),
            "rtt_us_mean": round(elapsed / count * 1e6, 1)}


async def pipelined_publish(js: JetStreamContext, count: int, window: int) -> dict[str, Any]:
    """Publishes in groups of `window` awaited together with asyncio.gather."""
    started = time.perf_counter()
    for first in range(0, count, window):
        await asyncio.gather(*(
            js.publish(f"{SUBJECT}.pipe", PAYLOAD, headers={"Nats-Msg-Id": f"pipe-{n}"})
            for n in range(first, min(first + window, count))))
    elapsed = time.perf_counter() - started
    return {"count": count, "in_flight": window, "per_s": round(count / elapsed)}


async def fetch_ack(js: JetStreamContext, count: int, batch: int) -> dict[str, Any]:
    """fetch(batch) from a durable pull consumer, acking each message, until `count` were read."""
    for first in range(0, count, 500):
        await asyncio.gather(*(js.publish(f"{SUBJECT}.fetch", PAYLOAD)
                               for _ in range(first, min(first + 500, count))))
    sub = await js.pull_subscribe(f"{SUBJECT}.fetch", durable="bench_fetch", stream=STREAM)
    read = 0
    started = time.perf_counter()
    while read < count:
        messages = await jetstream.fetch(sub, batch, timeout_s=2.0)
        if not messages:
            break
        for msg in messages:
            await msg.ack()
        read += len(messages)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return {"count": read, "batch": batch, "per_s": round(read / elapsed)}


async def kv_cas(js: JetStreamContext, count: int) -> dict[str, Any]:
    """Sequential compare-and-set updates of one key, each on the revision the last returned."""
    kv = await js.create_key_value(js_api.KeyValueConfig(bucket=BUCKET, history=1,
                                                         direct=True))
    try:
        revision = await kv.put("key", PAYLOAD)
        started = time.perf_counter()
        for _ in range(count):
            revision = await kv.update("key", PAYLOAD, last=revision)
        elapsed = time.perf_counter() - started
    finally:
        await js.delete_key_value(BUCKET)
    return {"count": count, "per_s": round(count / elapsed),
            "us_mean": round(elapsed / count * 1e6, 1)}
