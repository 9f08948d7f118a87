#!/usr/bin/env python3
"""`run list` with a small and a large history: the API's answer time, from the run index.

    bench/lists.py [--runs 50,50000] [--requests 200]

For each size: a nats-server on free ports with a scratch store, the API as its own process
(`dagnats _component api`, as `serve` runs it), and N run summaries written straight into
the run index (stream RUN_INDEX) as the engine writes them: ten workflows; 1% running,
1% failed, the rest completed; created one second apart, in the past. Then --live more, as
a system starting --rate runs a second writes them: each created just before its summary
is stored. Then, through the client (one request each, the API's answer time plus one
loopback round trip):

- the first `run list --limit 5` after the API started (while it loads the whole index, the
  index's end answers for the newest runs), then the first `run list --workflow w3` (which
  waits for the whole index);
- `--requests` more of `run list --limit 5`: p50 and p95;
- the same for `--status running`, `--workflow w3` and a page deep in the list (`--after`
  the cursor of the 90%-th run), each with --limit 5;
- the API's resident memory.

Not part of the test suite; no timing is asserted anywhere. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and os.environ.get("DAGNATS_LISTS_ENV") != "1":
    sys.path.insert(0, str(ROOT / "bin"))
    from bootstrap import exec_in_env

    os.environ["DAGNATS_LISTS_ENV"] = "1"  # the checkout's venv runs this file again
    exec_in_env("runtime", [str(Path(__file__).resolve()), *sys.argv[1:]])

import argparse  # noqa: E402
import asyncio  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

from dagnats import AsyncClient, jetstream, names  # noqa: E402
from dagnats.bench.cluster import Child  # noqa: E402
from dagnats.connection import connect  # noqa: E402
from dagnats.dag.state import RunStatus  # noqa: E402
from dagnats.server.binary import find_nats_server  # noqa: E402
from dagnats.server.nats_process import NatsServer  # noqa: E402
from dagnats.server.supervisor import self_command  # noqa: E402
from dagnats.store.run_index import RunSummary  # noqa: E402

WORKFLOWS = 10
CHUNK = 500


def summaries(runs: int) -> list[RunSummary]:
    """N summaries: ten workflows, 1% running, 1% failed, created a second apart."""
    start = datetime.now(UTC) - timedelta(seconds=runs)
    found = []
    for n in range(runs):
        status = (RunStatus.RUNNING if n % 100 == 7 else RunStatus.FAILED if n % 100 == 42
                  else RunStatus.COMPLETED)
        created = start + timedelta(seconds=n)
        found.append(RunSummary(
            run_id=uuid.uuid4().hex, workflow=f"w{n % WORKFLOWS}", version="1", status=status,
            created_at=created, seq=n + 1,
            completed_at=None if status is RunStatus.RUNNING else created + timedelta(seconds=1),
            error="step b failed: ValueError: bad row" if status is RunStatus.FAILED else None))
    return found


async def publish(publisher: jetstream.Publisher, summary: RunSummary) -> None:
    """Write one summary into the index, as the engine writes it."""
    await publisher.publish(names.run_index_subject(summary.run_id),
                            summary.model_dump_json().encode(),
                            {"Nats-Msg-Id": names.run_index_msg_id(summary.run_id, summary.seq)})


async def seed(url: str, runs: list[RunSummary]) -> float:
    """Write the summaries into the index (pipelined); the seconds it took."""
    nc = await connect(url)
    t0 = time.perf_counter()
    try:
        publisher = jetstream.publisher(nc.jetstream())
        for at in range(0, len(runs), CHUNK):
            await asyncio.gather(*(publish(publisher, s) for s in runs[at:at + CHUNK]))
    finally:
        await jetstream.close(nc)
    return time.perf_counter() - t0


async def seed_live(url: str, runs: int, rate: float) -> None:
    """Write `runs` summaries at `rate` a second, each created just before it is stored."""
    nc = await connect(url)
    try:
        publisher = jetstream.publisher(nc.jetstream())
        for n in range(runs):
            s = RunSummary(run_id=uuid.uuid4().hex, workflow=f"w{n % WORKFLOWS}", version="1",
                           status=RunStatus.RUNNING, created_at=datetime.now(UTC), seq=1)
            await publish(publisher, s)
            await asyncio.sleep(1 / rate)
    finally:
        await jetstream.close(nc)


async def timed(work: Callable[[], Awaitable[Any]], times: int) -> list[float]:
    """Milliseconds each of `times` sequential calls took."""
    found = []
    for _ in range(times):
        t0 = time.perf_counter()
        await work()
        found.append((time.perf_counter() - t0) * 1000)
    return found


def p(values: list[float], q: float) -> float:
    """The q-quantile of `values`."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1] \
        if len(values) > 1 else values[0]


