"""How to read each condition of a run: a better classifier, a better operating point, or a moved threshold.

The rules, applied to the statistics in results.json (:func:`covidgan_utils.statistics.analyse`):
- "a better classifier" needs a paired gain in ROC AUC; for a GAN condition, against the best no-GAN
  control (a primary comparison, Holm-corrected);
- "a better operating point" needs a paired gain in accuracy or balanced accuracy over ``real`` that also
  beats ``real`` with its threshold corrected for the class prior and ``real+classweight``;
- otherwise a gain is the decision threshold moving, and the reading names the control that matches it;
- without a gain, a TOST with a margin of 1.6 points says "no difference", or the verdict is "inconclusive".
Every sentence is computed from the results it is given.
"""

from __future__ import annotations

import math

from . import CLASSES
from . import statistics as stats

CONTROL_DESCRIPTIONS = {
    stats.PRIOR_CORRECTED: "real's classifier with its threshold corrected for the class prior",
    "real+classweight": "real images, class-weighted loss",
    "real+copies": "real images topped up with copies",
    "real": "real images",
}


def _significant(entry, alpha: float = 0.05) -> bool:
    return entry is not None and entry.get("p") is not None and entry["p"] < alpha


def _diff(entry) -> str:
    if entry is None:
        return "not compared"
    low, high = entry["interval"]
    if low is None:
        return f"{entry['estimate']:+.3f}"
    return f"{entry['estimate']:+.3f}, 95% [{low:+.3f}, {high:+.3f}], p = {_fmt(entry['p'])}"


def verdict(results: dict, cond: str, alpha: float = 0.05) -> dict:
    """How to read ``cond`` against ``real``: {"kind": ..., "text": ..., "control": the control named or None}.

    kinds: "better classifier", "not better than the best control", "worse classifier",
    "better operating point", "threshold moved", "no difference", "inconclusive".
    """
    paired, conds = results.get("paired") or [], results["conditions"]
    auc = stats.find(paired, "real", cond, "roc_auc")
    primary = next((e for e in paired if e["primary"] and e["b"] == cond), None)
    is_gan = cond in stats.GAN_CONDITIONS
    holm_p = None if primary is None else primary.get("holm_p")
    if is_gan and holm_p is not None and holm_p < alpha and primary["estimate"] > 0:
        text = (
            f"a better classifier: its ROC AUC beats the best no-GAN control {primary['a']} "
            f"({_diff(primary)}, Holm p = {_fmt(primary['holm_p'])}, a primary comparison)"
        )
        return {"kind": "better classifier", "text": text, "control": primary["a"]}
    if _significant(auc, alpha) and auc["estimate"] > 0:
        if not is_gan:
            return {
                "kind": "better classifier",
                "text": f"a better classifier than real: ROC AUC {_diff(auc)}",
                "control": None,
            }
        if primary is not None:
            text = (
                f"ROC AUC above real's ({_diff(auc)}), but not above the best no-GAN control {primary['a']}'s "
                f"({primary['estimate']:+.3f}, Holm p = {_fmt(primary['holm_p'])}): not shown to be a better "
                "classifier than what the control gets without GAN images"
            )
            return {"kind": "not better than the best control", "text": text, "control": primary["a"]}
    if _significant(auc, alpha) and auc["estimate"] < 0:
        return {"kind": "worse classifier", "text": f"a worse classifier: ROC AUC {_diff(auc)}", "control": None}
    ref = primary["a"] if is_gan and primary is not None else "real"  # a GAN condition: its primary comparison
    eq = stats.find(results.get("equivalence"), ref, cond, "roc_auc")
    margin = 100 * stats.EQUIVALENCE_MARGIN
    if eq is None or eq["interval_90"][0] is None:
        auc_text, equivalent = "ROC AUC not compared", False
    else:
        low, high = eq["interval_90"]
        equivalent = eq["verdict"] == "equivalent"
        relation = {"equivalent": "equivalent to", "different": "different from"}.get(
            eq["verdict"], "not shown to differ from"
        )
        auc_text = (
            f"ROC AUC {relation} {ref}'s (90% interval [{low:+.3f}, {high:+.3f}] "
            f"{'inside' if equivalent else 'not inside'} ±{margin:.1f} points)"
        )
    gains = [
        m
        for m in ("accuracy", "balanced_accuracy")
        if _significant(e := stats.find(paired, "real", cond, m), alpha) and e["estimate"] > 0
    ]
    if not gains:
        if equivalent:
            return {
                "kind": "no difference",
                "text": f"no difference: {auc_text}, and no paired gain in accuracy or balanced accuracy",
                "control": None,
            }
        text = f"inconclusive: {auc_text}, and no paired gain in accuracy or balanced accuracy; the data can show neither a gain nor its absence"
        return {"kind": "inconclusive", "text": text, "control": None}
    metric = gains[0]
    gain = stats.find(paired, "real", cond, metric)
    name = metric.replace("_", " ")
    controls = [c for c in stats.OPERATING_POINT_CONTROLS if c != cond]
    missing = [c for c in controls if c not in conds]
    vs = {c: stats.find(paired, c, cond, metric) for c in controls if c not in missing}
    beaten = {c: _significant(e, alpha) and e["estimate"] > 0 for c, e in vs.items()}
    if vs and all(beaten.values()) and not missing:
        text = (
            f"a better operating point, not a better classifier: {auc_text}, but its {name} gain over real "
            f"({_diff(gain)}) also beats " + " and ".join(f"{c} ({_diff(vs[c])})" for c in controls)
        )
        return {"kind": "better operating point", "text": text, "control": None}
    r, c_ = conds["real"], conds[cond]
    shift = (
        f"sensitivity {_num(r['sensitivity'], 2)} -> {_num(c_['sensitivity'], 2)}, "
        f"specificity {_num(r['specificity'], 2)} -> {_num(c_['specificity'], 2)}"
    )
    text = f"not a better classifier: {auc_text}; the {name} gain ({_diff(gain)}) is the decision threshold moving ({shift})"
    explaining = [c for c in vs if not beaten[c]]
    control = max(explaining, key=lambda c: conds[c][metric]) if explaining else None
    if control is not None:
        text += (
            f": {control} ({CONTROL_DESCRIPTIONS[control]}, no GAN images) reaches {name} {_num(conds[control][metric])} "
            f"({cond} - {control}: {_diff(vs[control])})"
        )
    if missing:
        text += f"; {' and '.join(missing)} did not run, so no better operating point can be claimed"
    return {"kind": "threshold moved", "text": text, "control": control}


