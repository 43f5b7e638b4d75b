"""Run every benchmark, print one line each, write a JSON list (name, value, unit, baseline, ratio, target per row).

    python -m benchmarks.run [--quick] [--out FILE] [--only NAME[,NAME]]
    python benchmarks/run.py ...       (the same)

Each row: {"name", "value", "unit", "baseline", "ratio", "target"}; ratio = baseline time / project
time measured in the same process after a warm-up (median of repeats); ratio >= target passes.
--quick fits in about 5 minutes on 2 CPU cores. Run it from the repository root with the package
installed (``pip install -e .``). Every benchmark is a module of the package ``benchmarks``
(``python -m benchmarks.torch_cgan_train``); run as a file, this script loads that package from its own
folder first, without touching the import path.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import platform
import sys
import time
import traceback
from pathlib import Path

if not __package__ and "benchmarks" not in sys.modules:  # run as a file: load this folder as the package

    def _load_package() -> None:
        here = Path(__file__).resolve().parent
        spec = importlib.util.spec_from_file_location(
            "benchmarks", here / "__init__.py", submodule_search_locations=[str(here)]
        )
        sys.modules["benchmarks"] = package = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(package)

    _load_package()

from benchmarks._timing import write_json  # noqa: E402

# Order matters: the peak first, so the training benchmarks can report a fraction of it.
BENCHMARKS = ["gemm_peak", "data_cache", "torch_cgan_train", "tf_cgan_train", "vgg16_last_layer", "vgg16_features"]


def _rows(out) -> list[dict]:
    return out if isinstance(out, list) else [out]


def _line(row: dict) -> str:
    value = f"{row.get('value')} {row.get('unit', '')}".strip()
    extra = ""
    if row.get("ratio") is not None:
        verdict = "" if row.get("target") is None else (" PASS" if row["ratio"] >= row["target"] else " BELOW TARGET")
        extra = f"  ratio {row['ratio']}x vs baseline {row.get('baseline')} (target {row.get('target')}){verdict}"
    if row.get("fraction_of_peak") is not None:
        extra += f"  {100 * row['fraction_of_peak']:.0f}% of fp32 matmul peak"
    if row.get("error"):
        extra = f"  ERROR: {row['error']}"
    return f"{row['name']:28s} {value:>22s}{extra}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats (about 5 minutes on 2 cores)")
    ap.add_argument("--out", default=None, help="write the JSON list here")
    ap.add_argument("--only", default=None, help="comma list of benchmark names")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else BENCHMARKS
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}")
    rows, failed, peak = [], False, None
    for name in names:
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            kwargs = {"quick": args.quick}
            if peak is not None and "peak_gflops" in module.run.__code__.co_varnames:
                kwargs["peak_gflops"] = peak
            out = _rows(module.run(**kwargs))
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            out = [
                {
                    "name": name,
                    "value": None,
                    "unit": "",
                    "baseline": None,
                    "ratio": None,
                    "target": None,
                    "error": repr(exc),
                }
            ]
            failed = True
        for row in out:
            row.setdefault("seconds", round(time.perf_counter() - start, 1))
            if row["name"] == "gemm_peak":
                peak = row["value"]
            if peak and row.get("gflops") and row.get("fraction_of_peak") is None:
                row["fraction_of_peak"] = round(row["gflops"] / peak, 3)
            print(_line(row), flush=True)
            rows.append(row)
    if args.out:
        write_json(args.out, rows)
        print(f"wrote {args.out}")
    below = [
        r["name"]
        for r in rows
        if r.get("target") is not None and r.get("ratio") is not None and r["ratio"] < r["target"]
    ]
    if below:
        print("below target:", ", ".join(below))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
