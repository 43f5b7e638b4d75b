"""A fixed feature space for gates and for comparisons across runs and versions, with real-vs-real references.

The learned extractors (``features.py``) change with every run: the "domain" MLP is trained on the run's
own training images, so its KID moves whenever the data or the split moves. The map here learns nothing:

``fixed_features`` (version ``FEATURES_VERSION``):
1. gray pixels in [0, 1] at 32 x 32 (``features.pixels``: area averaging), minus mid-gray 0.5, times 2/32;
2. gradient-orientation histograms (HOG-like, Dalal and Triggs 2005): central-difference gradients of the
   32 x 32 image; each gradient's magnitude is shared linearly between the two nearest of 8 circular bins of
   unsigned orientation; summed over 4 x 4 cells of 8 x 8 pixels and divided by 64; each cell's 8 bins
   L2-normalised as h / sqrt(|h|^2 + 0.02^2); times 1/4;
3. the 1152 values (1024 + 128) times a standard Gaussian matrix (1152 x 64) drawn from numpy's legacy
   ``RandomState(FEATURES_SEED)``, whose stream numpy keeps fixed across versions: 64 features, each of
   magnitude about 1 on X-rays, so that KID's kernel (x.y / 64 + 1)^3 works on the scale it was made for.
The block weights give both blocks about the same spread across images, on the real sample
(COVID-19 Radiography Database) and on the phantoms alike; the projection keeps distances (Johnson-
Lindenstrauss) and leaves fewer dimensions than images, so the Fréchet distance is well posed.
Any change to this map must raise ``FEATURES_VERSION``; ``tests/test_fidelity.py`` pins its values.

Real-vs-real reference: the real training images of each class are shuffled (seed 0) and cut into two
disjoint halves A and B of equal size; KID, FD and PRDC of A against B is what a perfect generator would
score at that sample size. Each generated set is compared with A at the same size (a seeded random subset
of the size of B), so the two numbers differ only by what the images are.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import CLASSES
from .distances import SET_KEYS, per_class_metrics
from .features import one_thread, pixels

FEATURES_VERSION = 1
FEATURES_NAME = f"fixed-v{FEATURES_VERSION}"
FEATURES_SEED = 2020
FEATURES_SIZE = 32
FEATURES_DIM = 64
ORIENTATIONS = 8
CELL = 8  # pixels per cell side: 4 x 4 cells at 32 px
HOG_EPS = 0.02
DESCRIPTION = (
    f"{FEATURES_NAME}: 32x32 gray pixels + 8-bin gradient-orientation histograms in 4x4 cells, "
    f"projected to {FEATURES_DIM} dimensions by a fixed Gaussian matrix (seed {FEATURES_SEED}); learns nothing"
)


@functools.lru_cache(maxsize=1)
def _projection() -> np.ndarray:
    n_in = FEATURES_SIZE**2 + (FEATURES_SIZE // CELL) ** 2 * ORIENTATIONS
    matrix = np.random.RandomState(FEATURES_SEED).standard_normal((n_in, FEATURES_DIM))
    matrix.setflags(write=False)
    return matrix


def orientation_histograms(images01: np.ndarray) -> np.ndarray:
    """(N, S, S) gray images in [0,1] -> (N, cells * cells * 8) L2-normalised gradient-orientation histograms."""
    n, s, _ = images01.shape
    gy, gx = np.gradient(images01, axis=(1, 2))
    magnitude = np.hypot(gx, gy)
    # each gradient votes into the two nearest of 8 circular bins (centres at (k + 1/2) pi / 8), linearly:
    # the histogram then changes smoothly with the angle, also across 0 = pi
    position = np.mod(np.arctan2(gy, gx), np.pi) / np.pi * ORIENTATIONS - 0.5
    low = np.floor(position)
    upper_share = position - low
    bins = np.arange(ORIENTATIONS)
    votes = magnitude[..., None] * (
        (1.0 - upper_share)[..., None] * (np.mod(low, ORIENTATIONS)[..., None] == bins)
        + upper_share[..., None] * (np.mod(low + 1, ORIENTATIONS)[..., None] == bins)
    )  # (N, S, S, 8)
    cells = s // CELL
    hist = votes.reshape(n, cells, CELL, cells, CELL, ORIENTATIONS).sum(axis=(2, 4)) / CELL**2
    hist /= np.sqrt((hist**2).sum(axis=-1, keepdims=True) + HOG_EPS**2)
    return hist.reshape(n, -1)


@one_thread
def fixed_features(images) -> np.ndarray:
    """The fixed, data-independent feature map (see the module docstring): images -> (N, 64) float64."""
    x = pixels(images, FEATURES_SIZE).astype(np.float64)
    if len(x) == 0:
        return np.zeros((0, FEATURES_DIM))
    side = FEATURES_SIZE
    raw = np.concatenate(
        [(x - 0.5) * (2.0 / side), orientation_histograms(x.reshape(-1, side, side)) / math.sqrt((side // CELL) ** 2)],
        axis=1,
    )
    return raw @ _projection()


def real_halves(labels, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two disjoint halves A and B of equal size per class (one image left out of an odd class)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    a, b = [], []
    for c in range(len(CLASSES)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        half = len(idx) // 2
        a.append(idx[:half])
        b.append(idx[half : 2 * half])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def matched_subset(labels, sizes: dict, seed: int = 0) -> np.ndarray:
    """A seeded random subset with ``sizes[class name]`` images of each class (all of a class that has fewer)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(np.flatnonzero(labels == c), min(sizes.get(name, 0), int((labels == c).sum())), replace=False)
        for c, name in enumerate(CLASSES)
    ]
    return np.sort(np.concatenate(keep))


