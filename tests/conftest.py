"""Shared pytest fixtures of dagnats."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

from dagnats.discovery import DATA_DIR_ENV
from dagnats.http.security import READ_TOKEN_ENV, TOKEN_ENV
from dagnats.local_auth import STATE_DIR_ENV
from dagnats.program import PROG_ENV
from dagnats.server.binary import find_nats_server
from dagnats.server.nats_process import NatsServer

# A shell starts a background job (`bin/test &`) with SIGINT ignored, and processes inherit
# that: the CLIs the tests start would then ignore the Ctrl-C some tests send them. The suite
# behaves the same however it was started.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True, scope="session")
def private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Serves started by tests register in a temporary state dir, and the default data dir is
    a temporary one, never the user's own: no test finds the developer's running serve
    (dagnats.discovery). The CLI and client processes tests start inherit both. A serve
    runs no HTTP API unless its test asks for one on a free port (`--http-port`): the
    default port would be shared by the tests running at once."""
    chosen = {STATE_DIR_ENV: str(tmp_path_factory.mktemp("state")),
              DATA_DIR_ENV: str(tmp_path_factory.mktemp("default-data")),
              HTTP_PORT_ENV: "0"}
    old = {var: os.environ.get(var) for var in [*chosen, PROG_ENV, TOKEN_ENV, READ_TOKEN_ENV]}
    os.environ.update(chosen)
    os.environ.pop(PROG_ENV, None)  # hints say `dagnats ...` in-process (dagnats.program)
    os.environ.pop(TOKEN_ENV, None)  # the developer's own tokens are not the tests'
    os.environ.pop(READ_TOKEN_ENV, None)
    yield
    for var, value in old.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


#: `serve --http-port`'s variable.
HTTP_PORT_ENV = "DAGNATS_HTTP_PORT"


# --- tests marked `cluster` run only under `bin/test --cluster` (it sets this variable) ----
CLUSTER_TESTS_ENV = "DAGNATS_CLUSTER_TESTS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the slow 3-node cluster tests unless `bin/test --cluster` runs them."""
    if os.environ.get(CLUSTER_TESTS_ENV):
        return
    skip = pytest.mark.skip(reason="a 3-node NATS cluster fault test: run `bin/test --cluster`")
    for item in items:
        if item.get_closest_marker("cluster") is not None:
            item.add_marker(skip)


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
