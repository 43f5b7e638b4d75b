"""The report's procedure (one run per condition, a raw gain or a McNemar-significant one), simulated.

From head seeds on the validation set (:func:`procedure_error_rate`), and against a large independent test
set's truth (:func:`procedure_on_test_set`).
"""

from __future__ import annotations

import math

import numpy as np

from .. import CLASSES
from .bootstrap import (
    EQUIVALENCE_MARGIN,
    exact_mcnemar_p,
    percentile_interval,
    scored,
    seed_matrix,
    stratified_counts,
    weighted_metrics,
)


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
    p = exact_mcnemar_p(b, c)
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
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    gain = b.sum(1).astype(np.int64) - a.sum(1)
    b_only, a_only = (b & ~a).sum(1), (a & ~b).sum(1)
    p = exact_mcnemar_p(b_only, a_only)
    return gain > 0, (gain > 0) & (p < alpha), b_only + a_only


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


UNKNOWN_TRUTH_RATE = "rate of declared gains; the truth is not known to be zero"


def rate_is(accuracy_kind: str) -> str:
    """What the rate of declared gains is, from the truth's accuracy verdict: "power" where the truth shows a gain,
    "false-gain rate" where it shows none (no difference or a loss), :data:`UNKNOWN_TRUTH_RATE` where the truth is
    inconclusive (its interval spans 0 without being inside the margin) or not measured."""
    if accuracy_kind == "gain":
        return "power"
    if accuracy_kind in ("no difference", "loss"):
        return "false-gain rate"
    return UNKNOWN_TRUTH_RATE


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
    a gain if accuracy rises (raw), or rises with exact McNemar p < alpha. Where the truth shows no gain (no
    difference or a loss), the rate of declared gains is the procedure's false-gain rate; where it shows one, the
    rate is its power; where it is inconclusive, it is only a rate of declared gains (:func:`rate_is`).
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

    point_base, boot_base = scored(y, P_base, counts)
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
        point, boot = scored(y, P, counts)
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
            "rate_is": rate_is(truth["accuracy_kind"]),
        }
    return out


__all__ = ["UNKNOWN_TRUTH_RATE", "procedure_error_rate", "procedure_on_test_set", "rate_is"]
