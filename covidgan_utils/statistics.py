"""Paired comparisons of the VGG16 conditions: class-stratified bootstrap, McNemar, Holm, TOST, power.

The unit is the validation image, and the images are assumed independent. Every condition is scored
on the same images, so conditions are compared image by image (paired). Resampling draws images
with replacement *within each class* (the validation set has a fixed 72/120 design, and AUC,
sensitivity and specificity are defined per class), B = 2000 times, seeded; the same draws serve
every condition and every metric. A condition's statistic on a draw is the mean over its head seeds
of that metric, so the point estimates equal the seed means in results.json, and the intervals cover
validation sampling (head seeds averaged; GAN seeds not at all). Decisions compared image by image
(exact McNemar) use each image's probability averaged over the head seeds, thresholded at 0.5.

Thresholds are never tuned on the validation set: the only threshold other than 0.5 is the class-prior
correction of ``real``, a logit offset of log(n_normal / n_covid) computed from the training counts.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import CLASSES

BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "brier")
"""Every metric the bootstrap resamples (Brier: lower is better; the others: higher is better)."""
PRIOR_CORRECTED = "real:prior-corrected"
"""``real``'s probabilities with the logit shifted by log(n_normal / n_covid) of its training set."""
NO_GAN_CONTROLS = ("real", "real+copies", "real+classweight")
"""Candidates for the best no-GAN control (``real:prior-corrected`` ranks images as ``real`` does: same AUC)."""
GAN_CONDITIONS = ("real+torch", "real+tf")
EQUIVALENCE_MARGIN = 0.016
"""Fixed in advance: the report's smaller gain, 0.958 -> 0.974 (+1.6 points), on AUC and accuracy alike."""
PRIMARY_RULE = (
    "each GAN condition (real+torch, real+tf) against the no-GAN control with the highest ROC AUC among "
    "real, real+copies and real+classweight (the hardest of them to beat), on ROC AUC, paired bootstrap, "
    "Holm-corrected over the GAN conditions; every other comparison is descriptive"
)


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


