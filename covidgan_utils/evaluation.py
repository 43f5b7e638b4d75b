"""Metrics, intervals and paired tests for the VGG16 experiment, all from scikit-learn / scipy / statsmodels.

Conventions: COVID = 1 is the positive class (sensitivity = COVID recall, specificity = Normal recall).
A condition's headline numbers are means over seeds; ``accuracy_ci`` is the 95% Wilson interval of a
single run at that accuracy on the n_val validation images (validation-sampling uncertainty), or a
bootstrap over validation images of the seed-averaged correctness. Seed-to-seed spread is reported
separately (``accuracy_seed_sd``, ``accuracy_seed_range`` and ``per_seed``).

McNemar (exact, statsmodels): ``real`` vs each other condition on the same validation images, on the
per-image MAJORITY VOTE over seeds (ties broken by the mean probability); the seed-matched
per-seed p-values are given too (``mcnemar_detail``). With the no-GAN control ``real+copies``
present, each ``real+<gan>`` condition is also tested against it (``mcnemar_vs_copies``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import CLASSES

REPORT = {"real": 0.958, "real+torch": 0.974, "real+tf": 0.98}
"""Validation accuracies in the reference report (192 validation images)."""
WAHEED = {"real": 0.85, "augmented": 0.95}
"""Waheed et al., IEEE Access 2020 (CovidGAN, an ACGAN; a different dataset)."""
METRICS = ("accuracy", "sensitivity", "specificity", "roc_auc")


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
    """Accuracy (+ Wilson CI), sensitivity, specificity, ROC AUC, confusion matrix [[TN, FP], [FN, TP]].

    Predictions are ``prob_covid >= threshold`` unless ``pred`` is given (e.g. a vote over seeds).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, recall_score, roc_auc_score

    y = np.asarray(labels, dtype=np.int64)
    prob = np.asarray(prob_covid, dtype=np.float64)
    pred = (prob >= threshold).astype(np.int64) if pred is None else np.asarray(pred, dtype=np.int64)
    acc = float(accuracy_score(y, pred))
    both = len(np.unique(y)) == 2
    return {
        "accuracy": acc,
        "accuracy_ci": wilson_ci(int((pred == y).sum()), len(y), alpha),
        "sensitivity": float(recall_score(y, pred, pos_label=1, zero_division=np.nan)) if (y == 1).any() else math.nan,
        "specificity": float(recall_score(y, pred, pos_label=0, zero_division=np.nan)) if (y == 0).any() else math.nan,
        "roc_auc": float(roc_auc_score(y, prob)) if both else math.nan,
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
    a = np.asarray(pred_a) == y
    b = np.asarray(pred_b) == y
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
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


def summarize(
    predictions,
    train_info: dict | None = None,
    skipped: dict | None = None,
    settings: dict | None = None,
    ci: str = "wilson",
) -> dict:
    """results.json (CONTRACT): per-condition metrics over seeds, McNemar vs ``real``, settings."""
    if ci not in ("wilson", "bootstrap"):
        raise ValueError(f"ci must be 'wilson' or 'bootstrap', not {ci!r}")
    train_info = train_info or {}
    conditions = {}
    for cond in dict.fromkeys(predictions["condition"]):
        sub = predictions[predictions["condition"] == cond]
        per_seed = []
        for seed, part in sub.groupby("seed", sort=True):
            m = metrics(part["label"], part["prob_covid"])
            per_seed.append({"seed": int(seed), **m})
        n_val = per_seed[0]["n"]
        accs = np.array([p["accuracy"] for p in per_seed])
        c = {name: _nanmean([p[name] for p in per_seed]) for name in METRICS}
        if ci == "wilson":
            c["accuracy_ci"] = wilson_ci(c["accuracy"] * n_val, n_val)
        else:
            correct = (sub["pred"] == sub["label"]).groupby(sub["path"], sort=False).mean()
            c["accuracy_ci"] = bootstrap_ci(correct.to_numpy())
        c["accuracy_ci_method"] = ci
        c["accuracy_seed_sd"] = float(accs.std(ddof=1)) if len(accs) > 1 else 0.0
        c["accuracy_seed_range"] = [float(accs.min()), float(accs.max())]
        c["confusion_matrix_all_seeds"] = np.sum([p["confusion_matrix"] for p in per_seed], axis=0).tolist()
        _, y, vote, vote_prob = majority_vote(predictions, cond)
        c["vote"] = metrics(y, vote_prob, pred=vote)
        c.update(train_info.get(cond, {}))
        c.setdefault("n_train", None)
        c["n_val"] = int(n_val)
        c["seeds"] = [p["seed"] for p in per_seed]
        c["per_seed"] = per_seed
        conditions[cond] = c
    mcnemar, detail = {}, {}
    if "real" in conditions:
        for cond in conditions:
            if cond != "real":
                detail[cond] = paired_test(predictions, conditions, "real", cond)
                mcnemar[cond] = detail[cond]["pvalue"]
    vs_copies = {}
    if "real+copies" in conditions:  # does the GAN beat simply rebalancing the classes with copies?
        for cond in conditions:
            if cond.startswith("real+") and cond != "real+copies":
                vs_copies[cond] = paired_test(predictions, conditions, "real+copies", cond)
    results = {
        "conditions": conditions,
        "mcnemar": mcnemar,
        "mcnemar_detail": detail,
        "mcnemar_vs_copies": {c: t["pvalue"] for c, t in vs_copies.items()},
        "mcnemar_vs_copies_detail": vs_copies,
        "skipped_conditions": dict(skipped or {}),
        **(settings or {}),
    }
    return _clean(results)


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


def write_results(run_dir, results: dict, predictions) -> dict:
    """Write RUN/transfer/results.json and RUN/transfer/predictions.csv atomically."""
    from .files import write_csv, write_json

    out = Path(run_dir) / "transfer"
    cols = ["condition", "seed", "path", "label", "prob_covid", "pred"]
    return {
        "results": write_json(out / "results.json", _clean(results)),
        "predictions": write_csv(out / "predictions.csv", predictions[cols]),
    }


def results_table(results: dict):
    """One row per condition: mean metrics over seeds, the accuracy interval and the seed spread."""
    import pandas as pd

    rows = []
    for cond, c in results["conditions"].items():
        low, high = c["accuracy_ci"]
        rows.append(
            {
                "condition": cond,
                "n_train": c.get("n_train"),
                "accuracy": c["accuracy"],
                "95% CI": f"[{low:.3f}, {high:.3f}]",
                "seed sd": c["accuracy_seed_sd"],
                "sensitivity": c["sensitivity"],
                "specificity": c["specificity"],
                "ROC AUC": c["roc_auc"],
                "seeds": len(c["seeds"]),
                "McNemar p (vs real)": results["mcnemar"].get(cond),
            }
        )
    return pd.DataFrame(rows).set_index("condition")


def reading(results: dict) -> list[str]:
    """An honest reading of the numbers: differences in images, vs the seed spread and McNemar."""
    conds = results["conditions"]
    if "real" not in conds:
        return ["No 'real' condition: nothing to compare against."]
    base = conds["real"]
    n_val = base["n_val"]
    lines = [f"{n_val} validation images: one image = {100 / n_val:.2f} accuracy points."]
    low, high = base["accuracy_ci"]
    lines.append(
        f"real: accuracy {base['accuracy']:.3f}, 95% CI [{low:.3f}, {high:.3f}] ({high - low:.3f} wide: {(high - low) * n_val:.0f} images)."
    )
    for cond, c in conds.items():
        if cond == "real":
            continue
        diff = c["accuracy"] - base["accuracy"]
        spread = max(base["accuracy_seed_sd"], c["accuracy_seed_sd"])
        p = results["mcnemar"].get(cond)
        if len(c["seeds"]) < 2 or len(base["seeds"]) < 2:
            verdict_seed, seed_text = "unknown", "seed spread unknown (one seed)"
        else:
            verdict_seed = "larger than" if abs(diff) > 2 * spread else "within"
            seed_text = f"{verdict_seed} twice the seed sd ({spread:.3f})"
        per_seed = results.get("mcnemar_detail", {}).get(cond, {}).get("per_seed_pvalues", [])
        sig = sum(1 for q in per_seed if q < 0.05)
        significant = p is not None and p < 0.05
        if significant and verdict_seed == "larger than":
            verdict = "the difference survives both the seeds and the paired test"
        elif significant:
            verdict = "significant on the paired test, but not shown to exceed the seed-to-seed spread"
        elif verdict_seed == "larger than":
            verdict = "larger than the seed spread, but not significant on the paired test"
        else:
            verdict = "no evidence of a real difference"
        lines.append(
            f"{cond}: {c['accuracy']:.3f} ({diff:+.3f} = {diff * n_val:+.1f} images), "
            f"{seed_text}; exact McNemar p = {_fmt(p)} on the majority vote"
            + (f", p < 0.05 in {sig}/{len(per_seed)} seed-matched runs" if per_seed else "")
            + f": {verdict}."
        )
    if "real+copies" in conds:
        ctrl = conds["real+copies"]
        for cond, p in results.get("mcnemar_vs_copies", {}).items():
            diff = conds[cond]["accuracy"] - ctrl["accuracy"]
            lines.append(
                f"{cond} vs the no-GAN control real+copies ({ctrl['accuracy']:.3f}): {diff:+.3f} = {diff * n_val:+.1f} images, "
                f"exact McNemar p = {_fmt(p)}: "
                + (
                    "the GAN images add more than class balance."
                    if p is not None and p < 0.05 and diff > 0
                    else "no evidence that the GAN images add more than class balance."
                )
            )
    return lines


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


def _fmt(p) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def _nanmean(values) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return math.nan if np.all(np.isnan(arr)) else float(np.nanmean(arr))


def _clean(obj):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


__all__ = [
    "CLASSES",
    "REPORT",
    "WAHEED",
    "bootstrap_ci",
    "majority_vote",
    "mcnemar_test",
    "metrics",
    "reading",
    "results_table",
    "summarize",
    "wilson_ci",
    "write_results",
]
