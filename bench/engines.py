"""Several engines: the share of the runs each takes, and the throughput with 1, 2 and 4.

For each engine count: start the bench's own cluster (nats-server, API, N engines, one
worker), wait until the partition leases have settled into even shares, warm up, run
BURSTS bursts of 2,000 chain runs, and record per burst the steps/s, and per engine the
partitions it holds, the events its partitions' consumers delivered (its share of the
work) and its CPU. Prints one JSON line.

    .venv/bin/python bench/engines.py 1 2 4     # about a minute on 2 cores
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dagnats import names
from dagnats.bench.cluster import Cluster
from dagnats.bench.config import full
from dagnats.bench.procstats import cpu_seconds
from dagnats.bench.workflows import Tracker, chain_definition
from dagnats.bench.workloads import burst, warm_up
from dagnats.client import AsyncClient
from dagnats.connection import connect
from dagnats.engine import partitions
from dagnats.jetstream import close

RUNS_PER_BURST = 2_000
BURSTS = 3
WARM_UP_RUNS = 30
BURST_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 30.0


async def settled(js: Any, engines: int) -> dict[int, str]:
    """The leases once every partition is held and no engine holds more than its share."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    share = math.ceil(names.HISTORY_PARTITIONS / engines)
    while True:
        held = await partitions.holders(js)
        counts = Counter(held.values())
        if len(held) == names.HISTORY_PARTITIONS and len(counts) == engines \
                and max(counts.values()) <= share:
            return held
        if time.monotonic() > deadline:
            raise RuntimeError(f"leases did not settle for {engines} engines: {dict(counts)}")
        await asyncio.sleep(0.2)


async def measure(engines: int) -> dict[str, Any]:
    """The bursts with `engines` engine processes, on a fresh cluster."""
    root = Path(tempfile.mkdtemp(prefix="dagnats-engines-"))
    cluster = Cluster(root, dataclasses.replace(full(), engine_processes=engines))
    await cluster.start()
    try:
        nc = await connect(cluster.url, name="dagnats-bench")
        js = nc.jetstream()
        client = await AsyncClient.connect(cluster.url)
        tracker = Tracker(nc)
        await tracker.start()
        await client.register_workflow(chain_definition())
        began = time.monotonic()
        held = await settled(js, engines)
        settle_s = time.monotonic() - began
        await warm_up(client, WARM_UP_RUNS)
        bursts = []
        for n in range(BURSTS):
            processes = cluster.processes()
            cpu_before = cpu_seconds(processes)
            before = await partitions.delivered_by_partition(js)
            result = await burst(client, tracker, RUNS_PER_BURST, BURST_TIMEOUT_S, f"e{n}_")
            after = await partitions.delivered_by_partition(js)
            cpu_after = cpu_seconds(processes)
            held = await partitions.holders(js)
            events: Counter[str] = Counter()
            for partition, count in after.items():
                events[held.get(partition, "?")] += count - before.get(partition, 0)
            total = sum(events.values()) or 1
            bursts.append({
                "steps_per_s": result["steps_per_s"], "verified": result["verified"],
                "event_share": {engine[:6]: round(n / total, 3) for engine, n in
                                events.most_common()},
                "partitions": {engine[:6]: n for engine, n in
                               Counter(held.values()).most_common()},
                "engine_cpu_s": {name: round(cpu_after[name] - cpu_before[name], 2)
                                 for name in cpu_before if name.startswith("engine")}})
        await tracker.stop()
        await client.close()
        await close(nc)
        return {"engines": engines, "settled_in_s": round(settle_s, 2), "bursts": bursts}
    finally:
        await cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


async def main(counts: list[int]) -> list[dict[str, Any]]:
    return [await measure(n) for n in counts]


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main([int(a) for a in sys.argv[1:]] or [1, 2, 4]))))
