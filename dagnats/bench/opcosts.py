"""What one operation of each kind dagnats uses costs: wall time, and CPU in client and server.

Each kind is repeated sequentially from this process against the bench's nats-server; CPU
is read before and after (this process, the server process) from the kernel's nanosecond
per-thread counters where they exist (psutil's 10 ms ticks elsewhere), so the figures are
per operation, on this machine, under its current load. Together with the operations per
step (monitor.OpTap) they explain where the time and CPU of a step go.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import psutil
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import api as js_api

from dagnats import jetstream

STREAM = "BENCH_OPS"
BUCKET = "bench_ops"
PAYLOAD = b'{"type":"step.completed","data":{"output":"' + b"x" * 150 + b'"}}'
EVENTS_PER_SUBJECT = 11


async def measure(nc: NATS, server: psutil.Process, reps: int) -> dict[str, Any]:
    """Cost per operation of each kind, on a scratch stream and bucket deleted afterwards."""
    js = nc.jetstream()
    await js.add_stream(js_api.StreamConfig(name=STREAM, subjects=["bops.>"],
                                            allow_direct=True))
    kv = await js.create_key_value(js_api.KeyValueConfig(bucket=BUCKET, history=1,
                                                         direct=True))
    try:
        for n in range(max(1, reps // 5)):
            for _ in range(EVENTS_PER_SUBJECT):
                await js.publish(f"bops.run{n}", PAYLOAD)
        few = max(1, reps // 5)
        kinds: dict[str, tuple[int, Callable[[int], Awaitable[Any]]]] = {
            "publish (awaited, with msg id)": (reps, lambda n: js.publish(
                f"bops.pub{n % 50}", PAYLOAD, headers={"Nats-Msg-Id": f"p{n}"})),
            "KV get (direct)": (reps, lambda n: kv.get("key")),
            "KV compare-and-set": (reps, _cas(kv)),
            "publish + fetch(1) + ack": (reps, await _fetch_one(js)),
            "history replay (ephemeral consumer, 11 events)": (
                few, lambda n: _replay(js, f"bops.run{n}")),
            "ordered consumer: subscribe, 1 event, unsubscribe": (
                few, lambda n: _ordered(js, f"bops.run{n}")),
        }
        await kv.put("key", PAYLOAD)
        return {name: await _timed(server, count, op) for name, (count, op) in kinds.items()}
    finally:
        await js.delete_key_value(BUCKET)
        await js.delete_stream(STREAM)


async def _timed(server: psutil.Process, count: int, op: Callable[[int], Awaitable[Any]]
                 ) -> dict[str, Any]:
    me = psutil.Process()
    client0, server0 = cpu_s(me), cpu_s(server)
    t0 = time.perf_counter()
    for n in range(count):
        await op(n)
    wall = time.perf_counter() - t0
    client, srv = cpu_s(me) - client0, cpu_s(server) - server0
    return {"count": count, "wall_us": round(wall / count * 1e6),
            "client_cpu_us": round(client / count * 1e6),
            "server_cpu_us": round(srv / count * 1e6)}


def cpu_s(proc: psutil.Process) -> float:
    """CPU seconds of every live thread of `proc` (Linux schedstat, ns), else psutil's."""
    total_ns = 0
    try:
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            total_ns += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        times = proc.cpu_times()
        return times.user + times.system
    return total_ns / 1e9


def _cas(kv: Any) -> Callable[[int], Awaitable[Any]]:
    state = {"revision": 0}

    async def update(n: int) -> None:
        if not state["revision"]:
            state["revision"] = await kv.put("cas", PAYLOAD)
        state["revision"] = await kv.update("cas", PAYLOAD, last=state["revision"])

    return update


async def _fetch_one(js: JetStreamContext) -> Callable[[int], Awaitable[Any]]:
    sub = await js.pull_subscribe("bops.queue", durable="bench_ops", stream=STREAM)

    async def cycle(n: int) -> None:
        await js.publish("bops.queue", PAYLOAD)
        for msg in await jetstream.fetch(sub, 1, timeout_s=2.0):
            await msg.ack()

    return cycle


async def _replay(js: JetStreamContext, subject: str) -> None:
    """What history.read did before batched direct gets: an ephemeral consumer, its info, a
    fetch, a delete."""
    sub = await js.pull_subscribe(subject, stream=STREAM, config=js_api.ConsumerConfig(
        ack_policy=js_api.AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True))
    info = await sub.consumer_info()
    try:
        # nats-py types it optional; the server always sends it
        await jetstream.fetch(sub, cast(int, info.num_pending), timeout_s=5.0)
    finally:
        await sub.unsubscribe()
        await js.delete_consumer(STREAM, info.name)  # as history.read cleaned up


async def _ordered(js: JetStreamContext, subject: str) -> None:
    """What client.wait did to follow a run before the live republish: an ordered consumer
    from the last event."""
    sub = await js.subscribe(subject, stream=STREAM, ordered_consumer=True,
                             deliver_policy=js_api.DeliverPolicy.LAST)
    try:
        await sub.next_msg(timeout=5.0)
    finally:
        await sub.unsubscribe()
