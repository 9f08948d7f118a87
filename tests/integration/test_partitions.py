"""Several engines share the runs by partition leases: even shares, never one partition in
two engines, a silent engine's share taken over, and runs handled by both engines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dagnats import jetstream, names
from dagnats.connection import connect
from dagnats.dag.state import RunStatus
from dagnats.engine import partitions
from dagnats.engine.engine import Engine
from dagnats.server.doctor_presence import check_engines
from dagnats.store.snapshots import Snapshots
from tests.integration.test_engine import CHAIN, make_worker, pipeline, start_run, wait_terminal

DEADLINE_S = 20.0
FAST = {"renew_s": 0.1, "expiry_s": 0.6}


class Member:
    """A Leases of its own, recording what it pulls; `pulled` is shared to catch overlaps."""

    def __init__(self, js: Any, name: str, pulled: dict[int, str]) -> None:
        self.name, self.pulled = name, pulled
        self.mine: set[int] = set()
        self.overlaps: list[int] = []
        self.leases = partitions.Leases(js, partitions.new_engine_id(), self.gain, self.lose,
                                        **FAST)

    async def gain(self, partition: int) -> None:
        if partition in self.pulled:
            self.overlaps.append(partition)
        self.pulled[partition] = self.name
        self.mine.add(partition)

    async def lose(self, partition: int) -> None:
        self.mine.discard(partition)
        if self.pulled.get(partition) == self.name:
            del self.pulled[partition]


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)


def test_engines_share_the_partitions_and_take_over_a_silent_one(nats_server: Any) -> None:
    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        own = await connect(nats_server.url)  # the first engine's: it dies with it
        pulled: dict[int, str] = {}
        first, second = Member(own.jetstream(), "first", pulled), Member(js, "second", pulled)
        stop = asyncio.Event()
        running_first = asyncio.create_task(first.leases.run(stop))
        running_second = None
        try:
            await until(lambda: len(first.mine) == names.HISTORY_PARTITIONS, "one takes all")
            running_second = asyncio.create_task(second.leases.run(stop))
            half = names.HISTORY_PARTITIONS // 2
            await until(lambda: len(first.mine) == len(second.mine) == half, "an even share")
            assert first.mine.isdisjoint(second.mine)
            assert set(pulled) == set(range(names.HISTORY_PARTITIONS))

            # The first one loses its connection (as if killed -9): no renewal, no release.
            await own.close()
            silent_at = time.monotonic()
            await until(lambda: len(second.mine) == names.HISTORY_PARTITIONS, "the take-over")
            assert time.monotonic() - silent_at >= FAST["expiry_s"] / 2  # not at once
            await until(lambda: not first.mine, "the first one fenced itself")
            assert first.overlaps == second.overlaps == []
        finally:
            stop.set()
            await asyncio.gather(running_first, *([running_second] if running_second else []),
                                 return_exceptions=True)
        assert second.mine == set()  # given back when stopped
        await jetstream.close(nc)

    asyncio.run(scenario())


def test_two_engines_split_the_runs_and_each_run_ends_once(nats_server: Any) -> None:
    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        engines = [Engine(js, await Snapshots.open(js)) for _ in range(2)]
        handled: dict[str, int] = {}
        for engine in engines:
            handle = engine.handle

            async def counting(events: list[Any], engine: Engine = engine,
                               handle: Any = handle) -> None:
                handled[engine.engine_id] = handled.get(engine.engine_id, 0) + len(events)
                await handle(events)

            engine.handle = counting  # type: ignore[method-assign]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(e.run(stop)) for e in engines]
        tasks.append(asyncio.create_task(make_worker(nats_server.url, {}).run_async(stop)))
        try:
            half = names.HISTORY_PARTITIONS // 2
            await until(lambda: all(len(e.partitions) == half for e in engines), "even shares")
            assert set(engines[0].partitions).isdisjoint(engines[1].partitions)
            run_ids = [await start_run(js, pipeline("split", CHAIN), f"n{n}")
                       for n in range(40)]
            for run_id in run_ids:
                state, events = await wait_terminal(js, run_id)
                assert state.status is RunStatus.COMPLETED
                ends = [e for e in events if e.type.value == "workflow.completed"]
                assert len(ends) == 1
            assert len(handled) == 2 and all(n > 0 for n in handled.values()), handled
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S)
            await jetstream.close(nc)

    asyncio.run(scenario())


def test_doctor_says_which_engines_hold_the_partitions(nats_server: Any) -> None:
    async def scenario() -> None:
        nc = await connect(nats_server.url)
        js = nc.jetstream()
        await jetstream.provision(js)
        await until(lambda: _no_leases(js), "leases left by earlier tests to expire")
        none = await check_engines(nc)
        assert none.status == "warn" and "no engine holds 32" in none.detail
        member = Member(js, "only", {})

        async def holds_all() -> bool:  # an engine key left by an earlier test counts as
            share = await member.leases.tick()  # live until it has been silent EXPIRY_S
            return len(share.holding) == names.HISTORY_PARTITIONS
        await until(holds_all, "one engine to hold every partition")
        held = await check_engines(nc)
        assert held.status == "ok", held.detail
        assert held.detail == "1 live, holding 32 of 32 partitions (32)"
        await member.leases.release_all()
        await jetstream.close(nc)

    asyncio.run(scenario())


async def _no_leases(js: Any) -> bool:
    return not await partitions.holders(js)
