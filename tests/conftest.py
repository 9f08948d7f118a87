"""Shared pytest fixtures of dagnats."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from dagnats.server.binary import find_nats_server
from dagnats.server.nats_process import NatsServer

# --- dagnats.server: a real nats-server per test module ------------------------------------
# `nats_server.url` is "nats://127.0.0.1:<free port>"; the store is a fresh temp dir per module.
# Streams made by one test are seen by the next in the same module: use unique names, or
# delete what you create.


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A running nats-server with JetStream on a free loopback port, stopped after the module."""
    root = tmp_path_factory.mktemp("nats")
    server = NatsServer(find_nats_server(), root / "store", root / "nats.log", port=0)
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())


# --- end of dagnats.server fixtures ---------------------------------------------------------
