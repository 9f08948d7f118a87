"""Replicas on a real 3-node cluster: detected R3, R1 streams scaled up, doctor's report."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dagnats import jetstream, names, replicas
from dagnats.connection import connect
from dagnats.server.doctor import check_nats, expected_streams
from tests.cluster.harness import NatsCluster


async def _replicas(cluster: NatsCluster) -> dict[str, int]:
    nc = await connect(cluster.url)
    try:
        js = nc.jetstream()
        return {name: (await js.stream_info(name)).config.num_replicas or 1
                for name in expected_streams()}
    finally:
        await jetstream.close(nc)


async def _scenario(root: Path) -> None:
    async with NatsCluster(root) as cluster:
        nc = await connect(cluster.url)
        try:
            first = await replicas.provision(nc, 1)  # as an older dagnats left them
            assert first.explicit
            assert set((await _replicas(cluster)).values()) == {1}
            warned = [c for c in await check_nats(cluster.url, True) if c.status == "warn"
                      and c.name.startswith(("stream ", "bucket "))]  # not "engines"
            assert len(warned) == len(expected_streams())  # every stream and bucket
            assert all("could keep 3 copies" in c.detail for c in warned)

            chosen = await replicas.provision(nc)  # detected: scales every stream up
            assert (chosen.count, chosen.explicit) == (3, False)
            assert set((await _replicas(cluster)).values()) == {3}
            again = await replicas.provision(nc)  # idempotent
            assert again.count == 3
        finally:
            await jetstream.close(nc)
        checks = await check_nats(cluster.url, True)
        # No engine runs here, so the engines line warns; everything else must be ok.
        assert not [c for c in checks
                    if c.status in ("warn", "FAIL") and c.name != "engines"], checks
        history = next(c for c in checks if c.name == f"stream {names.HISTORY_STREAM}")
        leader = await cluster.stream_leader(names.HISTORY_STREAM)
        assert f"R3, leader {leader}" in history.detail
        assert any(c.name == "NATS cluster" for c in checks)


def test_streams_get_three_replicas_on_a_cluster(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


async def _single(nats_url: str) -> None:
    nc = await connect(nats_url)
    try:
        chosen = await replicas.provision(nc)
        assert (chosen.count, chosen.reason) == (1, "a single server")
        info = await nc.jetstream().stream_info(names.HISTORY_STREAM)
        assert info.config.num_replicas == 1
    finally:
        await jetstream.close(nc)
    checks = await check_nats(nats_url, True)
    assert not any(c.name == "NATS cluster" for c in checks)
    assert all("leader" not in c.detail for c in checks)


def test_a_single_server_stays_r1(nats_server) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(_single(nats_server.url))
