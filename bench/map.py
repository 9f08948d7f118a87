"""The map step's own figures (issue 13): a 1,000-item map of a no-op task, start to end,
and `run status` of a run with a 10,000-item map. Starts the bench's own cluster
(nats-server, API, engine, one worker) in a temporary dir.

    .venv/bin/python bench/map.py 3      # 3 rounds of each; about a minute on 2 cores

Prints one JSON line: per 1,000-item round, the run's wall time and the map step's own
(its first instance queued to its output recorded); for the 10,000-item run, its wall time,
the snapshot's size, and the time of the status call (the client's get_run, and the CLI's
`run status` and `run status --json` as processes, Python's start included).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dagnats import names
from dagnats.bench.cluster import Cluster
from dagnats.bench.config import full
from dagnats.client import AsyncClient
from dagnats.connection import connect
from dagnats.jetstream import close

ROOT = Path(__file__).resolve().parent.parent


def definition(name: str, items: int) -> dict[str, object]:
    return {"name": name, "version": "1", "steps": [
        {"id": "list", "task": "map_items"},
        {"id": "each", "type": "map", "task": "map_noop", "depends_on": ["list"],
         "config": {"max_items": items}}]}


async def one_map(client: AsyncClient, name: str, count: int) -> dict[str, float]:
    """One run of `name` over `count` items: wall time, and the map step's own time."""
    began = time.perf_counter()
    run_id = await client.start(name, count)
    run = await client.wait(run_id, timeout=300)
    wall = time.perf_counter() - began
    assert run.status.value == "completed", run.error
    assert run.output == list(range(count))
    events = await client.events(run_id)
    first = min(e.timestamp for e in events if (e.step_id or "").startswith("each["))
    done = max(e.timestamp for e in events
               if e.step_id == "each" and e.type.value == "step.completed")
    return {"run_id": run_id, "wall_s": round(wall, 3),  # type: ignore[dict-item]
            "map_s": round((done - first).total_seconds(), 3)}


def timed_cli(url: str, *args: str) -> float:
    """Wall seconds of one `dagnats` CLI process (its Python start included)."""
    env = {**os.environ, "DAGNATS_NATS_URL": url}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dagnats", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - began


async def main(rounds: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="dagnats-map-"))
    cluster = Cluster(root, full())
    await cluster.start()
    try:
        client = await AsyncClient.connect(cluster.url)
        await client.register_workflow(definition("map1k", 1000))
        await client.register_workflow(definition("map10k", 10_000))
        await one_map(client, "map1k", 100)  # warm up
        thousand = [await one_map(client, "map1k", 1000) for _ in range(rounds)]
        big = await one_map(client, "map10k", 10_000)
        nc = await connect(cluster.url)
        kv = await nc.jetstream().key_value(names.RUNS_BUCKET)
        snapshot = await kv.get(str(big["run_id"]))
        await close(nc)
        calls = []
        for _ in range(10):
            began = time.perf_counter()
            await client.get_run(str(big["run_id"]))
            calls.append(time.perf_counter() - began)
        await client.close()
        cli = [timed_cli(cluster.url, "run", "status", str(big["run_id"])) for _ in range(3)]
        cli_json = [timed_cli(cluster.url, "run", "status", str(big["run_id"]), "--json")
                    for _ in range(3)]
        version = [timed_cli(cluster.url, "version") for _ in range(3)]
    finally:
        await cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "map_1000": thousand,
        "map_10000": {"wall_s": big["wall_s"], "map_s": big["map_s"],
                      "snapshot_bytes": len(snapshot.value or b""),
                      "get_run_ms_p50": round(statistics.median(calls) * 1000, 1),
                      "cli_status_ms": [round(t * 1000) for t in cli],
                      "cli_status_json_ms": [round(t * 1000) for t in cli_json],
                      "cli_version_ms": [round(t * 1000) for t in version]},
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))))
