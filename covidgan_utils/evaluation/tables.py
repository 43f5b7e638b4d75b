"""results.json as tables for the notebooks: conditions, paired comparisons, power, test sets, the procedure."""

from __future__ import annotations

from .. import statistics as stats
from ..formatting import fmt_p, signed, signed_interval, with_interval


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
        row[e["metric"]] = (
            "n/a" if low is None else f"{signed(e['estimate'], 3)} [{signed(low, 3)}, {signed(high, 3)}] p={fmt_p(e['p'], 3)}"
        )
        if e["primary"]:
            row.update({"primary": True, "Holm p (AUC)": e["holm_p"]})
        eq = stats.find(results.get("equivalence"), e["a"], e["b"], "roc_auc")
        auc = stats.find(results["paired"], e["a"], e["b"], "roc_auc")
        row["AUC (TOST ±1.6 points)"] = stats.judge(eq, auc) if eq else ""  # primary: by its Holm p
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
            row[(name, "home")] = with_interval(c.get(m), c.get(f"{m}_ci"))
            if c.get("external"):
                row[(name, "external")] = with_interval(c["external"].get(m), c["external"].get(f"{m}_ci"))
            if c.get("large_test"):
                key = "accuracy_at_validation_mix" if m == "accuracy" else m
                row[(name, "large test")] = with_interval(c["large_test"].get(key), c["large_test"].get(f"{key}_ci"))
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
                "truth (accuracy, large set)": f"{signed(t['accuracy_difference'], 3)} "
                f"{signed_interval(t['accuracy_interval'])} {t['accuracy_kind']}",
                "truth (ROC AUC, large set)": f"{signed(t['roc_auc_difference'], 3)} "
                f"{signed_interval(t['roc_auc_interval'])} {t['roc_auc_kind']}",
                "declares a gain": e["raw_gain"],
                "declares a gain, McNemar p < 0.05": e["mcnemar_gain"],
                "the rate is": stats.rate_is(t["accuracy_kind"]),
            }
        )
    return pd.DataFrame(rows).set_index("simulation") if rows else pd.DataFrame()
