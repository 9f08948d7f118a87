"""`serve --leafnode-remote`: the embedded nats-server joins a hub as a leaf node; core NATS
crosses, JetStream (dagnats' streams and runs) stays the leaf's own."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from nats.js.errors import NotFoundError

from dagnats import jetstream, names, replicas
from dagnats.connection import connect
from dagnats.errors import InvalidInput
from dagnats.server.binary import find_nats_server
from dagnats.server.leaf import check_remote, jetstream_domain
from dagnats.server.nats_process import NatsServer
from tests.cluster.harness import NatsCluster

CROSS_TIMEOUT_S = 20.0


async def _core_message_crosses(hub_url: str, leaf_url: str) -> None:
    """A message published on the hub reaches a subscriber on the leaf (once the leaf
    connection is up and has told the hub of the interest)."""
    leaf_nc, hub_nc = await connect(leaf_url), await connect(hub_url)
    try:
        sub = await leaf_nc.subscribe("leaf-test.hello")
        await leaf_nc.flush()
        deadline = time.monotonic() + CROSS_TIMEOUT_S
        while True:
            await hub_nc.publish("leaf-test.hello", b"hi")
            with contextlib.suppress(Exception):
                msg = await sub.next_msg(timeout=0.2)
                assert msg.data == b"hi"
                return
            assert time.monotonic() < deadline, "no message crossed the leaf connection"
    finally:
        await leaf_nc.close()
        await hub_nc.close()


async def _scenario(root: Path) -> None:
    async with NatsCluster(root / "hub", leafnodes=True) as hub:
        leaf = NatsServer(find_nats_server(), root / "leaf", root / "leaf.log", port=0,
                          leafnode_remote=hub.leaf_url)
        async with leaf:
            nc = await connect(leaf.url)
            try:
                chosen = await replicas.provision(nc)  # the leaf is one server: R1
                assert chosen.count == 1, chosen
            finally:
                await jetstream.close(nc)
            await _core_message_crosses(hub.url, leaf.url)
            hub_nc = await connect(hub.url)
            try:  # the leaf's streams are its own, not the hub's
                with pytest.raises(NotFoundError):
                    await hub_nc.jetstream().stream_info(names.HISTORY_STREAM)
            finally:
                await hub_nc.close()
        assert "domain: dagnats-" in leaf.config_path.read_text()


def test_a_serve_nats_server_joins_a_hub_as_a_leaf_node(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


def test_leaf_remote_urls_and_domains() -> None:
    assert check_remote(" nats-leaf://hub:7422 ") == "nats-leaf://hub:7422"
    for bad in ("hub:7422", "http://hub:7422", "nats-leaf://"):
        with pytest.raises(InvalidInput, match="not a leaf node URL"):
            check_remote(bad)
    assert jetstream_domain("my.laptop.local") == "dagnats-my"
    assert jetstream_domain("Ana's MacBook") == "dagnats-Ana-s-MacBook"
    assert jetstream_domain("...") == "dagnats-leaf"