def exact_mcnemar(correct_a, correct_b) -> float:
    """Exact McNemar p (statsmodels) from two boolean 'right' vectors on the same images; 1.0 without discordant images."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    if table[0][1] + table[1][0] == 0:
        return 1.0
    return float(mcnemar(table, exact=True).pvalue)


# ----------------------------------------------------------------------------- the analysis


OPERATING_POINT_CONTROLS = (PRIOR_CORRECTED, "real+classweight")
"""A gain in accuracy or balanced accuracy is a better operating point only if it beats both: real images only,
the threshold moved for the class prior (from the training counts) or by class weights in the loss."""


def comparisons(conditions) -> list[tuple[str, str]]:
    """The (a, b) pairs compared, as b - a: every condition against ``real``; every other condition against
    each operating-point control; each GAN condition against ``real+copies`` too."""
    names = list(conditions)
    pairs = [("real", c) for c in names if c != "real"] if "real" in names else []
    for ctrl in OPERATING_POINT_CONTROLS:
        if ctrl in names:
            pairs += [(ctrl, c) for c in names if c not in ("real", PRIOR_CORRECTED, ctrl)]
    if "real+copies" in names:
        pairs += [("real+copies", c) for c in GAN_CONDITIONS if c in names]
    return pairs


def best_control(conditions: dict) -> str | None:
    """The pre-specified comparator: the no-GAN control with the highest ROC AUC (ties: the first in NO_GAN_CONTROLS)."""
    present = [c for c in NO_GAN_CONTROLS if c in conditions and conditions[c].get("roc_auc") is not None]
    present = [c for c in present if not math.isnan(conditions[c]["roc_auc"])]
    return max(present, key=lambda c: conditions[c]["roc_auc"]) if present else None


def analyse(predictions, conditions: dict, n_resamples: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Intervals per condition, paired comparisons, Holm on the primary ones, TOST: the statistics of results.json.

    Returns {"intervals": {condition: {metric_ci: [low, high]}}, "paired": [...], "equivalence": [...],
    "primary": {"rule", "control", "metric", "comparisons"}}.
    """
    names = list(conditions)
    paths = None
    probs, labels = {}, None
    for cond in names:
        paths, y, P = seed_matrix(predictions, cond, paths)
        if labels is not None and not np.array_equal(labels, y):
            raise ValueError(f"Condition {cond!r} gives other labels for the same validation images.")
        labels, probs[cond] = y, P
    counts = stratified_counts(labels, n_resamples, seed)
    ones = np.ones((1, len(labels)))
    boot = {c: weighted_metrics(labels, probs[c], counts) for c in names}
    point = {c: {m: float(v[0]) for m, v in weighted_metrics(labels, probs[c], ones).items()} for c in names}
    intervals = {c: {f"{m}_ci": percentile_interval(boot[c][m], 1 - alpha) for m in BOOTSTRAP_METRICS} for c in names}
    decided = {c: (probs[c].mean(0) >= 0.5).astype(np.int64) == labels for c in names}
    control = best_control(conditions)
    paired, equivalence = [], []
    for a, b in comparisons(names):
        for metric in BOOTSTRAP_METRICS:
            d = boot[b][metric] - boot[a][metric]
            entry = {
                "a": a,
                "b": b,
                "metric": metric,
                "method": "class-stratified paired bootstrap over validation images (percentile), seed means",
                "estimate": point[b][metric] - point[a][metric],
                "interval": percentile_interval(d, 1 - alpha),
                "p": bootstrap_pvalue(d),
                "primary": bool(metric == "roc_auc" and b in GAN_CONDITIONS and a == control),
                "holm_p": None,
            }
            mask = {"accuracy": slice(None), "sensitivity": labels == 1, "specificity": labels == 0}.get(metric)
            if mask is not None:
                entry["mcnemar_p"] = exact_mcnemar(decided[a][mask], decided[b][mask])
                entry["mcnemar_on"] = {
                    "accuracy": "all images",
                    "sensitivity": "COVID images",
                    "specificity": "Normal images",
                }[metric]
            paired.append(entry)
            if metric in ("roc_auc", "accuracy"):
                eq = tost(d, EQUIVALENCE_MARGIN, alpha)
                eq["verdict"] = _verdict(eq, entry["p"], alpha)
                equivalence.append({"a": a, "b": b, "metric": metric, **eq})
    primary = [e for e in paired if e["primary"]]
    for entry, p in zip(primary, holm([e["p"] for e in primary])):
        entry["holm_p"] = p
    return {
        "intervals": intervals,
        "paired": paired,
        "equivalence": equivalence,
        "primary": {
            "rule": PRIMARY_RULE,
            "control": control,
            "metric": "roc_auc",
            "comparisons": [[e["a"], e["b"]] for e in primary],
        },
        "method": {
            "unit": "validation image (assumed independent)",
            "resampling": "within each class, with replacement (class-stratified), the same draws for every condition",
            "n_resamples": int(n_resamples),
            "seed": int(seed),
            "statistic": "metric of each head seed on the resampled images, averaged over head seeds",
            "covers": "validation sampling; head seeds averaged; not GAN seeds",
            "equivalence_margin": EQUIVALENCE_MARGIN,
        },
    }


def _verdict(eq: dict, p: float, alpha: float) -> str:
    if eq["equivalent"]:
        return "equivalent"
    if p is not None and not math.isnan(p) and p < alpha:
        return "different"
    return "inconclusive"


def find(paired: list, a: str, b: str, metric: str) -> dict | None:
    """The entry of ``paired`` (or ``equivalence``) comparing b with a on ``metric``, or None."""
    for entry in paired or []:
        if entry["a"] == a and entry["b"] == b and entry["metric"] == metric:
            return entry
    return None


# ----------------------------------------------------------------------------- power


def min_significant_images(alpha: float = 0.05) -> int:
    """The smallest paired gain, in images, that can reach two-sided exact McNemar p < alpha (all changes one way)."""
    k = 1
    while 2 * 0.5**k >= alpha:
        k += 1
    return k


