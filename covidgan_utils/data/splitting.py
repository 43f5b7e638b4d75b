"""The seeded stratified split into training and validation images, and counting them."""

from __future__ import annotations

from collections import Counter

import numpy as np

from .. import CLASSES
from .errors import DataError

# The manifest: the four columns every reader relies on first, then the hash of the decoded pixels.
MANIFEST_COLUMNS = ["path", "label", "split", "sha256", "pixel_sha256"]


def _counts(spec: dict, available: dict) -> dict:
    """Turn a per-class spec of counts (int) or fractions (float < 1) into counts."""
    out = {}
    for c in CLASSES:
        v = spec[c]
        out[c] = int(round(v * available[c])) if isinstance(v, float) and v < 1 else int(v)
    return out


def split(table, train_per_class: dict, val_per_class: dict, seed: int = 0):
    """Seeded stratified split: per class, shuffle, take validation first, then training.

    Counts are per class ({"COVID": 331, "Normal": 601}) or fractions of what is available.
    Raises DataError saying how many images are needed and found when there are too few.
    """
    available = table["label"].value_counts().reindex(list(CLASSES), fill_value=0).to_dict()
    n_val, n_train = _counts(val_per_class, available), _counts(train_per_class, available)
    short = [
        f"{c}: {n_train[c]} train + {n_val[c]} val = {n_train[c] + n_val[c]} needed, {available[c]} found"
        for c in CLASSES
        if n_train[c] + n_val[c] > available[c]
    ]
    if short:
        raise DataError(
            "Too few images for the requested split (after removing duplicates):\n  - "
            + "\n  - ".join(short)
            + "\nFix: use a larger dataset, or ask for fewer images (train_per_class / val_per_class)."
        )
    rng = np.random.default_rng(seed)
    parts = []
    for c in CLASSES:
        rows = table[table["label"] == c].sort_values("path")
        order = rng.permutation(len(rows))
        val = rows.iloc[order[: n_val[c]]].assign(split="val")
        train = rows.iloc[order[n_val[c] : n_val[c] + n_train[c]]].assign(split="train")
        parts += [train, val]
    import pandas as pd

    out = pd.concat(parts).sort_values(["split", "label", "path"], ascending=[False, True, True])
    return out.reset_index(drop=True)


def split_counts(manifest) -> object:
    """Table of images per split and class."""
    return manifest.groupby(["split", "label"]).size().unstack(fill_value=0).reindex(columns=list(CLASSES))


def class_counts(labels) -> Counter:
    return Counter(CLASSES[int(k)] for k in labels)
