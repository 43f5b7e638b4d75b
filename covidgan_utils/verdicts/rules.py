"""The rules of the reading: a better classifier, a better operating point, or a moved threshold (:func:`verdict`),
and the same rule, descriptive, on another test set (:func:`set_verdict`)."""

from __future__ import annotations

from .. import statistics as stats
from ..formatting import fmt_diff, fmt_p, num, signed

CONTROL_DESCRIPTIONS = {
    stats.PRIOR_CORRECTED: "real's classifier with its threshold corrected for the class prior",
    "real+classweight": "real images, class-weighted loss",
    "real+copies": "real images topped up with copies",
    "real": "real images",
}


def _significant(entry, alpha: float = 0.05) -> bool:
    return entry is not None and entry.get("p") is not None and entry["p"] < alpha


DESCRIPTIVE_KINDS = ("better operating point", "threshold moved", "worse operating point")


def verdict(results: dict, cond: str, alpha: float = 0.05) -> dict:
    """:func:`judged`, with a verdict that rests on uncorrected p-values marked descriptive in its text: every
    verdict of a condition without GAN images (only the GAN conditions' ROC AUC against the best no-GAN control
    is primary), and a GAN condition's operating-point verdicts and ROC AUC judged against real.
    ``descriptive`` says which."""
    v = judged(results, cond, alpha)
    is_gan = cond in stats.GAN_CONDITIONS
    rests_on_p = v["kind"] not in ("no difference", "inconclusive")
    descriptive = rests_on_p and (
        not is_gan or v["kind"] in DESCRIPTIVE_KINDS or (v["kind"] == "worse classifier" and v["control"] is None)
    )
    if descriptive:
        n = len(results.get("paired") or [])
        what = "the operating-point comparisons" if is_gan and v["kind"] in DESCRIPTIVE_KINDS else "this verdict"
        v["text"] += (
            f" ({what}: descriptive, uncorrected p, one of {n} paired comparisons in this run, not Holm-corrected; "
            "not a primary comparison)"
        )
    return {**v, "descriptive": descriptive}


