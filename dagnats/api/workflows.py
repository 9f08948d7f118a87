"""API operations on registered workflows: register, get, list, delete."""

from __future__ import annotations

from typing import Any

from dagnats.api.context import ApiContext, Request
from dagnats.dag.validate import parse_definition
from dagnats.errors import WorkflowNotFound
from dagnats.names import is_token
from dagnats.store.definitions import REGISTERED


class RegisterRequest(Request):
    """workflow.register: a definition as decoded JSON."""

    definition: dict[str, Any]
    replace: bool = False  # replace a different definition registered under this version


class GetRequest(Request):
    """workflow.get: one version of a workflow (the latest by default)."""

    name: str
    version: str | None = None


class ListRequest(Request):
    """workflow.list: no parameters."""


class DeleteRequest(Request):
    """workflow.delete: every version of a workflow."""

    name: str


def check_name(name: str) -> str:
    """Refuse a name that cannot be a workflow's (and so cannot be a KV key) up front."""
    if not is_token(name):
        raise WorkflowNotFound(
            f"no workflow named {name!r}: workflow names use only letters, digits, - and _")
    return name


async def register(ctx: ApiContext, req: RegisterRequest) -> dict[str, Any]:
    """Validate and store a definition as its name's latest version (a registered version is
    immutable: see dagnats.store.definitions)."""
    definition = parse_definition(req.definition, origin="definition")
    outcome = await ctx.definitions.register(definition, replace=req.replace)
    return {"name": definition.name, "version": definition.version,
            "steps": len(definition.steps), "created": outcome == REGISTERED,
            "outcome": outcome}


async def get(ctx: ApiContext, req: GetRequest) -> dict[str, Any]:
    """One version's definition, with every registered version and the latest."""
    record = await ctx.definitions.record(check_name(req.name))
    definition = await ctx.definitions.get(req.name, req.version)
    return {"definition": definition.to_json_dict(), "versions": list(record.versions),
            "latest": record.latest}


async def list_all(ctx: ApiContext, req: ListRequest) -> list[dict[str, Any]]:
    """A summary of every registered workflow, by name."""
    return [record.summary() for record in await ctx.definitions.all()]


async def delete(ctx: ApiContext, req: DeleteRequest) -> dict[str, Any]:
    """Remove a workflow and every version of it (runs in flight keep their own copy)."""
    removed = await ctx.definitions.delete(check_name(req.name))
    return {"name": req.name, "versions_deleted": removed}
