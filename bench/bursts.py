"""Bursts only, for before/after comparisons of a hot-path change: start the bench's own
cluster (nats-server, API, engine, one worker), warm up, run N bursts of 2,000 chain runs,
and print one JSON line: steps/s and CPU ms per step of each process, per burst.

    .venv/bin/python bench/bursts.py 3      # about 20 s on 2 cores

Run it alternately in two checkouts (`git worktree add ../before REV`) to compare them
within minutes on the same machine; single bursts vary by about 10% here, so compare
means over some twenty bursts a side (bench/RESULTS.md, "Bursts only, 24 against 24").
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

from dagnats.bench.cluster import Cluster
from dagnats.bench.config import full
from dagnats.bench.procstats import cpu_seconds
from dagnats.bench.workflows import Tracker, chain_definition
from dagnats.bench.workloads import burst, warm_up
from dagnats.client import AsyncClient
from dagnats.connection import connect
from dagnats.jetstream import close

RUNS_PER_BURST = 2_000
WARM_UP_RUNS = 30
BURST_TIMEOUT_S = 90.0


async def bursts(count: int) -> list[dict[str, object]]:
    """`count` bursts on a fresh cluster in a temporary dir; one result per burst."""
    root = Path(tempfile.mkdtemp(prefix="dagnats-bursts-"))
    cluster = Cluster(root, full())
    await cluster.start()
    results: list[dict[str, object]] = []
    try:
        nc = await connect(cluster.url, name="dagnats-bench")
        client = await AsyncClient.connect(cluster.url)
        tracker = Tracker(nc)
        await tracker.start()
        await client.register_workflow(chain_definition())
        await warm_up(client, WARM_UP_RUNS)
        for n in range(count):
            processes = cluster.processes()
            before = cpu_seconds(processes)
            result = await burst(client, tracker, RUNS_PER_BURST, BURST_TIMEOUT_S, f"b{n}_")
            after = cpu_seconds(processes)
            steps = result["steps"] or 1
            results.append({
                "steps_per_s": result["steps_per_s"], "verified": result["verified"],
                "cpu_ms_per_step": {name: round((after[name] - before[name]) / steps * 1000, 3)
                                    for name in before if name in after}})
        await tracker.stop()
        await client.close()
        await close(nc)
    finally:
        await cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(bursts(int(sys.argv[1]) if len(sys.argv) > 1 else 3))))
