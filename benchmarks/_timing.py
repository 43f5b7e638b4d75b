"""Shared pieces of the benchmarks: timing, this machine's fp32 peak, the row shape, the command line."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

# train() options that keep a timed training run quiet and its files small (no progress bar, no sample grids)
QUIET_TRAINING = {"sample_every": 10_000, "progress": False, "samples_per_class": 1, "keep_last": 1}


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


def fp32_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This machine's practical fp32 peak: the best GFLOP/s of an n x n torch matmul (2 n^3 flops).

    The one reference for every "fraction of peak" (PyTorch and TensorFlow rows alike); the best of the
    repeats, because machine load only ever lowers a measurement.
    """
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def machine() -> str:
    """The machine in a few words, for the record: architecture, processor, CPU count."""
    return f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".replace("  ", " ")


def result(name, value, unit, baseline=None, ratio=None, target=None, **extra) -> dict:
    """One benchmark row in the shape the harness and its tests expect (extra keys allowed)."""
    row = {"name": name, "value": value, "unit": unit, "baseline": baseline, "ratio": ratio, "target": target}
    row.update(extra)
    return row


def command_line(doc: str, quick_help: str, argv=None, **flags: str) -> argparse.Namespace:
    """The benchmarks' common options: --quick and --out FILE; ``flags`` (name=help) add more on/off options."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    for name, text in flags.items():
        parser.add_argument(f"--{name.replace('_', '-')}", action="store_true", help=text)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    return parser.parse_args(argv)


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON when a path is given."""
    if path:
        Path(path).write_text(json.dumps(obj, indent=2) + "\n")
