"""Per-condition metrics and single-run tests: scikit-learn metrics, Wilson and bootstrap intervals, exact McNemar."""

from __future__ import annotations

import math

import numpy as np

from ..statistics import mcnemar_table

REPORT = {"real": 0.958, "real+torch": 0.974, "real+tf": 0.98}
"""Validation accuracies in the reference report (192 validation images)."""
WAHEED = {"real": 0.85, "augmented": 0.95}
"""Waheed et al., IEEE Access 2020 (CovidGAN, an ACGAN; a different dataset)."""
METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "brier")


def wilson_ci(successes, n: int, alpha: float = 0.05) -> list[float]:
    """Wilson score interval for a proportion (statsmodels proportion_confint, method='wilson')."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return [math.nan, math.nan]
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return [float(low), float(high)]


def bootstrap_ci(correct, n_resamples: int = 2000, seed: int = 0, alpha: float = 0.05) -> list[float]:
    """Percentile bootstrap interval (scipy.stats.bootstrap) of the mean of per-image correctness."""
    from scipy.stats import bootstrap

    correct = np.asarray(correct, dtype=np.float64)
    if len(correct) < 2 or np.all(correct == correct[0]):
        v = float(correct.mean()) if len(correct) else math.nan
        return [v, v]
    res = bootstrap(
        (correct,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=1 - alpha,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def metrics(labels, prob_covid, threshold: float = 0.5, alpha: float = 0.05, pred=None) -> dict:
    """Accuracy (+ Wilson CI), balanced accuracy, sensitivity, specificity, ROC AUC, Brier score and the
    confusion matrix [[TN, FP], [FN, TP]]. Predictions are ``prob_covid >= threshold`` unless ``pred`` is given."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        brier_score_loss,
        confusion_matrix,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(labels, dtype=np.int64)
    prob = np.asarray(prob_covid, dtype=np.float64)
    pred = (prob >= threshold).astype(np.int64) if pred is None else np.asarray(pred, dtype=np.int64)
    acc = float(accuracy_score(y, pred))
    both = len(np.unique(y)) == 2
    return {
        "accuracy": acc,
        "accuracy_ci": wilson_ci(int((pred == y).sum()), len(y), alpha),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else math.nan,
        "sensitivity": float(recall_score(y, pred, pos_label=1, zero_division=np.nan)) if (y == 1).any() else math.nan,
        "specificity": float(recall_score(y, pred, pos_label=0, zero_division=np.nan)) if (y == 0).any() else math.nan,
        "roc_auc": float(roc_auc_score(y, prob)) if both else math.nan,
        "brier": float(brier_score_loss(y, prob, labels=[0, 1])) if len(y) else math.nan,
        "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "n": int(len(y)),
    }


def mcnemar_test(labels, pred_a, pred_b) -> dict:
    """Exact McNemar test (statsmodels) of two classifiers on the same images.

    table = [[both right, a right & b wrong], [a wrong & b right, both wrong]]; only the
    off-diagonal (discordant) cells matter.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    y = np.asarray(labels)
    table = mcnemar_table(np.asarray(pred_a) == y, np.asarray(pred_b) == y)
    res = mcnemar(table, exact=True)
    return {
        "table": table,
        "pvalue": float(res.pvalue),
        "statistic": float(res.statistic),
        "a_only": table[0][1],
        "b_only": table[1][0],
    }


def majority_vote(predictions, condition: str):
    """Per-image vote over seeds of one condition: (paths, labels, pred, mean prob); ties -> mean prob >= 0.5."""
    sub = predictions[predictions["condition"] == condition]
    g = sub.groupby("path", sort=False)
    votes = g["pred"].mean()
    prob = g["prob_covid"].mean()
    pred = np.where(votes == 0.5, prob >= 0.5, votes > 0.5).astype(np.int64)
    return votes.index.to_numpy(), g["label"].first().to_numpy(np.int64), pred, prob.to_numpy()


def paired_test(predictions, conditions: dict, base: str, cond: str) -> dict:
    """Exact McNemar of ``base`` vs ``cond``: on the majority vote over seeds, and per matched seed."""
    paths_b, y, vote_b, _ = majority_vote(predictions, base)
    paths_c, _, vote_c, _ = majority_vote(predictions, cond)
    if list(paths_b) != list(paths_c):
        raise ValueError(f"Conditions {base!r} and {cond!r} were not evaluated on the same validation images.")
    per_seed = []
    for seed in sorted(set(conditions[base]["seeds"]) & set(conditions[cond]["seeds"])):
        b = predictions[(predictions["condition"] == base) & (predictions["seed"] == seed)]
        o = predictions[(predictions["condition"] == cond) & (predictions["seed"] == seed)]
        per_seed.append({"seed": int(seed), **mcnemar_test(b["label"], b["pred"].to_numpy(), o["pred"].to_numpy())})
    return {
        "method": f"exact McNemar, {base} vs {cond}, on the per-image majority vote over seeds",
        **mcnemar_test(y, vote_b, vote_c),
        "per_seed": per_seed,
        "per_seed_pvalues": [p["pvalue"] for p in per_seed],
    }


def report_mcnemar_best_case(n_val: int = 192) -> dict:
    """The report's gains in images, and the exact McNemar p even if every changed image went the better way."""
    from statsmodels.stats.contingency_tables import mcnemar

    base = round(REPORT["real"] * n_val)
    out = {}
    for cond in ("real+torch", "real+tf"):
        gain = round(REPORT[cond] * n_val) - base
        out[cond] = {
            "images_gained": int(gain),
            "best_case_pvalue": float(mcnemar([[base, 0], [gain, n_val - base - gain]], exact=True).pvalue),
        }
    return out
