"""`dagnats workflow ...`: register, validate, list, show and delete definitions."""

from __future__ import annotations

from pathlib import Path

import click

from dagnats.cli.common import echo_json, echo_lines, json_option, nats_url_option, with_client
from dagnats.cli.render import definition_summary, workflow_lines, workflows_table
from dagnats.client import load_definition
from dagnats.dag.model import WorkflowDefinition

FILE = click.argument("file", type=click.Path(path_type=Path))


@click.group()
def workflow() -> None:
    """Register, validate, list, show and delete workflow definitions."""


def _summary_json(definition: WorkflowDefinition) -> dict[str, object]:
    return {"name": definition.name, "version": definition.version,
            "steps": len(definition.steps)}


@workflow.command()
@FILE
@click.option("--replace", is_flag=True,
              help="Replace a different definition registered under the same version.")
@nats_url_option
@json_option
def register(file: Path, replace: bool, nats_url: str | None, as_json: bool) -> None:
    """Validate the definition in FILE and register it.

    Other versions are kept, and a registered version is never changed: a different
    definition under the same "version" is refused (bump it, or pass --replace); the same
    definition again changes nothing. Runs already started keep their definition.
    """
    definition = load_definition(file)  # before connecting: a bad file needs no server
    _, outcome = with_client(nats_url, lambda client: client._register(definition,
                                                                       replace=replace))
    if as_json:
        echo_json({**_summary_json(definition), "outcome": outcome})
    elif outcome == "unchanged":
        click.echo(f"{definition.name} version {definition.version} is already registered, "
                   "unchanged")
    else:
        click.echo(f"{outcome.capitalize()} {definition_summary(definition)}")


@workflow.command()
@FILE
@json_option
def validate(file: Path, as_json: bool) -> None:
    """Check the definition in FILE without registering it (needs no server)."""
    definition = load_definition(file)
    if as_json:
        echo_json({"valid": True, **_summary_json(definition)})
    else:
        click.echo(f"Valid: {definition_summary(definition)}")


@workflow.command("list")
@nats_url_option
@json_option
def list_(nats_url: str | None, as_json: bool) -> None:
    """List registered workflows."""
    workflows = with_client(nats_url, lambda client: client.list_workflows())
    if as_json:
        echo_json([wf.model_dump(mode="json") for wf in workflows])
    else:
        echo_lines(workflows_table(workflows))


@workflow.command()
@click.argument("name")
@click.option("--version", help="A registered version (default: the latest).")
@nats_url_option
@json_option
def show(name: str, version: str | None, nats_url: str | None, as_json: bool) -> None:
    """Show a registered workflow."""
    found = with_client(nats_url, lambda client: client.get_workflow(name, version))
    if as_json:
        echo_json({"definition": found.definition.to_json_dict(), "versions": found.versions,
                   "latest": found.latest})
    else:
        echo_lines(workflow_lines(found))


@workflow.command()
@click.argument("name")
@nats_url_option
@json_option
def delete(name: str, nats_url: str | None, as_json: bool) -> None:
    """Delete a workflow and every version of it (runs in flight are not affected)."""
    removed = with_client(nats_url, lambda client: client.delete_workflow(name))
    if as_json:
        echo_json({"name": name, "versions_deleted": removed})
    else:
        click.echo(f"Deleted {name} ({removed} version{'' if removed == 1 else 's'})")
