"""Sweeps: rerun the notebooks over seeds, training-set sizes, resolutions or GAN options, and collect the results.

Each point of a sweep is an ordinary run directory, ``runs/sweeps/<name>/<point>/``, holding an
``overrides.json`` with the point's settings (so any notebook opened on it later sees the same settings)
and run by the pipeline runner (papermill), which resumes a point that was interrupted and skips a
finished one. :func:`collect` turns the points' ``transfer/results.json`` (and ``evaluation/metrics.json``
when notebook 06 ran) into one table; :func:`plot_accuracy_vs_n` draws the report's "more data" study.

Sweepable names: any profile setting (``image_size``, ``gan_variant``, ``diffaugment``, ``torch_epochs`` ...)
plus two shorthands: ``train_fraction`` (that share of the profile's training images per class; the
validation set stays the same 192 images because the split draws validation first) and ``seed`` (shifts
every seed of the run: the GANs' and the classifier's).
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

from . import CLASSES, config, runs, settings
from .files import read_json, write_csv, write_json

SHORTHANDS = ("train_fraction", "seed")
DEFAULT_NOTEBOOKS = "01,02,03,04,05"
CONDITIONS = ("real", "real+torch", "real+tf", "real+copies")


class SweepError(RuntimeError):
    """A sweep that cannot start or continue (bad grid, a point folder made with other settings)."""


def expand(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in order: {"a": [1, 2], "b": [3]} -> [{a:1,b:3}, {a:2,b:3}]."""
    if not grid:
        raise SweepError(
            "The grid is empty: give at least one name with a list of values, e.g. {'train_fraction': [0.5, 1]}."
        )
    names = list(grid)
    for name in names:
        values = grid[name]
        if not isinstance(values, (list, tuple)) or not values:
            raise SweepError(f"Grid entry {name!r} must be a non-empty list of values, got {values!r}.")
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def point_name(point: dict[str, Any]) -> str:
    """A folder name for a point: "train_fraction-0.25_seed-1" (safe characters only)."""
    parts = []
    for key, value in point.items():
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 1.0 and 1 name the same point
        text = re.sub(r"[^A-Za-z0-9.+-]+", "+", str(value)).strip("+") or "none"
        parts.append(f"{key}-{text}")
    return "_".join(parts)


def overrides_for(point: dict[str, Any], profile: str) -> dict[str, Any]:
    """The settings a point changes, as overrides.json holds them (shorthands expanded against the profile)."""
    base = config.PROFILES[profile]
    known = config.setting_names()
    out: dict[str, Any] = {}
    for key, value in point.items():
        if key == "train_fraction":
            fraction = float(value)
            if not 0 < fraction <= 1:
                raise SweepError(f"train_fraction must be in (0, 1], got {value!r}.")
            out["train_per_class"] = {c: max(2, int(round(fraction * base["train_per_class"][c]))) for c in CLASSES}
        elif key == "seed":
            out["seeds"] = [int(value) + s for s in base["seeds"]]
            out["gan_seeds"] = [int(value) + s for s in base["gan_seeds"]]
            out["synthesis_seed"] = int(value)
        elif key in known:
            try:
                out[key] = settings.check(key, value)
            except settings.SettingError as exc:
                raise SweepError(f"Grid point {point}: {exc}") from None
        else:
            raise SweepError(f"Cannot sweep {key!r}: use one of {sorted(known | set(SHORTHANDS))}.")
    return out


def sweep_dir(name: str, root=None) -> Path:
    """runs/sweeps/<name> (relative to the repository root), or root/<name>."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise SweepError(f"Sweep name {name!r}: use letters, digits, '.', '_' or '-'.")
    base = Path(root) if root is not None else config.repo_root() / "runs" / "sweeps"
    return base / name


def _old_sweep(folder: Path) -> bool:
    """A sweep folder an earlier version wrote: its sweep.json, results.csv and the points' run directories."""
    points = {p.name for p in Path(folder).iterdir() if p.is_dir() and not p.is_symlink()
              and (runs.is_marked(p) or runs.is_old_run(p))}
    return runs.old_results(folder, points | {"results.csv"}, {"name", "grid"}, result="sweep.json")


