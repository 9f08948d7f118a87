"""Connecting to NATS the way every dagnats process should: reconnect forever, log one line."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NATS

from dagnats.errors import ServerUnavailable

log = logging.getLogger("dagnats.connection")

DEFAULT_URL = "nats://127.0.0.1:4222"


def resolve_url(url: str | None = None) -> str:
    """The NATS URL to use: the one given, else DAGNATS_NATS_URL, else the local default."""
    return url or os.environ.get("DAGNATS_NATS_URL") or DEFAULT_URL


async def connect(
    url: str | None = None,
    *,
    name: str = "dagnats",
    long_lived: bool = False,
    on_closed: Callable[[], Awaitable[None]] | None = None,
    connect_timeout_s: float = 2.0,
) -> NATS:
    """Connect to NATS, raising ServerUnavailable (one clear line) when it cannot be reached.

    Long-lived processes (engine, API, workers) reconnect forever; `on_closed` runs if the
    connection is closed for good, so a supervised process can exit and be restarted.
    """
    url = resolve_url(url)

    async def error_cb(exc: Exception) -> None:
        # Long-lived processes log each problem as one line; short-lived callers (the CLI)
        # get one ServerUnavailable instead.
        log.log(logging.WARNING if long_lived else logging.DEBUG, "nats: %s",
                exc or type(exc).__name__)

    async def closed_cb() -> None:
        if on_closed is not None:
            await on_closed()

    try:
        # A bounded first connection (nats-py would retry a first connect forever when
        # reconnects are unlimited); unlimited reconnects are switched on once connected.
        nc = await nats.connect(
            url,
            name=name,
            connect_timeout=connect_timeout_s,
            allow_reconnect=long_lived,
            max_reconnect_attempts=2 if long_lived else 1,  # 0 would mean "forever" here
            reconnect_time_wait=0.5 if long_lived else 0.1,
            error_cb=error_cb,
            closed_cb=closed_cb,
        )
    except Exception as exc:  # nats-py raises several unrelated types for "cannot connect"
        raise ServerUnavailable(
            f"cannot reach NATS at {url} ({exc or type(exc).__name__}); "
            "start it with `dagnats serve`, or pass --nats-url"
        ) from exc
    if long_lived:
        nc.options["max_reconnect_attempts"] = -1
    return nc
