"""Ratios, targets and the printed table, derived from the measured figures.

Ratios (issue 5):
    throughput_ratio = steps/s / (pipelined publishes/s / messages the system sends per step)
                       1.0 would mean every step cost exactly its operations at the
                       pipelined publish rate, the physical limit of one Python client.
    latency_ratio    = p50 per-step overhead / sequential publish round trip
                       how many sequential JetStream round trips one step costs.
"""

from __future__ import annotations

from typing import Any

from dagnats.bench.stats import pct_change

TARGET_STEPS_PER_S = 2_000
TARGET_P50_MS = 3.0
TARGET_P99_MS = 15.0
TARGET_GROWTH_PCT = 10.0
TARGET_ENGINE_RSS_MB = 100.0
TARGET_HISTORY_RUNS = 100_000


def ratios(report: dict[str, Any]) -> dict[str, Any]:
    """The two ratios of the issue, with the figures they come from."""
    pipelined = report["baseline"]["pipelined_publish"]["per_s"]
    rtt_us = report["baseline"]["sequential_publish"]["rtt_us_p50"]
    burst = report["throughput"]
    ops = burst["ops"]["system_per_step"]
    bound = pipelined / ops if ops else 0.0
    overhead_us = report["latency"].get("per_step_overhead_ms", 0.0) * 1000
    result = {
        "ops_per_step": ops,
        "bound_steps_per_s": round(bound, 1),
        "throughput_ratio": round(burst["steps_per_s"] / bound, 3) if bound else None,
        "per_step_overhead_us": round(overhead_us, 1),
        "sequential_rtt_us": rtt_us,
        "latency_ratio": round(overhead_us / rtt_us, 1) if rtt_us else None,
    }
    return result | client_path_ratios(report, bound)


