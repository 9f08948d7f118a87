"""store.snapshots against a real nats-server: compare-and-set writes that lose a race are
conflicts, and the run id listing misses no snapshot that is rewritten while it runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from dagnats import jetstream
from dagnats.connection import connect
from dagnats.dag.events import Event, EventType
from dagnats.dag.state import RunState, fold
from dagnats.dag.validate import parse_definition
from dagnats.store.snapshots import SnapshotConflict, Snapshots


def new_run() -> RunState:
    definition = parse_definition({"name": "w", "version": "1",
                                   "steps": [{"id": "a", "task": "t"}]})
    started = Event(type=EventType.WORKFLOW_STARTED, run_id=uuid.uuid4().hex,
                    timestamp=datetime.now(UTC), seq=1,
                    data={"workflow": "w", "version": "1", "input": None,
                          "definition": definition.to_json_dict()})
    run = fold([started])
    assert run is not None
    return run


@asynccontextmanager
async def provisioned(url: str) -> AsyncIterator[Snapshots]:
    """The snapshots bucket of a provisioned NATS, on a connection closed on the way out."""
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await jetstream.provision(js)
        yield await Snapshots.open(js)
    finally:
        await jetstream.close(nc)


def test_snapshot_writes_that_lose_a_race_are_conflicts(nats_server: Any) -> None:
    """Creating a snapshot that exists, or updating from an old revision: SnapshotConflict."""
    async def scenario() -> None:
        async with provisioned(nats_server.url) as snapshots:
            run = new_run()
            first = await snapshots.put(run, 0)
            second = await snapshots.put(run, first)
            assert second > first
            with pytest.raises(SnapshotConflict):
                await snapshots.put(run, 0)  # it exists already
            with pytest.raises(SnapshotConflict):
                await snapshots.put(run, first)  # someone wrote since
            stored = await snapshots.get(run.run_id)
            assert stored is not None and stored.revision == second
    asyncio.run(scenario())


def test_run_ids_list_snapshots_rewritten_meanwhile_and_deleted_ones(nats_server: Any) -> None:
    async def scenario() -> None:
        async with provisioned(nats_server.url) as snapshots:
            busy, others = new_run(), [new_run() for _ in range(20)]
            for run in others:
                await snapshots.put(run, 0)
            revision = await snapshots.put(busy, 0)
            stop = asyncio.Event()

            async def rewrite() -> None:  # as the engine does while the run moves on
                nonlocal revision
                while not stop.is_set():
                    revision = await snapshots.put(busy, revision)

            writer = asyncio.create_task(rewrite())
            try:
                for _ in range(30):
                    listed = set(await snapshots.run_ids())
                    assert busy.run_id in listed
                    assert {run.run_id for run in others} <= listed
            finally:
                stop.set()
                await writer
            await snapshots.delete(others[0].run_id)  # a cache entry gone; the run still exists
            assert others[0].run_id in await snapshots.run_ids()
            assert others[0].run_id not in {run.run_id for run in await snapshots.all()}
    asyncio.run(scenario())
