"""store.definitions against a real nats-server: the listing shows every registered workflow
right after it is registered, while another one is being re-registered, and never a deleted one."""

from __future__ import annotations

import asyncio
from typing import Any

from dagnats import jetstream
from dagnats.connection import connect
from dagnats.dag.model import WorkflowDefinition
from dagnats.dag.validate import parse_definition
from dagnats.store.definitions import Definitions


def definition(name: str, version: str = "1") -> WorkflowDefinition:
    return parse_definition({"name": name, "version": version,
                             "steps": [{"id": "a", "task": "t"}]})


def test_listing_sees_each_registration_at_once_and_no_deleted_workflow(nats_server: Any) -> None:
    async def scenario() -> None:
        nc = await connect(nats_server.url)
        try:
            js = nc.jetstream()
            await jetstream.provision(js)
            definitions = await Definitions.open(js)
            stop = asyncio.Event()

            async def reregister() -> None:  # another user publishing new versions meanwhile
                version = 0
                while not stop.is_set():
                    version += 1
                    await definitions.register(definition("busy", str(version)))

            await definitions.register(definition("busy"))
            writer = asyncio.create_task(reregister())
            try:
                registered = {"busy"}
                for number in range(30):
                    name = f"listed-{number}"
                    await definitions.register(definition(name))
                    registered.add(name)
                    listed = {record.name for record in await definitions.all()}
                    assert registered <= listed, registered - listed
            finally:
                stop.set()
                await writer
            assert await definitions.delete("listed-0") == 1
            assert "listed-0" not in {record.name for record in await definitions.all()}
        finally:
            await jetstream.close(nc)
    asyncio.run(scenario())


def test_a_version_is_immutable_even_when_two_registrations_race(nats_server: Any) -> None:
    """Two different definitions under one new version at once: one is stored, the other is
    refused (compare-and-set), never both silently; the same one again changes nothing."""
    from dagnats.errors import InvalidDefinition
    from dagnats.store.definitions import REGISTERED, REPLACED, UNCHANGED

    def variant(task: str) -> WorkflowDefinition:
        return parse_definition({"name": "race", "version": "1",
                                 "steps": [{"id": "a", "task": task}]})

    async def scenario() -> None:
        nc = await connect(nats_server.url)
        try:
            js = nc.jetstream()
            await jetstream.provision(js)
            definitions = await Definitions.open(js)
            for round_ in range(5):
                name = f"race-{round_}"
                one, two = (parse_definition({"name": name, "version": "1", "steps": [
                    {"id": "a", "task": task}]}) for task in ("t1", "t2"))
                outcomes = await asyncio.gather(definitions.register(one),
                                                definitions.register(two),
                                                return_exceptions=True)
                assert sorted(map(type, outcomes), key=str) == sorted(
                    [str, InvalidDefinition], key=str), outcomes
                refused = next(o for o in outcomes if isinstance(o, InvalidDefinition))
                assert refused.message == (f'{name} version 1 is already registered with '
                                           'different steps; bump "version" or pass --replace')
                winner = one if outcomes[0] == REGISTERED else two
                assert await definitions.get(name, "1") == winner
            assert await definitions.register(variant("t")) == REGISTERED
            assert await definitions.register(variant("t")) == UNCHANGED
            assert await definitions.register(variant("u"), replace=True) == REPLACED
            assert (await definitions.get("race", "1")).steps[0].task == "u"  # type: ignore[union-attr]
        finally:
            await jetstream.close(nc)
    asyncio.run(scenario())
