"""Authentication of the nats-server `dagnats serve` runs: its users and what each may do.

Two logins (dagnats.local_auth keeps them in the data dir):

- admin: everything. The API, the engine, `serve` itself, and the user's CLI and client.
- worker: only what `dagnats.worker` needs (worker_permissions; docs/security.md says what
  that allows and forbids).

Children get their login in DAGNATS_NATS_USER / DAGNATS_NATS_PASSWORD (login_env): the
environment of a process is readable by its own user only, unlike its command line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from dagnats import names
from dagnats.connection import PASSWORD_ENV, USER_ENV
from dagnats.local_auth import Login

#: The KV buckets a worker reads: cancellations (watched), checkpoints, signals (watched).
WORKER_READ_BUCKETS = (names.CANCEL_BUCKET, names.CHECKPOINTS_BUCKET, names.SIGNALS_BUCKET,
                       names.PROGRESS_BUCKET)
#: The KV buckets a worker writes.
WORKER_WRITE_BUCKETS = (names.CHECKPOINTS_BUCKET, names.PROGRESS_BUCKET)


def _read_stream(stream: str) -> list[str]:
    """JetStream API subjects to read `stream`: info, gets, and consumers of its own."""
    return [
        names.js_api_subject("STREAM", "INFO", stream),
        names.js_api_subject("STREAM", "MSG", "GET", stream),
        names.js_api_subject("DIRECT", "GET", stream),
        names.js_api_subject("DIRECT", "GET", stream, ">"),
        names.js_api_subject("CONSUMER", "CREATE", stream),
        names.js_api_subject("CONSUMER", "CREATE", stream, ">"),
        names.js_api_subject("CONSUMER", "DELETE", stream, ">"),
        names.js_api_subject("CONSUMER", "INFO", stream, ">"),
        names.js_api_subject("CONSUMER", "MSG", "NEXT", stream, ">"),
    ]


def worker_permissions() -> dict[str, dict[str, list[str]]]:
    """What the worker login may publish and subscribe to (nats-server `permissions`).

    Pull its tasks and ack them (consumers on WORKFLOW_HISTORY filtered on a task subject:
    it may create and update only those), publish step events to history and unreadable
    tasks to the dead letters, read the buckets it uses, write checkpoints, read and put
    payloads (the object store), publish its presence heartbeats and its handlers' progress
    and streamed chunks (core NATS, and the last progress in KV), and receive replies.
    Nothing else: no API call, no timer or event publish, no other bucket or stream, no
    consumer or stream deleted, no stream created, changed or purged.
    """
    history = names.HISTORY_STREAM
    publish = [
        names.js_api_subject("STREAM", "INFO", history),
        names.js_api_subject("CONSUMER", "CREATE", history, "*", names.history_tasks_filter("*")),
        names.js_api_subject("CONSUMER", "INFO", history, ">"),
        names.js_api_subject("CONSUMER", "MSG", "NEXT", history, ">"),
        names.js_ack_filter(history),
        names.history_events_filter(),  # outcomes; never a task (only engines dispatch)
        names.poison_filter(names.HISTORY_PREFIX),
        names.js_flow_control_filter(),
        names.presence_filter(),  # its heartbeats (dagnats.store.presence)
        names.progress_filter(), names.chunk_filter(),  # handlers' progress and streams
    ]
    for bucket in WORKER_READ_BUCKETS:
        publish += _read_stream(names.kv_stream(bucket))
    publish += [names.kv_filter(bucket) for bucket in WORKER_WRITE_BUCKETS]
    # Out-of-line inputs and outputs (the claim check): read and put, never purge or delete.
    publish += [*_read_stream(names.payloads_stream()), names.object_filter(names.PAYLOADS_BUCKET)]
    return {"publish": {"allow": publish}, "subscribe": {"allow": [names.inbox_filter()]}}


def authorization_config(logins: Mapping[str, Login]) -> str:
    """The nats-server `authorization` block admitting these logins (admin and worker)."""
    admin, worker = logins["admin"], logins["worker"]
    users = [
        {"user": admin.user, "password": admin.password},
        {"user": worker.user, "password": worker.password,
         "permissions": worker_permissions()},
    ]
    return f"authorization {{\n  users: {json.dumps(users, indent=2)}\n}}\n"


def login_env(login: Login | None) -> dict[str, str]:
    """The environment that gives a child process `login` (nothing for none)."""
    return {} if login is None else {USER_ENV: login.user, PASSWORD_ENV: login.password}