@functools.lru_cache(maxsize=8)
def _mcnemar_rejections(n: int, alpha: float) -> np.ndarray:
    """reject[D, b]: True where b of D discordant images (b <= D) give two-sided exact McNemar p < alpha."""
    from scipy.stats import binom

    D = np.arange(n + 1)[:, None]
    b = np.arange(n + 1)[None, :]
    pvals = np.minimum(1.0, 2 * binom.cdf(np.minimum(b, D - b), D, 0.5))
    return (b <= D) & (pvals < alpha) & (D > 0)


def mcnemar_power(n: int, discordance: float, delta: float, alpha: float = 0.05) -> float:
    """Exact power of the two-sided exact McNemar test on n paired images.

    The number of discordant images is Binomial(n, discordance); of those, the ones the better classifier
    gets right are Binomial(D, 1/2 + delta / (2 discordance)); ``delta`` is the accuracy gain as a fraction.
    """
    from scipy.stats import binom

    if not 0 < discordance <= 1 or not 0 <= delta <= discordance:
        raise ValueError(f"Need 0 < discordance <= 1 and 0 <= delta <= discordance, got {discordance}, {delta}.")
    reject = _mcnemar_rejections(int(n), float(alpha))
    D, b = np.nonzero(reject)
    q = 0.5 + delta / (2 * discordance)
    inner = np.bincount(D, weights=binom.pmf(b, D, q), minlength=n + 1)
    return float(binom.pmf(np.arange(n + 1), n, discordance) @ inner)