def run(
    name: str,
    grid: dict[str, list],
    *,
    profile: str = "demo",
    data_dir=None,
    root=None,
    notebooks: str = DEFAULT_NOTEBOOKS,
    params: dict | None = None,
) -> Any:
    """Run the selected notebooks for every point of the grid (resuming unfinished points); returns :func:`collect`."""
    from . import pipeline

    folder = sweep_dir(name, root)
    points = expand(grid)
    wanted_all = [overrides_for(point, profile) for point in points]  # every point checked before anything is written
    data_path = (config.repo_root() / Path(data_dir).expanduser()).resolve() if data_dir else None
    try:
        runs.check_location(folder.resolve(), data_path)
        # checked and marked before anything is written: a folder of someone else's files is refused
        runs.claim_output(folder, label="Sweep folder", option="--root (or another sweep name)",
                          is_old=_old_sweep, data_dir=data_path)
    except runs.RunDirError as exc:
        raise SweepError(str(exc)) from None
    params = pipeline.check_parameters(dict(params or {}), pipeline.select(notebooks))
    spec = {"name": name, "profile": profile, "grid": grid, "notebooks": notebooks, "params": params}
    spec_path = folder / "sweep.json"
    if spec_path.exists():
        old = read_json(spec_path)
        if {k: old.get(k) for k in spec} != spec:
            raise SweepError(
                f"{config.rel(folder)} holds a sweep started with other settings ({old}). "
                "Use another sweep name, or delete that folder to start over."
            )
    write_json(spec_path, spec)
    for i, (point, wanted) in enumerate(zip(points, wanted_all), 1):
        run_dir = folder / point_name(point)
        path = run_dir / config.OVERRIDES_FILE
        if path.exists() and read_json(path) != wanted:
            raise SweepError(
                f"{config.rel(path)} holds other settings than point {point}; delete {config.rel(run_dir)}."
            )
        try:
            runs.claim(run_dir)
        except runs.RunDirError as exc:
            raise SweepError(str(exc)) from None
        write_json(path, wanted)
        print(f"=== sweep {name}: point {i}/{len(points)} {point}", flush=True)
        pipeline.run(
            profile,
            data_dir,
            str(run_dir),
            notebooks,
            params,
            resume=(run_dir / pipeline.STATE).exists(),
        )
    table = collect(folder)
    write_csv(folder / "results.csv", table)
    print(f"Sweep {name}: {len(points)} point(s); results in {config.rel(folder / 'results.csv')}")
    return table


def collect(folder) -> Any:
    """One row per finished point and condition: the point's values, n_train, accuracy and its 95% interval.

    Points whose notebook 05 has not finished are left out; when notebook 06 ran, each GAN condition also
    carries that GAN's KID, precision/recall, density/coverage, class fidelity (02/03 and 06) and TSTR accuracy.
    """
    import pandas as pd

    folder = Path(folder)
    spec = read_json(folder / "sweep.json") if (folder / "sweep.json").exists() else {}
    rows = []
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        results_path = run_dir / "transfer" / "results.json"
        if not results_path.exists():
            continue
        results = read_json(results_path)
        point = _point_of(run_dir, spec)
        metrics = (
            read_json(run_dir / "evaluation" / "metrics.json")
            if (run_dir / "evaluation" / "metrics.json").exists()
            else {}
        )
        # real training images of the point (for synthetic-only conditions: the images its GAN learned from)
        n_real = results["conditions"].get("real", {}).get("n_train")
        for condition, c in results["conditions"].items():
            row = {
                **point,
                "point": run_dir.name,
                "condition": condition,
                "n_train_real": n_real,
            }
            row.update(
                n_train=c.get("n_train"),
                accuracy=c["accuracy"],
                ci_low=c["accuracy_ci"][0],
                ci_high=c["accuracy_ci"][1],
                sensitivity=c.get("sensitivity"),
                specificity=c.get("specificity"),
                roc_auc=c.get("roc_auc"),
                mcnemar_p=results.get("mcnemar", {}).get(condition),
            )
            fw = condition.split("+")[-1].split(":")[-1]
            if fw in ("torch", "tf") and isinstance(metrics.get(fw), dict):
                for key in (
                    "kid",
                    "fd",
                    "precision",
                    "recall",
                    "density",
                    "coverage",
                    "gan_test_accuracy",
                    "tstr_accuracy",
                ):
                    row[key] = metrics[fw].get(key)
            rows.append(row)
    return pd.DataFrame(rows)


