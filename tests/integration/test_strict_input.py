"""Strict input through the API and the client: every bad value gets one clear error and the
API always replies; JSON arguments of any size through `@FILE` and `-`."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dagnats import names
from dagnats.cli.main import cli
from dagnats.client import Client
from dagnats.connection import connect
from dagnats.errors import InvalidDefinition, InvalidInput
from dagnats.limits import JSON_MAX_DEPTH


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[Client]:
    with Client.connect(url) as connected:
        connected.register_workflow({"name": "strict", "version": "1",
                                     "steps": [{"id": "a", "task": "t"}]})
        yield connected


def dagnats(url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False,
                              env={"DAGNATS_NATS_URL": url})


def raw_request(url: str, op: str, body: bytes) -> dict[str, Any]:
    """What the API answers to a raw request (what any NATS client could send)."""
    async def ask() -> dict[str, Any]:
        nc = await connect(url)
        try:
            reply = await nc.request(names.api_subject(op), body, timeout=10)
        finally:
            await nc.close()
        return dict(json.loads(reply.data))

    return asyncio.run(ask())


@pytest.mark.parametrize("depth", [JSON_MAX_DEPTH + 1, 999, 5000])
def test_the_api_replies_to_deeply_nested_requests(url: str, client: Client, depth: int
                                                  ) -> None:
    nested = "[" * depth + "]" * depth
    body = f'{{"workflow": "strict", "input": {nested}}}'.encode()
    reply = raw_request(url, "run.start", body)
    assert reply["ok"] is False
    assert reply["error"]["type"] == "InvalidInput"
    assert f"deeper than {JSON_MAX_DEPTH}" in reply["error"]["message"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", '"\\ud800"'])
def test_the_api_refuses_what_json_cannot_hold(url: str, client: Client, value: str) -> None:
    reply = raw_request(url, "run.start", f'{{"workflow": "strict", "input": {value}}}'.encode())
    assert reply["ok"] is False and reply["error"]["type"] == "InvalidInput", reply


def test_the_client_refuses_non_finite_numbers_and_lone_surrogates(client: Client) -> None:
    deep: Any = 1
    for _ in range(JSON_MAX_DEPTH + 1):
        deep = {"a": deep}
    for value in (math.nan, [math.inf], {"x": -math.inf}, "\ud800", deep):
        with pytest.raises(InvalidInput, match="not valid JSON"):
            client.start("strict", value)
        with pytest.raises(InvalidInput, match="not valid JSON"):
            client.publish_event("strict.event", value)
    with pytest.raises(InvalidDefinition, match="max_attempts"):
        client.register_workflow({"name": "coerced", "version": "1", "steps": [
            {"id": "a", "task": "t", "retry": {"max_attempts": "3"}}]})
    assert [run.input for run in client.list_runs("strict")] == []
    with pytest.raises(InvalidInput, match="not valid Unicode"):
        client.get_run("\udcff" * 8)


def test_the_api_refuses_coerced_definitions(url: str, client: Client) -> None:
    definition = {"name": "coerced", "version": "1", "steps": [
        {"id": "a", "task": "t", "retry": {"max_attempts": True}}]}
    reply = raw_request(url, "workflow.register",
                        json.dumps({"definition": definition}).encode())
    assert reply["ok"] is False and "max_attempts" in reply["error"]["message"], reply


def test_run_start_takes_a_large_input_from_a_file_or_standard_input(
        url: str, client: Client, tmp_path: Path) -> None:
    value = {"text": "x" * 200_000}  # over the ~128 KB one argv entry can hold
    path = tmp_path / "input.json"
    path.write_text(json.dumps(value), encoding="utf-8")
    from_file = dagnats(url, "run", "start", "strict", f"@{path}")
    assert from_file.exit_code == 0, from_file.output
    assert client.get_run(from_file.stdout.strip()).input == value
    from_stdin = dagnats(url, "run", "start", "strict", "-", stdin='{"n": 1}')
    assert from_stdin.exit_code == 0, from_stdin.output
    assert client.get_run(from_stdin.stdout.strip()).input == {"n": 1}
    run_id = from_stdin.stdout.strip()
    (tmp_path / "signal.json").write_text('{"approved": true}')
    sent = dagnats(url, "run", "signal", run_id, "go", f"@{tmp_path}/signal.json")
    assert sent.exit_code == 0, sent.output
    published = dagnats(url, "event", "publish", "strict.file", "-", stdin="[1, 2]")
    assert published.exit_code == 0, published.output