def judged(results: dict, cond: str, alpha: float = 0.05) -> dict:
    """How to read ``cond`` against ``real``: {"kind": ..., "text": ..., "control": the control named or None}.

    kinds: "better classifier", "not better than the best control", "worse classifier" (below real, or for a GAN
    condition below the best no-GAN control in its primary comparison), "better operating point", "threshold moved",
    "worse operating point" (a significant loss in accuracy or balanced accuracy without a gain), "no difference",
    "inconclusive". A significant loss is always named, also beside a gain in the other metric.
    """
    paired, conds = results.get("paired") or [], results["conditions"]
    auc = stats.find(paired, "real", cond, "roc_auc")
    primary = next((e for e in paired if e["primary"] and e["b"] == cond), None)
    is_gan = cond in stats.GAN_CONDITIONS
    holm_p = None if primary is None else primary.get("holm_p")
    if is_gan and holm_p is not None and holm_p < alpha and primary["estimate"] > 0:
        text = (
            f"a better classifier: its ROC AUC beats the best no-GAN control {primary['a']} "
            f"({fmt_diff(primary)}, Holm p = {fmt_p(primary['holm_p'], 3)}, a primary comparison)"
        )
        return {"kind": "better classifier", "text": text, "control": primary["a"]}
    if is_gan and holm_p is not None and holm_p < alpha and primary["estimate"] < 0:
        text = (
            f"a worse classifier than the best no-GAN control {primary['a']}: its ROC AUC is below it "
            f"({fmt_diff(primary)}, Holm p = {fmt_p(primary['holm_p'], 3)}, a primary comparison), so no accuracy "
            f"gain over real can make it a better operating point: {primary['a']} "
            f"({CONTROL_DESCRIPTIONS[primary['a']]}, no GAN images) ranks the images better"
        )
        return {"kind": "worse classifier", "text": text, "control": primary["a"]}
    if _significant(auc, alpha) and auc["estimate"] > 0:
        if not is_gan:
            return {
                "kind": "better classifier",
                "text": f"a better classifier than real: ROC AUC {fmt_diff(auc)}",
                "control": None,
            }
        if primary is not None:
            text = (
                f"ROC AUC above real's ({fmt_diff(auc)}), but not above the best no-GAN control {primary['a']}'s "
                f"({signed(primary['estimate'], 3)}, Holm p = {fmt_p(primary['holm_p'], 3)}): not shown to be a better "
                "classifier than what the control gets without GAN images"
            )
            return {"kind": "not better than the best control", "text": text, "control": primary["a"]}
    if _significant(auc, alpha) and auc["estimate"] < 0:
        return {"kind": "worse classifier", "text": f"a worse classifier: ROC AUC {fmt_diff(auc)}", "control": None}
    ref = primary["a"] if is_gan and primary is not None else "real"  # a GAN condition: its primary comparison
    eq = stats.find(results.get("equivalence"), ref, cond, "roc_auc")
    margin = 100 * stats.EQUIVALENCE_MARGIN
    if eq is None or eq["interval_90"][0] is None:
        auc_text, equivalent = "ROC AUC not compared", False
    else:
        low, high = eq["interval_90"]
        entry = stats.find(paired, ref, cond, "roc_auc")
        judged = stats.judge(eq, entry, alpha)  # a primary comparison by its Holm p, whatever results.json stored
        equivalent = judged == "equivalent"
        interval = f"90% interval [{signed(low, 3)}, {signed(high, 3)}] {'inside' if equivalent else 'not inside'} ±{margin:.1f} points"
        if judged == "equivalent":
            auc_text = f"ROC AUC equivalent to {ref}'s ({interval})"
        elif entry is not None and entry.get("primary"):
            p = fmt_p(entry.get("holm_p"), 3)
            auc_text = (
                f"ROC AUC different from {ref}'s after Holm correction (Holm p = {p}; {interval})"
                if judged == "different"
                else f"ROC AUC not shown to differ from {ref}'s after Holm correction (p = {p}; {interval})"
            )
        else:
            relation = "different from" if judged == "different" else "not shown to differ from"
            auc_text = f"ROC AUC {relation} {ref}'s ({interval})"
    changes = {m: stats.find(paired, "real", cond, m) for m in ("accuracy", "balanced_accuracy")}
    gains = [m for m, e in changes.items() if _significant(e, alpha) and e["estimate"] > 0]
    losses = [m for m, e in changes.items() if _significant(e, alpha) and e["estimate"] < 0]
    r, c_ = conds["real"], conds[cond]
    shift = (
        f"sensitivity {num(r['sensitivity'], 2)} -> {num(c_['sensitivity'], 2)}, "
        f"specificity {num(r['specificity'], 2)} -> {num(c_['specificity'], 2)}"
    )
    loss_text = " and ".join(f"{m.replace('_', ' ')} below real's ({fmt_diff(changes[m])})" for m in losses)
    if not gains and losses:
        text = f"a worse operating point: {auc_text}, but a significant loss: {loss_text} ({shift})"
        return {"kind": "worse operating point", "text": text, "control": None}
    if not gains:
        if equivalent:
            return {
                "kind": "no difference",
                "text": f"no difference: {auc_text}, and no paired gain or loss in accuracy or balanced accuracy",
                "control": None,
            }
        text = (
            f"inconclusive: {auc_text}, and no paired gain or loss in accuracy or balanced accuracy; the data can "
            "show neither a gain nor its absence"
        )
        return {"kind": "inconclusive", "text": text, "control": None}
    also_loss = f"; it also loses: {loss_text}" if losses else ""
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
            f"({fmt_diff(gain)}) also beats " + " and ".join(f"{c} ({fmt_diff(vs[c])})" for c in controls)
        ) + also_loss
        return {"kind": "better operating point", "text": text, "control": None}
    text = f"not a better classifier: {auc_text}; the {name} gain ({fmt_diff(gain)}) is the decision threshold moving ({shift})"
    explaining = [c for c in vs if not beaten[c]]
    control = max(explaining, key=lambda c: conds[c][metric]) if explaining else None
    if control is not None:
        text += (
            f": {control} ({CONTROL_DESCRIPTIONS[control]}, no GAN images) reaches {name} {num(conds[control][metric])} "
            f"({cond} - {control}: {fmt_diff(vs[control])})"
        )
    if missing:
        text += f"; {' and '.join(missing)} did not run, so no better operating point can be claimed"
    text += also_loss
    return {"kind": "threshold moved", "text": text, "control": control}


