"""Shared timing helper for the benchmarks: warm-up, then the median of several repeats."""

from __future__ import annotations

import statistics
import time


def median_time(fn, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def result(name, value, unit, baseline=None, ratio=None, target=None, **extra) -> dict:
    """One benchmark row in the harness's CONTRACT shape (extra keys allowed)."""
    row = {"name": name, "value": value, "unit": unit, "baseline": baseline, "ratio": ratio, "target": target}
    row.update(extra)
    return row
