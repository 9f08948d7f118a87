"""`run start` against an API that loses its first answer and then fails while the run is
followed: the start is sent again with the same request id (so it cannot start a second
run), and `--watch` has printed the run id before anything goes wrong.

A stand-in API (a plain NATS responder on the API subjects) plays those faults; that the
real API starts one run per request id is tested in test_followers.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from dagnats import jetstream, names
from dagnats._client_sync import LoopThread
from dagnats.cli.main import cli
from dagnats.client import AsyncClient
from dagnats.connection import connect


class FlakyApi:
    """Drops the answer to the first run.start; answers the next ones with one run id;
    answers run.get with an error."""

    def __init__(self, url: str) -> None:
        self.run_id = uuid.uuid4().hex
        self.starts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._loop = LoopThread()
        self._nc = self._loop.run(connect(url))
        self._loop.run(self._subscribe())

    async def _subscribe(self) -> None:
        await self._nc.subscribe(names.api_subject("run.start"), cb=self._on_start)
        await self._nc.subscribe(names.api_subject("run.get"), cb=self._on_get)

    async def _on_start(self, msg: Any) -> None:
        with self.lock:
            self.starts.append(json.loads(msg.data))
            first = len(self.starts) == 1
        if not first:  # the first answer is "lost"
            await msg.respond(json.dumps({"ok": True,
                                          "result": {"run_id": self.run_id}}).encode())

    async def _on_get(self, msg: Any) -> None:
        error = {"type": "ServerUnavailable", "message": "the API lost its NATS connection"}
        await msg.respond(json.dumps({"ok": False, "error": error}).encode())

    def close(self) -> None:
        self._loop.run(jetstream.close(self._nc))
        self._loop.stop()


@pytest.fixture(scope="module")
def flaky(nats_server: Any) -> Iterator[FlakyApi]:
    api = FlakyApi(nats_server.url)
    try:
        yield api
    finally:
        api.close()


def test_a_start_with_no_answer_is_sent_again_and_watch_names_the_run(
        nats_server: Any, flaky: FlakyApi) -> None:
    result = CliRunner().invoke(cli, ["run", "start", "hello-pipeline", '"World"', "--watch"],
                                env={"DAGNATS_NATS_URL": nats_server.url,
                                     "DAGNATS_REQUEST_TIMEOUT": "1"},
                                catch_exceptions=False)
    assert len(flaky.starts) == 2  # the second is the same request: one run at most
    first, again = flaky.starts
    assert first == again and first["request_id"]
    assert first["idempotency_key"] is None
    assert result.stdout.splitlines() == [f"Run {flaky.run_id} started"]
    assert result.exit_code == 3, result.output
    error = result.stderr.strip()
    assert len(error.splitlines()) == 1
    assert flaky.run_id in error and "the API lost its NATS connection" in error


def test_each_start_has_its_own_request_id(nats_server: Any, flaky: FlakyApi) -> None:
    async def scenario() -> None:
        async with await AsyncClient.connect(nats_server.url) as client:
            await client.start("hello-pipeline", "World")
            await client.start("hello-pipeline", "World")

    before = len(flaky.starts)
    asyncio.run(scenario())
    ids = [start["request_id"] for start in flaky.starts[before:]]
    assert len(ids) == 2 and ids[0] != ids[1]

