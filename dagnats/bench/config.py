"""The sizes of one benchmark run: full (under 5 minutes), quick (under 60 s), smoke (seconds).

Every workload has a count and, where a slow engine could make it run long, a time budget:
a workload that reaches its budget stops early and says so (`truncated`), so the whole run
keeps its time limit whatever the figures turn out to be.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class BenchConfig:
    """How much of each workload to run; see `full()`, `quick()` and `smoke()`."""

    mode: str
    # Baseline: raw JetStream operations from this process.
    seq_publishes: int
    pipelined_publishes: int
    fetch_messages: int
    kv_cas: int
    op_cost_reps: int
    # Workloads through the whole system.
    warmup_runs: int
    latency_runs: int
    burst_runs: int
    fanout_width: int
    fanout_repeats: int
    tap_sequential_runs: int
    tap_burst_runs: int
    growth_runs: int
    growth_latency_runs: int
    growth_burst_runs: int
    # Time budgets (seconds) of the workloads whose length depends on the system's speed.
    latency_budget_s: float
    burst_timeout_s: float
    fanout_budget_s: float
    # What users run: public client start + wait at once, and `run start --watch` processes.
    client_runs: int = 2_000
    watch_processes: int = 200
    watch_timeout_s: float = 240.0
    # The system under test.
    worker_processes: int = 1
    engine_processes: int = 1
    worker_concurrency: int = 64
    worker_sync_threads: int = 8
    pipeline_window: int = 200
    fetch_batch: int = 100
    profile_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON values (part of the report)."""
        return asdict(self)

    def with_changes(self, **changes: Any) -> BenchConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)


def full() -> BenchConfig:
    """The full run: the sizes the issue names (about 2 to 4 minutes on 2 cores)."""
    return BenchConfig(
        mode="full",
        seq_publishes=3_000, pipelined_publishes=30_000, fetch_messages=30_000, kv_cas=3_000,
        op_cost_reps=1_000,
        warmup_runs=30, latency_runs=500, burst_runs=2_000, fanout_width=200,
        fanout_repeats=20, tap_sequential_runs=20, tap_burst_runs=200,
        growth_runs=100_000, growth_latency_runs=500, growth_burst_runs=2_000,
        latency_budget_s=60.0, burst_timeout_s=90.0, fanout_budget_s=45.0,
        client_runs=2_000, watch_processes=200, watch_timeout_s=240.0,
    )


def quick() -> BenchConfig:
    """The quick run: the same workloads, smaller (under 60 s)."""
    return BenchConfig(
        mode="quick",
        seq_publishes=1_000, pipelined_publishes=10_000, fetch_messages=10_000, kv_cas=1_000,
        op_cost_reps=300,
        warmup_runs=10, latency_runs=50, burst_runs=200, fanout_width=50,
        fanout_repeats=3, tap_sequential_runs=5, tap_burst_runs=30,
        growth_runs=5_000, growth_latency_runs=50, growth_burst_runs=200,
        latency_budget_s=8.0, burst_timeout_s=20.0, fanout_budget_s=6.0,
        client_runs=200, watch_processes=20, watch_timeout_s=60.0,
    )


def smoke() -> BenchConfig:
    """Tiny sizes for the test suite: every section present, numbers meaningless."""
    return BenchConfig(
        mode="smoke",
        seq_publishes=50, pipelined_publishes=400, fetch_messages=400, kv_cas=50,
        op_cost_reps=20,
        warmup_runs=2, latency_runs=5, burst_runs=10, fanout_width=4,
        fanout_repeats=1, tap_sequential_runs=2, tap_burst_runs=4,
        growth_runs=50, growth_latency_runs=3, growth_burst_runs=6,
        latency_budget_s=20.0, burst_timeout_s=30.0, fanout_budget_s=20.0,
        client_runs=6, watch_processes=3, watch_timeout_s=60.0,
        worker_concurrency=16,
    )


PRESETS = {"full": full, "quick": quick, "smoke": smoke}
