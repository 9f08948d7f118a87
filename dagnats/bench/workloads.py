"""The workloads through the whole system: sequential latency, a concurrent burst, fan-out.

Latency is measured as a user sees it: `client.start` then `client.wait`, one run at a time.
The burst and the fan-out start runs with the client and learn how they ended from the
Tracker (one subscription), so thousands of waits do not load the system under test.
Every run's output is checked against what its input must give.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dagnats.bench import hops
from dagnats.bench.stats import summary_ms
from dagnats.bench.workflows import (
    CHAIN,
    CHAIN_STEPS,
    FANOUT,
    Tracker,
    chain_output,
    fanout_output,
)
from dagnats.client import AsyncClient

#: How long one sequential run may take before the workload gives up on it.
RUN_TIMEOUT_S = 30.0
#: How many runs of a latency workload are split into hops (each needs a run.events call).
HOP_SAMPLE = 500


async def warm_up(client: AsyncClient, runs: int) -> None:
    """Runs whose timings are thrown away: imports, connections and caches warm up."""
    for n in range(runs):
        await client.wait(await client.start(CHAIN, f"warm{n}"), timeout=RUN_TIMEOUT_S)


async def latency(client: AsyncClient, runs: int, budget_s: float, label: str
                  ) -> dict[str, Any]:
    """`runs` chain runs one after another: start, wait, check the output; p50/p95/p99.

    Stops early (`truncated`) once `budget_s` has passed.
    """
    samples: list[float] = []
    run_ids: list[str] = []
    wrong = 0
    deadline = time.perf_counter() + budget_s
    for n in range(runs):
        if time.perf_counter() > deadline:
            break
        name = f"{label}{n}"
        t0 = time.perf_counter()
        run = await client.wait(await client.start(CHAIN, name), timeout=RUN_TIMEOUT_S)
        samples.append(time.perf_counter() - t0)
        run_ids.append(run.run_id)
        wrong += run.status != "completed" or run.output != chain_output(name)
    result: dict[str, Any] = summary_ms(samples)
    result.update(runs=len(samples), requested=runs, truncated=len(samples) < runs,
                  wrong_outputs=wrong, steps_per_run=CHAIN_STEPS,
                  per_step_overhead_ms=round(result.get("p50_ms", 0.0) / CHAIN_STEPS, 3))
    result["hops"] = await _hops(client, run_ids[-HOP_SAMPLE:], samples[-HOP_SAMPLE:])
    return result


async def _hops(client: AsyncClient, run_ids: list[str], samples: list[float]
                ) -> dict[str, Any]:
    per_run = []
    for run_id, e2e_s in zip(run_ids, samples, strict=True):
        split = hops.run_hops(await client.events(run_id), e2e_s)
        if split is not None:
            per_run.append(split)
    return {"runs": len(per_run), **hops.summarize(per_run)}


async def burst(client: AsyncClient, tracker: Tracker, runs: int, timeout_s: float,
                label: str) -> dict[str, Any]:
    """`runs` chain runs started at once; runs/s and steps/s from first start to last end.

    The result names its own runs (`label`, the first and last run id) and when it started,
    so two bursts in one report can be told apart by what they ran, not by their figures.
    """
    names = [f"{label}{n}" for n in range(runs)]
    started_at = time.time()
    t0 = time.perf_counter()
    run_ids = await asyncio.gather(*(client.start(CHAIN, name) for name in names))
    started_s = time.perf_counter() - t0
    timed_out = False
    try:
        await tracker.wait(run_ids, timeout_s)
    except TimeoutError:
        timed_out = True
    endings = [tracker.ended.get(run_id) for run_id in run_ids]
    done = [e for e in endings if e is not None]
    elapsed = (max(e.seen_s for e in done) - t0) if done else float("nan")
    verified = sum(1 for name, e in zip(names, endings, strict=True)
                   if e is not None and e.status == "completed" and e.output == chain_output(name))
    steps = len(done) * CHAIN_STEPS
    return {
        "label": label, "first_run_id": run_ids[0] if run_ids else None,
        "last_run_id": run_ids[-1] if run_ids else None, "started_at": round(started_at, 3),
        "runs": runs, "completed": len(done), "verified": verified,
        "wrong_or_missing": runs - verified, "timed_out": timed_out,
        "steps": steps, "seconds": round(elapsed, 3), "start_seconds": round(started_s, 3),
        "runs_per_s": round(len(done) / elapsed, 1) if done else 0.0,
        "steps_per_s": round(steps / elapsed, 1) if done else 0.0,
    }


async def fanout(client: AsyncClient, tracker: Tracker, width: int, repeats: int,
                 budget_s: float) -> dict[str, Any]:
    """One step, `width` parallel steps, a join; `repeats` times, one after another."""
    version = str(width)
    samples: list[float] = []
    wrong = 0
    deadline = time.perf_counter() + budget_s
    for n in range(repeats):
        if time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        run_id = await client.start(FANOUT, n, version=version)
        await tracker.wait([run_id], RUN_TIMEOUT_S + width / 10)
        ending = tracker.ended[run_id]
        samples.append(ending.seen_s - t0)
        wrong += ending.status != "completed" or ending.output != fanout_output(n, width)
    result: dict[str, Any] = {"width": width, "steps_per_fanout": width + 2,
                              "repeats": len(samples), "requested": repeats,
                              "truncated": len(samples) < repeats, "wrong_outputs": wrong}
    result["per_fanout"] = summary_ms(samples)
    total_s = sum(samples)
    result["steps_per_s"] = round(len(samples) * (width + 2) / total_s, 1) if total_s else 0.0
    return result
