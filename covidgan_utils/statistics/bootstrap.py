"""The class-stratified paired bootstrap: per-image resampling weights, metrics on them, intervals and tests.

Resampling draws images with replacement within each class, seeded; a row of weights of ones gives the
plain metric. A condition's statistic is the mean over its head seeds.
"""

from __future__ import annotations

import math

import numpy as np

from .. import CLASSES

BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "brier")
"""Every metric the bootstrap resamples (Brier: lower is better; the others: higher is better)."""
PRIOR_CORRECTED = "real:prior-corrected"
"""``real``'s probabilities with the logit shifted by log(n_normal / n_covid) of its training set."""
NO_GAN_CONTROLS = ("real", "real+copies", "real+classweight")
"""Candidates for the best no-GAN control (``real:prior-corrected`` ranks images as ``real`` does: same AUC)."""
GAN_CONDITIONS = ("real+torch", "real+tf")
EQUIVALENCE_MARGIN = 0.016
"""Fixed in advance: the report's smaller gain, 0.958 -> 0.974 (+1.6 points), on AUC and accuracy alike."""


# ----------------------------------------------------------------------------- the class prior


def prior_offset(n_covid: int, n_normal: int) -> float:
    """The logit offset log(n_normal / n_covid) that moves a classifier trained at that class ratio to equal priors."""
    if n_covid <= 0 or n_normal <= 0:
        raise ValueError(
            f"n_covid and n_normal must both be positive (got {n_covid}, {n_normal}): they are training counts."
        )
    return math.log(n_normal / n_covid)


def prior_corrected(prob_covid, n_covid: int, n_normal: int) -> np.ndarray:
    """P(COVID) with the odds multiplied by n_normal / n_covid (= logit + prior_offset), exact at 0 and 1."""
    p = np.asarray(prob_covid, dtype=np.float64)
    r = n_normal / n_covid
    prior_offset(n_covid, n_normal)  # validates the counts
    return p * r / (p * r + (1.0 - p))


def add_prior_corrected(predictions, train_info: dict | None, base: str = "real"):
    """``predictions`` plus rows of ``real:prior-corrected`` (from ``base``'s training counts); unchanged without
    the counts, or when the classes were balanced (the offset is 0)."""
    import pandas as pd

    counts = (train_info or {}).get(base, {}).get("n_train_per_class") or {}
    n_covid, n_normal = counts.get(CLASSES[1]), counts.get(CLASSES[0])
    sub = predictions[predictions["condition"] == base]
    if (
        not n_covid
        or not n_normal
        or n_covid == n_normal
        or sub.empty
        or (predictions["condition"] == PRIOR_CORRECTED).any()
    ):
        return predictions
    extra = sub.copy()
    extra["condition"] = PRIOR_CORRECTED
    extra["prob_covid"] = prior_corrected(sub["prob_covid"].to_numpy(), n_covid, n_normal)
    extra["pred"] = (extra["prob_covid"] >= 0.5).astype(np.int64)
    return pd.concat([predictions, extra], ignore_index=True)


# ----------------------------------------------------------------------------- the bootstrap


def seed_matrix(predictions, condition: str, paths=None):
    """(paths, labels, probabilities shaped (seeds, images)) of one condition, images in ``paths`` order."""
    sub = predictions[predictions["condition"] == condition]
    if sub.empty:
        raise ValueError(
            f"No predictions for condition {condition!r}; present: {sorted(set(predictions['condition']))}."
        )
    table = sub.pivot_table(index="path", columns="seed", values="prob_covid", aggfunc="first", sort=False)
    labels = sub.groupby("path", sort=False)["label"].first()
    paths = list(labels.index) if paths is None else list(paths)
    missing = set(paths) - set(table.index)
    if missing:
        raise ValueError(f"Condition {condition!r} lacks {len(missing)} validation images (e.g. {sorted(missing)[0]}).")
    return paths, labels.reindex(paths).to_numpy(np.int64), table.reindex(paths).to_numpy(np.float64).T


