"""Fixtures shared by the integration tests: a provisioned server, the API, the failure stack.

Each is module-scoped, on the module's own nats-server (`nats_server` in tests/conftest.py).
A module that needs something different defines a fixture of the same name itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from dagnats import jetstream
from dagnats.api.thread import ApiThread
from dagnats.connection import connect
from tests.integration.failures_harness import Behaviour, Stack, make_worker


async def provision_at(url: str) -> None:
    """Create dagnats' streams and buckets on the server at `url`."""
    nc = await connect(url)
    try:
        await jetstream.provision(nc.jetstream())
    finally:
        await jetstream.close(nc)


@pytest.fixture(scope="module")
def url(nats_server: Any) -> Iterator[str]:
    """A provisioned nats-server with the API answering (in a thread of this process)."""
    asyncio.run(provision_at(nats_server.url))
    with ApiThread(nats_server.url):
        yield nats_server.url


@pytest.fixture(scope="module")
def behaviour() -> Behaviour:
    """What the failure stack's tasks do; tests flip it to make them fail or succeed."""
    return Behaviour()


@pytest.fixture(scope="module")
def stack(nats_server: Any, behaviour: Behaviour) -> Iterator[Stack]:
    """API, engine and a worker running against the module's nats-server."""
    running = Stack(nats_server.url, make_worker(nats_server.url, behaviour))
    try:
        yield running
    finally:
        running.close()
