"""The analysis of results.json: intervals per condition, the pre-specified comparisons, Holm, TOST."""

from __future__ import annotations

import math

import numpy as np

from .bootstrap import (
    BOOTSTRAP_METRICS,
    EQUIVALENCE_MARGIN,
    GAN_CONDITIONS,
    NO_GAN_CONTROLS,
    PRIOR_CORRECTED,
    bootstrap_pvalue,
    exact_mcnemar,
    holm,
    percentile_interval,
    seed_matrix,
    stratified_counts,
    tost,
    weighted_metrics,
)

PRIMARY_RULE = (
    "each GAN condition (real+torch, real+tf) against the no-GAN control with the highest ROC AUC among "
    "real, real+copies and real+classweight (the hardest of them to beat), on ROC AUC, paired bootstrap, "
    "Holm-corrected over the GAN conditions; every other comparison is descriptive"
)


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
                equivalence.append({"a": a, "b": b, "metric": metric, **tost(d, EQUIVALENCE_MARGIN, alpha)})
    primary = [e for e in paired if e["primary"]]
    for entry, p in zip(primary, holm([e["p"] for e in primary])):
        entry["holm_p"] = p
    for eq in equivalence:
        entry = find(paired, eq["a"], eq["b"], eq["metric"])
        eq["verdict"] = judge(eq, entry, alpha)
        eq["judged_by"] = "holm_p" if entry["primary"] else "p"
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


def judged_p(entry: dict | None) -> float | None:
    """The p that decides ``entry``: its Holm p for a primary comparison, its raw (descriptive) p otherwise."""
    if entry is None:
        return None
    return entry.get("holm_p") if entry.get("primary") else entry.get("p")


def judge(eq: dict, entry: dict | None, alpha: float = 0.05) -> str:
    """TOST and test together: "equivalent" (90% interval inside the margin), "different" (the deciding p, Holm
    for a primary comparison, below ``alpha``) or "inconclusive"."""
    if eq["equivalent"]:
        return "equivalent"
    p = judged_p(entry)
    if p is not None and not math.isnan(p) and p < alpha:
        return "different"
    return "inconclusive"


def find(paired: list, a: str, b: str, metric: str) -> dict | None:
    """The entry of ``paired`` (or ``equivalence``) comparing b with a on ``metric``, or None."""
    for entry in paired or []:
        if entry["a"] == a and entry["b"] == b and entry["metric"] == metric:
            return entry
    return None
