"""`dagnats bench --smoke --json`: the whole benchmark at tiny sizes; the report is complete.

Only the shape and the consistency of the figures are checked, never a timing or a target.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dagnats.bench.report import render

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("meta", "baseline", "latency", "throughput", "fanout", "client_path", "ops",
            "ratios", "cost", "growth", "targets")
COMPONENTS = ("nats-server", "api", "engine", "worker")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "dagnats", "bench", "--smoke", "--json"],
                          capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_report_has_every_section(report: dict[str, Any]) -> None:
    assert tuple(report) == SECTIONS
    assert report["meta"]["mode"] == "smoke"
    assert report["meta"]["host"]["cpus"] >= 1


def test_the_baseline_rates_are_positive(report: dict[str, Any]) -> None:
    base = report["baseline"]
    for name in ("sequential_publish", "pipelined_publish", "fetch_ack", "kv_cas"):
        assert base[name]["per_s"] > 0, name
    assert base["sequential_publish"]["rtt_us_p50"] > 0
    assert base["fetch_ack"]["count"] == report["meta"]["config"]["fetch_messages"]


def check_latency(lat: dict[str, Any]) -> None:
    assert lat["runs"] >= 1 and lat["wrong_outputs"] == 0
    assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["per_step_overhead_ms"] == pytest.approx(lat["p50_ms"] / 3, abs=0.01)


def check_burst(burst: dict[str, Any]) -> None:
    assert burst["verified"] == burst["completed"] == burst["runs"]
    assert not burst["timed_out"] and burst["wrong_or_missing"] == 0
    assert burst["steps"] == 3 * burst["runs"]
    assert burst["steps_per_s"] == pytest.approx(3 * burst["runs_per_s"], rel=0.01)
    assert burst["ops"]["system_per_step"] > 0
    assert set(COMPONENTS) - {"nats-server"} <= set(burst["cpu_s"])


def test_the_workloads_ran_and_every_output_was_right(report: dict[str, Any]) -> None:
    check_latency(report["latency"])
    check_burst(report["throughput"])
    fan = report["fanout"]
    assert fan["repeats"] >= 1 and fan["wrong_outputs"] == 0
    assert fan["steps_per_fanout"] == fan["width"] + 2
    assert fan["per_fanout"]["p50_ms"] > 0


def test_the_hops_split_the_latency(report: dict[str, Any]) -> None:
    hops = report["latency"]["hops"]
    assert hops["runs"] >= 1
    for hop in ("engine_first_dispatch", "task_delivery", "handler_and_report",
                "engine_next_dispatch", "engine_complete", "client_side"):
        assert hops[hop]["per_run_mean_ms"] >= 0, hop


def test_operations_are_counted_per_step(report: dict[str, Any]) -> None:
    for tap in report["ops"].values():
        assert tap["jetstream_ops_per_step"] > 0
        kinds = tap["per_step_by_kind"]
        assert kinds["history publish"] > 0 and kinds["task publish"] > 0
        # A message of no known kind is left out of the JetStream operations: give each new
        # subject a kind in dagnats.bench.monitor.KINDS, so the count stays whole.
        assert "other" not in kinds, kinds
        assert tap["sent_by_component_per_step"]["engine"] > 0
    ratios = report["ratios"]
    assert ratios["ops_per_step"] == report["throughput"]["ops"]["system_per_step"]
    assert ratios["throughput_ratio"] > 0 and ratios["latency_ratio"] > 0


def test_costs_are_measured_per_process(report: dict[str, Any]) -> None:
    cost = report["cost"]
    for name in COMPONENTS:
        assert cost["peak_rss_mb"][name] > 0, name
    assert all(v >= 0 for v in cost["cpu_s_per_1000_steps"]["burst"].values())


def test_growth_seeds_history_and_measures_again(report: dict[str, Any]) -> None:
    growth = report["growth"]
    runs = report["meta"]["config"]["growth_runs"]
    assert growth["seeded"]["runs"] == growth["seeded"]["snapshots"] == runs
    assert growth["seeded"]["events"] == 11 * runs  # a completed 3-step chain run
    check_latency(growth["latency"])
    check_burst(growth["throughput"])
    assert growth["engine_rss_mb"] > 0


def test_every_target_is_judged(report: dict[str, Any]) -> None:
    targets = report["targets"]
    assert len(targets) == 6
    assert all(isinstance(t["met"], bool) and t["value"] for t in targets)


def test_the_two_bursts_are_two_measurements(report: dict[str, Any]) -> None:
    """The burst and the burst with history ran runs of their own, one after the other."""
    first, again = report["throughput"], report["growth"]["throughput"]
    assert first["label"] != again["label"]
    ids = {first["first_run_id"], first["last_run_id"]}
    assert not ids & {again["first_run_id"], again["last_run_id"]}
    assert None not in ids
    assert again["started_at"] > first["started_at"] + first["seconds"]


def test_the_table_prints_each_burst_from_its_own_measurement(report: dict[str, Any]
                                                              ) -> None:
    """Mark each burst's figures apart: each line must show its own (never one twice)."""
    marked = copy.deepcopy(report)
    marked["throughput"].update(runs_per_s=1111.0, steps_per_s=3333.0, seconds=1.111)
    marked["growth"]["throughput"].update(runs_per_s=2222.0, steps_per_s=6666.0, seconds=2.222)
    lines = render(marked).splitlines()
    first = [line for line in lines if "1111 runs/s, 3333 steps/s in 1.111 s" in line]
    again = [line for line in lines if "2222 runs/s, 6666 steps/s in 2.222 s" in line]
    assert len(first) == 1 and len(again) == 1
    assert lines.index(first[0]) < lines.index(again[0])


