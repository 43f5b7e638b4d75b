"""This machine's fp32 matrix-multiply rate (GFLOP/s): the reference for "fraction of peak"."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_time, result  # noqa: E402


def measure(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n fp32 torch matmul (2 n^3 flops), median of repeats."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = median_time(lambda: torch.mm(a, b), repeats=repeats, warmup=2)
    return 2 * n**3 / seconds / 1e9


def run(quick: bool = False) -> dict:
    import torch

    gflops = measure(1024 if quick else 2048)
    return result("gemm_peak", round(gflops, 1), "GFLOP/s", threads=torch.get_num_threads())


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
