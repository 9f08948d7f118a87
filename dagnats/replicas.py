"""How many replicas dagnats' streams and buckets get: asked for, or detected from the server.

    choose(requested=None, server_info)  ->  Replicas(3, "detected a cluster of 3 servers ...")

A single server stays R1. On a cluster of three or more servers every stream is R3 (each
message on three servers: any one may die); `--replicas N` (env DAGNATS_REPLICAS) overrides
the detection. The cluster's size is read from the INFO the server sends on connect: its
`cluster` name and `connect_urls` (every server's client URL; empty when the cluster is
configured with `no_advertise`, then pass --replicas).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS

from dagnats import jetstream

#: The environment variable that carries `--replicas` to serve's children.
REPLICAS_ENV = "DAGNATS_REPLICAS"
#: What a detected cluster of at least this many servers gets.
CLUSTER_REPLICAS = 3

log = logging.getLogger("dagnats.replicas")


@dataclass(frozen=True)
class Replicas:
    """The replica count chosen, and why (for the log line)."""

    count: int
    reason: str
    explicit: bool = False

    def limits(self) -> jetstream.Limits:
        """Provisioning limits with this count (an explicit one may scale streams down)."""
        return jetstream.Limits(replicas=self.count, scale_down=self.explicit)


def cluster_size(server_info: Mapping[str, Any]) -> int:
    """How many servers the connected server says its cluster has (1: not clustered)."""
    if not server_info.get("cluster"):
        return 1
    urls = set(server_info.get("connect_urls") or [])
    return max(1, len(urls))


def choose(requested: int | None, server_info: Mapping[str, Any]) -> Replicas:
    """`requested` if given, else 3 on a cluster of 3 or more servers, else 1."""
    if requested is not None:
        return Replicas(requested, f"asked for (--replicas {requested})", explicit=True)
    size = cluster_size(server_info)
    name = server_info.get("cluster")
    if size >= CLUSTER_REPLICAS:
        return Replicas(CLUSTER_REPLICAS, f"detected cluster {name} of {size} servers")
    if size > 1:
        return Replicas(1, f"cluster {name} reports {size} servers, fewer than "
                        f"{CLUSTER_REPLICAS}")
    if name:  # a leaf node names a cluster of its own; so may a cluster hiding its servers
        return Replicas(1, f"a single server (cluster {name} lists no other server; pass "
                        "--replicas if it hides them with no_advertise)")
    return Replicas(1, "a single server")


async def provision(nc: NATS, requested: int | None = None) -> Replicas:
    """Provision every stream and bucket with the chosen replicas; log which and why."""
    chosen = choose(requested, nc._server_info)
    log.info("streams and buckets with %d replica(s): %s", chosen.count, chosen.reason)
    await jetstream.provision(nc.jetstream(), chosen.limits())
    return chosen
