"""`dagnats doctor`'s checks against a real nats-server: drift in a stream is named."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import nats

from dagnats import jetstream, names
from dagnats.server.doctor import check_data_dir, check_nats, check_port
from dagnats.server.procs import free_port


async def provision_then_drift(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await jetstream.provision(js)
    tasks = next(s for s in jetstream.stream_configs(jetstream.Limits())
                 if s.name == names.TIMER_STREAM)
    await js.update_stream(dataclasses.replace(tasks, duplicate_window=60.0))
    await nc.close()


def test_streams_buckets_and_clock_are_checked_and_drift_is_named(nats_server) -> None:
    asyncio.run(provision_then_drift(nats_server.url))
    checks = {c.name: c for c in asyncio.run(check_nats(nats_server.url, required=True))}
    assert checks["JetStream"].status == "ok"
    drifted = checks[f"stream {names.TIMER_STREAM}"]
    assert drifted.status == "FAIL"
    assert "duplicate_window is 60.0, expected 600.0" in drifted.detail
    assert checks[f"stream {names.HISTORY_STREAM}"].status == "ok"
    assert checks[f"bucket {names.RUNS_BUCKET}"].status == "ok"
    assert checks["clock"].status == "ok"


def test_port_and_data_dir(tmp_path: Path, nats_server) -> None:
    assert check_port(free_port(), None).status == "ok"
    taken = check_port(nats_server.port, None)
    assert taken.status == "FAIL" and "--nats-port" in taken.detail
    assert check_data_dir(tmp_path / "new").detail.endswith("(writable; no store yet)")
    (tmp_path / "file").write_text("")
    assert check_data_dir(tmp_path / "file" / "x").status == "FAIL"


def test_jetstream_storage_and_disk_are_reported(nats_server, tmp_path: Path) -> None:
    from dagnats.server.doctor import check_disk

    asyncio.run(provision_then_drift(nats_server.url))
    checks = {c.name: c for c in asyncio.run(check_nats(nats_server.url, required=True))}
    storage = checks["JetStream storage"]
    assert storage.status == "ok" and "stored" in storage.detail and "streams" in storage.detail
    assert check_disk(tmp_path, serving=False).status == "ok"
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "nats.log").write_text(
        "[1] [INF] Server is ready\n[1] [ERR] JetStream failed to store a msg on stream "
        "'$G > WORKFLOW_HISTORY': write x/1.blk: no space left on device\n")
    full = check_disk(tmp_path, serving=True)
    assert full.status == "FAIL" and "is full" in full.detail and str(tmp_path) in full.detail
    (logs / "nats.log").write_text((logs / "nats.log").read_text() + "[2] Server is ready\n")
    assert check_disk(tmp_path, serving=True).status == "ok"  # restarted since: recovered