def client_path_ratios(report: dict[str, Any], bound: float) -> dict[str, Any]:
    """The public client's start + wait burst against the same bound, and against the burst.

    client_path_throughput_ratio = its steps/s / the throughput ratio's bound
    client_path_vs_burst         = its steps/s / the burst's (what one wait per run costs)
    """
    waits = report.get("client_path", {}).get("waits")
    if not waits:
        return {}
    burst = report["throughput"]["steps_per_s"]
    return {
        "client_path_throughput_ratio": round(waits["steps_per_s"] / bound, 3) if bound
        else None,
        "client_path_vs_burst": round(waits["steps_per_s"] / burst, 3) if burst else None,
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and whether it is met."""
    latency, burst, growth = report["latency"], report["throughput"], report["growth"]
    history = growth["seeded"]["runs"]
    note = "" if history >= TARGET_HISTORY_RUNS else f" (measured at {history:,} runs)"
    tput_change = pct_change(burst["steps_per_s"], growth["throughput"]["steps_per_s"])
    p50_change = pct_change(latency["p50_ms"], growth["latency"]["p50_ms"])
    rss = growth["engine_rss_mb"]
    cpu = growth.get("cpu_per_step_change_pct", {})
    cpu_note = {key: f" (system CPU per step {value['system']:+.1f}%)"
                if value.get("system") is not None else "" for key, value in cpu.items()}
    return [
        _target("burst throughput", f">= {TARGET_STEPS_PER_S} steps/s",
                f"{burst['steps_per_s']:.0f} steps/s", burst["steps_per_s"] >= TARGET_STEPS_PER_S),
        _target("p50 end to end", f"<= {TARGET_P50_MS} ms", f"{latency['p50_ms']:.2f} ms",
                latency["p50_ms"] <= TARGET_P50_MS),
        _target("p99 end to end", f"<= {TARGET_P99_MS} ms", f"{latency['p99_ms']:.2f} ms",
                latency["p99_ms"] <= TARGET_P99_MS),
        _target("throughput with history" + note, f"within {TARGET_GROWTH_PCT:g}%",
                (f"{tput_change:+.1f}%" if tput_change is not None else "n/a")
                + cpu_note.get("burst", ""),
                tput_change is not None and tput_change >= -TARGET_GROWTH_PCT),
        _target("p50 with history" + note, f"within {TARGET_GROWTH_PCT:g}%",
                (f"{p50_change:+.1f}%" if p50_change is not None else "n/a")
                + cpu_note.get("latency", ""),
                p50_change is not None and p50_change <= TARGET_GROWTH_PCT),
        _target("engine RSS with history" + note, f"<= {TARGET_ENGINE_RSS_MB:g} MB",
                f"{rss:.1f} MB", rss <= TARGET_ENGINE_RSS_MB),
    ]


def _target(name: str, goal: str, value: str, met: bool) -> dict[str, Any]:
    return {"target": name, "goal": goal, "value": value, "met": bool(met)}


def render(report: dict[str, Any]) -> str:
    """The human-readable table of a report."""
    lines: list[str] = []
    meta = report["meta"]
    lines.append(f"dagnats bench ({meta['mode']}) - {meta['duration_s']:.0f} s, "
                 f"{meta['host']['cpus']} CPUs, load before {meta['host']['load_before']}, "
                 f"other processes {meta['host']['others_cpu_pct']}% CPU")
    lines += _section("Baseline (raw JetStream from one Python process)", _baseline_rows(report))
    lines += _section("Workloads", _workload_rows(report))
    lines += _section("Operations per step", _ops_rows(report))
    lines += _section("Ratios", _ratio_rows(report))
    lines += _section("Cost", _cost_rows(report))
    lines += _section("Targets", [(f"[{'met' if t['met'] else 'NOT met'}] {t['target']}",
                                   f"{t['value']} (goal {t['goal']})")
                                  for t in report["targets"]])
    return "\n".join(lines)


def _section(title: str, rows: list[tuple[str, str]]) -> list[str]:
    width = max((len(label) for label, _ in rows), default=0)
    return ["", title, *(f"  {label.ljust(width)}  {value}" for label, value in rows)]


def _baseline_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    base = report["baseline"]
    seq = base["sequential_publish"]
    return [
        ("sequential publish", f"{seq['per_s']:,}/s, round trip p50 {seq['rtt_us_p50']} us"),
        ("pipelined publish", f"{base['pipelined_publish']['per_s']:,}/s "
                              f"({base['pipelined_publish']['in_flight']} in flight)"),
        ("fetch + ack", f"{base['fetch_ack']['per_s']:,}/s (batch {base['fetch_ack']['batch']})"),
        ("KV compare-and-set", f"{base['kv_cas']['per_s']:,}/s sequential"),
        *((f"cost: {kind}", f"{c['wall_us']} us wall, CPU {c['client_cpu_us']} us client"
                            f" + {c['server_cpu_us']} us server")
          for kind, c in base.get("op_costs", {}).items()),
    ]


def _workload_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    lat, burst, fan, growth = (report["latency"], report["throughput"], report["fanout"],
                               report["growth"])
    glat, gburst = growth["latency"], growth["throughput"]
    return [
        (f"latency, {lat['runs']} sequential runs", _lat(lat)),
        ("  per-step overhead (p50 / 3)", f"{lat['per_step_overhead_ms']:.2f} ms"),
        (f"burst of {burst['runs']} runs", _burst(burst)),
        (f"fan-out 1 -> {fan['width']} -> 1, x{fan['repeats']}",
         f"p50 {fan['per_fanout'].get('p50_ms', 0):.1f} ms per fan-out, "
         f"{fan['steps_per_s']:.0f} steps/s, wrong {fan['wrong_outputs']}"),
        *_client_path_rows(report),
        (f"history seeded: {growth['seeded']['runs']:,} runs",
         f"{growth['seeded']['events']:,} events in {growth['seeded']['seconds']} s"),
        (f"  latency, {glat['runs']} runs", _lat(glat)),
        (f"  burst of {gburst['runs']} runs", _burst(gburst)),
    ]


def _client_path_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    path = report.get("client_path")
    if not path:
        return []
    waits, watches = path["waits"], path["watches"]
    per_run, per_proc = waits["per_run"], watches["per_process"]
    errors = _pairs(waits["errors"]) or "none"
    codes = ", ".join(f"{code} x{n}" for code, n in watches["exit_codes"].items())
    return [
        (f"client start + wait, {waits['runs']} at once",
         f"{waits['runs_per_s']:.0f} runs/s, {waits['steps_per_s']:.0f} steps/s in "
         f"{waits['seconds']} s, per run p50 {per_run.get('p50_ms', 0):.1f} ms, "
         f"p99 {per_run.get('p99_ms', 0):.1f} ms, verified {waits['verified']}/{waits['runs']}"
         f", errors {errors}"),
        (f"run start --watch, {watches['processes']} processes",
         f"all exited in {watches['seconds']} s, per process p50 "
         f"{per_proc.get('p50_ms', 0):.0f} ms, p99 {per_proc.get('p99_ms', 0):.0f} ms, "
         f"exit codes {codes}, verified {watches['verified']}/{watches['processes']}, "
         f"{watches['cpu_s_per_process']} CPU s each"),
        *((f"  failed: {f['name']} (exit {f['exit_code']})",
           (f["stderr"].strip().splitlines() or ["(no stderr)"])[-1]
           + ("; its run completed anyway" if f.get("run_completed_anyway") else ""))
          for f in watches["failures"]),
    ]


def _lat(lat: dict[str, Any]) -> str:
    return (f"p50 {lat['p50_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms"
            f", max {lat['max_ms']:.1f} ms, wrong {lat['wrong_outputs']}")


def _burst(burst: dict[str, Any]) -> str:
    return (f"{burst['runs_per_s']:.0f} runs/s, {burst['steps_per_s']:.0f} steps/s in "
            f"{burst['seconds']} s, verified {burst['verified']}/{burst['runs']}")


def _ops_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    ops = report["ops"]
    rows = [("burst, sent to the server by component",
             _pairs(report["throughput"]["ops"]["per_step_by_component"]))]
    for label, key in (("sequential runs", "tap_sequential"), ("small burst", "tap_burst")):
        tap = ops[key]
        rows.append((f"{label}: JetStream ops", f"{tap['jetstream_ops_per_step']} per step"))
        rows.append((f"{label}: by kind", _pairs(tap["per_step_by_kind"])))
    return rows


def _ratio_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    r = report["ratios"]
    return [
        ("throughput ratio", f"{r['throughput_ratio']} (bound {r['bound_steps_per_s']:.0f} "
                             f"steps/s at {r['ops_per_step']} ops per step)"),
        ("latency ratio", f"{r['latency_ratio']} round trips per step "
                          f"({r['per_step_overhead_us']:.0f} us / {r['sequential_rtt_us']} us)"),
        *([("client path ratio", f"{r['client_path_throughput_ratio']} (start + wait; "
                                 f"{r['client_path_vs_burst']} of the burst's steps/s)")]
          if "client_path_throughput_ratio" in r else []),
    ]


def _cost_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    cost = report["cost"]
    return [
        ("peak RSS (MiB)", _pairs(cost["peak_rss_mb"])),
        ("CPU s per 1,000 steps, burst", _pairs(cost["cpu_s_per_1000_steps"]["burst"])),
        ("CPU s per 1,000 steps, latency", _pairs(cost["cpu_s_per_1000_steps"]["latency"])),
        ("engine RSS after growth", f"{report['growth']['engine_rss_mb']:.1f} MiB"),
    ]


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in values.items())
