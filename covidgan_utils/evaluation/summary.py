"""results.json: every condition's metrics over head seeds, the paired statistics, power, other test sets."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import CLASSES
from .. import statistics as stats
from ..formatting import clean, nanmean
from .other_sets import baseline_block, evaluate_test_set
from .scores import METRICS, REPORT, bootstrap_ci, majority_vote, metrics, paired_test, wilson_ci


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


def write_results(run_dir, results: dict, predictions, others: dict | None = None) -> dict:
    """Write RUN/transfer/results.json and RUN/transfer/predictions.csv atomically; ``others`` {name: frame}
    (the external and large test sets) go to RUN/transfer/predictions_<name>.csv."""
    from ..files import write_csv, write_json

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
