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
    lines += test_set_lines(results)
    lines += baseline_lines(results)
    return lines


def set_verdict(block: dict, cond: str, margin: float = stats.EQUIVALENCE_MARGIN) -> dict:
    """The reading's rule on another test set (descriptive, no correction): a better classifier needs an AUC gain
    over the home run's best no-GAN control (95% interval above 0); an accuracy gain over real without it is the
    threshold moving; a 90% AUC interval inside the margin is no difference; anything else is inconclusive."""
    auc = (block.get("vs_control") or block.get("vs_real") or {}).get("roc_auc")
    ref = (block.get("vs_control") or {}).get("control", "real")
    acc = (block.get("vs_real") or {}).get("accuracy")
    if auc is None or auc["interval"][0] is None:
        kind = "n/a"
        text = f"ROC AUC not comparable with {ref}'s (one class only)"
        if acc is not None and acc["interval"][0] is not None:
            text += f"; accuracy vs real {_diff(acc)}"
        return {"kind": kind, "text": text, "control": ref}
    low, high = auc["interval"]
    auc_text = f"ROC AUC vs {ref} {_diff(auc)}"
    if low > 0:
        return {"kind": "better classifier", "text": f"a better classifier: {auc_text}", "control": ref}
    if high < 0:
        return {"kind": "worse classifier", "text": f"a worse classifier: {auc_text}", "control": ref}
    if acc is not None and acc["interval"][0] is not None and acc["interval"][0] > 0:
        text = (
            f"not a better classifier ({auc_text}); the accuracy gain over real ({_diff(acc)}) is the threshold moving"
        )
        return {"kind": "threshold moved", "text": text, "control": ref}
    low90, high90 = auc.get("interval_90") or (None, None)
    if low90 is not None and -margin < low90 and high90 < margin:
        return {
            "kind": "no difference",
            "text": f"no difference: {auc_text}, 90% interval inside ±{100 * margin:.1f} points",
            "control": ref,
        }
    return {"kind": "inconclusive", "text": f"inconclusive: {auc_text}", "control": ref}


def _interval(block: dict, key: str, digits: int = 3) -> str:
    value, ci = block.get(key), block.get(f"{key}_ci") or [None, None]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if ci[0] is None:
        return _num(value, digits)
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def test_set_lines(results: dict) -> list[str]:
    """Home against the external set and the large independent set, condition by condition, with the rule of
    :func:`verdict` at home and :func:`set_verdict` on each other set; every number from ``results``."""
    conds = results["conditions"]
    lines = []
    ext, large = results.get("external_set"), results.get("large_test_set")
    if ext is not None and not ext.get("evaluated"):
        lines.append(f"No external test set: {ext.get('reason', 'not evaluated')}.")
    elif ext is not None:
        overlaps = len(ext.get("overlap_excluded") or [])
        counts = ", ".join(f"{v} {k}" for k, v in (ext.get("counts") or {}).items())
        lines.append(
            f"External test set ({ext.get('description')}): {ext.get('n')} images ({counts}), never trained on; "
            f"{overlaps} image(s) also in this run's split were left out. Home = the validation set."
        )
        for cond, c in conds.items():
            block = c.get("external")
            if not block:
                continue
            change = block.get("change_from_home") or {}
            parts = []
            for m, name in (
                ("accuracy", "accuracy"),
                ("sensitivity", "sensitivity"),
                ("specificity", "specificity"),
                ("roc_auc", "ROC AUC"),
            ):
                if block.get(m) is None or (isinstance(block[m], float) and math.isnan(block[m])):
                    continue
                d = change.get(m)
                shift = ""
                if d and d["interval"][0] is not None:
                    shift = f" (change {d['estimate']:+.3f} [{d['interval'][0]:+.3f}, {d['interval'][1]:+.3f}])"
                parts.append(f"{name} {_num(c.get(m))} -> {_interval(block, m)}{shift}")
            lines.append(f"{cond}, home -> external: " + "; ".join(parts) + ".")
    if large is not None and not large.get("evaluated"):
        lines.append(f"No large independent test set: {large.get('reason', 'not evaluated')}.")
    elif large is not None and "real" in conds and conds["real"].get("large_test"):
        truth = conds["real"]["large_test"]
        lines.append(
            f"Large independent test set ({large.get('description')}; {truth['n']} images): the truth these "
            f"classifiers' validation numbers estimate (its comparisons below are descriptive, not corrected for "
            f"multiplicity). real: accuracy at the validation class mix "
            f"{_interval(truth, 'accuracy_at_validation_mix')} (validation: {_num(conds['real']['accuracy'])}), "
            f"ROC AUC {_interval(truth, 'roc_auc')} (validation: {_num(conds['real']['roc_auc'])})."
        )
    for cond in stats.GAN_CONDITIONS:
        if cond not in conds:
            continue
        home = verdict(results, cond)
        parts = [f"{cond}: home (validation) says {home['kind']}"]
        for key, name in (("external", "external set"), ("large_test", "large test set")):
            block = conds[cond].get(key)
            if block:
                parts.append(f"{name}: {set_verdict(block, cond)['text']}")
        if len(parts) > 1:
            truth = set_verdict(conds[cond]["large_test"], cond)["kind"] if conds[cond].get("large_test") else None
            agree = ""
            if truth is not None:
                home_better, truth_better = home["kind"] == "better classifier", truth == "better classifier"
                if home_better == truth_better:
                    agree = " Validation and truth agree: " + (
                        "a better classifier." if home_better else "not shown to be a better classifier."
                    )
                elif home["kind"] == "inconclusive":
                    agree = f" The validation set could not tell; the large set says: {truth}."
                elif home_better:
                    agree = f" The validation verdict does not hold on the large set ({truth})."
                else:
                    agree = f" Validation and truth disagree: the validation set says {home['kind']}, the large set {truth}."
            lines.append("; ".join(parts) + "." + agree)
    return lines