async def measure(runs: int, requests: int, live: int, rate: float) -> dict[str, Any]:
    """Every figure for one history size."""
    with tempfile.TemporaryDirectory(prefix="dagnats-lists-") as tmp:
        root = Path(tmp)
        server = NatsServer(find_nats_server(), root / "store", root / "nats.log", port=0)
        await server.start()
        api: Child | None = None
        try:
            nc = await connect(server.url)
            await jetstream.provision(nc.jetstream())
            await jetstream.close(nc)
            seeded = summaries(runs)
            seed_s = await seed(server.url, seeded)
            await seed_live(server.url, live, rate)
            env = {**os.environ, "DAGNATS_NATS_URL": server.url}
            api = Child("api", self_command("_component", "api"), env, root / "api.log")
            await api.start()
            client = await AsyncClient.connect(server.url)
            try:
                api.check_alive()
                t0 = time.perf_counter()
                first = await client.list_runs(limit=5)
                first_ms = (time.perf_counter() - t0) * 1000
                assert len(first) == min(5, runs + live)
                t0 = time.perf_counter()
                await client.list_runs("w3", limit=5)
                first_w3_ms = (time.perf_counter() - t0) * 1000
                deep = sorted(seeded, key=lambda s: s.created_at, reverse=True)[int(runs * 0.9)]
                cursor = f"{int(deep.created_at.timestamp() * 1_000_000)}.{deep.run_id}"
                figures: dict[str, Any] = {"runs": runs, "seed_s": round(seed_s, 2),
                                           "first_list_ms": round(first_ms, 1),
                                           "first_w3_ms": round(first_w3_ms, 1)}
                cases: dict[str, Callable[[], Awaitable[Any]]] = {
                    "limit5": lambda: client.list_runs(limit=5),
                    "status_running": lambda: client.list_runs(status="running", limit=5),
                    "workflow_w3": lambda: client.list_runs("w3", limit=5),
                    "deep_page": lambda: client.list_runs(limit=5, after=cursor),
                }
                for name, work in cases.items():
                    took = await timed(work, requests)
                    figures[name] = {"p50_ms": round(p(took, 0.5), 2),
                                     "p95_ms": round(p(took, 0.95), 2)}
                figures["api_rss_mb"] = round(api.ps.memory_info().rss / 1e6, 1)
                return figures
            finally:
                await client.close()
        finally:
            if api is not None:
                await api.stop()
            await server.stop()


async def main(sizes: list[int], requests: int, live: int, rate: float) -> None:
    for runs in sizes:
        figures = await measure(runs, requests, live, rate)
        cases = "  ".join(f"{name} p50 {figures[name]['p50_ms']} ms p95 "
                          f"{figures[name]['p95_ms']} ms"
                          for name in ("limit5", "status_running", "workflow_w3", "deep_page"))
        print(f"{runs:>7} runs (+{live} live): seeded in {figures['seed_s']} s; first list "
              f"after the API started {figures['first_list_ms']} ms, then the first of w3 "
              f"{figures['first_w3_ms']} ms; {cases}; API RSS "
              f"{figures['api_rss_mb']} MB", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="50,50000",
                        help="comma-separated history sizes (default 50,50000)")
    parser.add_argument("--requests", type=int, default=200,
                        help="timed requests per case (default 200)")
    parser.add_argument("--live", type=int, default=300,
                        help="runs written last, as a running system writes them (default 300)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="runs a second of the --live ones (default 100)")
    args = parser.parse_args()
    asyncio.run(main([int(n) for n in args.runs.split(",")], args.requests, args.live,
                     args.rate))