def _point_of(run_dir: Path, spec: dict) -> dict:
    """The grid values of a point folder (matched against the sweep's grid; else parsed from the name)."""
    for point in expand(spec["grid"]) if spec.get("grid") else []:
        if point_name(point) == run_dir.name:
            return point
    return dict(part.split("-", 1) for part in run_dir.name.split("_") if "-" in part)


def plot_accuracy_vs_n(table, conditions=CONDITIONS, title: str | None = None, ax=None, majority: float | None = None):
    """Accuracy (95% Wilson interval) against the number of real training images, one line per condition."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
    else:
        fig = ax.figure
    shown = [c for c in conditions if c in set(table["condition"])]
    if not shown:
        raise ValueError(f"None of the conditions {list(conditions)} are in the table.")
    offsets = np.linspace(-0.012, 0.012, len(shown)) if len(shown) > 1 else [0.0]
    for k, (condition, off) in enumerate(zip(shown, offsets)):
        part = table[table["condition"] == condition]
        grouped = (
            part.groupby("n_train_real")
            .agg(accuracy=("accuracy", "mean"), ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"))
            .reset_index()
        )
        x = grouped["n_train_real"].to_numpy(dtype=float) * math.exp(off)  # small log-offsets keep the bars apart
        y = grouped["accuracy"].to_numpy()
        err = np.vstack([y - grouped["ci_low"].to_numpy(), grouped["ci_high"].to_numpy() - y])
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, lw=1.5, c=f"C{k}", label=condition)
    ax.set_xscale("log")
    ticks = sorted(set(table["n_train_real"].dropna().astype(int)))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    if majority is not None:
        ax.axhline(majority, ls=":", c="gray", lw=1, label=f"majority rate ({majority:.3f})")
    ax.set(
        xlabel="real training images",
        ylabel="validation accuracy (95% CI)",
        title=title or "accuracy against training-set size",
    )
    ax.legend(fontsize=8)
    return fig


def plot_options(table, majority: float | None = None):
    """Three panels for :func:`comparison_table`: KID, TSTR against the majority rate, accuracy of real + GAN (95% CI)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from .plotting import FRAMEWORK_COLORS, FRAMEWORK_NAMES

    fig, axes = plt.subplots(1, 3, figsize=(max(13, 1.3 * len(table) * 3), 4.8), layout="constrained")
    labels = [f"{o}\n{g}" for o, g in zip(table["option"], table["GAN"])]
    colors = [FRAMEWORK_COLORS.get(g, "gray") for g in table["GAN"]]
    x = np.arange(len(table))
    axes[0].bar(x, table["KID"].astype(float), color=colors)
    axes[0].set(title="KID to real images (lower is better)", ylabel="KID (domain features)")
    axes[1].bar(x, table["TSTR"].astype(float), color=colors)
    if majority is not None:
        axes[1].axhline(majority, ls="--", c="gray", lw=1, label=f"majority rate ({majority:.3f})")
        axes[1].legend(fontsize=8, loc="lower right")
    axes[1].set(title="TSTR: train on synthetic, test on real", ylabel="accuracy", ylim=(0, 1))
    acc = table["accuracy real+GAN"].astype(float).to_numpy()
    ci = np.array([[float(v) for v in str(s).strip("[]").split(",")] for s in table["95% CI"]])
    axes[2].errorbar(x, acc, yerr=[acc - ci[:, 0], ci[:, 1] - acc], fmt="o", capsize=3, c="k")
    for k, option in enumerate(dict.fromkeys(table["option"])):  # each run's real-only accuracy
        rows = np.flatnonzero(table["option"].to_numpy() == option)
        real = float(table["accuracy real"].iloc[rows[0]])
        axes[2].hlines(
            real,
            rows.min() - 0.4,
            rows.max() + 0.4,
            colors="gray",
            linestyles="--",
            lw=1,
            label="real only" if k == 0 else None,
        )
    axes[2].set(title="VGG16 on real + GAN images", ylabel="validation accuracy (95% CI)")
    axes[2].legend(fontsize=8, loc="lower right")
    for ax in axes:
        ax.set_xticks(x, labels, fontsize=8)
    fig.suptitle(f"GAN options compared (blue: {FRAMEWORK_NAMES['torch']}, orange: {FRAMEWORK_NAMES['tf']})")
    return fig