def mcnemar_mde(
    n: int = 192, discordance: float = 0.10, alpha: float = 0.05, power: float = 0.80, method: str = "exact"
):
    """Minimum detectable accuracy gain of a paired comparison on n images (a fraction; None if out of reach).

    method="exact": the smallest gain whose exact power (``mcnemar_power``) reaches ``power`` (bisection);
    method="normal": Connor's (1987) normal approximation, delta = (z_a sqrt(psi) + z_b sqrt(psi - delta^2)) / sqrt(n).
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    if method == "normal":
        za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)
        f = lambda d: (za * math.sqrt(discordance) + zb * math.sqrt(discordance - d * d)) / math.sqrt(n) - d  # noqa: E731
        return float(brentq(f, 0.0, discordance)) if f(discordance) < 0 else None
    if method != "exact":
        raise ValueError(f"method must be 'exact' or 'normal', not {method!r}.")
    if mcnemar_power(n, discordance, discordance, alpha) < power:
        return None
    low, high = 0.0, discordance
    for _ in range(30):  # the gain to within 1e-9 of the discordance
        mid = (low + high) / 2
        low, high = (mid, high) if mcnemar_power(n, discordance, mid, alpha) < power else (low, mid)
    return float(high)


def power_table(
    n: int = 192, discordances=(0.05, 0.10, 0.20), alpha: float = 0.05, power: float = 0.80, report_gains=None
) -> dict:
    """The minimum detectable effect at several discordance rates (never post-hoc power), for results.json."""
    rows = []
    for psi in discordances:
        exact = mcnemar_mde(n, psi, alpha, power, "exact")
        rows.append(
            {
                "discordance": float(psi),
                "mde": exact,
                "mde_images": None if exact is None else exact * n,
                "mde_normal_approximation": mcnemar_mde(n, psi, alpha, power, "normal"),
            }
        )
    k = min_significant_images(alpha)
    return {
        "n": int(n),
        "alpha": alpha,
        "power": power,
        "method": "exact two-sided McNemar; discordant images Binomial(n, rate); smallest gain with this power",
        "mde": rows,
        "min_significant_images": k,
        "min_significant_gain": k / n,
        "report_gains": dict(report_gains or {}),
    }


# ----------------------------------------------------------------------------- the report's procedure


def procedure_error_rate(
    predictions, condition: str = "real", n_sim: int = 2000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """How often the report's procedure declares a gain where there is none, simulated from this run's predictions.

    Two heads of ``condition`` that differ only in their seed have the same true performance. Each simulated
    experiment takes one ordered pair of them (one run each, as the report had), redraws the validation images
    (class-stratified bootstrap) and applies the report's procedure: a raw accuracy gain, or a gain with exact
    McNemar p < alpha. Covers head seeds and validation sampling only (no GAN or training-set variation), so it
    is a lower bound on how often the procedure is fooled.
    """
    from scipy.stats import binom

    what = (
        f"two heads of {condition} differing only in their seed (the same condition: no true difference between "
        "conditions, though the two heads may differ), one run each, "
        "validation images redrawn within class; the report's procedure declares a gain if accuracy rises "
        f"(raw) or rises with exact McNemar p < {alpha}"
    )
    sub = predictions[predictions["condition"] == condition]
    if sub.empty or sub["seed"].nunique() < 2:
        return {"simulates": what, "raw_gain": None, "mcnemar_gain": None, "reason": "needs at least two head seeds"}
    _, y, P = seed_matrix(predictions, condition)
    correct = ((P >= 0.5).astype(np.int64) == y).astype(np.float64)
    rng = np.random.default_rng([int(seed), 974])
    S = len(P)
    first = rng.integers(0, S, n_sim)
    second = (first + rng.integers(1, S, n_sim)) % S
    W = stratified_counts(y, n_sim, seed)
    ci, cj = correct[first], correct[second]
    gain = (W * (cj - ci)).sum(1)
    b = (W * (cj * (1 - ci))).sum(1)
    c = (W * (ci * (1 - cj))).sum(1)
    p = np.where(b + c > 0, np.minimum(1.0, 2 * binom.cdf(np.minimum(b, c), b + c, 0.5)), 1.0)
    return {
        "simulates": what,
        "condition": condition,
        "n_sim": int(n_sim),
        "head_seeds": int(S),
        "raw_gain": float(np.mean(gain > 0)),
        "mcnemar_gain": float(np.mean((gain > 0) & (p < alpha))),
        "mean_discordant_images": float(np.mean(b + c)),
    }


def _declared_gains(correct_a, correct_b, alpha: float):
    """Per simulated experiment (rows): does b gain accuracy over a, and does it with exact McNemar p < alpha?"""
    from scipy.stats import binom

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    gain = b.sum(1).astype(np.int64) - a.sum(1)
    b_only, a_only = (b & ~a).sum(1), (a & ~b).sum(1)
    n = b_only + a_only
    p = np.where(n > 0, np.minimum(1.0, 2 * binom.cdf(np.minimum(b_only, a_only), n, 0.5)), 1.0)
    return gain > 0, (gain > 0) & (p < alpha), n


def _draw_validation_sets(labels, draw_per_class: dict, n_sim: int, rng) -> tuple[np.ndarray, bool]:
    """(n_sim, m) indices: each row a validation set drawn within class, without replacement when the class allows."""
    y = np.asarray(labels)
    columns, replaced = [], False
    for k, name in enumerate(CLASSES):
        m = int(draw_per_class.get(name, 0))
        members = np.flatnonzero(y == k)
        if m == 0:
            continue
        if len(members) == 0:
            raise ValueError(f"The test set has no {name} image to draw {m} from.")
        if len(members) >= m:
            columns.append(members[rng.random((n_sim, len(members))).argsort(axis=1)[:, :m]])
        else:
            replaced = True
            columns.append(members[rng.integers(0, len(members), (n_sim, m))])
    return np.concatenate(columns, axis=1), replaced


def _truth_kind(interval, interval_90, margin: float) -> str:
    """The large test set's verdict on a difference: gain, loss, no difference (TOST) or inconclusive."""
    low, high = interval
    if low is None or math.isnan(low):
        return "n/a"
    if low > 0:
        return "gain"
    if high < 0:
        return "loss"
    if -margin < interval_90[0] and interval_90[1] < margin:
        return "no difference"
    return "inconclusive"


def paired_differences(
    labels, prob_a, prob_b, n_resamples: int = 2000, seed: int = 0, alpha: float = 0.05, counts=None
) -> dict:
    """b - a on the same images, per BOOTSTRAP_METRICS metric: estimate, 95% and 90% interval, p (class-stratified
    paired bootstrap, seed means; ``counts`` reuses resamples already drawn)."""
    y = np.asarray(labels)
    W = stratified_counts(y, n_resamples, seed) if counts is None else counts
    ones = np.ones((1, len(y)))
    return differences(
        (weighted_metrics(y, prob_a, ones), weighted_metrics(y, prob_a, W)),
        (weighted_metrics(y, prob_b, ones), weighted_metrics(y, prob_b, W)),
        alpha,
    )


