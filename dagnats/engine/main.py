"""The engine process: connect, provision, consume until SIGTERM/SIGINT or the connection ends."""

from __future__ import annotations

import asyncio
import logging
import signal

from dagnats import jetstream, names
from dagnats.connection import connect
from dagnats.engine.engine import Engine
from dagnats.errors import DagnatsError
from dagnats.program import program_name
from dagnats.replicas import provision as provision_replicated
from dagnats.store import layout
from dagnats.store.snapshots import Snapshots

log = logging.getLogger("dagnats.engine")


def _notify_ready() -> None:
    from dagnats.server.ready import notify_ready

    notify_ready()


async def run_engine(nats_url: str | None = None, stop: asyncio.Event | None = None,
                     replicas: int | None = None) -> None:
    """Run one engine until `stop` is set (or a signal arrives); it provisions first, with
    `replicas` (None: detected, dagnats.replicas)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass

    async def closed() -> None:
        stop.set()

    nc = await connect(nats_url, name="dagnats-engine", long_lived=True, on_closed=closed)
    try:
        js = nc.jetstream()
        await provision_replicated(nc, replicas)
        if await layout.needs_migration(js):
            raise DagnatsError(
                "this NATS holds a store in the layout of an older dagnats: stop every engine "
                f"and worker, run `{program_name()} migrate --nats-url URL` once, then start "
                "them again (`serve` does it by itself)")
        engine = Engine(js, await Snapshots.open(js))
        log.info("engine consuming %s", names.HISTORY_STREAM)
        await engine.run(stop, on_ready=_notify_ready)
    finally:
        await jetstream.close(nc)
