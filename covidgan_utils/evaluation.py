"""Metrics, intervals and paired tests for the VGG16 experiment, all from scikit-learn / scipy / statsmodels.

Conventions: COVID = 1 is the positive class (sensitivity = COVID recall, specificity = Normal recall).
A condition's headline numbers are means over head seeds; ``accuracy_ci`` is the 95% Wilson interval of a
single run at that accuracy on the n_val validation images (validation-sampling uncertainty), or a
bootstrap over validation images of the seed-averaged correctness. Seed-to-seed spread is reported
separately (``accuracy_seed_sd``, ``accuracy_seed_range`` and ``per_seed``). The other intervals
(``balanced_accuracy_ci``, ``roc_auc_ci``, ...) and every paired comparison (``paired``) come from
:mod:`covidgan_utils.statistics`: a class-stratified paired bootstrap over the validation images.

How a condition is read (:func:`verdict`): "a better classifier" needs a paired gain in ROC AUC (for a
GAN condition: against the best no-GAN control, Holm-corrected); "a better operating point" needs a gain
in accuracy or balanced accuracy that also beats ``real`` with its threshold corrected for the class prior
and ``real+classweight``; otherwise a gain is the decision threshold moving, and the reading names the
control that matches it. Without a gain, a TOST with a margin of 1.6 points says "no difference" or
"inconclusive".

McNemar (exact, statsmodels, kept as before in ``mcnemar``): ``real`` vs each other condition on the same
validation images, on the per-image MAJORITY VOTE over seeds (ties broken by the mean probability); the
seed-matched per-seed p-values are given too (``mcnemar_detail``). With the no-GAN control ``real+copies``
present, each ``real+<gan>`` condition is also tested against it (``mcnemar_vs_copies``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from . import CLASSES
from . import statistics as stats
from .formatting import clean, fmt_p, nanmean
from .verdicts import reading, verdict

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
    n_resamples: int = 2000,
    bootstrap_seed: int = 0,
    external: dict | None = None,
    large_test: dict | None = None,
    baseline: dict | None = None,
) -> dict:
    """results.json: per-condition metrics over seeds, paired bootstrap comparisons, McNemar vs ``real``, power, settings.

    With ``real``'s training counts in ``train_info`` the derived condition ``real:prior-corrected`` is added
    (real's probabilities with the logit shifted by log(n_normal / n_covid)).

    Other test sets, each ``{"predictions": frame or None, "source": {...}}`` (every head of every condition on
    that set, never trained on): ``external`` adds an ``external`` block to each condition and ``external_set``
    (where the images came from); ``large_test`` (a large independent set: the truth) adds ``large_test`` to each
    condition, ``large_test_set`` and the procedure's simulation against it (``procedure_error_rate.large_test``).
    ``baseline`` (``{"predictions": {set: frame}, "info": {...}}``, a model that is not VGG16) adds ``baseline``.
    """
    if ci not in ("wilson", "bootstrap"):
        raise ValueError(f"ci must be 'wilson' or 'bootstrap', not {ci!r}")
    train_info = dict(train_info or {})
    settings = dict(settings or {})
    predictions = stats.add_prior_corrected(predictions, train_info)
    if stats.PRIOR_CORRECTED in set(predictions["condition"]):
        counts = train_info["real"]["n_train_per_class"]
        offset = stats.prior_offset(counts[CLASSES[1]], counts[CLASSES[0]])
        train_info[stats.PRIOR_CORRECTED] = {
            **{k: v for k, v in train_info["real"].items() if k != "final_loss"},
            "logit_offset": offset,
            "derived_from": "real",
        }
    conditions = {}
    for cond in dict.fromkeys(predictions["condition"]):
        sub = predictions[predictions["condition"] == cond]
        per_seed = []
        for seed, part in sub.groupby("seed", sort=True):
            m = metrics(part["label"], part["prob_covid"])
            per_seed.append({"seed": int(seed), **m})
        n_val = per_seed[0]["n"]
        accs = np.array([p["accuracy"] for p in per_seed])
        c = {name: nanmean([p[name] for p in per_seed]) for name in METRICS}
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
    order = ["real", stats.PRIOR_CORRECTED] if stats.PRIOR_CORRECTED in conditions else []
    conditions = {c: conditions[c] for c in order + [c for c in conditions if c not in order]}
    mcnemar, detail = {}, {}
    if "real" in conditions:
        for cond in conditions:
            if cond != "real":
                detail[cond] = paired_test(predictions, conditions, "real", cond)
                mcnemar[cond] = detail[cond]["pvalue"]
    vs_copies = {}
    if "real+copies" in conditions:  # does the GAN beat simply rebalancing the classes with copies?
        for cond in conditions:
            if cond.startswith("real+") and cond not in ("real+copies", "real+classweight"):
                vs_copies[cond] = paired_test(predictions, conditions, "real+copies", cond)
    analysis = {"paired": [], "equivalence": [], "primary": None, "method": None}
    if len(conditions):
        analysis = stats.analyse(predictions, conditions, n_resamples=n_resamples, seed=bootstrap_seed)
        for cond, intervals in analysis["intervals"].items():  # accuracy_ci stays as chosen by ``ci``
            intervals["accuracy_ci_bootstrap"] = intervals.pop("accuracy_ci")
            conditions[cond].update(intervals)
    labels = predictions.drop_duplicates("path")["label"].to_numpy() if len(predictions) else np.zeros(0, int)
    n_val_all = len(labels)
    results = {
        "conditions": conditions,
        "mcnemar": mcnemar,
        "mcnemar_detail": detail,
        "mcnemar_vs_copies": {c: t["pvalue"] for c, t in vs_copies.items()},
        "mcnemar_vs_copies_detail": vs_copies,
        "paired": analysis["paired"],
        "equivalence": analysis["equivalence"],
        "primary": analysis["primary"],
        "statistics_method": analysis["method"],
        "power": stats.power_table(
            192, report_gains={c: round(REPORT[c] - REPORT["real"], 3) for c in ("real+torch", "real+tf")}
        )
        | {"n_this_run": int(n_val_all)},
        "procedure_error_rate": stats.procedure_error_rate(predictions, "real", n_sim=n_resamples, seed=bootstrap_seed)
        if "real" in conditions
        else None,
        "n_val_per_class": {name: int((labels == k).sum()) for k, name in enumerate(CLASSES)},
        "skipped_conditions": dict(skipped or {}),
        **settings,
        "gan_seeds": [int(s) for s in settings.get("gan_seeds", [0])],
    }
    control = (analysis.get("primary") or {}).get("control")
    other = dict(train_info=train_info, home=predictions, control=control, n_resamples=n_resamples, seed=bootstrap_seed)
    for key, given in (("external", external), ("large_test", large_test)):
        if given is None:
            continue
        source = dict(given.get("source") or {})
        if given.get("predictions") is not None and len(given["predictions"]):
            start = time.perf_counter()
            mix = results["n_val_per_class"] if key == "large_test" else None
            blocks = evaluate_test_set(given["predictions"], mix=mix, **other)
            for cond, block in blocks.items():
                if cond in conditions:
                    conditions[cond][key] = block
            if key == "large_test" and "real" in blocks:
                scored = stats.add_prior_corrected(given["predictions"], train_info)
                results["procedure_error_rate"] = dict(results["procedure_error_rate"] or {})
                results["procedure_error_rate"]["contents"] = (
                    "raw_gain and mcnemar_gain: the procedure on validation images redrawn, two heads of real (no true "
                    "difference); large_test: the procedure on validation sets drawn from the large independent test set, "
                    "each condition against real, judged by the large set's truth"
                )
                results["procedure_error_rate"]["large_test"] = stats.procedure_on_test_set(
                    scored, results["n_val_per_class"], n_sim=n_resamples, seed=bootstrap_seed, n_resamples=n_resamples
                )
            source.setdefault("seconds", {})["evaluation"] = round(time.perf_counter() - start, 2)
            source["evaluated"] = True
        else:
            source["evaluated"] = False
        results[f"{key}_set"] = source
    if baseline is not None:
        results["baseline"] = baseline_block(
            baseline, predictions, n_resamples=n_resamples, seed=bootstrap_seed, mix=results["n_val_per_class"]
        )
    return clean(results)


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
    ones = np.ones((1, len(labels)))
    scored = {
        c: (stats.weighted_metrics(labels, P, ones), stats.weighted_metrics(labels, P, counts))
        for c, P in probs.items()
    }
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


def write_results(run_dir, results: dict, predictions, others: dict | None = None) -> dict:
    """Write RUN/transfer/results.json and RUN/transfer/predictions.csv atomically; ``others`` {name: frame}
    (the external and large test sets) go to RUN/transfer/predictions_<name>.csv."""
    from .files import write_csv, write_json

    out = Path(run_dir) / "transfer"
    cols = ["condition", "seed", "path", "label", "prob_covid", "pred"]
    written = {
        "results": write_json(out / "results.json", clean(results)),
        "predictions": write_csv(out / "predictions.csv", predictions[cols]),
    }
    for name, frame in (others or {}).items():
        if frame is not None and len(frame):
            written[f"predictions_{name}"] = write_csv(out / f"predictions_{name}.csv", frame[cols])
    return written


def results_table(results: dict):
    """One row per condition: seed-mean metrics, their 95% intervals and the accuracy spread over head seeds."""
    import pandas as pd

    def interval(c, key):
        low, high = c.get(key) or (None, None)
        return "n/a" if low is None or high is None else f"[{low:.3f}, {high:.3f}]"

    rows = []
    for cond, c in results["conditions"].items():
        rows.append(
            {
                "condition": cond,
                "n_train": c.get("n_train"),
                "accuracy": c["accuracy"],
                "95% CI": interval(c, "accuracy_ci"),
                "balanced acc.": c.get("balanced_accuracy"),
                "bal. 95% CI": interval(c, "balanced_accuracy_ci"),
                "sensitivity": c["sensitivity"],
                "specificity": c["specificity"],
                "ROC AUC": c["roc_auc"],
                "AUC 95% CI": interval(c, "roc_auc_ci"),
                "Brier": c.get("brier"),
                "head seeds": len(c["seeds"]),
                "acc. sd (head seeds)": c["accuracy_seed_sd"],
            }
        )
    return pd.DataFrame(rows).set_index("condition")


def paired_table(results: dict, metrics=("roc_auc", "accuracy", "balanced_accuracy"), primary_only: bool = False):
    """One row per comparison (b - a): per metric the difference, its 95% bootstrap interval and p; Holm p of the
    primary comparisons; the TOST verdict on ROC AUC (margin 1.6 points)."""
    import pandas as pd

    rows = {}
    for e in results.get("paired") or []:
        if e["metric"] not in metrics or (
            primary_only and not stats.find(results["paired"], e["a"], e["b"], "roc_auc")["primary"]
        ):
            continue
        row = rows.setdefault(f"{e['b']} - {e['a']}", {"primary": False, "Holm p (AUC)": None})
        low, high = e["interval"]
        row[e["metric"]] = "n/a" if low is None else f"{e['estimate']:+.3f} [{low:+.3f}, {high:+.3f}] p={fmt_p(e['p'], 3)}"
        if e["primary"]:
            row.update({"primary": True, "Holm p (AUC)": e["holm_p"]})
        eq = stats.find(results.get("equivalence"), e["a"], e["b"], "roc_auc")
        row["AUC (TOST ±1.6 points)"] = eq["verdict"] if eq else ""
    columns = [m for m in metrics] + ["AUC (TOST ±1.6 points)", "primary", "Holm p (AUC)"]
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).rename_axis("b - a")


def power_frame(results: dict):
    """The minimum detectable accuracy gain (80% power, two-sided 0.05) per discordance rate, in points and images."""
    import pandas as pd

    power = results["power"]
    rows = [
        {
            "discordant images": f"{100 * r['discordance']:.0f}%",
            "MDE (points, exact)": None if r["mde"] is None else 100 * r["mde"],
            "MDE (images)": r["mde_images"],
            "MDE (points, normal approx.)": None
            if r["mde_normal_approximation"] is None
            else 100 * r["mde_normal_approximation"],
        }
        for r in power["mde"]
    ]
    return pd.DataFrame(rows).set_index("discordant images")


def _with_interval(value, interval, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    low, high = interval or (None, None)
    return f"{value:.{digits}f}" if low is None else f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def test_set_table(results: dict, metrics=("accuracy", "sensitivity", "specificity", "roc_auc")):
    """Home (validation) beside the external set and the large test set, per condition: seed means with 95%
    intervals (accuracy: Wilson; the others: class-stratified bootstrap); the large set's accuracy is given at
    the validation class mix (what the validation accuracy estimates). n/a where a set lacks a class."""
    import pandas as pd

    rows = {}
    for cond, c in results["conditions"].items():
        row = {}
        for m in metrics:
            name = "ROC AUC" if m == "roc_auc" else m
            row[(name, "home")] = _with_interval(c.get(m), c.get(f"{m}_ci"))
            if c.get("external"):
                row[(name, "external")] = _with_interval(c["external"].get(m), c["external"].get(f"{m}_ci"))
            if c.get("large_test"):
                key = "accuracy_at_validation_mix" if m == "accuracy" else m
                row[(name, "large test")] = _with_interval(c["large_test"].get(key), c["large_test"].get(f"{key}_ci"))
        rows[cond] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table.rename_axis("condition")


def procedure_frame(results: dict):
    """How often the report's procedure declares a gain: from head seeds on the validation set, and against the
    large test set's truth (same classifier twice, then each condition against real)."""
    import pandas as pd

    proc = results.get("procedure_error_rate") or {}
    rows = []
    if proc.get("raw_gain") is not None:
        rows.append(
            {
                "simulation": "validation set redrawn (bootstrap), two heads of real",
                "truth (accuracy, large set)": "same condition: no condition gain",
                "truth (ROC AUC, large set)": "same condition: no condition gain",
                "declares a gain": proc["raw_gain"],
                "declares a gain, McNemar p < 0.05": proc["mcnemar_gain"],
                "the rate is": "false-gain rate",
            }
        )
    sim = proc.get("large_test") or {}
    same = sim.get("same_classifier") or {}
    if same.get("raw_gain") is not None:
        rows.append(
            {
                "simulation": "drawn from the large set, two heads of real",
                "truth (accuracy, large set)": "same condition: no condition gain",
                "truth (ROC AUC, large set)": "same condition: no condition gain",
                "declares a gain": same["raw_gain"],
                "declares a gain, McNemar p < 0.05": same["mcnemar_gain"],
                "the rate is": "false-gain rate",
            }
        )
    for cond, e in (sim.get("conditions") or {}).items():
        t = e["truth"]
        rows.append(
            {
                "simulation": f"drawn from the large set, {cond} vs {sim['base']}",
                "truth (accuracy, large set)": f"{t['accuracy_difference']:+.3f} "
                f"{_signed_interval(t['accuracy_interval'])} {t['accuracy_kind']}",
                "truth (ROC AUC, large set)": f"{t['roc_auc_difference']:+.3f} "
                f"{_signed_interval(t['roc_auc_interval'])} {t['roc_auc_kind']}",
                "declares a gain": e["raw_gain"],
                "declares a gain, McNemar p < 0.05": e["mcnemar_gain"],
                "the rate is": e["rate_is"],
            }
        )
    return pd.DataFrame(rows).set_index("simulation") if rows else pd.DataFrame()


def _signed_interval(interval) -> str:
    low, high = interval or (None, None)
    return "" if low is None else f"[{low:+.3f}, {high:+.3f}]"


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


__all__ = [
    "CLASSES",
    "REPORT",
    "WAHEED",
    "baseline_block",
    "bootstrap_ci",
    "evaluate_test_set",
    "majority_vote",
    "mcnemar_test",
    "metrics",
    "paired_table",
    "power_frame",
    "procedure_frame",
    "reading",
    "results_table",
    "verdict",
    "summarize",
    "test_set_table",
    "wilson_ci",
    "write_results",
]
