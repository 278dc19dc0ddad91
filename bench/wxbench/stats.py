"""Medians, spreads, ratios, percentiles and slopes (stdlib only)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def summary(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"median": None, "min": None, "max": None, "values": []}
    return {
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "values": [round(v, 3) for v in vals],
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def percentile(sorted_vals: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence (p in 0..100)."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return float(sorted_vals[k])


def cdf(sorted_vals: Sequence[float], points: int = 200) -> list[tuple[float, float]]:
    """(percentile, value) pairs for a latency plot."""
    if not sorted_vals:
        return []
    marks = [i * 100.0 / points for i in range(1, points)] + [99.5, 99.9, 99.99, 100.0]
    out: list[tuple[float, float]] = []
    for p in sorted(set(marks)):
        v = percentile(sorted_vals, p)
        if v is not None:
            out.append((p, v))
    return out


def slope_per_min(ts: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys over ts (seconds), per minute."""
    n = len(ts)
    if n < 3:
        return None
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return None
    cov = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True))
    return cov / var * 60.0


def bins_of(times: Sequence[float], bin_s: float = 0.25) -> list[tuple[float, int]]:
    """Counts per bin, seconds from the first event (for throughput-over-time plots)."""
    if not times:
        return []
    t0 = min(times)
    counts: dict[int, int] = {}
    for t in times:
        b = int((t - t0) / bin_s)
        counts[b] = counts.get(b, 0) + 1
    last = max(counts)
    return [(b * bin_s, counts.get(b, 0)) for b in range(last + 1)]
