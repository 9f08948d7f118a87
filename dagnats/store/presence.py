"""Worker presence: which workers run now, and which tasks they serve.

Each running worker publishes a heartbeat every PRESENCE_HEARTBEAT_S to
`presence.<worker-id>` in the stream WORKER_PRESENCE (one message kept per subject), with a
per-message TTL of PRESENCE_TTL_S: a worker killed with -9 vanishes by itself a TTL after
its last heartbeat; one that stops cleanly writes a short-lived "stopped" entry over its
last heartbeat, which readers skip.

Readers list the live workers with batched direct gets over `presence.>` (no consumer, so
any number of `run status` and `--watch` at once leave nothing on the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from nats.js import JetStreamContext
from pydantic import BaseModel, ConfigDict, ValidationError

from dagnats import jetstream, names
from dagnats.limits import PRESENCE_HEARTBEAT_S, PRESENCE_TTL_S
from dagnats.store import history

log = logging.getLogger("dagnats.presence")

#: The TTL of the entry a worker that stops cleanly leaves (the shortest JetStream takes).
STOPPED_TTL_S = 1


class WorkerEntry(BaseModel):
    """One live worker as its last heartbeat describes it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    host: str
    pid: int
    tasks: list[str]
    in_flight: int = 0
    concurrency: int = 0
    started_at: datetime
    heartbeat_at: datetime
    version: str = "unknown"


def new_worker_id() -> str:
    """A fresh id for one running worker (one subject token; unique per run of a worker)."""
    return uuid.uuid4().hex[:16]


def entry_for(worker_id: str, name: str, tasks: list[str], in_flight: int, concurrency: int,
              started_at: datetime) -> WorkerEntry:
    """This process's heartbeat entry, as of now."""
    return WorkerEntry(id=worker_id, name=name, host=socket.gethostname(), pid=os.getpid(),
                       tasks=sorted(tasks), in_flight=in_flight, concurrency=concurrency,
                       started_at=started_at, heartbeat_at=datetime.now(UTC),
                       version=_dagnats_version())


@functools.cache
def _dagnats_version() -> str:
    from dagnats.server.about import dagnats_version

    return dagnats_version()


async def write(js: JetStreamContext, entry: WorkerEntry, beat: int,
                ttl_s: float = PRESENCE_TTL_S) -> None:
    """Publish heartbeat number `beat` of a worker; it expires `ttl_s` later (whole
    seconds, at least 1)."""
    headers = {"Nats-Msg-Id": names.presence_msg_id(entry.id, beat),
               "Nats-TTL": f"{max(1, int(ttl_s))}s"}
    await jetstream.publisher(js).publish(names.presence_subject(entry.id),
                                          entry.model_dump_json().encode(), headers)


async def remove(js: JetStreamContext, worker_id: str, beat: int) -> None:
    """Say a worker stopped: its entry is replaced by a stopped marker that soon expires."""
    headers = {"Nats-Msg-Id": names.presence_msg_id(worker_id, beat),
               "Nats-TTL": f"{STOPPED_TTL_S}s"}
    body = json.dumps({"id": worker_id, "stopped": True}).encode()
    await jetstream.publisher(js).publish(names.presence_subject(worker_id), body, headers)


async def heartbeat(js: JetStreamContext, entry: Callable[[], WorkerEntry],
                    stop: asyncio.Event, interval_s: float = PRESENCE_HEARTBEAT_S) -> None:
    """Publish `entry()` every `interval_s` until `stop` is set, then remove it.

    A failed heartbeat (NATS away) is logged, never fatal: the worker goes on, and the
    next heartbeat announces it again.
    """
    beat = 0
    worker_id = entry().id
    failing = False
    while not stop.is_set():
        beat += 1
        try:
            await write(js, entry(), beat)
            if failing:
                log.info("worker %s: heartbeats go through again", worker_id)
            failing = False
        except Exception as exc:  # whatever it was, the worker goes on
            # once per outage, not every heartbeat (a server with no presence stream yet)
            log.log(logging.DEBUG if failing else logging.WARNING,
                    "worker %s: presence heartbeat failed (%s); trying again every %gs",
                    worker_id, type(exc).__name__, interval_s)
            failing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
    try:
        await remove(js, worker_id, beat + 1)
    except Exception as exc:  # the entry expires by itself
        log.info("worker %s: could not remove its presence entry (%s); it expires in %gs",
                 worker_id, type(exc).__name__, PRESENCE_TTL_S)


async def live_workers(js: JetStreamContext) -> list[WorkerEntry]:
    """Every live worker (its latest heartbeat not expired), by name then id.

    Raises nats.errors.NoRespondersError when WORKER_PRESENCE does not exist (a server no
    dagnats serve or engine of this version provisioned), TimeoutError when it does not
    answer.
    """
    found = [entry for _, data in await history.direct_all(
        js, names.PRESENCE_STREAM, names.presence_filter()) if (entry := _decode(data)) is not None]
    return sorted(found, key=lambda e: (e.name, e.id))


def _decode(data: bytes) -> WorkerEntry | None:
    """A heartbeat as an entry; None for a stopped marker or anything unreadable."""
    try:
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("stopped"):
            return None
        return WorkerEntry.model_validate(body)
    except (ValueError, ValidationError):
        log.debug("skipping an unreadable presence entry: %r", data[:200])
        return None


def served_tasks(workers: list[WorkerEntry]) -> set[str]:
    """The tasks at least one of `workers` serves."""
    return {task for worker in workers for task in worker.tasks}
