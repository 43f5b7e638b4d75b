"""How long the paper profile takes, extrapolated from a short run of the same settings (``make paper-smoke``).

A paper-smoke run trains both report-size cGANs (128 px, width 1, batch 64 / 32) for a few epochs per GAN seed and
runs notebooks 04-06 as the paper profile does. This reads what it measured and extrapolates the paper profile:

- each GAN: the first epoch (it holds start-up and compilation) + (paper epochs - 1) x the median of the later
  epochs, once per GAN seed (each GAN seed is its own sub-run that retrains both GANs);
- every other notebook: its measured time, once per GAN seed for those the sub-runs repeat (04-06).

    python -m benchmarks.investigations.paper_time runs/paper-smoke [--epochs 1000] [--out FILE]

On a GPU machine: ``make paper-smoke VGG16_FILE=... && python -m benchmarks.investigations.paper_time runs/paper-smoke``
(raise the epochs first with ``-p epochs 5`` for a steadier median: ``python -m covidgan_utils run --profile
paper-smoke --run-dir runs/paper-smoke --overwrite -p epochs 5 -p vgg_weights FILE``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

GAN_NOTEBOOKS = {"torch": "02_pytorch_cgan", "tf": "03_tensorflow_cgan"}
REPEATED_PER_SEED = ("04_synthetic_data", "05_vgg16_transfer_learning", "06_evaluating_synthetic_data")


def epoch_seconds(run_dir: Path, framework: str) -> list[float]:
    """Seconds of each epoch of one GAN training, from its history.csv."""
    import csv

    path = Path(run_dir) / f"{framework}_gan" / "history.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run notebooks 02 and 03 of the paper-smoke profile first.")
    with path.open() as f:
        return [float(row["seconds"]) for row in csv.DictReader(f)]


def gan_estimate(seconds: list[float], epochs: int) -> dict:
    """First epoch + (epochs - 1) x the median later epoch (the first alone when only one was run)."""
    later = seconds[1:] or seconds
    median = statistics.median(later)
    return {"measured_epochs": len(seconds), "first_epoch_s": round(seconds[0], 2), "median_epoch_s": round(median, 3),
            "estimate_s": round(seconds[0] + (epochs - 1) * median, 1)}


def estimate(run_dir, epochs: int = 1000, n_gan_seeds: int = 3) -> dict:
    run_dir = Path(run_dir)
    pipeline = json.loads((run_dir / "pipeline.json").read_text())
    books = pipeline.get("notebooks") or {}
    gans = {fw: gan_estimate(epoch_seconds(run_dir, fw), epochs) for fw in GAN_NOTEBOOKS}
    others = {name: entry["seconds"] for name, entry in books.items()
              if entry.get("status") == "done" and name not in GAN_NOTEBOOKS.values()}
    total = n_gan_seeds * sum(g["estimate_s"] for g in gans.values())
    total += sum(s * (n_gan_seeds if name in REPEATED_PER_SEED else 1) for name, s in others.items())
    return {"run_dir": str(run_dir), "paper_epochs": epochs, "gan_seeds": n_gan_seeds, "gans": gans,
            "other_notebooks_s": others, "paper_total_h": round(total / 3600, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.investigations.paper_time", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--epochs", type=int, default=1000, help="the paper profile's epochs per GAN (the report's 1000)")
    ap.add_argument("--gan-seeds", type=int, default=3, help="the paper profile's number of GAN seeds")
    ap.add_argument("--out", help="also write the estimate as JSON")
    args = ap.parse_args(argv)
    result = estimate(args.run_dir, args.epochs, args.gan_seeds)
    for fw, g in result["gans"].items():
        print(f"{fw:5s}: {g['measured_epochs']} epoch(s) measured, first {g['first_epoch_s']:.1f} s, median later "
              f"{g['median_epoch_s']:.2f} s/epoch -> {args.epochs} epochs: {g['estimate_s'] / 3600:.2f} h per GAN seed")
    for name, s in result["other_notebooks_s"].items():
        print(f"{name}: {s:.0f} s" + (f" (x{args.gan_seeds} GAN seeds)" if name in REPEATED_PER_SEED else ""))
    print(f"paper profile, {args.gan_seeds} GAN seed(s) x {args.epochs} epochs: about {result['paper_total_h']:.1f} h")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
