"""History growth: N completed runs written straight into history and KV, not through the engine.

Running 100,000 runs through the engine would take longer than the whole benchmark may, so
the runs are synthetic but shaped exactly like real ones: the 11 events of a completed chain
run (the real envelopes, only the run id differs) on `history.<run>` and its completed
snapshot in `workflow_runs`. They are published as core messages (JetStream stores them all
the same) with one awaited JetStream publish per chunk as a barrier, then counted.

The engine is stopped meanwhile. Its durable consumer is then recreated to start after the
seeded events, as if a live engine had processed them all (finished runs are not kept in its
memory, so nothing else would differ), and the engine is started again.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from dagnats import names
from dagnats.bench.cluster import BenchError, Cluster
from dagnats.bench.workflows import chain_definition
from dagnats.dag.events import Event, EventType
from dagnats.dag.state import RunStatus, fold
from dagnats.dag.validate import parse_definition
from dagnats.engine import partitions

TEMPLATE_ID = "7e3p1a7e" * 4  # never a real run id: "p" is not hex
RUNS_PER_CHUNK = 500
IDLE_TIMEOUT_S = 60.0


def seed_run_id(n: int) -> str:
    """The id of the n-th synthetic run: 32 hex characters, recognisably seeded."""
    return f"5eed{n:028x}"


def template() -> tuple[list[bytes], bytes]:
    """The encoded events and snapshot of one completed chain run, for TEMPLATE_ID."""
    definition = parse_definition(chain_definition())
    now = datetime.now(UTC)

    def event(kind: EventType, step: str | None = None, **data: Any) -> Event:
        return Event(type=kind, run_id=TEMPLATE_ID, step_id=step, attempt=1 if step else 0,
                     timestamp=now, data=data)

    events = [event(EventType.WORKFLOW_STARTED, workflow=definition.name,
                    version=definition.version, input="seed",
                    definition=definition.to_json_dict())]
    value: Any = "seed"
    for step, fn in (("greet", lambda v: f"Hello, {v}!"), ("uppercase", str.upper),
                     ("reverse", lambda v: v[::-1])):
        output = fn(value)
        events += [event(EventType.STEP_QUEUED, step, task=step, input=value, delay_s=0.0,
                         not_before=None),
                   event(EventType.STEP_STARTED, step, delivery=1, worker="seed"),
                   event(EventType.STEP_COMPLETED, step, output=output)]
        value = output
    events.append(event(EventType.WORKFLOW_COMPLETED, output=value))
    numbered = [e.model_copy(update={"seq": n + 1}) for n, e in enumerate(events)]
    state = fold(numbered)
    if state is None or state.status is not RunStatus.COMPLETED:
        raise BenchError("the synthetic run template does not fold into a completed run")
    return [e.encode() for e in events], state.model_dump_json().encode()


async def seed(cluster: Cluster, nc: NATS, runs: int) -> dict[str, Any]:
    """Write `runs` completed runs into history and KV with the engine stopped; restart it."""
    js = nc.jetstream()
    await wait_engine_idle(js)
    await cluster.stop_engine()
    history_before = await _messages(js, names.HISTORY_STREAM)
    kv_before = await _messages(js, names.kv_stream(names.RUNS_BUCKET))
    events, snapshot = template()
    t0 = time.perf_counter()
    for first in range(0, runs, RUNS_PER_CHUNK):
        ids = [seed_run_id(n) for n in range(first, min(first + RUNS_PER_CHUNK, runs))]
        await _publish_chunk(nc, js, ids, events, snapshot)
    seconds = time.perf_counter() - t0
    history_added = await _messages(js, names.HISTORY_STREAM) - history_before
    kv_added = await _messages(js, names.kv_stream(names.RUNS_BUCKET)) - kv_before
    if history_added != runs * len(events) or kv_added != runs:
        raise BenchError(f"seeding stored {history_added} events and {kv_added} snapshots, "
                         f"expected {runs * len(events)} and {runs}")
    await reposition_engine_consumer(js)
    await cluster.start_engine()
    return {"runs": runs, "events": history_added, "snapshots": kv_added,
            "seconds": round(seconds, 2),
            "messages_per_s": round((history_added + kv_added) / seconds)}


async def _publish_chunk(nc: NATS, js: JetStreamContext, ids: list[str], events: list[bytes],
                         snapshot: bytes) -> None:
    template_id = TEMPLATE_ID.encode()
    for run_id in ids[:-1]:
        raw_id = run_id.encode()
        await nc.publish(names.kv_subject(names.RUNS_BUCKET, names.run_key(run_id)),
                         snapshot.replace(template_id, raw_id))
        subject = names.history_subject(run_id)
        for data in events:
            await nc.publish(subject, data.replace(template_id, raw_id))
    # The chunk's last messages are awaited JetStream publishes: a stream stores messages
    # in order, so their acks mean everything before them is stored too.
    last, raw_last = ids[-1], ids[-1].encode()
    subject = names.history_subject(last)
    for data in events[:-1]:
        await nc.publish(subject, data.replace(template_id, raw_last))
    await asyncio.gather(
        js.publish(subject, events[-1].replace(template_id, raw_last)),
        js.publish(names.kv_subject(names.RUNS_BUCKET, names.run_key(last)),
                   snapshot.replace(template_id, raw_last)))


async def _messages(js: JetStreamContext, stream: str) -> int:
    return int((await js.stream_info(stream)).state.messages)


async def wait_engine_idle(js: JetStreamContext, timeout_s: float = IDLE_TIMEOUT_S) -> None:
    """Wait until the engine has acknowledged every history event."""
    deadline = time.perf_counter() + timeout_s
    while True:
        backlog = await partitions.backlog(js)
        if backlog.idle:
            return
        if time.perf_counter() > deadline:
            raise BenchError(f"the engine still has {backlog.pending} pending and "
                             f"{backlog.ack_pending} unacknowledged events after {timeout_s}s")
        await asyncio.sleep(0.1)


async def reposition_engine_consumer(js: JetStreamContext) -> None:
    """Recreate the engine's durable consumers (same config) to start after the last event."""
    stream = await js.stream_info(names.HISTORY_STREAM)
    await partitions.start_consumers_at(js, stream.state.last_seq + 1)
