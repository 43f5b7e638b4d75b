"""Regenerate every report figure from a finished run's artifacts: no training, no notebooks.

``python -m covidgan_utils figures --run-dir runs/demo --out figures`` writes one PNG per figure
that the run has the artifacts for, and says which it skipped and why. Real X-rays are drawn only
when the run used the built-in phantoms, so figures/ never holds images of the real database.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from . import CLASSES
from .config import rel
from .files import read_json

FRAMEWORKS = {"torch": "PyTorch", "tf": "TensorFlow"}

# name -> (what it shows, the report figure it corresponds to); README lists the same.
CATALOGUE = {
    "data_samples": ("training images per class (phantom runs only)", "-"),
    "tf_gan_losses": ("TensorFlow cGAN discriminator, generator and generator-test loss per epoch", "Figure 3"),
    "torch_gan_losses": ("PyTorch cGAN discriminator and generator loss per epoch", "Figure 5"),
    "tf_real_vs_generated": ("real images (top) vs TensorFlow-generated (bottom), per class", "Figure 6"),
    "torch_real_vs_generated": ("real COVID, generated COVID, real normal, generated normal (PyTorch)", "Figure 7"),
    "torch_samples_over_training": ("fixed-noise PyTorch samples at several epochs", "-"),
    "tf_samples_over_training": ("fixed-noise TensorFlow samples at several epochs", "-"),
    "transfer_accuracy": (
        "VGG16 validation accuracy and balanced accuracy per condition: mean, 95% interval, each seed, majority-class "
        "rate; external-set accuracy and the large test set's truth where the run has them",
        "Section 4 results",
    ),
    "gan_options": ("plain cGAN vs DiffAugment vs ACGAN: KID, TSTR and real + GAN accuracy (notebook 07)", "-"),
    "accuracy_vs_n": (
        "accuracy against the number of real training images, with and without GAN data (notebook 07)",
        "further study",
    ),
}


def _studies(run_dir: Path):
    path = run_dir / "studies" / "summary.json"
    return read_json(path) if path.exists() else None


def gan_options(run_dir: Path):
    """Notebook 07's comparison of GAN options, from RUN/studies/summary.json."""
    import pandas as pd

    from .sweeps import plot_options

    studies = _studies(run_dir)
    if not studies or not studies.get("comparison"):
        return None
    return plot_options(pd.DataFrame(studies["comparison"]), studies.get("majority"))


def accuracy_vs_n(run_dir: Path):
    """Notebook 07's training-set-size sweep, from RUN/studies/summary.json."""
    import pandas as pd

    from .sweeps import plot_accuracy_vs_n

    studies = _studies(run_dir)
    if not studies or not studies.get("sweep", {}).get("accuracy"):
        return None
    title = f"accuracy against real training images ({studies.get('profile')} profile)"
    return plot_accuracy_vs_n(pd.DataFrame(studies["sweep"]["accuracy"]), title=title, majority=studies.get("majority"))


def _history(run_dir: Path, fw: str):
    import pandas as pd

    path = run_dir / f"{fw}_gan" / "history.csv"
    return pd.read_csv(path) if path.exists() else None


def losses(run_dir: Path, fw: str):
    """Loss curves of one GAN (report Figures 3 and 5)."""
    from .plotting import history_plot

    history = _history(run_dir, fw)
    if history is None:
        return None
    return history_plot(history, title=f"{FRAMEWORKS[fw]} cGAN", test_column="g_test_loss")


