"""Reading and following runs without JetStream consumers: batched direct gets for reads,
the history stream's republish for live events (dagnats.store.history, dagnats.store.follow).

No engine runs here: the tests write what the API and the engine would write themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import APIError

from dagnats import jetstream, names
from dagnats.client import AsyncClient, Client
from dagnats.connection import connect
from dagnats.dag.events import Event, EventType
from dagnats.dag.state import RunStatus
from dagnats.store import follow, history
from tests.integration.followers import listeners, live_event_subject, until_followed

E = EventType
TRIVIAL = {"name": "trivial", "version": "1.0",
           "steps": [{"id": "only", "task": "only", "depends_on": []}]}
#: How many runs one client waits on at once (issue 10: 1,500 used to exhaust consumers).
MANY_RUNS = 5000


@contextlib.asynccontextmanager
async def connection(url: str) -> AsyncIterator[NATS]:
    nc = await connect(url)
    try:
        yield nc
    finally:
        await jetstream.close(nc)


def event(run_id: str, type_: EventType = E.STEP_STARTED, n: int = 0, **data: Any) -> Event:
    return Event(type=type_, run_id=run_id, step_id="only" if type_.value.startswith("step")
                 else None, attempt=n, timestamp=datetime.now(UTC), data=data)


async def consumers(nc: NATS) -> int:
    """How many consumers WORKFLOW_HISTORY has."""
    info = await nc.jetstream().stream_info(names.HISTORY_STREAM)
    return int(info.state.consumer_count or 0)


async def until(check: Any, what: str, deadline_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not await check():
        assert loop.time() < deadline, f"{what} within {deadline_s}s"
        await asyncio.sleep(0.05)


# --- reads -----------------------------------------------------------------------------------

def test_a_history_read_is_complete_in_order_and_takes_no_consumer(url: str) -> None:
    async def scenario() -> None:
        async with connection(url) as nc:
            js = nc.jetstream()
            run, other = uuid.uuid4().hex, uuid.uuid4().hex
            for n in range(600):  # more than two batches, interleaved with another run
                await history.append(js, event(run, n=n), f"{run}:{n}")
                await history.append(js, event(other, n=n), f"{other}:{n}")
            await js.publish(names.history_subject(run), b"not an event")
            await history.append(js, event(run, n=600), f"{run}:600")

            found = await history.read(js, run)
            assert [e.attempt for e in found] == list(range(601))  # the junk is skipped
            assert {e.run_id for e in found} == {run}
            seqs = [e.seq for e in found]
            assert seqs == sorted(seqs)
            middle = await history.read(js, run, after_seq=seqs[100], before_seq=seqs[400])
            assert [e.seq for e in middle] == seqs[101:400]
            assert await history.read_gap(js, run, seqs[-2], seqs[-1]) == []
            assert await history.read(js, uuid.uuid4().hex) == []
            assert await history.has_after(js, run, seqs[-2])
            assert not await history.has_after(js, run, seqs[-1])
            assert await consumers(nc) == 0

    asyncio.run(scenario())


# --- following: catch-up and live ------------------------------------------------------------

async def collect(js: Any, run_id: str, count: int, after_seq: int = 0,
                  idle_check_s: float = 15.0) -> list[Event]:
    """The first `count` events a follower delivers."""
    found: list[Event] = []
    async with contextlib.aclosing(follow.follow(js, run_id, after_seq,
                                                 idle_check_s=idle_check_s)) as events:
        async for item in events:
            found.append(item)
            if len(found) == count:
                return found
    raise AssertionError("a follower never ends by itself")


@pytest.mark.parametrize("join_after", [0, 150, 299, 400])
def test_a_follower_joining_while_events_are_appended_misses_none_and_repeats_none(
        url: str, join_after: int) -> None:
    """The race between catch-up and live: the writer appends while the follower reads."""
    total = 400

    async def scenario() -> None:
        async with connection(url) as writer_nc, connection(url) as reader_nc:
            js, run = writer_nc.jetstream(), uuid.uuid4().hex
            written = asyncio.Event()
            if join_after == 0:
                written.set()

            async def write() -> None:
                for n in range(total):
                    seq = await history.append(js, event(run, n=n), f"{run}:{n}")
                    # refused publishes must never reach a follower: a duplicate, and one
                    # that expects an older last sequence
                    await history.append(js, event(run, n=-1), f"{run}:{n}")
                    if n:
                        with pytest.raises(APIError):
                            await history.append(js, event(run, n=-2), f"{run}:x{n}",
                                                 expected_last_seq=seq - 1)
                    if n + 1 == join_after:
                        written.set()
                    if n % 7 == 0:
                        await asyncio.sleep(0)

            writing = asyncio.create_task(write())
            await written.wait()
            got = await asyncio.wait_for(collect(reader_nc.jetstream(), run, total), 60)
            await writing
            assert [e.attempt for e in got] == list(range(total))
            assert [e.seq for e in got] == [e.seq for e in await history.read(js, run)]
            assert await consumers(reader_nc) == 0

    asyncio.run(scenario())


def test_a_follower_fills_a_gap_and_finds_a_lost_last_event(url: str, nats_server: Any) -> None:
    """Events stored while republish was off, as if their live messages were lost."""
    async def scenario() -> None:
        async with connection(url) as nc:
            js, run = nc.jetstream(), uuid.uuid4().hex
            config = next(c for c in jetstream.stream_configs(jetstream.Limits())
                          if c.name == names.HISTORY_STREAM)
            quiet = dataclasses.replace(config, republish=None)
            await history.append(js, event(run, n=0), f"{run}:0")
            following = asyncio.create_task(collect(js, run, 6, idle_check_s=0.3))
            try:
                await until_followed(nats_server.monitor_port, run)
                await history.append(js, event(run, n=1), f"{run}:1")
                await js.update_stream(quiet)  # 2 and 3 are stored, not republished
                await history.append(js, event(run, n=2), f"{run}:2")
                await history.append(js, event(run, n=3), f"{run}:3")
                await jetstream.ensure_stream(js, config)  # provisioning puts it back
                await history.append(js, event(run, n=4), f"{run}:4")  # shows the gap
                await js.update_stream(quiet)
                await history.append(js, event(run, n=5), f"{run}:5")  # the lost last one
                got = await asyncio.wait_for(following, 30)
            finally:
                following.cancel()
                await jetstream.ensure_stream(js, config)
            assert [e.attempt for e in got] == [0, 1, 2, 3, 4, 5]
            assert [e.seq for e in got] == [e.seq for e in await history.read(js, run)]
            live = (await js.stream_info(names.HISTORY_STREAM)).config.republish
            assert live is not None and live.dest == names.live_filter()

    asyncio.run(scenario())


# --- many followers on one connection ------------------------------------------------------

def started(run_id: str, definition: dict[str, Any]) -> Event:
    """A run's workflow.started event, as the API writes it."""
    return Event(type=E.WORKFLOW_STARTED, run_id=run_id, timestamp=datetime.now(UTC),
                 data={"workflow": definition["name"], "version": definition["version"],
                       "input": None, "definition": definition})