def test_the_public_client_path_is_measured(report: dict[str, Any]) -> None:
    """Start + wait through the public client, every run at once: all ended and verified."""
    waits = report["client_path"]["waits"]
    runs = report["meta"]["config"]["client_runs"]
    assert waits["runs"] == waits["completed"] == waits["verified"] == runs
    assert waits["errors"] == {} and waits["first_error"] is None
    assert waits["steps"] == 3 * runs
    assert waits["steps_per_s"] == pytest.approx(3 * waits["runs_per_s"], rel=0.01)
    per_run = waits["per_run"]
    assert per_run["count"] == runs
    assert 0 < per_run["min_ms"] <= per_run["p50_ms"] <= per_run["p99_ms"] <= per_run["max_ms"]
    assert set(COMPONENTS) - {"nats-server"} <= set(waits["cpu_s"])
    ratios = report["ratios"]
    assert ratios["client_path_throughput_ratio"] > 0 and ratios["client_path_vs_burst"] > 0


def test_watch_processes_all_exit_zero_with_the_right_output(report: dict[str, Any]) -> None:
    """`run start --watch` processes at once: each exited 0 and its run's output is right."""
    watches = report["client_path"]["watches"]
    count = report["meta"]["config"]["watch_processes"]
    assert watches["processes"] == watches["verified"] == count
    assert watches["exit_codes"] == {"0": count}
    assert watches["all_exited_zero"] and watches["failed"] == 0 and watches["failures"] == []
    assert watches["steps"] == 3 * count
    per_process = watches["per_process"]
    assert per_process["count"] == count
    assert 0 < per_process["p50_ms"] <= per_process["p99_ms"] <= watches["seconds"] * 1000
    assert watches["cpu_s_per_process"] > 0


def test_the_table_has_the_client_path_lines(report: dict[str, Any]) -> None:
    text = render(report)
    assert f"client start + wait, {report['client_path']['waits']['runs']} at once" in text
    assert f"run start --watch, {report['client_path']['watches']['processes']} processes" in text
    assert "client path ratio" in text


def test_the_table_describes_a_failed_watch_process(report: dict[str, Any]) -> None:
    marked = copy.deepcopy(report)
    marked["client_path"]["watches"]["failures"] = [
        {"name": "cli7", "exit_code": 3, "run_id": None, "run_completed_anyway": True,
         "stderr": "error: the dagnats API did not answer run.start within 10s\n"}]
    text = render(marked)
    assert "failed: cli7 (exit 3)" in text
    assert "did not answer run.start within 10s; its run completed anyway" in text