def set_verdict(
    block: dict,
    cond: str,
    margin: float = stats.EQUIVALENCE_MARGIN,
    real: dict | None = None,
    controls: dict | None = None,
) -> dict:
    """The reading's rule on another test set (descriptive, no correction): a better classifier needs an AUC gain
    over the home run's best no-GAN control (95% interval above 0); an accuracy gain over real without it is the
    threshold moving; a 90% AUC interval inside the margin is no difference; anything else is inconclusive.

    On a set with as many images of each class (the large test set) accuracy is balanced accuracy, and it is named
    so. ``real`` (real's block on this set) adds the accuracy at the validation class mix; ``controls`` ({control:
    its block on this set}, the operating-point controls) names the control that explains a moved threshold."""
    auc = (block.get("vs_control") or block.get("vs_real") or {}).get("roc_auc")
    ref = (block.get("vs_control") or {}).get("control", "real")
    per_class = list((block.get("n_per_class") or {}).values())
    balanced = len(per_class) > 1 and len(set(per_class)) == 1
    metric = "balanced_accuracy" if balanced else "accuracy"
    name = (
        f"balanced accuracy (= accuracy on this set's {'/'.join(str(n) for n in per_class)} class mix)"
        if balanced
        else "accuracy"
    )
    acc = (block.get("vs_real") or {}).get(metric) or (block.get("vs_real") or {}).get("accuracy")
    if auc is None or auc["interval"][0] is None:
        kind = "n/a"
        text = f"ROC AUC not comparable with {ref}'s (one class only)"
        if acc is not None and acc["interval"][0] is not None:
            text += f"; {name} vs real {fmt_diff(acc)}"
        return {"kind": kind, "text": text, "control": ref}
    low, high = auc["interval"]
    auc_text = f"ROC AUC vs {ref} {fmt_diff(auc)}"
    if low > 0:
        return {"kind": "better classifier", "text": f"a better classifier: {auc_text}", "control": ref}
    if high < 0:
        return {"kind": "worse classifier", "text": f"a worse classifier: {auc_text}", "control": ref}
    if acc is not None and acc["interval"][0] is not None and acc["interval"][0] > 0:
        text = (
            f"not a better classifier ({auc_text}); the {name} gain over real ({fmt_diff(acc)}) is the threshold moving"
        )
        present = {c: b for c, b in (controls or {}).items() if c != cond and b and b.get(metric) is not None}
        if present:
            control = max(present, key=lambda c: present[c][metric])
            text += (
                f": {control} ({CONTROL_DESCRIPTIONS[control]}, no GAN images) reaches {metric.replace('_', ' ')} "
                f"{num(present[control][metric])} on this set ({cond} - {control}: "
                f"{signed(block[metric] - present[control][metric], 3)})"
            )
        else:
            control = None
        missing = [c for c in stats.OPERATING_POINT_CONTROLS if c != cond and c not in present]
        if missing:
            text += f"; {' and '.join(missing)} not evaluated on this set"
        mix_key = "accuracy_at_validation_mix"
        if balanced and real and block.get(mix_key) is not None and real.get(mix_key) is not None:
            text += f"; accuracy at the validation class mix {signed(block[mix_key] - real[mix_key], 3)} against real"
        return {"kind": "threshold moved", "text": text, "control": control or ref}
    low90, high90 = auc.get("interval_90") or (None, None)
    if low90 is not None and -margin < low90 and high90 < margin:
        return {
            "kind": "no difference",
            "text": f"no difference: {auc_text}, 90% interval inside ±{100 * margin:.1f} points",
            "control": ref,
        }
    return {"kind": "inconclusive", "text": f"inconclusive: {auc_text}", "control": ref}
