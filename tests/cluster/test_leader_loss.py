"""The fault test of issue 12: a 3-node NATS cluster loses the leader of WORKFLOW_HISTORY.

The API, two engines and two workers run as processes (as `dagnats serve --nats-url` runs
them) against all three nodes (a comma-separated URL). RUNS chain runs (greet -> uppercase
-> reverse, the bench's worker) are started; once a quarter of them completed, the node that
leads WORKFLOW_HISTORY is killed with -9 while the rest are still starting. Then every run
must complete exactly once, as its history shows: one workflow.completed, one
step.completed per step, the expected output, no run lost. The recovery time (from the kill
until runs complete again) is printed, never asserted (bench/RESULTS.md records it).

Slow for the suite (30-60 s on two cores): marked `cluster`, run by `bin/test --cluster`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from dagnats import jetstream, names, replicas
from dagnats.bench.cluster import WORKER_FILE, Child
from dagnats.bench.workflows import CHAIN, chain_definition, chain_output
from dagnats.client import AsyncClient
from dagnats.connection import connect
from dagnats.server.supervisor import self_command
from tests.cluster.harness import NatsCluster, environ_without_nats

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

RUNS = 1000
KILL_AFTER = RUNS // 4  # completed runs before the kill
STEPS = ("greet", "uppercase", "reverse")
IN_FLIGHT = 64  # concurrent starts, waits and reads of the test's client
END_DEADLINE_S = 300.0
#: Tasks a worker could not report (its node died) are redelivered after this lease.
LEASE_S = "5"


class Completions:
    """When each run's workflow.completed was heard on the live republish (core NATS)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    async def on_message(self, msg: Msg) -> None:
        """Note a run's completion (republished events: the stored event's JSON)."""
        if b'"workflow.completed"' in msg.data:
            self.at.setdefault(names.parse_live_subject(msg.subject).run_id, time.monotonic())

    def recovery(self, killed_at: float) -> tuple[float, float]:
        """(the recovery: seconds from the kill until completions resumed after the longest
        pause from the kill on, that pause). Runs already committed when the node died may
        still complete during the first milliseconds; the pause is the outage."""
        after = sorted(t for t in self.at.values() if t > killed_at)
        if not after:
            return float("nan"), float("nan")
        pause, resumed = max((b - a, b) for a, b in zip([killed_at, *after], after,
                                                          strict=False))
        return resumed - killed_at, pause


async def _components(cluster: NatsCluster, root: Path) -> list[Child]:
    env = {**environ_without_nats(), "DAGNATS_NATS_URL": cluster.url,
           "DAGNATS_TASK_LEASE": LEASE_S}
    specs = {"api": ["_component", "api"], "engine-1": ["_component", "engine"],
             "engine-2": ["_component", "engine"],
             "worker-1": ["worker", "run", WORKER_FILE], "worker-2": ["worker", "run", WORKER_FILE]}
    children = [Child(name, self_command(*args), env, root / f"{name}.log")
                for name, args in specs.items()]
    for child in children:  # one at a time: two cores, three servers
        await child.start()
    return children


async def _start(client: AsyncClient, n: int) -> str:
    """Start run n; its idempotency key makes a start retried through the outage harmless."""
    deadline = time.monotonic() + END_DEADLINE_S
    while True:
        try:
            return await client.start(CHAIN, f"n{n}", idempotency_key=f"cluster-{n}")
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _start_all(client: AsyncClient, numbers: range) -> dict[int, str]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(n: int) -> tuple[int, str]:
        async with gate:
            return n, await _start(client, n)

    return dict(await asyncio.gather(*(one(n) for n in numbers)))


async def _problems(client: AsyncClient, n: int, run_id: str) -> list[str]:
    """What is wrong with run n's end and history (empty: it completed exactly once)."""
    run = await client.wait(run_id, timeout=END_DEADLINE_S)
    events = await client.events(run_id)
    where = f"run {n} ({run_id})"
    problems = []
    if run.status != "completed" or run.output != chain_output(f"n{n}"):
        problems.append(f"{where} ended {run.status.value} with {run.output!r}: {run.error}")
    ends = Counter(e.type.value for e in events if e.terminal)
    if ends != Counter({"workflow.completed": 1}):
        problems.append(f"{where} has terminal events {dict(ends)}")
    done = Counter(e.step_id for e in events if e.type.value == "step.completed")
    if done != Counter(dict.fromkeys(STEPS, 1)):
        problems.append(f"{where} has step.completed {dict(done)}")
    return problems


async def _check_all(client: AsyncClient, ids: dict[int, str]) -> list[str]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(n: int, run_id: str) -> list[str]:
        async with gate:
            return await _problems(client, n, run_id)

    found = await asyncio.gather(*(one(n, run_id) for n, run_id in ids.items()))
    return [problem for problems in found for problem in problems]


async def _wait_for(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _new_leader(cluster: NatsCluster, killed_at: float) -> tuple[str, float]:
    """The history stream's new leader, and how long after the kill it was first seen."""
    leader = await cluster.stream_leader(names.HISTORY_STREAM)
    return leader, time.monotonic() - killed_at


async def _scenario(root: Path) -> None:
    async with NatsCluster(root / "nats") as cluster:
        nc = await connect(cluster.url)
        chosen = await replicas.provision(nc)
        assert chosen.count == 3, chosen
        completions = Completions()
        await nc.subscribe(names.live_filter(), cb=completions.on_message)
        children = await _components(cluster, root)
        client = await AsyncClient.connect(cluster.url, request_timeout_s=5.0)
        try:
            await client.register_workflow(chain_definition())
            first = asyncio.create_task(_start_all(client, range(RUNS // 2)))
            await _wait_for(lambda: len(completions.at) >= KILL_AFTER, END_DEADLINE_S,
                            f"{KILL_AFTER} runs to complete")
            leader = await cluster.stream_leader(names.HISTORY_STREAM)
            killed_at = time.monotonic()
            cluster.kill(leader)
            elected = asyncio.create_task(_new_leader(cluster, killed_at))
            ids = {**await first, **await _start_all(client, range(RUNS // 2, RUNS))}
            new_leader, elected_s = await elected
            problems = await _check_all(client, ids)
            assert not problems, "\n".join(problems[:20])
            ended_s = time.monotonic() - killed_at
            recovered_s, pause_s = completions.recovery(killed_at)
            for child in children:
                child.check_alive()
            print(f"\ncluster fault test: {RUNS} runs, killed {leader} (leader of "
                  f"{names.HISTORY_STREAM}) after {KILL_AFTER} completed; new leader "
                  f"{new_leader} seen {elected_s:.1f} s after the kill; runs completed "
                  f"again {recovered_s:.1f} s after the kill (no completion for "
                  f"{pause_s:.1f} s); all {RUNS} checked {ended_s:.1f} s after the kill")
            (root / "recovery.json").write_text(json.dumps(
                {"killed": leader, "new_leader": new_leader, "leader_seen_s": elected_s,
                 "recovered_s": recovered_s, "pause_s": pause_s, "all_checked_s": ended_s}))
        finally:
            await client.close()
            for child in children:
                await child.stop()
            await jetstream.close(nc)


def test_every_run_completes_once_when_the_history_leader_dies(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
