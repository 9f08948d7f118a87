"""The public surface: `dagnats.__all__` is real, and Client mirrors AsyncClient."""

from __future__ import annotations

import inspect

import dagnats
from dagnats.client import AsyncClient, Client


def test_every_name_in_all_exists() -> None:
    missing = [name for name in dagnats.__all__ if not hasattr(dagnats, name)]
    assert missing == []
    assert len(set(dagnats.__all__)) == len(dagnats.__all__)


def test_the_promised_names_are_exported() -> None:
    promised = {"Client", "AsyncClient", "Run", "Event", "WorkflowNotFound", "RunNotFound",
                "InvalidDefinition", "ServerUnavailable", "DagnatsError"}
    assert promised <= set(dagnats.__all__)


def public_methods(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, callable) if not name.startswith("_")}


def test_client_has_a_blocking_twin_of_every_async_method() -> None:
    assert public_methods(AsyncClient) == public_methods(Client)
    for name in public_methods(AsyncClient) - {"connect", "close"}:  # written by hand
        twin = getattr(Client, name)
        original = getattr(AsyncClient, name)
        assert not inspect.iscoroutinefunction(twin), name
        assert inspect.signature(twin) == inspect.signature(original), name
        assert twin.__doc__ == original.__doc__, name
