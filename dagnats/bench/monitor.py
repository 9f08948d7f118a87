"""Counting the NATS operations dagnats makes: the server's /connz, and a wiretap by kind.

Two instruments, both exact counts rather than estimates:

- `message_counts` reads the server's /connz before and after a workload: `in_msgs` of a
  connection is every message that client sent the server (JetStream publishes, KV writes,
  API requests such as fetch or direct get, acks, and core replies). Connections are
  named, so the count splits by component at no cost to the workload.
- `OpTap` subscribes to `>` and sorts every client-sent message by subject into kinds
  (history publish, task publish, snapshot write, fetch request, ack, ...). It doubles the
  server's deliveries, so it runs only in its own, smaller passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from dagnats import names

#: Connection names (dagnats.connection) -> the component they belong to.
COMPONENT_PREFIXES = (
    ("dagnats-engine", "engine"), ("dagnats-api", "api"), ("dagnats-worker", "worker"),
    ("dagnats-client", "client"), ("dagnats-bench", "bench"),
)
#: Components whose messages are the system's own work (the bench client's are not).
SYSTEM_COMPONENTS = ("engine", "worker", "api")

#: Subject prefix -> kind, first match wins. `_INBOX.` carries replies and deliveries.
KINDS = (
    (names.prefix(names.HISTORY_PREFIX), "history publish"),
    (names.prefix(names.PRESENCE_PREFIX), "worker heartbeat"),
    (names.prefix(names.KV_PREFIX, names.RUNS_BUCKET), "snapshot write (KV)"),
    (names.prefix(names.KV_PREFIX), "other KV write"),
    (names.prefix(names.INDEX_PREFIX), "run index publish"),
    (names.prefix(names.LIVE_PREFIX), "live republish (server)"),
    (names.prefix(names.JS_API_PREFIX, "DIRECT.GET"), "direct get (KV/history read)"),
    (names.prefix(names.JS_API_PREFIX, "CONSUMER.MSG.NEXT"), "fetch request"),
    (names.prefix(names.JS_API_PREFIX, "CONSUMER.CREATE"), "consumer create"),
    (names.prefix(names.JS_API_PREFIX, "CONSUMER.DURABLE.CREATE"), "consumer create"),
    (names.prefix(names.JS_API_PREFIX, "CONSUMER.DELETE"), "consumer delete"),
    (names.prefix(names.JS_API_PREFIX, "CONSUMER.INFO"), "consumer info"),
    (names.prefix(names.JS_API_PREFIX, "STREAM.MSG.GET"), "stream msg get"),
    (names.prefix(names.JS_API_PREFIX), "other JetStream API"),
    (names.prefix(names.JS_FC_PREFIX), "flow control reply"),
    (names.prefix(names.JS_EVENT_PREFIX), "advisory (server)"),
    (names.prefix(names.API_PREFIX), "dagnats API request"),
    (names.prefix(names.INBOX_PREFIX), "reply or delivery"),
)
#: Kinds that are not a request to JetStream (excluded from "JetStream ops").
NOT_JETSTREAM = {"dagnats API request", "reply or delivery", "flow control reply",
                 "advisory (server)", "live republish (server)", "other"}
#: Acks and the consumers' deliveries (as a reply subject) start with this.
_ACK_PREFIX = names.prefix(names.JS_ACK_PREFIX)
ACK_KINDS = {b"+ACK": "ack", b"": "ack", b"+WPI": "in_progress", b"-NAK": "nak",
             b"+TERM": "term"}


async def http_json(port: int, path: str, timeout_s: float = 10.0) -> Any:
    """GET http://127.0.0.1:<port><path> and decode the JSON body."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
    _, _, body = raw.partition(b"\r\n\r\n")
    return json.loads(body)


def component_of(connection_name: str) -> str:
    """The component a connection belongs to, by its name."""
    for prefix, component in COMPONENT_PREFIXES:
        if connection_name.startswith(prefix):
            return component
    return "other"


async def message_counts(monitor_port: int) -> dict[str, int]:
    """Messages each component has sent the server so far (open connections, by name)."""
    connz = await http_json(monitor_port, "/connz?limit=10000")
    counts: Counter[str] = Counter()
    for conn in connz.get("connections") or []:
        counts[component_of(conn.get("name") or "")] += int(conn.get("in_msgs") or 0)
    return dict(counts)


