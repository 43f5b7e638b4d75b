"""Test sets other than the validation set (external, large independent) and the pixel baseline beside VGG16."""

from __future__ import annotations

import numpy as np

from .. import CLASSES
from .. import statistics as stats
from ..formatting import nanmean
from .scores import METRICS, metrics, wilson_ci

TEST_SET_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc")


def evaluate_test_set(
    predictions,
    train_info: dict | None = None,
    home=None,
    control: str | None = None,
    mix: dict | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Every condition's heads on a test set that is not the validation set: {condition: block}.

    A block holds the seed means of accuracy (Wilson 95% interval, as at home), balanced accuracy, sensitivity,
    specificity, ROC AUC and Brier score with class-stratified bootstrap 95% intervals (n/a where the set lacks
    a class), the metrics per head seed, paired differences against ``real`` and, for a GAN condition, against
    the home run's best no-GAN ``control`` (``vs_real``, ``vs_control``: estimate, 95% and 90% interval, p), and,
    with the ``home`` (validation) predictions, the change from home per metric (independent bootstraps).
    ``mix`` (images per class) adds the accuracy at that class mix, (n_covid sens + n_normal spec) / n.
    """
    predictions = stats.add_prior_corrected(predictions, train_info)
    names = list(dict.fromkeys(predictions["condition"]))
    paths, labels, probs = None, None, {}
    for cond in names:
        paths, labels, probs[cond] = stats.seed_matrix(predictions, cond, paths)
    counts = stats.stratified_counts(labels, n_resamples, seed)
    scored = {c: stats.scored(labels, P, counts) for c, P in probs.items()}
    n = len(labels)
    out = {}
    for cond in names:
        P = probs[cond]
        sub = predictions[predictions["condition"] == cond]
        per_seed = [{"seed": int(s), **metrics(part["label"], part["prob_covid"])} for s, part in sub.groupby("seed")]
        block = {"n": int(n), "n_per_class": {c: int((labels == k).sum()) for k, c in enumerate(CLASSES)}}
        block.update({m: nanmean([p[m] for p in per_seed]) for m in METRICS})
        boot = scored[cond][1]
        for m in stats.BOOTSTRAP_METRICS:
            block[f"{m}_ci"] = stats.percentile_interval(boot[m], 1 - alpha)
        block["accuracy_ci_bootstrap"] = block.pop("accuracy_ci")
        block["accuracy_ci"] = wilson_ci(block["accuracy"] * n, n, alpha)
        if mix:
            total = sum(mix.values())
            w_covid, w_normal = mix[CLASSES[1]] / total, mix[CLASSES[0]] / total
            block["accuracy_at_validation_mix"] = w_covid * block["sensitivity"] + w_normal * block["specificity"]
            block["accuracy_at_validation_mix_ci"] = stats.percentile_interval(
                w_covid * boot["sensitivity"] + w_normal * boot["specificity"], 1 - alpha
            )
            block["validation_mix"] = {k: int(v) for k, v in mix.items()}
        accs = np.array([p["accuracy"] for p in per_seed])
        block["accuracy_seed_sd"] = float(accs.std(ddof=1)) if len(accs) > 1 else 0.0
        block["per_seed"] = [
            {k: p[k] for k in ("seed", *TEST_SET_METRICS, "brier", "confusion_matrix")} for p in per_seed
        ]
        block["interval_method"] = (
            "accuracy: Wilson 95% of one run at the seed-mean accuracy; others: class-stratified bootstrap over "
            f"these images ({n_resamples} resamples, seed means); covers sampling of these images, not GAN seeds"
        )
        if "real" in probs and cond != "real":
            block["vs_real"] = _subset(stats.differences(scored["real"], scored[cond], alpha))
        if control and control in probs and cond in stats.GAN_CONDITIONS and control != cond:
            block["vs_control"] = {
                "control": control,
                **_subset(stats.differences(scored[control], scored[cond], alpha)),
            }
        if home is not None and cond in set(home["condition"]):
            _, home_labels, home_P = stats.seed_matrix(home, cond)
            block["change_from_home"] = _subset(
                stats.independent_differences(home_labels, home_P, labels, P, n_resamples, seed + 7, alpha)
            )
        out[cond] = block
    return out


def _subset(differences: dict) -> dict:
    return {m: differences[m] for m in TEST_SET_METRICS}


def baseline_block(baseline: dict, home, n_resamples: int = 2000, seed: int = 0, mix: dict | None = None) -> dict:
    """A model beside VGG16 (the pixel baseline) on every test set (the large one also at the validation class
    ``mix``), and ``real`` minus it on the validation set."""
    out = dict(baseline.get("info") or {})
    for name, frame in (baseline.get("predictions") or {}).items():
        if frame is None or not len(frame):
            continue
        cond = frame["condition"].iloc[0]
        at_mix = mix if name == "large_test" else None
        out[name] = evaluate_test_set(frame, n_resamples=n_resamples, seed=seed, mix=at_mix)[cond]
        if name == "validation" and "real" in set(home["condition"]):
            paths, y, P_real = stats.seed_matrix(home, "real")
            _, _, P_base = stats.seed_matrix(frame, cond, paths)
            out["real_minus_baseline"] = _subset(stats.paired_differences(y, P_base, P_real, n_resamples, seed))
    return out