def comparison_table(run_dirs: dict[str, Any]) -> Any:
    """One row per (GAN option, framework): fidelity metrics from notebook 06 and the notebook 05 accuracy it bought.

    ``run_dirs`` maps a label ("plain cGAN", "+DiffAugment", "ACGAN") to a finished run directory.
    """
    import pandas as pd

    from .verdicts import verdict

    rows = []
    for label, run_dir in run_dirs.items():
        run_dir = Path(run_dir)
        results = read_json(run_dir / "transfer" / "results.json")
        metrics_path = run_dir / "evaluation" / "metrics.json"
        metrics = read_json(metrics_path) if metrics_path.exists() else {}
        real = results["conditions"]["real"]
        for fw in ("torch", "tf"):
            c = results["conditions"].get(f"real+{fw}")
            if c is None:
                continue
            m = metrics.get(fw, {}) if isinstance(metrics.get(fw), dict) else {}
            summary_path = run_dir / f"{fw}_gan" / "summary.json"
            fidelity = read_json(summary_path).get("class_fidelity", {}) if summary_path.exists() else {}
            rows.append(
                {
                    "option": label,
                    "GAN": fw,
                    "KID": m.get("kid"),
                    "FD": m.get("fd"),
                    "precision": m.get("precision"),
                    "recall": m.get("recall"),
                    "density": m.get("density"),
                    "coverage": m.get("coverage"),
                    "class fidelity": fidelity.get("accuracy"),
                    "class fidelity (06)": m.get("gan_test_accuracy"),  # the same check on every generated image
                    "TSTR": m.get("tstr_accuracy"),
                    "accuracy real": real["accuracy"],
                    "accuracy real+GAN": c["accuracy"],
                    "95% CI": f"[{c['accuracy_ci'][0]:.3f}, {c['accuracy_ci'][1]:.3f}]",
                    "McNemar p vs real": results.get("mcnemar", {}).get(f"real+{fw}"),
                    "McNemar p vs copies": results.get("mcnemar_vs_copies", {}).get(f"real+{fw}"),
                    "AUC real": real.get("roc_auc"),
                    "AUC real+GAN": c.get("roc_auc"),
                    "reading": verdict(results, f"real+{fw}")["kind"] if results.get("paired") else "n/a (older run)",
                }
            )
    return pd.DataFrame(rows)


def parse_grid(items: list[str]) -> dict[str, list]:
    """Command-line grid entries "name=v1,v2" -> {"name": [v1, v2]} with numbers parsed."""
    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise SweepError(f"Grid entry {item!r}: write NAME=V1,V2 (e.g. train_fraction=0.25,0.5,1).")
        key, values = item.split("=", 1)
        grid[key.strip()] = [config.parse_value(v.strip()) for v in values.split(",") if v.strip()]
    return grid


def main(argv=None) -> int:
    """``python -m covidgan_utils sweep NAME --grid train_fraction=0.25,0.5,1 [--profile demo] ...``."""
    import argparse
    import sys

    from .pipeline import PipelineError

    ap = argparse.ArgumentParser(prog="python -m covidgan_utils sweep", description=__doc__.splitlines()[0])
    ap.add_argument("name", help="sweep name: its points go to runs/sweeps/NAME/")
    ap.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2", help="repeat for a product grid")
    ap.add_argument("--profile", default="demo", choices=list(config.PROFILES))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--root", default=None, help="folder holding sweeps (default runs/sweeps)")
    ap.add_argument("--notebooks", default=DEFAULT_NOTEBOOKS)
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = ap.parse_args(argv)
    try:
        grid = parse_grid(args.grid)
        params = {k: config.parse_value(v) for k, v in args.parameter}
        table = run(
            args.name,
            grid,
            profile=args.profile,
            data_dir=args.data_dir,
            root=args.root,
            notebooks=args.notebooks,
            params=params,
        )
    except (SweepError, PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if len(table):
        cols = [c for c in (*grid, "condition", "n_train", "accuracy", "ci_low", "ci_high") if c in table]
        print(table[cols].round(3).to_string(index=False))
    return 0
