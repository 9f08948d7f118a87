"""The bench's `run start --watch` workload reports failed and overdue processes.

Against a nats-server with no dagnats API, every `run start --watch` process fails; the
report counts the exit codes and describes each failure. A deadline already passed kills
the processes rather than waiting for them. (Successful processes: tests/integration/
test_bench.py, on the bench's whole system.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from dagnats.bench.clientpath import cli_watches
from dagnats.bench.workflows import Tracker
from dagnats.connection import connect
from dagnats.jetstream import close


async def watches(url: str, processes: int, timeout_s: float) -> dict[str, Any]:
    nc = await connect(url)
    tracker = Tracker(nc)
    await tracker.start()
    try:
        return await cli_watches(url, tracker, processes, timeout_s, "t")
    finally:
        await tracker.stop()
        await close(nc)


def test_processes_that_fail_are_counted_and_described(nats_server: Any) -> None:
    report = asyncio.run(watches(nats_server.url, 2, 60.0))
    assert report["processes"] == 2 and report["failed"] == 2
    assert not report["all_exited_zero"] and report["verified"] == 0 and report["steps"] == 0
    assert "0" not in report["exit_codes"] and sum(report["exit_codes"].values()) == 2
    for failure in report["failures"]:
        assert failure["exit_code"] not in (0, None)
        assert "no dagnats API is answering" in failure["stderr"]
        assert failure["run_id"] is None and not failure["run_completed_anyway"]
    assert report["per_process"]["count"] == 2


def test_processes_past_the_deadline_are_killed(nats_server: Any) -> None:
    report = asyncio.run(watches(nats_server.url, 2, 0.0))
    assert report["exit_codes"] == {"killed": 2}
    assert report["failed"] == 2 and [f["exit_code"] for f in report["failures"]] == [None] * 2