def class_counts(labels) -> dict:
    labels = np.asarray(labels)
    return {name: int((labels == c).sum()) for c, name in enumerate(CLASSES)}


def gate_name(metric: str, k: int, n_real: dict, n_fake: dict) -> str:
    """The exact name of a fixed-space number, e.g. "PRDC recall, k=5, n_real=300+165, n_fake=300+165 (...)"."""
    real, fake = ("+".join(str(n[c]) for c in CLASSES) for n in (n_real, n_fake))
    return f"{metric}, k={k}, n_real={real}, n_fake={fake} ({'+'.join(CLASSES)}), {FEATURES_NAME} features, class mean"


def _summary(m: dict, n_real: dict, n_fake: dict, k: int) -> dict:
    return {
        **{key: m[key] for key in SET_KEYS},
        "per_class": m["per_class"],
        "n_real": n_real,
        "n_fake": n_fake,
        "recall_name": gate_name("PRDC recall", k, n_real, n_fake),
    }


def real_vs_real(features, labels, *, k: int = 5, subset_size: int = 100, n_subsets: int = 100, seed: int = 0) -> dict:
    """KID, FD and PRDC between two disjoint halves of the real images (the reference for every fixed-space number)."""
    features, labels = np.asarray(features), np.asarray(labels)
    a, b = real_halves(labels, seed)
    m = per_class_metrics(
        features[a], labels[a], features[b], labels[b], k=k, subset_size=subset_size, n_subsets=n_subsets
    )
    return _summary(m, class_counts(labels[a]), class_counts(labels[b]), k)


def real_vs_generated(
    real_features,
    real_labels,
    fake_features,
    fake_labels,
    *,
    k: int = 5,
    subset_size: int = 100,
    n_subsets: int = 100,
    seed: int = 0,
) -> dict:
    """KID, FD and PRDC of real half A against generated images subsampled to half B's size per class."""
    real_features, real_labels = np.asarray(real_features), np.asarray(real_labels)
    fake_features, fake_labels = np.asarray(fake_features), np.asarray(fake_labels)
    a, b = real_halves(real_labels, seed)
    g = matched_subset(fake_labels, class_counts(real_labels[b]), seed)
    m = per_class_metrics(
        real_features[a],
        real_labels[a],
        fake_features[g],
        fake_labels[g],
        k=k,
        subset_size=subset_size,
        n_subsets=n_subsets,
    )
    return _summary(m, class_counts(real_labels[a]), class_counts(fake_labels[g]), k)


def fixed_space(real_images, real_labels, generated: dict, **kwargs) -> dict:
    """The fixed-space block of metrics.json: feature description, real-vs-real, and each generated set beside it."""
    real = fixed_features(real_images)
    out = {
        "features": {
            "name": FEATURES_NAME,
            "version": FEATURES_VERSION,
            "dim": FEATURES_DIM,
            "description": DESCRIPTION,
        },
        "real_vs_real": real_vs_real(real, real_labels, **kwargs),
    }
    for name, (images, labels) in generated.items():
        out[name] = real_vs_generated(real, real_labels, fixed_features(images), labels, **kwargs)
    return out
