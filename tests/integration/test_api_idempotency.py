"""Idempotent starts through the API: one key, one run (for 24 h), even under concurrency.

The key is given (`--idempotency-key`) or read from the input along the workflow's
`idempotency_key` dot-path; KV `run_idempotency` maps a digest of (workflow, key) to the run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dagnats import jetstream, names
from dagnats.api import idempotency
from dagnats.api.thread import ApiThread
from dagnats.cli.main import cli
from dagnats.client import AsyncClient, Client
from dagnats.connection import connect
from dagnats.dag.validate import parse_definition
from dagnats.errors import InvalidInput
from dagnats.store import history

STEPS = [{"id": "a", "task": "echo"}]


async def with_js(url: str, work: Any) -> Any:
    nc = await connect(url)
    try:
        return await work(nc.jetstream())
    finally:
        await jetstream.close(nc)


@pytest.fixture(scope="module")
def url(nats_server: Any) -> Iterator[str]:
    asyncio.run(with_js(nats_server.url, jetstream.provision))
    with ApiThread(nats_server.url):
        yield nats_server.url


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[Client]:
    with Client.connect(url) as connected:
        yield connected


def dagnats(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"DAGNATS_NATS_URL": url},
                              catch_exceptions=False)


def started_events(url: str, run_id: str) -> int:
    return len(asyncio.run(with_js(url, lambda js: history.read(js, run_id))))


def test_ten_concurrent_starts_with_one_key_make_one_run(url: str, client: Client) -> None:
    client.register_workflow({"name": "charge", "version": "1", "steps": STEPS})

    async def race() -> list[str]:
        async with await AsyncClient.connect(url) as racer:
            return list(await asyncio.gather(*(
                racer.start("charge", {"n": n}, idempotency_key="order-7") for n in range(10))))

    run_ids = asyncio.run(race())
    assert len(set(run_ids)) == 1
    assert started_events(url, run_ids[0]) == 1

    async def stored(js: Any) -> bytes:
        kv = await js.key_value(names.IDEMPOTENCY_BUCKET)
        return (await kv.get(names.idempotency_key("charge", "order-7"))).value

    assert asyncio.run(with_js(url, stored)) == run_ids[0].encode()
    assert client.start("charge", None, idempotency_key="order-8") != run_ids[0]


def test_the_workflow_can_take_its_key_from_the_input(url: str, client: Client) -> None:
    client.register_workflow({"name": "ship", "version": "1", "steps": STEPS,
                              "idempotency_key": "order.id"})
    first = client.start("ship", {"order": {"id": 42, "items": 1}})
    assert client.start("ship", {"order": {"id": 42, "items": 2}}) == first
    assert client.get_run(first).input == {"order": {"id": 42, "items": 1}}
    cli_again = dagnats(url, "run", "start", "ship", '{"order": {"id": 42}}', "--json")
    assert json.loads(cli_again.stdout) == {"run_id": first}
    assert client.start("ship", {"order": {"id": 43}}) != first
    given = client.start("ship", {"order": {"id": 42}}, idempotency_key="override")
    assert given != first  # a given key wins over the path


def test_a_missing_key_in_the_input_is_one_line(url: str, client: Client) -> None:
    client.register_workflow({"name": "ship2", "version": "1", "steps": STEPS,
                              "idempotency_key": "order.id"})
    with pytest.raises(InvalidInput, match=r"input\.order\.id, which this input lacks"):
        client.start("ship2", {"order": {}})
    result = dagnats(url, "run", "start", "ship2", '{"order": null}')
    assert result.exit_code == 2
    assert result.stderr == ("error: workflow ship2 takes its idempotency key from "
                             "input.order.id, which this input lacks; add it, or pass "
                             "--idempotency-key\n")


def test_key_from_input_handles_every_json_value() -> None:
    definition = parse_definition({"name": "w", "version": "1", "steps": STEPS,
                                   "idempotency_key": "a.b"})
    assert idempotency.key_from_input(definition, {"a": {"b": "x"}}) == "x"
    assert idempotency.key_from_input(definition, {"a": {"b": [2, 1]}}) == "[2,1]"
    assert idempotency.key_from_input(definition, {"a": {"b": {"z": 1, "y": 2}}}) == (
        '{"y":2,"z":1}')
    for bad in (None, "a", {"a": 1}, {"a": {"c": 1}}):
        with pytest.raises(InvalidInput):
            idempotency.key_from_input(definition, bad)
