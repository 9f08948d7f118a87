"""Small statistics helpers: percentiles and summaries of millisecond samples."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(samples: Sequence[float], pct: float) -> float:
    """The `pct` percentile (nearest rank) of `samples`; 0.0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(samples_s: Sequence[float]) -> dict[str, Any]:
    """p50/p95/p99/max/mean in milliseconds of samples given in seconds."""
    ms = [s * 1000 for s in samples_s]
    if not ms:
        return {"count": 0}
    return {
        "count": len(ms), "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3), "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3), "mean_ms": round(statistics.fmean(ms), 3),
        "min_ms": round(min(ms), 3),
    }


def pct_change(before: float, after: float) -> float | None:
    """How much `after` differs from `before`, in percent of `before` (None if before is 0)."""
    if not before:
        return None
    return round((after - before) / before * 100, 1)
