"""The reading of a run: sentences computed from results.json, following the rules of :mod:`.rules`."""

from __future__ import annotations

from .. import CLASSES
from .. import statistics as stats
from ..formatting import num, signed
from .other_sets import baseline_lines, test_set_lines
from .rules import verdict


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
            f"{num(base['sensitivity'], 2)} -> {num(pc['sensitivity'], 2)}, specificity {num(base['specificity'], 2)} -> "
            f"{num(pc['specificity'], 2)}, same ROC AUC."
        )
    primary = results.get("primary") or {}
    if primary.get("control"):
        control = primary["control"]
        lines.append(
            f"Primary comparisons (fixed in advance): {primary['rule']}. Best no-GAN control in this run: {control} "
            f"(ROC AUC {num(conds[control]['roc_auc'])})."
        )
    for cond, c in conds.items():
        if cond in ("real", stats.PRIOR_CORRECTED):
            continue
        diff = c["accuracy"] - base["accuracy"]
        v = verdict(results, cond)
        lines.append(
            f"{cond}: accuracy {c['accuracy']:.3f} ({signed(diff, 3)} = {signed(diff * n_val, 1)} images), balanced accuracy "
            f"{num(base.get('balanced_accuracy'))} -> {num(c.get('balanced_accuracy'))}, ROC AUC "
            f"{num(base['roc_auc'])} -> {num(c['roc_auc'])}: {v['text']}."
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
        rate = stats.rate_is(entry["truth"]["accuracy_kind"])  # from the truth, whatever results.json stored
        meaning = {
            "power": "its power, since the truth shows a gain.",
            "false-gain rate": "its false-gain rate, since the truth shows no accuracy gain.",
        }.get(
            rate,
            "a rate of declared gains only: the truth is not known to be zero (its interval spans 0 and is not "
            "inside the margin), so this is neither a false-gain rate nor power.",
        )
        lines.append(
            f"{cond} vs {sim['base']}: {t}; the procedure declares a gain (raw) in {100 * entry['raw_gain']:.0f}% of the "
            f"draws, a McNemar-significant one in {100 * entry['mcnemar_gain']:.1f}%: "
            + meaning
        )
    return lines


def truth_text(truth: dict) -> str:
    """The large set's verdict on one comparison, as a phrase."""
    low, high = truth["accuracy_interval"]
    alow, ahigh = truth["roc_auc_interval"]
    acc = f"{signed(truth['accuracy_difference'], 3)}" + ("" if low is None else f" [{signed(low, 3)}, {signed(high, 3)}]")
    auc = f"{signed(truth['roc_auc_difference'], 3)}" + ("" if alow is None else f" [{signed(alow, 3)}, {signed(ahigh, 3)}]")
    return (
        f"truth (large set): accuracy at the validation mix {acc} ({truth['accuracy_kind']}), "
        f"ROC AUC {auc} ({truth['roc_auc_kind']})"
    )