def reading(results: dict) -> list[str]:
    """A reading of the run that follows the rules in :func:`verdict`, every sentence computed from ``results``."""
    conds = results["conditions"]
    if "real" not in conds:
        return ["No 'real' condition: nothing to compare against."]
    base = conds["real"]
    n_val = base["n_val"]
    method = results.get("statistics_method") or {}
    lines = [
        f"{n_val} validation images: one image = {100 / n_val:.2f} accuracy points. The images are assumed "
        f"independent; intervals and p-values come from a class-stratified paired bootstrap over them "
        f"({method.get('n_resamples', 'n/a')} resamples) of metrics averaged over {len(base['seeds'])} head seed(s): "
        "they cover the validation sample, not the GAN's seed."
    ]
    if stats.PRIOR_CORRECTED in conds:
        pc = conds[stats.PRIOR_CORRECTED]
        counts = pc["n_train_per_class"]
        lines.append(
            f"{stats.PRIOR_CORRECTED}: real's probabilities with the logit shifted by log({counts[CLASSES[0]]}/"
            f"{counts[CLASSES[1]]}) = {pc['logit_offset']:.3f}, from the training counts (no threshold is tuned on "
            f"validation images): accuracy {base['accuracy']:.3f} -> {pc['accuracy']:.3f}, sensitivity "
            f"{_num(base['sensitivity'], 2)} -> {_num(pc['sensitivity'], 2)}, specificity {_num(base['specificity'], 2)} -> "
            f"{_num(pc['specificity'], 2)}, same ROC AUC."
        )
    primary = results.get("primary") or {}
    if primary.get("control"):
        control = primary["control"]
        lines.append(
            f"Primary comparisons (fixed in advance): {primary['rule']}. Best no-GAN control in this run: {control} "
            f"(ROC AUC {_num(conds[control]['roc_auc'])})."
        )
    for cond, c in conds.items():
        if cond in ("real", stats.PRIOR_CORRECTED):
            continue
        diff = c["accuracy"] - base["accuracy"]
        v = verdict(results, cond)
        lines.append(
            f"{cond}: accuracy {c['accuracy']:.3f} ({diff:+.3f} = {diff * n_val:+.1f} images), balanced accuracy "
            f"{_num(base.get('balanced_accuracy'))} -> {_num(c.get('balanced_accuracy'))}, ROC AUC "
            f"{_num(base['roc_auc'])} -> {_num(c['roc_auc'])}: {v['text']}."
        )
    lines += _power_lines(results)
    gan_seeds = results.get("gan_seeds") or [0]
    if any(c in conds for c in stats.GAN_CONDITIONS):
        if len(gan_seeds) == 1:
            lines.append(
                f"One GAN seed ({gan_seeds[0]}): every GAN result above is conditional on that one generator; "
                "the spread across GAN seeds is in the seed sweep (notebook 07, make studies)."
            )
        else:
            lines.append(
                f"GAN seeds {gan_seeds} are set for this run, each its own sub-run; the numbers above come from one "
                "run directory, so compare the sub-runs (notebook 07) before reading a GAN effect."
            )
    lines += _procedure_lines(results)
    return lines


def _power_lines(results: dict) -> list[str]:
    power = results.get("power")
    if not power:
        return []
    rates = ", ".join(
        f"{100 * r['mde']:.1f} points at {100 * r['discordance']:.0f}% discordant images"
        if r["mde"] is not None
        else f"out of reach at {100 * r['discordance']:.0f}% discordant images"
        for r in power["mde"]
    )
    gains = " and ".join(f"+{100 * g:.1f}" for g in power.get("report_gains", {}).values())
    line = (
        f"Minimum detectable effect with {power['n']} paired images (two-sided {power['alpha']}, "
        f"{100 * power['power']:.0f}% power): {rates}; a gain needs at least {power['min_significant_images']} images "
        f"({100 * power['min_significant_gain']:.1f} points) to reach p < {power['alpha']} at all."
    )
    if gains:
        line += f" The report's gains were {gains} points."
    if power.get("n_this_run") not in (None, power["n"]):
        line += f" (This run has {power['n_this_run']} validation images, so its detectable effects are larger.)"
    return [line]


def _procedure_lines(results: dict) -> list[str]:
    proc = results.get("procedure_error_rate")
    if not proc:
        return []
    if proc.get("raw_gain") is None:
        return [f"How often the report's procedure is fooled was not simulated: {proc.get('reason')}."]
    return [
        f"The report's procedure, simulated from this run ({proc['simulates']}): a raw gain in "
        f"{100 * proc['raw_gain']:.0f}% of {proc['n_sim']} experiments, a McNemar-significant gain in "
        f"{100 * proc['mcnemar_gain']:.1f}%, where there is no true difference (a lower bound: GAN and training-set "
        "variation are left out)."
    ]


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _fmt(p) -> str:
    return "n/a" if p is None else f"{p:.3g}"


__all__ = ["CONTROL_DESCRIPTIONS", "reading", "verdict"]
