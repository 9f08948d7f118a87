"""The benchmark's pure parts: statistics, hops, operation kinds, profiles, the seed template."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from dagnats.bench import growth, hops, monitor, profiling, report
from dagnats.bench.stats import pct_change, percentile, summary_ms
from dagnats.dag.events import Event


def test_percentiles_use_the_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([], 50) == 0.0
    assert summary_ms([0.001, 0.002, 0.003])["p50_ms"] == 2.0
    assert pct_change(100.0, 90.0) == -10.0 and pct_change(0.0, 1.0) is None


def chain_events(gaps_ms: list[float]) -> list[SimpleNamespace]:
    kinds = [("workflow.started", None)]
    for step in ("greet", "uppercase", "reverse"):
        kinds += [("step.queued", step), ("step.started", step), ("step.completed", step)]
    kinds.append(("workflow.completed", None))
    t = datetime(2025, 1, 1, tzinfo=UTC)
    events = []
    for (kind, step), gap in zip(kinds, [0.0, *gaps_ms], strict=True):
        t += timedelta(milliseconds=gap)
        events.append(SimpleNamespace(type=kind, step_id=step, timestamp=t))
    return events


def test_a_run_splits_into_hops() -> None:
    split = hops.run_hops(chain_events([1.0] * 10), e2e_s=0.015)
    assert split is not None
    assert split["task_delivery"] == pytest.approx([0.001] * 3, abs=1e-6)
    assert split["engine_next_dispatch"] == pytest.approx([0.001] * 2, abs=1e-6)
    assert split["client_side"] == pytest.approx([0.005], abs=1e-6)
    summary = hops.summarize([split])
    assert summary["task_delivery"]["per_run_mean_ms"] == pytest.approx(3.0, abs=1e-3)


def test_an_unfinished_run_has_no_hops() -> None:
    assert hops.run_hops(chain_events([1.0] * 10)[:-1], e2e_s=0.01) is None


@pytest.mark.parametrize(("subject", "reply", "data", "kind"), [
    ("history.abc", "_INBOX.x", b"{}", "history publish"),
    ("history.abc", "$JS.ACK.WORKFLOW_HISTORY.engine.1.2.3.4.5", b"{}", "reply or delivery"),
    ("$JS.ACK.TASK_QUEUES.task_greet.1.2.3.4.5", "", b"+WPI", "in_progress"),
    ("$JS.ACK.TASK_QUEUES.task_greet.1.2.3.4.5", "", b"", "ack"),
    ("$KV.workflow_runs.abc", "_INBOX.y", b"{}", "snapshot write (KV)"),
    ("$JS.API.CONSUMER.MSG.NEXT.WORKFLOW_HISTORY.engine", "_INBOX.z", b"{}", "fetch request"),
    ("dagnats.api.run.start", "_INBOX.z", b"{}", "dagnats API request"),
    ("runindex.abc", "_INBOX.z", b"{}", "run index publish"),
    ("dagnats.live.abc", "", b"{}", "live republish (server)"),
])
def test_messages_are_sorted_into_kinds(subject: str, reply: str, data: bytes,
                                        kind: str) -> None:
    assert monitor.kind_of(SimpleNamespace(subject=subject, reply=reply, data=data)) == kind


def test_message_counts_split_by_component() -> None:
    summary = monitor.ops_summary({"engine": 10, "worker": 5},
                                  {"engine": 40, "worker": 11, "api": 3, "client": 1}, steps=3)
    assert summary["per_step_by_component"] == {"api": 1.0, "client": 0.33, "engine": 10.0,
                                                 "worker": 2.0}
    assert summary["system_per_step"] == 13.0


def test_a_raw_profile_is_summarized(tmp_path: Path) -> None:
    raw = tmp_path / "p.folded"
    raw.write_text(
        "main (dagnats/cli/main.py:1);handle (dagnats/engine/engine.py:5);"
        "write (asyncio/selector_events.py:9) 3\n"
        "main (dagnats/cli/main.py:1);advance (dagnats/dag/advance.py:7) 1\n")
    summary = profiling.summarize(raw)
    assert summary["samples"] == 4
    assert summary["inclusive_pct"]["handle (engine/engine.py)"] == 75.0
    assert "main (cli/main.py)" not in summary["inclusive_pct"]
    assert summary["self_by_area"]["dagnats.dag (fold, advance)"] == 25.0


def test_the_seed_template_is_a_completed_run_with_a_replaceable_id() -> None:
    events, snapshot = growth.template()
    assert len(events) == 11
    run_id = growth.seed_run_id(7)
    assert len(run_id) == 32 and int(run_id, 16) == int("5eed", 16) << 112 | 7
    decoded = [Event.decode(e.replace(growth.TEMPLATE_ID.encode(), run_id.encode()))
               for e in events]
    assert {e.run_id for e in decoded} == {run_id}
    assert json.loads(snapshot)["status"] == "completed"


def test_targets_are_judged_against_the_issue() -> None:
    measured = {
        "latency": {"p50_ms": 2.0, "p99_ms": 20.0},
        "throughput": {"steps_per_s": 2500.0},
        "growth": {"seeded": {"runs": 100_000}, "engine_rss_mb": 80.0,
                   "latency": {"p50_ms": 2.1}, "throughput": {"steps_per_s": 2000.0}},
    }
    met = {t["target"]: t["met"] for t in report.targets(measured)}
    assert met == {"burst throughput": True, "p50 end to end": True, "p99 end to end": False,
                   "throughput with history": False, "p50 with history": True,
                   "engine RSS with history": True}


def test_run_index_publishes_are_jetstream_ops_and_live_republishes_are_not() -> None:
    """The run index's publishes count as JetStream operations; the history stream's
    republish to followers is the server's own message, not an operation."""
    tap = monitor.OpTap(SimpleNamespace())  # type: ignore[arg-type]
    tap.counts.update({"history publish": 3, "run index publish": 2,
                       "live republish (server)": 8, "other": 5})
    assert tap.summary(steps=1)["jetstream_ops_per_step"] == 5
