"""Registered workflows in KV `workflow_defs`: one key per name holding every version.

Registering a new version keeps the old ones, so runs started on them are unaffected
(runs also carry their own copy of the definition in their history). A version is
immutable: registering a different definition under a registered version is refused unless
`replace` is asked for, and registering the same one again (equal once parsed) changes
nothing. Every write is a compare-and-set on the key, so of two registrations at once one
wins and the other sees it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from dagnats import jetstream, names
from dagnats.dag.model import WorkflowDefinition
from dagnats.errors import InvalidDefinition, WorkflowNotFound

#: What `Definitions.register` did.
REGISTERED, UNCHANGED, REPLACED = "registered", "unchanged", "replaced"


class RegisteredVersion(BaseModel):
    """One registered version and when it was registered."""

    definition: dict[str, Any]
    registered_at: datetime


class WorkflowRecord(BaseModel):
    """Everything stored under one workflow name."""

    name: str
    latest: str
    versions: dict[str, RegisteredVersion]

    def summary(self) -> dict[str, Any]:
        """The shape of one `workflow list --json` entry."""
        latest = self.versions[self.latest]
        return {
            "name": self.name, "latest": self.latest, "versions": list(self.versions),
            "steps": len(latest.definition["steps"]),
            "registered_at": latest.registered_at.isoformat(),
        }


class Definitions:
    """Typed access to the `workflow_defs` bucket."""

    def __init__(self, js: JetStreamContext, kv: KeyValue) -> None:
        self.js = js
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> Definitions:
        """Bind to the provisioned bucket."""
        return cls(js, await jetstream.defs_bucket(js))

    async def _read(self, name: str) -> tuple[WorkflowRecord | None, int]:
        try:
            entry = await self.kv.get(names.def_key(name))
        except KeyNotFoundError:
            return None, 0
        if entry.value is None:
            return None, 0
        return WorkflowRecord.model_validate_json(entry.value), entry.revision or 0

    async def register(self, definition: WorkflowDefinition, *, replace: bool = False) -> str:
        """Store a validated definition as its name's latest version.

        Returns REGISTERED (a new version), UNCHANGED (the same definition was registered
        under this version: nothing is written) or REPLACED (`replace`, and it differed).
        InvalidDefinition when the version holds a different definition and not `replace`.
        """
        for _ in range(20):  # compare-and-set against concurrent registrations
            record, revision = await self._read(definition.name)
            versions = dict(record.versions) if record else {}
            outcome = REGISTERED
            if definition.version in versions:
                stored = versions[definition.version].definition
                if _same(stored, definition):
                    return UNCHANGED
                if not replace:
                    raise version_conflict(definition, stored)
                outcome = REPLACED
            versions[definition.version] = RegisteredVersion(
                definition=definition.to_json_dict(), registered_at=datetime.now(timezone.utc))
            updated = WorkflowRecord(name=definition.name, latest=definition.version,
                                     versions=versions)
            value = updated.model_dump_json().encode()
            try:
                if revision:
                    await self.kv.update(names.def_key(definition.name), value, last=revision)
                else:
                    await self.kv.create(names.def_key(definition.name), value)
                return outcome
            except Exception as exc:
                if not _is_conflict(exc):
                    raise
        raise RuntimeError(f"could not register {definition.name}: too much contention")

    async def record(self, name: str) -> WorkflowRecord:
        """Everything registered under `name`; WorkflowNotFound when nothing is."""
        record, _ = await self._read(name)
        if record is None:
            raise WorkflowNotFound(
                f"no workflow named {name!r} is registered; "
                "register it with `dagnats workflow register FILE`")
        return record

    async def get(self, name: str, version: str | None = None) -> WorkflowDefinition:
        """One version of a workflow (the latest when `version` is None)."""
        record = await self.record(name)
        chosen = version or record.latest
        if chosen not in record.versions:
            raise WorkflowNotFound(
                f"workflow {name!r} has no version {chosen!r}; "
                f"registered versions: {', '.join(record.versions)}")
        return WorkflowDefinition.from_json(record.versions[chosen].definition)

    async def all(self) -> list[WorkflowRecord]:
        """Every registered workflow, by name."""
        keys = sorted(await jetstream.bucket_keys(self.js, names.DEFS_BUCKET))
        read = await asyncio.gather(*(self._read(key) for key in keys))  # not one by one
        return [record for record, _ in read if record is not None]

    async def delete(self, name: str) -> int:
        """Remove a workflow and all its versions; returns how many versions were removed."""
        record = await self.record(name)
        await self.kv.purge(names.def_key(name))
        return len(record.versions)


def _same(stored: dict[str, Any], definition: WorkflowDefinition) -> bool:
    """Whether a stored definition equals `definition` once both are parsed (key order,
    defaults and spelling of durations do not matter)."""
    try:
        parsed = WorkflowDefinition.model_validate(stored)
        return parsed.model_dump(mode="json", exclude_none=True) == definition.to_json_dict()
    except Exception:  # a definition stored by an older dagnats that no longer parses
        return False


def version_conflict(definition: WorkflowDefinition, stored: dict[str, Any]) -> InvalidDefinition:
    """The one-line refusal of a different definition under a registered version."""
    steps_differ = stored.get("steps") != definition.to_json_dict().get("steps")
    what = "different steps" if steps_differ else "a different definition"
    return InvalidDefinition(
        f"{definition.name} version {definition.version} is already registered with {what}; "
        'bump "version" or pass --replace')


def _is_conflict(exc: Exception) -> bool:
    return isinstance(exc, KeyWrongLastSequenceError) or "wrong last sequence" in str(exc).lower()