def cancelled(run_id: str) -> Event:
    return Event(type=E.WORKFLOW_CANCELLED, run_id=run_id, timestamp=datetime.now(UTC),
                 data={"reason": "cancelled by the test"})


def test_one_client_waits_on_5000_runs_while_another_inspects_and_cancels(url: str) -> None:
    """Issue 10: 1,500 waits used to exhaust the stream's consumers, and everyone's status,
    events and cancel failed meanwhile. Now a wait takes no consumer at all."""
    async def scenario() -> None:
        async with connection(url) as nc, await AsyncClient.connect(url) as waiter, \
                await AsyncClient.connect(url) as other:
            js = nc.jetstream()
            definition = (await waiter.register_workflow(TRIVIAL)).to_json_dict()
            runs = [uuid.uuid4().hex for _ in range(MANY_RUNS)]
            for chunk in range(0, MANY_RUNS, 500):
                await asyncio.gather(*(
                    history.append(js, started(run, definition), names.started_msg_id(run))
                    for run in runs[chunk:chunk + 500]))
            before = len(waiter._nc._subs)  # the waiter's subscriptions (nats-py keeps them)
            waits = asyncio.gather(*(waiter.wait(run, timeout=300) for run in runs))
            try:
                async def all_followed() -> bool:
                    return len(waiter._nc._subs) >= before + MANY_RUNS

                await until(all_followed, "every wait followed its run", 240)
                assert await consumers(nc) == 0
                # meanwhile, another client inspects and cancels runs as usual
                for run in runs[:20]:
                    assert (await other.get_run(run)).status is RunStatus.RUNNING
                    assert len(await other.events(run)) == 1
                    assert (await other.cancel(run)).changed
                assert await consumers(nc) == 0
                for chunk in range(20, MANY_RUNS, 500):  # the rest, as the API would
                    await asyncio.gather(*(
                        history.append(js, cancelled(run), names.run_event_msg_id(
                            run, "cancelled", 0)) for run in runs[chunk:chunk + 500]))
                ended = await asyncio.wait_for(waits, 300)
            finally:
                waits.cancel()
            assert [run.run_id for run in ended] == runs
            assert {run.status for run in ended} == {RunStatus.CANCELLED}
            assert await consumers(nc) == 0

            async def all_let_go() -> bool:
                return len(waiter._nc._subs) <= before

            await until(all_let_go, "every follower unsubscribed", 60)

    asyncio.run(scenario())


def test_a_watch_broken_off_early_leaves_nothing_behind(url: str, nats_server: Any) -> None:
    with Client.connect(url) as client:
        definition = client.register_workflow(TRIVIAL).to_json_dict()

        async def write(run_id: str) -> None:
            async with connection(url) as nc:
                await history.append(nc.jetstream(), started(run_id, definition),
                                     names.started_msg_id(run_id))

        run_id = uuid.uuid4().hex
        asyncio.run(write(run_id))
        for seen in client.watch(run_id):
            assert seen.type is E.WORKFLOW_STARTED
            break

        async def after() -> None:
            async with connection(url) as nc:
                await until(lambda: asyncio.to_thread(
                    lambda: listeners(nats_server.monitor_port, live_event_subject(run_id)) == 0),
                    "the watch unsubscribed")
                assert await consumers(nc) == 0

        asyncio.run(after())
        with pytest.raises(TimeoutError):
            client.wait(run_id, timeout=0.3)
        asyncio.run(after())


# --- starts: a retried start starts one run ------------------------------------------------

def test_the_same_request_id_starts_one_run(url: str) -> None:
    async def scenario() -> None:
        async with await AsyncClient.connect(url) as client:
            await client.register_workflow(TRIVIAL)
            first = await client._call("run.start", workflow="trivial", request_id="req-1")
            again = await client._call("run.start", workflow="trivial", request_id="req-1")
            other = await client._call("run.start", workflow="trivial", request_id="req-2")
            assert first["run_id"] == again["run_id"] != other["run_id"]
            assert "idempotency_key" not in (await client.events(first["run_id"]))[0].data

    asyncio.run(scenario())
