"""Results at a glance: what the report did and found, beside what this run did and found, read from results.json.

The report's facts (Rydell and Nadum, 2021): 932 real training X-rays (331 COVID, 601 Normal), both cGANs trained for
1000 epochs at 128 px, the training set grown to 1000/1000 with generated images, an ImageNet VGG16 with only its
last layer trained for 20 epochs, one run per condition, validation accuracy on 72 COVID + 120 Normal images:
0.958 (real), 0.974 (real + PyTorch GAN), 0.98 (real + TensorFlow GAN); no ROC AUC, no interval, no test.
"""

from __future__ import annotations

from .evaluation import REPORT
from .formatting import num, signed, with_interval
from .verdicts import verdict

REPORT_FACTS = {
    "data": "real chest X-rays (Kaggle COVID-19 Radiography Database)",
    "train": {"COVID": 331, "Normal": 601},
    "val": {"COVID": 72, "Normal": 120},
    "gan_epochs": 1000,
    "image_size": 128,
    "vgg_weights": "ImageNet",
    "vgg_epochs": 20,
    "runs": "one run per condition",
    "accuracy": REPORT,
}
GAN_CONDITIONS = ("real+torch", "real+tf")
NOT_REPORTED = "not reported"


def _counts(counts: dict | None) -> str:
    if not counts:
        return "n/a"
    return f"{sum(counts.values())} ({counts.get('COVID', 0)} COVID / {counts.get('Normal', 0)} Normal)"


def weights_text(results: dict) -> str:
    kind = results.get("vgg_weights")
    if kind == "random":
        return "random (nothing transferred)"
    return str(results.get("vgg_weights_description") or kind or "n/a")


def _run_train_counts(results: dict) -> dict | None:
    real = results.get("conditions", {}).get("real", {})
    return real.get("n_train_per_class")


def _accuracy(block: dict | None) -> str:
    if not block:
        return "not run"
    return with_interval(block.get("accuracy"), block.get("accuracy_ci"))


def _auc(block: dict | None) -> str:
    if not block:
        return "not run"
    return with_interval(block.get("roc_auc"), block.get("roc_auc_ci"))


def _large_truth(results: dict, cond: str) -> str:
    """The large independent set's ROC AUC difference against real (phantoms only): what the validation set estimates."""
    block = (results.get("conditions", {}).get(cond) or {}).get("large_test") or {}
    entry = (block.get("vs_real") or {}).get("roc_auc")
    if not entry:
        return "no large test set"
    low, high = entry["interval"]
    return f"{signed(entry['estimate'], 3)} [{signed(low, 3)}, {signed(high, 3)}]"


def rows(results: dict, epochs: dict | None = None) -> list[tuple[str, str, str]]:
    """(quantity, the report, this run) rows; ``epochs`` = {"torch": n, "tf": n} of the run's GANs when known."""
    conds = results.get("conditions", {})
    out = [
        ("data", REPORT_FACTS["data"], "built-in phantoms (not medical data)" if results.get("data") == "phantoms"
         else f"images from {results.get('data')}"),
        ("real training images", _counts(REPORT_FACTS["train"]), _counts(_run_train_counts(results))),
        ("validation images", _counts(REPORT_FACTS["val"]), _counts(results.get("n_val_per_class"))),
        ("GAN image size (px)", str(REPORT_FACTS["image_size"]), str(results.get("image_size", "n/a"))),
    ]
    if epochs:
        out.append(("GAN epochs (PyTorch / TensorFlow)", f"{REPORT_FACTS['gan_epochs']} / {REPORT_FACTS['gan_epochs']}",
                    f"{epochs.get('torch', 'n/a')} / {epochs.get('tf', 'n/a')}"))
    seeds = results.get("seeds") or []
    out += [
        ("VGG16 weights", REPORT_FACTS["vgg_weights"], weights_text(results)),
        ("VGG16 last-layer epochs", str(REPORT_FACTS["vgg_epochs"]), str(results.get("epochs", "n/a"))),
        ("runs per condition", REPORT_FACTS["runs"], f"{len(seeds)} head seed(s), mean shown"),
    ]
    for cond in ("real", *GAN_CONDITIONS):
        out.append((f"accuracy, {cond} [95% interval]", num(REPORT_FACTS["accuracy"][cond]), _accuracy(conds.get(cond))))
    for cond in ("real", *GAN_CONDITIONS):
        out.append((f"ROC AUC, {cond} [95% interval]", NOT_REPORTED, _auc(conds.get(cond))))
    for cond in GAN_CONDITIONS:
        if cond not in conds:
            continue
        gain = REPORT_FACTS["accuracy"][cond] - REPORT_FACTS["accuracy"]["real"]
        out.append((f"reading, {cond}", f"accuracy gain {signed(gain, 3)}, read as an improvement (no test)",
                    verdict(results, cond)["kind"]))
    if any((conds.get(c) or {}).get("large_test") for c in GAN_CONDITIONS):
        for cond in GAN_CONDITIONS:
            out.append((f"truth on the large set: ROC AUC {cond} - real", NOT_REPORTED, _large_truth(results, cond)))
    return out


def table(results: dict, epochs: dict | None = None):
    """:func:`rows` as a pandas DataFrame indexed by quantity, columns "the report" and "this run"."""
    import pandas as pd

    frame = pd.DataFrame(rows(results, epochs), columns=["quantity", "the report", "this run"])
    return frame.set_index("quantity")


def comparable(results: dict) -> list[str]:
    """Why this run's numbers can or cannot be set beside the report's, one reason per line."""
    reasons = []
    if results.get("data") == "phantoms":
        reasons.append("The run used the built-in phantoms, not the report's X-rays: compare the conditions with each "
                       "other, not the accuracies with the report's.")
    if results.get("vgg_weights") == "random":
        reasons.append("VGG16 had random weights: a random-features model, not the report's transfer learning.")
    if results.get("n_val_per_class") != REPORT_FACTS["val"]:
        reasons.append(f"The validation set is {_counts(results.get('n_val_per_class'))}, not the report's 72 + 120.")
    if not reasons:
        reasons.append("Same data kind, weights and validation design as the report: the numbers are comparable.")
    return reasons


__all__ = ["GAN_CONDITIONS", "REPORT_FACTS", "comparable", "rows", "table", "weights_text"]