async def api_requests(monitor_port: int) -> int:
    """JetStream API requests the server has answered so far (/jsz api.total)."""
    jsz = await http_json(monitor_port, "/jsz")
    return int((jsz.get("api") or {}).get("total") or 0)


def ops_summary(before: dict[str, int], after: dict[str, int], steps: int) -> dict[str, Any]:
    """Messages sent per step by each component between two `message_counts` readings."""
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    system = sum(delta.get(name, 0) for name in SYSTEM_COMPONENTS)
    per_step = {name: round(count / steps, 2) for name, count in sorted(delta.items())
                if count and steps}
    return {"steps": steps, "messages": delta, "per_step_by_component": per_step,
            "system_per_step": round(system / steps, 2) if steps else 0.0}


def kind_of(msg: Msg) -> str:
    """The kind of one message, by subject (acks by their body).

    A consumer's delivery keeps its stream subject but has a `$JS.ACK.` reply subject:
    it is the server's message to a client, not an operation.
    """
    subject = msg.subject
    if msg.reply.startswith(_ACK_PREFIX):
        return "reply or delivery"
    if subject.startswith(_ACK_PREFIX):
        return ACK_KINDS.get(bytes(msg.data), "ack (other)")
    for prefix, kind in KINDS:
        if subject.startswith(prefix):
            if kind == "history publish" and _is_task(subject):
                return "task publish"
            return kind
    return "other"


def _is_task(subject: str) -> bool:
    try:
        return names.parse_history_subject(subject).task is not None
    except ValueError:
        return False


class OpTap:
    """Counts every message published on the server, by kind, while it is open."""

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self.counts: Counter[str] = Counter()
        self._sub: Any = None

    async def __aenter__(self) -> OpTap:
        async def on_msg(msg: Msg) -> None:
            self.counts[kind_of(msg)] += 1

        self._sub = await self._nc.subscribe(">", cb=on_msg, pending_msgs_limit=-1,
                                             pending_bytes_limit=-1)
        await self._nc.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._nc.flush()
        await asyncio.sleep(0.2)  # let the last deliveries reach the callback
        await self._sub.unsubscribe()

    def summary(self, steps: int) -> dict[str, Any]:
        """Operations per step by kind, and the JetStream operations per step in total."""
        js_ops = sum(n for kind, n in self.counts.items() if kind not in NOT_JETSTREAM)
        by_kind = {kind: round(n / steps, 2) for kind, n in self.counts.most_common()
                   if kind != "reply or delivery"}
        return {"steps": steps, "jetstream_ops_per_step": round(js_ops / steps, 2),
                "per_step_by_kind": by_kind}


def _sampled(consumer: str) -> bool:
    """The engine's consumer and the tasks': their backlogs show where the work piles up."""
    return consumer.startswith((names.ENGINE_CONSUMER_PREFIX, names.TASK_CONSUMER_PREFIX))


class BacklogSampler:
    """Samples the durable consumers' backlogs (/jsz) while a workload runs.

    `num_pending` is work not yet delivered to anyone, `num_ack_pending` work delivered and
    not yet acknowledged: where the pending work piles up is the stage that limits throughput.
    """

    def __init__(self, monitor_port: int, interval_s: float = 0.2) -> None:
        self.monitor_port = monitor_port
        self.interval_s = interval_s
        self.samples: dict[str, list[tuple[int, int]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BacklogSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                jsz = await http_json(self.monitor_port, "/jsz?consumers=true")
            except (OSError, TimeoutError, ValueError):
                jsz = {}
            for account in jsz.get("account_details") or []:
                for stream in account.get("stream_detail") or []:
                    for consumer in stream.get("consumer_detail") or []:
                        name = consumer.get("name") or ""
                        if _sampled(name):
                            self.samples.setdefault(name, []).append(
                                (int(consumer.get("num_pending") or 0),
                                 int(consumer.get("num_ack_pending") or 0)))
            await asyncio.sleep(self.interval_s)

    def summary(self) -> dict[str, Any]:
        """Mean and max of each consumer's undelivered and unacknowledged messages."""
        out = {}
        for name, rows in sorted(self.samples.items()):
            if not any(p or a for p, a in rows):
                continue
            out[name] = {"pending_mean": round(sum(p for p, _ in rows) / len(rows), 1),
                         "pending_max": max(p for p, _ in rows),
                         "ack_pending_mean": round(sum(a for _, a in rows) / len(rows), 1),
                         "ack_pending_max": max(a for _, a in rows)}
        return out
