"""Workflow registration through the CLI, the client and the API against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dagnats import names
from dagnats.cli.main import cli
from dagnats.client import AsyncClient, Client
from dagnats.errors import InvalidDefinition, InvalidInput, WorkflowNotFound
from tests.unit.test_cli_offline import INVALID, tutorial_documents


def dagnats(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={"DAGNATS_NATS_URL": url},
                              catch_exceptions=False)


def error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    return result.stderr.strip()


def write(tmp_path: Path, document: dict[str, Any] | str, name: str = "wf.json") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def doc(name: str, version: str = "1.0", steps: int = 2) -> dict[str, Any]:
    chain = [{"id": f"s{i}", "task": "t", "depends_on": [f"s{i - 1}"] if i else []}
             for i in range(steps)]
    return {"name": name, "version": version, "steps": chain}


def registered_names(url: str) -> list[str]:
    return [item["name"] for item in json.loads(dagnats(url, "workflow", "list", "--json").stdout)]


def test_register_list_show_and_delete_keep_every_version(url: str, tmp_path: Path) -> None:
    first = dagnats(url, "workflow", "register", write(tmp_path, doc("lifecycle", "1.0", 3)))
    assert first.stdout == "Registered lifecycle (version 1.0, 3 steps)\n"
    second = dagnats(url, "workflow", "register", write(tmp_path, doc("lifecycle", "1.1", 2)))
    assert second.stdout == "Registered lifecycle (version 1.1, 2 steps)\n"

    listed = json.loads(dagnats(url, "workflow", "list", "--json").stdout)
    entry = next(item for item in listed if item["name"] == "lifecycle")
    assert (entry["latest"], entry["versions"], entry["steps"]) == ("1.1", ["1.0", "1.1"], 2)
    assert any(line.startswith("lifecycle  ") for line in
               dagnats(url, "workflow", "list").stdout.splitlines())

    shown = json.loads(dagnats(url, "workflow", "show", "lifecycle", "--json").stdout)
    assert shown["latest"] == "1.1" and shown["definition"]["version"] == "1.1"
    old = json.loads(dagnats(url, "workflow", "show", "lifecycle", "--version", "1.0",
                             "--json").stdout)
    assert len(old["definition"]["steps"]) == 3
    text = dagnats(url, "workflow", "show", "lifecycle").stdout.splitlines()
    assert text[:3] == ["Workflow: lifecycle", "Version: 1.1 (latest)", "Versions: 1.0, 1.1"]
    assert "version '9'" in error_line(
        dagnats(url, "workflow", "show", "lifecycle", "--version", "9"), 2)

    deleted = dagnats(url, "workflow", "delete", "lifecycle")
    assert deleted.stdout == "Deleted lifecycle (2 versions)\n"
    assert "lifecycle" not in registered_names(url)
    assert "no workflow named 'lifecycle'" in error_line(
        dagnats(url, "workflow", "show", "lifecycle"), 2)
    assert "no workflow named" in error_line(dagnats(url, "workflow", "delete", "lifecycle"), 2)


@pytest.mark.parametrize("name", sorted(tutorial_documents()))
def test_the_tutorial_documents_register_verbatim(url: str, tmp_path: Path, name: str) -> None:
    text = tutorial_documents()[name]  # variants of hello-pipeline 1.0: --replace
    result = dagnats(url, "workflow", "register", write(tmp_path, text), "--json", "--replace")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["name"] == json.loads(text)["name"]


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_definitions_are_refused_and_nothing_is_stored(url: str, tmp_path: Path,
                                                               case: str) -> None:
    document = {**INVALID[case][0]}
    if "name" in document:
        document["name"] = f"invalid-{case.replace(' ', '-')}"
    before = registered_names(url)
    line = error_line(dagnats(url, "workflow", "register", write(tmp_path, document)), 2)
    assert INVALID[case][1] in line
    assert registered_names(url) == before


@pytest.mark.parametrize("case", sorted(INVALID))
def test_the_api_validates_too(url: str, case: str) -> None:
    """A client that skips local validation is refused by the API all the same."""
    document = {**INVALID[case][0]}

    async def attempt() -> None:
        async with await AsyncClient.connect(url) as client:
            await client._call("workflow.register", definition=document)

    with pytest.raises(InvalidDefinition, match=re.escape(INVALID[case][1])):
        asyncio.run(attempt())


def test_malformed_json_is_refused_with_line_and_column(url: str, tmp_path: Path) -> None:
    path = write(tmp_path, '{"name": "broken",\n "version": "1",,\n "steps": []}')
    line = error_line(dagnats(url, "workflow", "register", path), 2)
    assert "malformed JSON at line 2, column 17" in line
    assert "broken" not in registered_names(url)


def test_schema_key_is_ignored(url: str, tmp_path: Path) -> None:
    document = {"$schema": "https://dagnats.dev/workflow.schema.json", **doc("with-schema")}
    assert dagnats(url, "workflow", "register", write(tmp_path, document)).exit_code == 0
    shown = json.loads(dagnats(url, "workflow", "show", "with-schema", "--json").stdout)
    assert "$schema" not in shown["definition"]


def test_the_blocking_client_manages_workflows(url: str, tmp_path: Path) -> None:
    with Client.connect(url) as client:
        registered = client.register_workflow(doc("sync-client", "2"))
        assert (registered.name, registered.version) == ("sync-client", "2")
        client.register_workflow(Path(write(tmp_path, doc("sync-client", "3", 1))))
        client.register_workflow(registered.model_copy(update={"version": "4"}))
        found = client.get_workflow("sync-client", "3")
        assert found.name == "sync-client" and found.versions == ["2", "3", "4"]
        assert found.latest == "4" and len(found.definition.steps) == 1
        info = next(w for w in client.list_workflows() if w.name == "sync-client")
        assert info.versions == ["2", "3", "4"]
        assert client.delete_workflow("sync-client") == 3
        with pytest.raises(WorkflowNotFound):
            client.get_workflow("sync-client")
        with pytest.raises(WorkflowNotFound, match="letters, digits"):
            client.get_workflow("no such name")


def test_the_api_refuses_malformed_requests(url: str) -> None:
    async def scenario() -> None:
        async with await AsyncClient.connect(url) as client:
            expected = r"bad workflow\.get request: .*nmae: Extra inputs"
            with pytest.raises(InvalidInput, match=expected):
                await client._call("workflow.get", nmae="x")
            reply = await client._nc.request(names.api_subject("workflow.list"), b"{nope",
                                             timeout=5)
            assert json.loads(reply.data)["error"]["type"] == "InvalidInput"

    asyncio.run(scenario())
