"""The reading's lines on the other test sets (external, large independent) and on the pixel baseline."""

from __future__ import annotations

import math

from .. import statistics as stats
from ..formatting import fmt_diff, num, signed, with_interval
from .rules import set_verdict, verdict


def _block_interval(block: dict, key: str, digits: int = 3) -> str:
    """A block's value and its ``<key>_ci`` interval as text."""
    return with_interval(block.get(key), block.get(f"{key}_ci"), digits)


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
                    shift = f" (change {signed(d['estimate'], 3)} [{signed(d['interval'][0], 3)}, {signed(d['interval'][1], 3)}])"
                parts.append(f"{name} {num(c.get(m))} -> {_block_interval(block, m)}{shift}")
            lines.append(f"{cond}, home -> external: " + "; ".join(parts) + ".")
    if large is not None and not large.get("evaluated"):
        lines.append(f"No large independent test set: {large.get('reason', 'not evaluated')}.")
    elif large is not None and "real" in conds and conds["real"].get("large_test"):
        truth = conds["real"]["large_test"]
        lines.append(
            f"Large independent test set ({large.get('description')}; {truth['n']} images): the truth these "
            f"classifiers' validation numbers estimate (its comparisons below are descriptive, not corrected for "
            f"multiplicity). real: accuracy at the validation class mix "
            f"{_block_interval(truth, 'accuracy_at_validation_mix')} (validation: {num(conds['real']['accuracy'])}), "
            f"ROC AUC {_block_interval(truth, 'roc_auc')} (validation: {num(conds['real']['roc_auc'])})."
        )
    for cond in stats.GAN_CONDITIONS:
        if cond not in conds:
            continue
        home = verdict(results, cond)
        parts = [f"{cond}: home (validation) says {home['kind']}"]
        judged = {}
        for key, name in (("external", "external set"), ("large_test", "large test set")):
            block = conds[cond].get(key)
            if block:
                controls = {c: conds[c].get(key) for c in stats.OPERATING_POINT_CONTROLS if c in conds}
                judged[key] = set_verdict(block, cond, real=(conds.get("real") or {}).get(key), controls=controls)
                parts.append(f"{name}: {judged[key]['text']}")
        if len(parts) > 1:
            truth = judged["large_test"]["kind"] if "large_test" in judged else None
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
            f"accuracy {_block_interval(val, 'accuracy')}, ROC AUC {_block_interval(val, 'roc_auc')}; VGG16 real: accuracy "
            f"{num(real['accuracy'])}, ROC AUC {num(real['roc_auc'])}"
        )
        if diff is not None:
            line += f" (VGG16 real - pixels: ROC AUC {fmt_diff(diff)})"
        for key, name, acc in (
            ("external", "external set: accuracy", "accuracy"),
            ("large_test", "large test set: accuracy at the validation mix", "accuracy_at_validation_mix"),
        ):
            if base.get(key) and real.get(key):
                line += (
                    f"; {name} {num(base[key].get(acc))} (pixels) vs {num(real[key].get(acc))} (VGG16 real), "
                    f"ROC AUC {num(base[key]['roc_auc'])} vs {num(real[key]['roc_auc'])}"
                )
        lines.append(line + ".")
    return lines
