"""Where the time of a chain run goes, from the timestamps of its history events.

Every event carries the wall-clock time its writer stamped it with (the API, the engine or
a worker, all on this machine), so a run's history splits its latency into hops:

    client -> API -> workflow.started      start_request (part of client_side)
    workflow.started -> first step.queued  engine_first_dispatch
    step.queued -> step.started            task_delivery (the step.queued event is the task:
                                           its delivery to a worker; a quick step's start
                                           is in its step.completed)
    step.started -> step.completed         handler_and_report
    step.completed -> next step.queued     engine_next_dispatch
    last step.completed -> workflow.completed   engine_complete
    the rest of the end-to-end time         client_side (start request, wait's reads)
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dagnats.bench.stats import percentile


def run_hops(events: Sequence[Any], e2e_s: float) -> dict[str, list[float]] | None:
    """The hops of one chain run in seconds (steps' hops as lists); None if incomplete."""
    stamps: dict[tuple[str, str | None], float] = {}
    order: list[str] = []
    for event in events:
        key = (event.type, event.step_id)
        stamps.setdefault(key, event.timestamp.timestamp())
        began = (getattr(event, "data", None) or {}).get("started_at")
        if event.type == "step.completed" and began:  # a quick step has no step.started
            stamps.setdefault(("step.started", event.step_id),
                              datetime.fromisoformat(began).timestamp())
        if event.type == "step.queued" and event.step_id not in order:
            order.append(event.step_id)
    started = stamps.get(("workflow.started", None))
    completed = stamps.get(("workflow.completed", None))
    if started is None or completed is None or not order:
        return None
    try:
        hops: dict[str, list[float]] = {
            "engine_first_dispatch": [stamps[("step.queued", order[0])] - started],
            "task_delivery": [stamps[("step.started", s)] - stamps[("step.queued", s)]
                              for s in order],
            "handler_and_report": [stamps[("step.completed", s)] - stamps[("step.started", s)]
                                   for s in order],
            "engine_next_dispatch": [stamps[("step.queued", b)] - stamps[("step.completed", a)]
                                     for a, b in itertools.pairwise(order)],
            "engine_complete": [completed - stamps[("step.completed", order[-1])]],
            "client_side": [e2e_s - (completed - started)],
        }
    except KeyError:
        return None
    return hops


def summarize(per_run: Sequence[dict[str, list[float]]]) -> dict[str, Any]:
    """p50, p99, max and mean of each hop in ms over many runs, and of its sum per run."""
    if not per_run:
        return {}
    out: dict[str, Any] = {}
    for hop in per_run[0]:
        values = [v * 1000 for run in per_run for v in run[hop]]
        per_run_total = [sum(run[hop]) * 1000 for run in per_run]
        out[hop] = {"p50_ms": round(percentile(values, 50), 3),
                    "p99_ms": round(percentile(values, 99), 3),
                    "max_ms": round(max(values), 3),
                    "mean_ms": round(statistics.fmean(values), 3),
                    "per_run_mean_ms": round(statistics.fmean(per_run_total), 3),
                    "per_run_p50_ms": round(percentile(per_run_total, 50), 3)}
    return out
