"""This machine's fp32 matrix-multiply rate (GFLOP/s): the reference for "fraction of peak"."""

from __future__ import annotations

import sys

from benchmarks._timing import fp32_peak_gflops, result


def run(quick: bool = False) -> dict:
    import torch

    gflops = fp32_peak_gflops(1024 if quick else 2048)
    return result("gemm_peak", round(gflops, 1), "GFLOP/s", threads=torch.get_num_threads())


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
