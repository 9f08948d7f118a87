"""Sequential latency only, for before/after comparisons of a hot-path change: start the
bench's own cluster (nats-server, API, engine, one worker), warm up, then N rounds of: a raw
sequential publish round trip (the yardstick), and RUNS chain runs one after another.
Prints one JSON line: per round, the run p50 and p99, the round trip p50, and their ratio.

    .venv/bin/python bench/latency.py 3      # about 30 s on 2 cores

It imports the dagnats of the interpreter that runs it, so one copy of this file measures
any checkout: `/work/before/.venv/bin/python bench/latency.py 3` measures that checkout.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

from dagnats.bench import baseline
from dagnats.bench.cluster import Cluster
from dagnats.bench.config import full
from dagnats.bench.workflows import chain_definition
from dagnats.bench.workloads import latency, warm_up
from dagnats.client import AsyncClient
from dagnats.connection import connect
from dagnats.jetstream import close

RUNS = 300
PUBLISHES = 500
WARM_UP_RUNS = 30
BUDGET_S = 60.0


async def rounds(count: int) -> list[dict[str, object]]:
    """`count` rounds on a fresh cluster in a temporary dir; one result per round."""
    root = Path(tempfile.mkdtemp(prefix="dagnats-latency-"))
    cluster = Cluster(root, full())
    await cluster.start()
    results: list[dict[str, object]] = []
    try:
        nc = await connect(cluster.url, name="dagnats-bench")
        client = await AsyncClient.connect(cluster.url)
        await client.register_workflow(chain_definition())
        await warm_up(client, WARM_UP_RUNS)
        js = nc.jetstream()
        await js.add_stream(name=baseline.STREAM, subjects=[f"{baseline.SUBJECT}.>"])
        for n in range(count):
            rtt = (await baseline.sequential_publish(js, PUBLISHES))["rtt_us_p50"]
            runs = await latency(client, RUNS, BUDGET_S, f"l{n}_")
            results.append({"p50_ms": runs["p50_ms"], "p99_ms": runs["p99_ms"],
                            "rtt_us": rtt, "hops_ms": runs["hops"],
                            "round_trips_per_step": round(runs["p50_ms"] * 1000 / 3 / rtt, 2)})
        await client.close()
        await close(nc)
    finally:
        await cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(rounds(int(sys.argv[1]) if len(sys.argv) > 1 else 3))))
