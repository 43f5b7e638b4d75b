"""Words and tables from metrics.json: a reading computed from the numbers, and one summary table."""

from __future__ import annotations

import math

from .. import CLASSES
from ..formatting import fmt_p, signed
from .fixed import FEATURES_NAME

SUMMARY_ROWS = {
    "KID (lower is better)": "kid",
    "KID sd over subsets": "kid_std",
    "Fréchet distance": "fd",
    "precision": "precision",
    "recall": "recall",
    "density": "density",
    "coverage": "coverage",
}


def _f(v, digits: int = 2) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _kid_part(kid, floor, where: str) -> str:
    times = f" ({kid / floor:.1f}x the floor)" if floor and floor > 0 and kid > floor else ""
    return f"KID {kid:.4f} vs {floor:.4f} for {where}{times}"


def _fixed_part(fixed: dict) -> str:
    ref = fixed["real_vs_real"]
    return (
        f"{FEATURES_NAME} features: KID {_f(fixed['kid'], 4)} vs {_f(ref['kid'], 4)} real-vs-real, "
        f"{fixed['recall_name']}: {_f(fixed['recall'])} vs {_f(ref['recall'])} real-vs-real"
    )


def reading(metrics: dict) -> list[str]:
    """An honest one-line reading per framework, computed from the numbers (not written in advance)."""
    ref = metrics.get("reference", {})
    lines = []
    for fw in ("torch", "tf"):
        if fw not in metrics:
            if fw in metrics.get("notes", {}):
                lines.append(f"{fw}: {metrics['notes'][fw]}")
            continue
        m = metrics[fw]
        parts = []
        floor = ref.get("kid")
        if floor is not None and m["kid"] is not None and math.isfinite(m["kid"]):
            parts.append(_kid_part(m["kid"], floor, "held-out real images"))
        parts.append(
            f"precision {_f(m['precision'])} / recall {_f(m['recall'])} (real: {_f(ref.get('precision'))} / {_f(ref.get('recall'))})"
        )
        if m.get("fixed"):
            parts.append(_fixed_part(m["fixed"]))
        rate = m["majority_rate"]
        tstr_word = "above" if m["tstr_accuracy"] > rate else "NOT above"
        parts.append(f"train-on-synthetic {m['tstr_accuracy']:.3f}, {tstr_word} the majority rate {rate:.3f}")
        parts.append(f"GAN-test {m['gan_test_accuracy']:.3f}")
        bg = m["brightness_gap"]
        big = [
            f"{c} {signed(bg[c]['difference'], 1)} gray levels (p = {fmt_p(bg[c]['p_value'])})"
            for c in CLASSES
            if c in bg and bg[c]["p_value"] is not None and math.isfinite(bg[c]["p_value"]) and bg[c]["p_value"] < 0.05
        ]
        parts.append("brightness fingerprint: " + ", ".join(big) if big else "no significant brightness gap")
        if "between_classes" in bg:
            between = bg["between_classes"]
            parts.append(
                f"COVID minus Normal brightness {signed(between['generated'], 1)} gray levels generated vs {signed(between['real'], 1)} real"
            )
        verdict = m["memorization"]["verdict"].split(":")[0]
        parts.append(verdict.lower() if not verdict.isupper() else verdict)
        lines.append(f"{fw}: " + "; ".join(parts) + ".")
    return lines


def summary_table(metrics: dict):
    """One row per metric, one column per image set (real reference, torch, tf).

    The rows named after the fixed feature space hold its numbers; in the real column they are the
    real-vs-real reference there (two disjoint halves of the real training images).
    """
    import pandas as pd

    ref = metrics.get("reference", {})
    fixed_ref = metrics.get("fixed", {}).get("real_vs_real", {})
    fixed_rows = {
        f"{name.split(' (')[0]} ({FEATURES_NAME})": key for name, key in SUMMARY_ROWS.items() if key != "kid_std"
    }
    col = {name: ref.get(key) for name, key in SUMMARY_ROWS.items()}
    col.update(
        {"train-on-X accuracy (real val)": ref.get("trtr_accuracy"), "majority-class rate": ref.get("majority_rate")}
    )
    col.update({name: fixed_ref.get(key) for name, key in fixed_rows.items()})
    cols = {"held-out real": col}
    for fw in ("torch", "tf"):
        if fw not in metrics:
            continue
        m = metrics[fw]
        col = {name: m.get(key) for name, key in SUMMARY_ROWS.items()}
        col["GAN-test accuracy"] = m["gan_test_accuracy"]
        col["train-on-X accuracy (real val)"] = m["tstr_accuracy"]
        col["majority-class rate"] = m["majority_rate"]
        col["closer than real 1st pct (pixel)"] = m["memorization"]["pixel"]["fraction_below_heldout_p1"]
        col["memorization p (pixel)"] = m["memorization"]["pixel"]["mannwhitney_p"]
        col["copies of training images"] = m["memorization"]["n_copies"]
        for c in CLASSES:
            if c in m["brightness_gap"]:
                col[f"brightness gap {c} (gray levels)"] = m["brightness_gap"][c]["difference"]
        col["real-vs-generated AUC (4x4)"] = m["shortcuts"]["real_vs_generated_auc"]
        col.update({name: m.get("fixed", {}).get(key) for name, key in fixed_rows.items()})
        cols[fw] = col
    return pd.DataFrame(cols)