def _real(run_dir: Path, per_class: int):
    """First real training images per class from the run's cache, or None for real-data runs."""
    info = read_json(run_dir / "data" / "info.json") if (run_dir / "data" / "info.json").exists() else None
    if not info or not info.get("phantoms"):
        return None
    import pandas as pd

    manifest = pd.read_csv(run_dir / "data" / "manifest.csv")
    caches = sorted((run_dir / "data").glob("arrays_*.npz"), key=lambda p: int(p.stem.split("_")[1]))
    if not caches:
        return None
    with np.load(caches[-1]) as npz:
        images = npz["images"]
    train = (manifest["split"] == "train").to_numpy()
    labels = manifest["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    return {k: images[train & (labels == k)][:per_class] for k in range(len(CLASSES))}


def _generated(run_dir: Path, fw: str, per_class: int):
    """First generated images per class: synthetic PNGs if written, else the last training sample grid."""
    from PIL import Image

    folder = run_dir / "synthetic" / fw
    if (folder / "manifest.csv").exists():
        import pandas as pd

        manifest = pd.read_csv(folder / "manifest.csv")
        out = {}
        for k, name in enumerate(CLASSES):
            paths = manifest.loc[manifest["label"] == name, "path"].head(per_class)
            out[k] = np.stack([np.asarray(Image.open(run_dir / p).convert("L")) for p in paths]) if len(paths) else None
        return out
    samples = sorted((run_dir / f"{fw}_gan" / "samples").glob("epoch_*.npz"))
    if not samples:
        return None
    with np.load(samples[-1]) as npz:
        images, labels = npz["images"], npz["labels"]
    return {k: images[labels == k][:per_class] for k in range(len(CLASSES))}


def _gray(images):
    from .plotting import to_display

    arr = to_display(images)
    return arr if arr.ndim == 3 else arr.mean(axis=-1)


def real_vs_generated(run_dir: Path, fw: str, per_class: int = 6):
    """Real above generated (Figure 6 layout for tf; Figure 7 order for torch: real/gen COVID, real/gen normal)."""
    from .plotting import image_grid

    fake = _generated(run_dir, fw, per_class)
    if fake is None:
        return None
    real = _real(run_dir, per_class)
    rows, names = [], []
    order = [1, 0] if fw == "torch" else [0, 1]
    for k in order:
        if real is not None and len(real[k]):
            rows.append(_pad(_gray(real[k]), per_class))
            names.append(f"real {CLASSES[k]}")
        if fake.get(k) is not None:
            rows.append(_pad(_gray(fake[k]), per_class))
            names.append(f"generated {CLASSES[k]}")
    if fw == "tf":  # report Figure 6: all real rows above all generated rows
        pairs = sorted(zip(names, rows), key=lambda t: not t[0].startswith("real"))
        names, rows = [n for n, _ in pairs], [r for _, r in pairs]
    return image_grid(np.concatenate(rows), ncols=per_class, row_labels=names, suptitle=f"{FRAMEWORKS[fw]} cGAN")


def _pad(arr, n):
    if len(arr) >= n:
        return arr[:n]
    return np.concatenate([arr, np.zeros((n - len(arr), *arr.shape[1:]), arr.dtype)])


def samples_over_training(run_dir: Path, fw: str, max_epochs: int = 6, per_class: int = 4):
    """Fixed-noise samples at up to ``max_epochs`` saved epochs, one row per epoch."""
    from .plotting import image_grid

    files = sorted((run_dir / f"{fw}_gan" / "samples").glob("epoch_*.npz"))
    if not files:
        return None
    picks = [files[int(i)] for i in np.unique(np.linspace(0, len(files) - 1, min(max_epochs, len(files))).round())]
    rows, names = [], []
    for f in picks:
        with np.load(f) as npz:
            images, labels = _gray(npz["images"]), npz["labels"]
        row = np.concatenate([_pad(images[labels == k], per_class) for k in range(len(CLASSES))])
        rows.append(row)
        names.append(f"epoch {int(f.stem.split('_')[1])}")
    title = f"{FRAMEWORKS[fw]} samples over training (left {per_class}: Normal, right {per_class}: COVID)"
    return image_grid(np.concatenate(rows), ncols=2 * per_class, row_labels=names, suptitle=title)


def transfer_accuracy(run_dir: Path):
    """Accuracy and balanced accuracy per condition with 95% intervals, seeds as dots, the majority-class rate
    and the report's numbers as reference lines; the y axis starts at a value stated on it. Where the run has
    them, the external set's accuracy (diamonds) and the large test set's accuracy at the validation class mix
    (a bar: the truth) sit on each accuracy bar. Numbers only: no image of a test set is drawn."""
    import matplotlib.pyplot as plt

    path = run_dir / "transfer" / "results.json"
    if not path.exists():
        return None
    saved = read_json(path)
    results = saved["conditions"]
    names = list(results)
    majority, majority_class = _majority_rate(saved)
    fig, ax = plt.subplots(figsize=(1.5 * len(names) + 2.6, 3.8))
    lows = []
    for key, label, color, dx in (
        ("accuracy", "accuracy (Wilson 95%)", "C0", -0.19),
        ("balanced_accuracy", "balanced accuracy (bootstrap 95%)", "C1", 0.19),
    ):
        for i, name in enumerate(names):
            c = results[name]
            value, interval = c.get(key), c.get(f"{key}_ci")
            if value is None:
                continue
            ax.bar(i + dx, value, width=0.36, color=color, alpha=0.6, label=label if i == 0 else None)
            if interval and None not in interval:
                low, high = interval
                lows.append(low)
                ax.errorbar(i + dx, value, yerr=[[value - low], [high - value]], color="k", capsize=3, lw=1)
            seeds = [s[key] for s in c.get("per_seed", []) if s.get(key) is not None]
            offsets = np.linspace(-0.1, 0.1, len(seeds)) if len(seeds) > 1 else np.zeros(len(seeds))
            ax.scatter(i + dx + offsets, seeds, color="k", s=8, zorder=3)
    for key, value_key, label, marker, color, dx in (
        ("external", "accuracy", "external set: accuracy (Wilson 95%)", "D", "C2", -0.27),
        (
            "large_test",
            "accuracy_at_validation_mix",
            "large test set: accuracy at the validation mix (truth)",
            "_",
            "C4",
            -0.11,
        ),
    ):
        for i, name in enumerate(names):
            block = results[name].get(key) or {}
            value, interval = block.get(value_key), block.get(f"{value_key}_ci")
            if value is None:
                continue
            err = None
            if interval and None not in interval:
                lows.append(interval[0])
                err = [[value - interval[0]], [interval[1] - value]]
            size = 12 if marker == "_" else 5
            ax.errorbar(
                i + dx, value, yerr=err, fmt=marker, color=color, ms=size, mew=2, capsize=2, lw=1, zorder=4, label=label
            )
            label = None  # one legend entry per set
    if majority is not None:
        ax.axhline(
            majority, color="C3", lw=1.2, label=f"majority-class rate {majority:.3f} (always '{majority_class}')"
        )
    for value, label, style in [
        (0.958, "report: real 0.958", ":"),
        (0.974, "report: +PyTorch GAN 0.974", "--"),
        (0.98, "report: +TF GAN 0.98", "-."),
    ]:
        ax.axhline(value, ls=style, lw=1, color="gray", label=label)
    bottom = min([0.5, *lows, *([majority] if majority is not None else [])])
    bottom = 0.5 if bottom >= 0.5 else np.floor(bottom * 10) / 10
    ax.set_ylim(bottom, 1.0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylabel(f"validation score (axis starts at {bottom:.2f})")
    ax.set_title("VGG16, last layer trained: mean over head seeds, 95% interval, seeds as dots", fontsize=10)
    fig.tight_layout()
    return fig


def _majority_rate(saved: dict):
    """(share of the larger class in the validation set, its name): the accuracy of always answering that class."""
    counts = saved.get("n_val_per_class")
    if not counts:
        first = next(iter(saved["conditions"].values()), {})
        cm = (first.get("per_seed") or [{}])[0].get("confusion_matrix")  # rows: true Normal, true COVID
        counts = {CLASSES[k]: sum(row) for k, row in enumerate(cm)} if cm else None
    if not counts or not sum(counts.values()):
        return None, None
    name = max(counts, key=counts.get)
    return counts[name] / sum(counts.values()), name


def data_samples(run_dir: Path, per_class: int = 8):
    from .plotting import image_grid

    real = _real(run_dir, per_class)
    if real is None:
        return None
    rows = np.concatenate([_pad(_gray(real[k]), per_class) for k in range(len(CLASSES))])
    return image_grid(rows, ncols=per_class, row_labels=list(CLASSES), suptitle="Phantom training images")


class FiguresOutError(ValueError):
    """An --out folder the figures must not be copied into; the message names it and the fix."""


def _data_folders(run_dir: Path) -> list[Path]:
    """The run's data folder (pipeline.json's data_dir) and the built-in phantoms' folder."""
    from .config import phantom_root, repo_root

    found = [phantom_root().resolve()]
    state = Path(run_dir) / "pipeline.json"
    try:
        data_dir = read_json(state).get("data_dir") if state.is_file() else None
    except (OSError, ValueError, AttributeError):
        data_dir = None
    if isinstance(data_dir, str) and data_dir:
        path = Path(data_dir).expanduser()
        found.append((path if path.is_absolute() else repo_root() / path).resolve())
    return found


def check_out_dir(out_dir, run_dir) -> Path:
    """Refuse, before any figure is drawn, an --out folder that is a file, is in or holds a data folder, or holds
    files other than this project's figures (which the copies would replace); returns it resolved."""
    out = Path(out_dir).expanduser().resolve()
    fix = "Nothing was written. Fix: pass an empty folder, or one holding only these figures, e.g. --out figures."
    if out.exists() and not out.is_dir():
        raise FiguresOutError(f"--out {rel(out)} is a file, not a folder. {fix}")
    for data in _data_folders(Path(run_dir)):
        if out == data or data in out.parents or out in data.parents:
            raise FiguresOutError(
                f"--out {rel(out)} is, contains or lies inside the data folder {rel(data)}; the project never writes "
                f"into the data (figures there would be read as X-rays). {fix}"
            )
    if out.is_dir():
        own = {f"{name}.png" for name in CATALOGUE}
        foreign = sorted(p.name for p in out.iterdir()
                         if p.name not in own and not (p.name.startswith(".") and p.name.endswith(".tmp")))
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise FiguresOutError(
                f"--out {rel(out)} holds files that are no figures of this project ({shown}); the copies could "
                f"replace files of yours there. {fix}"
            )
    return out


def make_all(run_dir, out_dir=None) -> dict:
    """Draw every figure the run has artifacts for into RUN/figures/ (and copy to out_dir); returns name -> path or reason.

    ``out_dir`` is checked first (:func:`check_out_dir`); each copy is written to a temporary file and renamed onto
    its name, so a link of that name is replaced, never written through.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import atomic_path
    from .plotting import save_fig, set_theme

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run directory {run_dir} does not exist. Fix: run the notebooks first (make demo).")
    from .runs import check_no_links

    check_no_links(run_dir)  # RUN/figures as a link would be written through
    out = None if out_dir is None else check_out_dir(out_dir, run_dir)
    if out is not None and out == (run_dir / "figures").resolve():
        out = None  # the run's own figures folder: nothing to copy
    set_theme()
    makers = {
        "data_samples": lambda: data_samples(run_dir),
        "tf_gan_losses": lambda: losses(run_dir, "tf"),
        "torch_gan_losses": lambda: losses(run_dir, "torch"),
        "tf_real_vs_generated": lambda: real_vs_generated(run_dir, "tf"),
        "torch_real_vs_generated": lambda: real_vs_generated(run_dir, "torch"),
        "torch_samples_over_training": lambda: samples_over_training(run_dir, "torch"),
        "tf_samples_over_training": lambda: samples_over_training(run_dir, "tf"),
        "transfer_accuracy": lambda: transfer_accuracy(run_dir),
        "gan_options": lambda: gan_options(run_dir),
        "accuracy_vs_n": lambda: accuracy_vs_n(run_dir),
    }
    done = {}
    for name, make in makers.items():
        fig = make()
        if fig is None:
            done[name] = "skipped: the run has no artifacts for it (or it would show real X-rays)"
            continue
        path = save_fig(fig, name, run_dir)
        plt.close(fig)
        if out is not None:
            with atomic_path(out / path.name) as tmp:  # os.replace: a link of that name is replaced, not followed
                shutil.copyfile(path, tmp)
            path = out / path.name
        done[name] = path
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m covidgan_utils figures", description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True, help="a finished run directory, e.g. runs/demo")
    ap.add_argument("--out", default=None, help="also copy the PNGs here (e.g. figures/)")
    args = ap.parse_args(argv)
    from .config import repo_root

    run_dir = Path(args.run_dir)
    run_dir = run_dir if run_dir.is_absolute() else repo_root() / run_dir
    try:
        done = make_all(run_dir, args.out)
    except (FileNotFoundError, FiguresOutError, ValueError) as exc:
        print(f"error: {exc}")
        return 1
    for name, where in done.items():
        what, report = CATALOGUE[name]
        shown = rel(where) if isinstance(where, Path) else where
        print(f"{name:28s} {report:18s} {shown}")
    return 0