def baseline_lines(results: dict) -> list[str]:
    """What was transferred (or that nothing was), and the pixel baseline beside VGG16's real condition."""
    used = results.get("vgg_weights")
    base = results.get("baseline") or {}
    lines = []
    if used == "random":
        lines.append(
            "VGG16 had RANDOM weights in this run "
            f"({results.get('vgg_weights_description') or 'random init'}): training its last layer on random features "
            "is a random-features model, not transfer learning. Nothing was transferred; the numbers test the code "
            "and compare the conditions among themselves, never with the report."
        )
    elif used in ("imagenet", "file"):
        lines.append(
            f"What was transferred ({results.get('vgg_weights_description')}): the 13 convolution layers and the first "
            "two fully connected layers, learned on ImageNet's photographs and frozen here; only the last layer "
            "(8,194 parameters) learned from these X-rays."
        )
    val = base.get("validation")
    real = results["conditions"].get("real")
    if val and real:
        diff = (base.get("real_minus_baseline") or {}).get("roc_auc")
        line = (
            f"Beside it, {base.get('model')}, trained on the same {base.get('n_train')} real images: validation "
            f"accuracy {_interval(val, 'accuracy')}, ROC AUC {_interval(val, 'roc_auc')}; VGG16 real: accuracy "
            f"{_num(real['accuracy'])}, ROC AUC {_num(real['roc_auc'])}"
        )
        if diff is not None:
            line += f" (VGG16 real - pixels: ROC AUC {_diff(diff)})"
        for key, name, acc in (
            ("external", "external set: accuracy", "accuracy"),
            ("large_test", "large test set: accuracy at the validation mix", "accuracy_at_validation_mix"),
        ):
            if base.get(key) and real.get(key):
                line += (
                    f"; {name} {_num(base[key].get(acc))} (pixels) vs {_num(real[key].get(acc))} (VGG16 real), "
                    f"ROC AUC {_num(base[key]['roc_auc'])} vs {_num(real[key]['roc_auc'])}"
                )
        lines.append(line + ".")
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
        lines = [f"How often the report's procedure is fooled was not simulated from head seeds: {proc.get('reason')}."]
    else:
        lines = [
            f"The report's procedure, simulated from this run ({proc['simulates']}): a raw gain in "
            f"{100 * proc['raw_gain']:.0f}% of {proc['n_sim']} experiments, a McNemar-significant gain in "
            f"{100 * proc['mcnemar_gain']:.1f}%, where the condition cannot gain over itself (a lower bound: GAN and "
            "training-set variation are left out)."
        ]
    return lines + large_procedure_lines(proc.get("large_test"))


def large_procedure_lines(sim: dict | None) -> list[str]:
    """The report's procedure against the large test set's truth, per GAN condition (computed sentences)."""
    if not sim:
        return []
    draw = " + ".join(f"{v} {k}" for k, v in sim["draw_per_class"].items())
    same = sim.get("same_classifier") or {}
    lines = [
        f"The report's procedure against the truth: {sim['n_sim']} validation sets of {draw} images drawn from the "
        f"large test set, one run per condition each."
        + (
            f" Two heads of {sim['base']} differing only in their seed (the same condition, so any gain declared is "
            f"false): a raw gain in {100 * same['raw_gain']:.0f}%, a McNemar-significant gain in "
            f"{100 * same['mcnemar_gain']:.1f}%. The heads themselves differ: their true accuracies at the validation "
            f"mix span {min(same['head_accuracy_at_mix']):.3f} to {max(same['head_accuracy_at_mix']):.3f}, and McNemar "
            "tests two fixed heads, not the condition, so head-seed variation is not in its p."
            if same.get("raw_gain") is not None
            else ""
        )
    ]
    for cond in stats.GAN_CONDITIONS:
        entry = (sim.get("conditions") or {}).get(cond)
        if entry is None:
            continue
        t = truth_text(entry["truth"])
        lines.append(
            f"{cond} vs {sim['base']}: {t}; the procedure declares a gain (raw) in {100 * entry['raw_gain']:.0f}% of the "
            f"draws, a McNemar-significant one in {100 * entry['mcnemar_gain']:.1f}%: "
            + (
                "its power, since the truth shows a gain."
                if entry["rate_is"] == "power"
                else "its false-gain rate, since the truth shows no accuracy gain."
            )
        )
    return lines


def truth_text(truth: dict) -> str:
    """The large set's verdict on one comparison, as a phrase."""
    low, high = truth["accuracy_interval"]
    alow, ahigh = truth["roc_auc_interval"]
    acc = f"{truth['accuracy_difference']:+.3f}" + ("" if low is None else f" [{low:+.3f}, {high:+.3f}]")
    auc = f"{truth['roc_auc_difference']:+.3f}" + ("" if alow is None else f" [{alow:+.3f}, {ahigh:+.3f}]")
    return (
        f"truth (large set): accuracy at the validation mix {acc} ({truth['accuracy_kind']}), "
        f"ROC AUC {auc} ({truth['roc_auc_kind']})"
    )


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _fmt(p) -> str:
    return "n/a" if p is None else f"{p:.3g}"


__all__ = [
    "CONTROL_DESCRIPTIONS",
    "baseline_lines",
    "large_procedure_lines",
    "reading",
    "set_verdict",
    "test_set_lines",
    "truth_text",
    "verdict",
]
