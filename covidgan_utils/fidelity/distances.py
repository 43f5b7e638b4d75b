"""Distances between two sets of feature vectors: Fréchet distance, KID, precision/recall/density/coverage.

Written here in numpy / scipy / scikit-learn, so that notebook 06 and ``evaluate_run`` need neither torch
nor a package that prints on every call, and checked in ``tests/test_fidelity.py`` against the libraries
the field uses, on the same feature arrays:
- ``kid`` against torchmetrics' ``KernelInceptionDistance`` (a custom feature module that passes the
  features through; with subsets as large as the sets both compute the same unbiased MMD^2, to rounding);
- ``frechet_distance`` against torchmetrics' ``FrechetInceptionDistance`` (same pass-through module), in
  both of its regimes (fewer and more dimensions than images);
- ``prdc`` against the reference package ``prdc`` (``compute_prdc``, Naeem et al., ICML 2020).
Those two libraries are test dependencies (the ``dev`` extra), not run-time ones.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import CLASSES
from ..formatting import nanmean
from .features import one_thread, pixels

SET_KEYS = ("kid", "kid_std", "fd", "precision", "recall", "density", "coverage")


@one_thread
def frechet_distance(x, y, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets: |mu_x - mu_y|^2 + Tr(Sx + Sy - 2 (Sx Sy)^1/2).

    With fewer dimensions than images, (Sx Sy)^1/2 comes from scipy.linalg.sqrtm as in the usual FID code.
    With more (VGG16's 4096 or Inception's 2048 features from a few hundred images) the same trace is
    the sum of the singular values of Xc Yc^T / sqrt((n-1)(m-1)) (Xc, Yc the centred features): exact,
    and an n x m problem instead of a d x d matrix square root.
    """
    from scipy import linalg

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or len(y) < 2:
        return math.nan
    xc, yc = x - x.mean(0), y - y.mean(0)
    diff = x.mean(0) - y.mean(0)
    tr_x, tr_y = (xc**2).sum() / (len(x) - 1), (yc**2).sum() / (len(y) - 1)
    if x.shape[1] <= min(len(x), len(y)):
        s_x, s_y = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a near-singular product is handled below
            covmean = linalg.sqrtm(s_x @ s_y)
        tr_covmean = np.trace(covmean)
        if not np.isfinite(covmean).all() or abs(tr_covmean.imag) > 1e-6 * max(abs(tr_covmean.real), 1.0):
            offset = eps * np.eye(len(s_x))
            tr_covmean = np.trace(linalg.sqrtm((s_x + offset) @ (s_y + offset)))
        tr_covmean = float(np.real(tr_covmean))
    else:
        tr_covmean = float(np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / math.sqrt((len(x) - 1) * (len(y) - 1)))
    return float(max(diff @ diff + tr_x + tr_y - 2.0 * tr_covmean, 0.0))


def mmd2(a, b) -> float:
    """Unbiased MMD^2 of two equal-size sets with the cubic polynomial kernel (a.b / dim + 1)^3 (one KID subset)."""
    m, dim = len(a), a.shape[1]
    k_aa, k_bb, k_ab = ((p @ q.T / dim + 1.0) ** 3 for p, q in ((a, a), (b, b), (a, b)))
    within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(within - 2.0 * k_ab.mean())


@one_thread
def kid(x, y, subset_size: int = 100, n_subsets: int = 100, seed: int = 0) -> dict:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, mean and sd over random subsets.

    Unlike the Fréchet distance, the estimate has no bias that depends on the number of images, so
    values from a few hundred images can be compared (Binkowski et al., ICLR 2018).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m = int(min(subset_size, len(x), len(y)))
    if m < 2:
        return {"kid": math.nan, "kid_std": math.nan, "subset_size": m, "n_subsets": 0}
    rng = np.random.default_rng(seed)
    values = np.asarray(
        [
            mmd2(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
            for _ in range(n_subsets)
        ]
    )
    return {"kid": float(values.mean()), "kid_std": float(values.std()), "subset_size": m, "n_subsets": int(n_subsets)}


def _kth_neighbour_radii(x, k: int) -> np.ndarray:
    """Distance of each point to its k-th nearest other point of the same set."""
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return dist[:, k]


@one_thread
def prdc(real, fake, k: int = 5) -> dict:
    """Precision, recall, density, coverage (Naeem et al. 2020) from k-nearest-neighbour balls.

    precision: share of generated points inside some real point's k-NN ball (realism);
    recall: share of real points inside some generated point's ball (variety);
    density: mean count of real balls holding each generated point, / k (about 1 when alike);
    coverage: share of real points whose ball holds at least one generated point.
    """
    from sklearn.metrics import pairwise_distances

    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    k = int(min(k, len(real) - 1, len(fake) - 1))
    if k < 1:
        return {"precision": math.nan, "recall": math.nan, "density": math.nan, "coverage": math.nan, "k": k}
    r_real = _kth_neighbour_radii(real, k)
    r_fake = _kth_neighbour_radii(fake, k)
    d = pairwise_distances(real, fake)  # (n_real, n_fake)
    inside_real = d < r_real[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d < r_fake[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) < r_real).mean()),
        "k": k,
    }


def set_metrics(real, fake, *, k: int = 5, subset_size: int = 100, n_subsets: int = 100, seed: int = 0) -> dict:
    """KID (mean, sd), Fréchet distance and precision/recall/density/coverage of two feature sets."""
    out = kid(real, fake, subset_size, n_subsets, seed)
    out["fd"] = frechet_distance(real, fake)
    out.update(prdc(real, fake, k))
    out["n_real"], out["n_generated"] = int(len(real)), int(len(fake))
    return out


def per_class_metrics(real_feats, real_labels, fake_feats, fake_labels, **kwargs) -> dict:
    """set_metrics per class, plus their class means at the top level (the class mix is not a quality)."""
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    per_class = {}
    for c, name in enumerate(CLASSES):
        if (real_labels == c).sum() >= 2 and (fake_labels == c).sum() >= 2:
            per_class[name] = set_metrics(real_feats[real_labels == c], fake_feats[fake_labels == c], **kwargs)
    out = {key: nanmean([m[key] for m in per_class.values()]) for key in SET_KEYS}
    out["per_class"] = per_class
    return out


@one_thread
def size_dependence(x, y, sizes, repeats: int = 5, seed: int = 0):
    """FD and KID of random n-image subsets of ``y`` against all of ``x``, for each n: shows FD's bias with n."""
    import pandas as pd

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        n = int(min(n, len(y)))
        for r in range(repeats):
            sub = y[rng.choice(len(y), n, replace=False)]
            k = kid(x, sub, subset_size=n, n_subsets=20, seed=seed + r)
            rows.append({"n": n, "repeat": r, "fd": frechet_distance(x, sub), "kid": k["kid"]})
    return pd.DataFrame(rows)


def diversity(images, max_images: int = 200, seed: int = 0) -> float:
    """Mean pairwise distance between images (32x32 gray pixels, RMS per pixel): 0 when a generator collapses.

    Compare with the same number on real images.
    """
    x = pixels(images, 32)
    if len(x) > max_images:
        x = x[np.random.default_rng(seed).choice(len(x), max_images, replace=False)]
    if len(x) < 2:
        return 0.0
    sq = (x**2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    iu = np.triu_indices(len(x), 1)
    return float(np.sqrt(d2[iu] / x.shape[1]).mean())