def differences(a, b, alpha: float = 0.05) -> dict:
    """b - a from (point, bootstrap samples) pairs of :func:`weighted_metrics` results on the same resamples:
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


def independent_differences(
    labels_a, prob_a, labels_b, prob_b, n_resamples: int = 2000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """b - a between two independent image sets (home and external), per metric: estimate, 95% interval, p, from
    independent class-stratified bootstraps of the two sets (seed means)."""
    ya, yb = np.asarray(labels_a), np.asarray(labels_b)
    boot_a = weighted_metrics(ya, prob_a, stratified_counts(ya, n_resamples, seed))
    boot_b = weighted_metrics(yb, prob_b, stratified_counts(yb, n_resamples, seed + 1))
    point_a = weighted_metrics(ya, prob_a, np.ones((1, len(ya))))
    point_b = weighted_metrics(yb, prob_b, np.ones((1, len(yb))))
    out = {}
    for m in BOOTSTRAP_METRICS:
        d = boot_b[m] - boot_a[m]
        out[m] = {
            "estimate": float(point_b[m][0] - point_a[m][0]),
            "interval": percentile_interval(d, 1 - alpha),
            "p": bootstrap_pvalue(d),
        }
    return out


def procedure_on_test_set(
    predictions,
    draw_per_class: dict,
    base: str = "real",
    conditions=None,
    n_sim: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    margin: float = EQUIVALENCE_MARGIN,
) -> dict:
    """The report's procedure judged against a large independent test set (its truth).

    ``predictions`` holds every head of every condition on the large set. The truth of each comparison is the
    difference in accuracy at the validation set's class mix (``draw_per_class``), measured on the whole large
    set (class-stratified paired bootstrap, seed means), and the difference in ROC AUC. Each simulated experiment
    draws one validation set of ``draw_per_class`` images from the large set (within class, without replacement),
    takes one head of ``base`` and one of the other condition (one run each) and applies the report's procedure:
    a gain if accuracy rises (raw), or rises with exact McNemar p < alpha. Where the truth shows no gain, the rate
    of declared gains is the procedure's false-gain rate; where it shows one, the rate is its power.
    Two heads of ``base`` differing only in their seed give the same simulation for one condition against itself: no
    condition gains over itself, so every gain declared there is false for the report's question, even where the two
    heads' own true accuracies differ (``head_accuracy_at_mix``: head-seed variation, which a McNemar test of one pair
    of heads does not cover).
    """
    present = list(dict.fromkeys(predictions["condition"]))
    if base not in present:
        raise ValueError(f"No predictions of {base!r} on the test set; present: {present}.")
    names = [c for c in (present if conditions is None else conditions) if c != base and c in present]
    paths, y, P_base = seed_matrix(predictions, base)
    m = sum(int(v) for v in draw_per_class.values())
    weights = {k: int(draw_per_class.get(name, 0)) / m for k, name in enumerate(CLASSES)}
    rng = np.random.default_rng([int(seed), 2000])
    idx, replaced = _draw_validation_sets(y, draw_per_class, n_sim, rng)
    counts = stratified_counts(y, n_resamples, seed)
    ones = np.ones((1, len(y)))

    def correct(P):
        return (P >= 0.5).astype(np.int64) == y

    def at_mix(values):
        return weights[1] * values["sensitivity"] + weights[0] * values["specificity"]

    boot_base, point_base = weighted_metrics(y, P_base, counts), weighted_metrics(y, P_base, ones)
    C_base = correct(P_base)
    what = (
        f"one run each of {base} and another condition, one validation set of "
        + " + ".join(f"{int(v)} {k}" for k, v in draw_per_class.items())
        + " images drawn from the large independent test set"
        + (" (with replacement: a class had fewer images)" if replaced else " (within class, without replacement)")
        + f"; the report's procedure declares a gain if accuracy rises (raw) or rises with exact McNemar p < {alpha}; "
        "the truth is the whole large set (accuracy at the validation class mix, ROC AUC)"
    )
    out = {
        "simulates": what,
        "base": base,
        "n_sim": int(n_sim),
        "draw_per_class": {k: int(v) for k, v in draw_per_class.items()},
        "test_set_per_class": {name: int((y == k).sum()) for k, name in enumerate(CLASSES)},
        "alpha": alpha,
        "truth_rule": (
            f"gain / loss: the 95% interval of the difference excludes 0; no difference: its 90% interval inside "
            f"±{margin} (TOST); inconclusive otherwise"
        ),
    }
    S = len(P_base)
    if S >= 2:
        first = rng.integers(0, S, n_sim)
        second = (first + rng.integers(1, S, n_sim)) % S
        raw, sig, n_disc = _declared_gains(C_base[first[:, None], idx], C_base[second[:, None], idx], alpha)
        out["same_classifier"] = {
            "compares": f"two heads of {base} differing only in their seed: the same condition, so no condition gain",
            "head_seeds": int(S),
            "head_accuracy_at_mix": [float(at_mix(weighted_metrics(y, P_base[k], ones))[0]) for k in range(S)],
            "raw_gain": float(raw.mean()),
            "mcnemar_gain": float(sig.mean()),
            "mean_discordant_images": float(n_disc.mean()),
        }
    else:
        out["same_classifier"] = {"raw_gain": None, "mcnemar_gain": None, "reason": "needs at least two head seeds"}
    out["conditions"] = {}
    for cond in names:
        _, _, P = seed_matrix(predictions, cond, paths)
        boot, point = weighted_metrics(y, P, counts), weighted_metrics(y, P, ones)
        d_acc = at_mix(boot) - at_mix(boot_base)
        d_auc = boot["roc_auc"] - boot_base["roc_auc"]
        acc_interval = percentile_interval(d_acc, 0.95)
        auc_interval = percentile_interval(d_auc, 0.95)
        truth = {
            "accuracy_at_mix": [float(at_mix(point_base)[0]), float(at_mix(point)[0])],
            "accuracy_difference": float(at_mix(point)[0] - at_mix(point_base)[0]),
            "accuracy_interval": acc_interval,
            "accuracy_kind": _truth_kind(acc_interval, percentile_interval(d_acc, 0.90), margin),
            "roc_auc": [float(point_base["roc_auc"][0]), float(point["roc_auc"][0])],
            "roc_auc_difference": float(point["roc_auc"][0] - point_base["roc_auc"][0]),
            "roc_auc_interval": auc_interval,
            "roc_auc_kind": _truth_kind(auc_interval, percentile_interval(d_auc, 0.90), margin),
        }
        C = correct(P)
        first = rng.integers(0, S, n_sim)
        second = rng.integers(0, len(P), n_sim)
        raw, sig, n_disc = _declared_gains(C_base[first[:, None], idx], C[second[:, None], idx], alpha)
        out["conditions"][cond] = {
            "truth": truth,
            "raw_gain": float(raw.mean()),
            "mcnemar_gain": float(sig.mean()),
            "mean_discordant_images": float(n_disc.mean()),
            "rate_is": "power" if truth["accuracy_kind"] == "gain" else "false-gain rate",
        }
    return out


__all__ = [
    "BOOTSTRAP_METRICS",
    "EQUIVALENCE_MARGIN",
    "GAN_CONDITIONS",
    "NO_GAN_CONTROLS",
    "OPERATING_POINT_CONTROLS",
    "PRIMARY_RULE",
    "PRIOR_CORRECTED",
    "add_prior_corrected",
    "analyse",
    "best_control",
    "bootstrap_pvalue",
    "comparisons",
    "differences",
    "exact_mcnemar",
    "find",
    "holm",
    "independent_differences",
    "mcnemar_mde",
    "mcnemar_power",
    "min_significant_images",
    "paired_differences",
    "percentile_interval",
    "power_table",
    "prior_corrected",
    "prior_offset",
    "procedure_error_rate",
    "procedure_on_test_set",
    "seed_matrix",
    "stratified_counts",
    "tost",
    "weighted_metrics",
]