def stratified_counts(labels, n_resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """How often each image is drawn in each resample (B, n): images drawn with replacement within each class."""
    y = np.asarray(labels)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, not {n_resamples}.")
    rng = np.random.default_rng([int(seed), 192])
    counts = np.zeros((n_resamples, len(y)), dtype=np.float64)
    for k in np.unique(y):
        members = np.flatnonzero(y == k)
        draws = rng.integers(0, len(members), size=(n_resamples, len(members)))
        flat = (draws + len(members) * np.arange(n_resamples)[:, None]).ravel()
        counts[:, members] = np.bincount(flat, minlength=n_resamples * len(members)).reshape(n_resamples, -1)
    return counts


def weighted_metrics(labels, prob_seeds, counts, threshold: float = 0.5) -> dict:
    """Every BOOTSTRAP_METRICS value on each weighting of the images (rows of ``counts``), averaged over seeds.

    ``prob_seeds`` is (seeds, n). Row b of ``counts`` says how often each image is in resample b; a row of
    ones gives the plain metric (equal to scikit-learn's on the original images). AUC is the Mann-Whitney
    statistic over the resampled (COVID, Normal) pairs, ties counted one half. A set with one class only
    gives NaN for the metrics that need the other (balanced accuracy, AUC, and its missing class's recall).
    """
    y = np.asarray(labels)
    P = np.atleast_2d(np.asarray(prob_seeds, dtype=np.float64))
    W = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    pos, neg = y == 1, y == 0
    Wp, Wn = W[:, pos], W[:, neg]
    n_pos, n_neg = Wp.sum(1), Wn.sum(1)
    out = {m: np.zeros(len(W)) for m in BOOTSTRAP_METRICS}
    with np.errstate(invalid="ignore", divide="ignore"):
        for p in P:
            correct = ((p >= threshold).astype(np.int64) == y).astype(np.float64)
            sens = Wp @ correct[pos] / n_pos
            spec = Wn @ correct[neg] / n_neg
            out["sensitivity"] += sens
            out["specificity"] += spec
            out["accuracy"] += W @ correct / W.sum(1)
            out["balanced_accuracy"] += (sens + spec) / 2
            out["brier"] += W @ (p - y) ** 2 / W.sum(1)
            out["roc_auc"] += _weighted_wins(p[pos], p[neg], Wp, Wn) / (n_pos * n_neg)
    return {m: v / len(P) for m, v in out.items()}


def _weighted_wins(pp, pn, Wp, Wn) -> np.ndarray:
    """Per weighting: the sum over (COVID, Normal) pairs of w_i w_j [p_i > p_j] (ties one half).

    The Normal images are sorted once and their weights cumulated, so each COVID image looks up how much
    Normal weight lies below it: O(B n) instead of the O(B n_pos n_neg) of comparing every pair.
    """
    order = np.argsort(pn, kind="stable")
    sorted_neg = pn[order]
    cum = np.concatenate([np.zeros((len(Wn), 1)), np.cumsum(Wn[:, order], axis=1)], axis=1)
    below = np.searchsorted(sorted_neg, pp, side="left")
    upto = np.searchsorted(sorted_neg, pp, side="right")
    wins = cum[:, below] + 0.5 * (cum[:, upto] - cum[:, below])
    return (Wp * wins).sum(1)


def percentile_interval(samples, level: float = 0.95) -> list[float]:
    """The central ``level`` percentile interval of bootstrap samples (NaN samples make it NaN)."""
    s = np.asarray(samples, dtype=np.float64)
    if s.size == 0 or np.isnan(s).any():
        return [math.nan, math.nan]
    low, high = np.quantile(s, [(1 - level) / 2, (1 + level) / 2])
    return [float(low), float(high)]


def bootstrap_pvalue(differences) -> float:
    """Two-sided bootstrap p of 'no difference': twice the smaller share of resampled differences on either side
    of 0 (each share counted (1 + k) / (B + 1)), capped at 1; the smallest level whose percentile interval excludes 0."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0 or np.isnan(d).any():
        return math.nan
    below, above = (1 + np.sum(d <= 0)) / (d.size + 1), (1 + np.sum(d >= 0)) / (d.size + 1)
    return float(min(1.0, 2 * min(below, above)))


def tost(differences, margin: float = EQUIVALENCE_MARGIN, alpha: float = 0.05) -> dict:
    """Two one-sided tests on bootstrap differences: equivalent when the 1 - 2 alpha (90%) interval lies inside +-margin."""
    if margin <= 0:
        raise ValueError(f"margin must be positive (the largest difference called 'no difference'), not {margin}.")
    d = np.asarray(differences, dtype=np.float64)
    interval = percentile_interval(d, 1 - 2 * alpha)
    if d.size == 0 or np.isnan(d).any():
        return {"margin": margin, "interval_90": interval, "p": math.nan, "equivalent": False}
    p_low = (1 + np.sum(d <= -margin)) / (d.size + 1)
    p_high = (1 + np.sum(d >= margin)) / (d.size + 1)
    return {
        "margin": margin,
        "interval_90": interval,
        "p": float(max(p_low, p_high)),
        "equivalent": bool(-margin < interval[0] and interval[1] < margin),
    }


def holm(pvalues) -> list[float]:
    """Holm-adjusted p-values (statsmodels multipletests, method='holm')."""
    from statsmodels.stats.multitest import multipletests

    if len(pvalues) == 0:
        return []
    return [float(p) for p in multipletests(list(pvalues), method="holm")[1]]


def mcnemar_table(correct_a, correct_b) -> list[list[int]]:
    """[[both right, a right & b wrong], [a wrong & b right, both wrong]] from two boolean 'right' vectors."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    return [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]


def exact_mcnemar(correct_a, correct_b) -> float:
    """Exact McNemar p (statsmodels) from two boolean 'right' vectors on the same images; 1.0 without discordant images."""
    from statsmodels.stats.contingency_tables import mcnemar

    table = mcnemar_table(correct_a, correct_b)
    if table[0][1] + table[1][0] == 0:
        return 1.0
    return float(mcnemar(table, exact=True).pvalue)


def exact_mcnemar_p(b, c) -> np.ndarray:
    """Two-sided exact McNemar p per pair of discordant counts (b, c) (arrays; weighted counts allowed); 1 without any."""
    from scipy.stats import binom

    b, c = np.asarray(b), np.asarray(c)
    n = b + c
    return np.where(n > 0, np.minimum(1.0, 2 * binom.cdf(np.minimum(b, c), n, 0.5)), 1.0)


def scored(labels, prob_seeds, counts) -> tuple[dict, dict]:
    """(plain metrics, metrics on each resample): the pair :func:`differences` compares."""
    y = np.asarray(labels)
    return weighted_metrics(y, prob_seeds, np.ones((1, len(y)))), weighted_metrics(y, prob_seeds, counts)


def differences(a, b, alpha: float = 0.05) -> dict:
    """b - a from (point, bootstrap samples) pairs of :func:`weighted_metrics` results (see :func:`scored`):
    per metric the estimate, 95% and 90% percentile intervals and the bootstrap p."""
    (point_a, boot_a), (point_b, boot_b) = a, b
    out = {}
    for m in BOOTSTRAP_METRICS:
        d = boot_b[m] - boot_a[m]
        out[m] = {
            "estimate": float(point_b[m][0] - point_a[m][0]),
            "interval": percentile_interval(d, 1 - alpha),
            "interval_90": percentile_interval(d, 1 - 2 * alpha),
            "p": bootstrap_pvalue(d),
        }
    return out


def paired_differences(
    labels, prob_a, prob_b, n_resamples: int = 2000, seed: int = 0, alpha: float = 0.05, counts=None
) -> dict:
    """b - a on the same images, per BOOTSTRAP_METRICS metric: estimate, 95% and 90% interval, p (class-stratified
    paired bootstrap, seed means; ``counts`` reuses resamples already drawn)."""
    y = np.asarray(labels)
    W = stratified_counts(y, n_resamples, seed) if counts is None else counts
    return differences(scored(y, prob_a, W), scored(y, prob_b, W), alpha)


def independent_differences(
    labels_a, prob_a, labels_b, prob_b, n_resamples: int = 2000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """b - a between two independent image sets (home and external), per metric: estimate, 95% and 90% interval,
    p, from independent class-stratified bootstraps of the two sets (seed means)."""
    ya, yb = np.asarray(labels_a), np.asarray(labels_b)
    a = scored(ya, prob_a, stratified_counts(ya, n_resamples, seed))
    b = scored(yb, prob_b, stratified_counts(yb, n_resamples, seed + 1))
    return differences(a, b, alpha)
