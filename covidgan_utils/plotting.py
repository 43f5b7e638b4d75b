"""One seaborn theme, one save_fig, and the image grids every notebook shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import CLASSES

DPI = 80

# One meaning per colour in every figure (seaborn's colorblind palette): frameworks, classes, and controls.
FRAMEWORK_COLORS = {"torch": "#0173B2", "tf": "#DE8F05"}  # PyTorch blue, TensorFlow orange
CLASS_COLORS = {"Normal": "#029E73", "COVID": "#D55E00"}  # Normal green, COVID red
REAL_COLOR = "#555555"  # real images and real-only baselines: gray
FRAMEWORK_NAMES = {"torch": "PyTorch cGAN", "tf": "TensorFlow cGAN"}


def set_theme() -> None:
    """The single plotting theme of the project (same inline resolution in every notebook)."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams["figure.dpi"] = DPI  # what a notebook shows inline
    mpl.rcParams["savefig.dpi"] = DPI


def save_fig(fig, name: str, run_dir: str | Path, dpi: int = DPI) -> Path:
    """Save ``fig`` as RUN/figures/<name>.png (atomically) and return the path."""
    from .files import atomic_path

    out = Path(run_dir) / "figures" / f"{name}.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return out


def to_display(images: np.ndarray) -> np.ndarray:
    """(N,H,W,C) or (N,C,H,W) uint8/float images -> (N,H,W) or (N,H,W,3) float in [0,1]."""
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = np.clip(arr, 0.0, 1.0)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 4 and arr.shape[-1] == 3 and np.allclose(arr[..., 0], arr[..., 2]):
        arr = arr[..., 0]
    return arr


def image_grid(images, ncols: int = 8, titles=None, row_labels=None, size: float = 1.3, suptitle=None):
    """Show images in a grid (gray colormap); returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    arr = to_display(images)
    n = len(arr)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        if i < n:
            ax.imshow(arr[i], cmap="gray", vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
        else:
            ax.axis("off")
    if row_labels is not None:  # written left of the row (tick labels are off, so nothing overlaps the image)
        for r, label in enumerate(row_labels):
            axes[r, 0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center", labelpad=6)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def class_grid(images, labels, per_class: int = 8, suptitle=None, size: float = 1.3):
    """One row per class (Normal, COVID) of the first ``per_class`` images of that class."""
    labels = np.asarray(labels)
    rows, names = [], []
    for k, name in enumerate(CLASSES):
        idx = np.flatnonzero(labels == k)[:per_class]
        if len(idx) == 0:
            continue
        chosen = np.asarray(images)[idx]
        if len(chosen) < per_class:
            pad = np.zeros((per_class - len(chosen), *chosen.shape[1:]), dtype=chosen.dtype)
            chosen = np.concatenate([chosen, pad])
        rows.append(chosen)
        names.append(name)
    return image_grid(np.concatenate(rows), ncols=per_class, row_labels=names, suptitle=suptitle, size=size)


def history_plot(history, title: str = "", test_column: str | None = None):
    """Discriminator and generator loss per epoch (and a test loss if given), one panel each."""
    import matplotlib.pyplot as plt

    cols = ["d_loss", "g_loss"] + ([test_column] if test_column and test_column in history else [])
    names = {"d_loss": "discriminator loss", "g_loss": "generator loss", "g_test_loss": "generator test loss"}
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 3.2), squeeze=False)
    for ax, col in zip(axes[0], cols):
        ax.plot(history["epoch"], history[col], marker="o" if len(history) < 30 else None, ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("binary cross-entropy (mean per epoch)")
        ax.set_title(names.get(col, col))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
