"""A whole run: load the images once, compute features once, then every metric of notebook 06 -> metrics.json."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import CLASSES
from ..config import rel
from ..formatting import clean
from .distances import SET_KEYS, diversity, per_class_metrics
from .features import FeatureExtractor, build_extractor, domain_predict, one_thread
from .fixed import fixed_space
from .memorization import closest_pairs, memorization
from .probes import brightness_gap, gan_test, lowres_probe, majority_rate, tstr

NOTEBOOK_04 = "notebooks/04_synthetic_data.ipynb"


@dataclass
class Prepared:
    """Images, labels and features of one run: computed once, then every metric reads them."""

    cfg: Any
    extractor: FeatureExtractor
    images: dict  # name -> (uint8 images, labels): "train", "val", and each framework present
    features: dict  # name -> features
    notes: dict  # framework -> why it is left out
    frameworks: list
    fixed: dict = field(default_factory=dict)  # the fixed-space block (fixed.fixed_space), filled by evaluate_run


def prepare(cfg, feature_extractor: str | None = None, feature_weights=None, progress: bool = True) -> Prepared:
    """Load real train/val and each framework's synthetic images; build the feature extractor; compute features once."""
    from .. import data, synthesis

    data.require_prepared(cfg)
    frameworks = synthesis.available(cfg.run_dir)
    if not frameworks:
        raise FileNotFoundError(
            f"No synthetic images in {rel(cfg.run_dir)}/synthetic. Run {NOTEBOOK_04} first "
            "(after notebook 02 and/or 03, with the same profile and run_dir)."
        )
    images = {"train": data.load_split(cfg, "train"), "val": data.load_split(cfg, "val")}
    notes = {}
    for fw in synthesis.FRAMEWORKS:
        if fw in frameworks:
            images[fw] = synthesis.load_synthetic(cfg.run_dir, fw, image_size=cfg.image_size)
        else:
            notes[fw] = f"left out: no synthetic images (run {synthesis.GAN_NOTEBOOKS[fw]}, then {NOTEBOOK_04})"
    extractor = build_extractor(
        feature_extractor,
        *images["train"],
        feature_weights=feature_weights,
        vgg_weights=cfg.vgg_weights,
        vgg_image_size=cfg.vgg_image_size,
        seed=0,
        progress=progress,
    )
    features = {name: extractor(x) for name, (x, _) in images.items()}
    if extractor.name == "domain":
        x_val, y_val = images["val"]
        extractor.info["val_accuracy"] = float((domain_predict(extractor, x_val) == y_val).mean())
    return Prepared(cfg, extractor, images, features, notes, list(frameworks))


@one_thread
def diversity_over_epochs(run_dir, framework: str, max_images: int = 200) -> Any:
    """``diversity`` of the fixed-noise samples saved at each epoch (all, and per class): a DataFrame."""
    import pandas as pd

    folder = Path(run_dir) / f"{framework}_gan" / "samples"
    rows = []
    for path in sorted(folder.glob("epoch_*.npz")):
        with np.load(path) as z:
            images, labels, epoch = z["images"], np.asarray(z["labels"]), int(z["epoch"])
        row = {"epoch": epoch, "all": diversity(images, max_images)}
        for c, name in enumerate(CLASSES):
            row[name] = diversity(images[labels == c], max_images) if (labels == c).sum() >= 2 else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["epoch", "all", *CLASSES])


def _set_part(m: dict) -> dict:
    return {**{key: m[key] for key in SET_KEYS}, "per_class": m["per_class"]}


@one_thread
def evaluate_framework(p: Prepared, fw: str, *, k: int = 5, subset_size: int = 100, n_subsets: int = 100) -> dict:
    """Every metric of one framework's synthetic images (the M object of metrics.json)."""
    (x_tr, y_tr), (x_val, y_val), (x_g, y_g) = p.images["train"], p.images["val"], p.images[fw]
    f_tr, f_val, f_g = p.features["train"], p.features["val"], p.features[fw]
    m = per_class_metrics(f_tr, y_tr, f_g, y_g, k=k, subset_size=subset_size, n_subsets=n_subsets)
    gt = gan_test(x_tr, y_tr, x_g, y_g)
    ts = tstr(x_g, y_g, x_val, y_val, x_tr, y_tr)
    mem = memorization(x_g, x_tr, x_val, f_g, f_tr, f_val)
    out = {
        **_set_part(m),
        "n_generated": {c: int((y_g == i).sum()) for i, c in enumerate(CLASSES)},
        "gan_test_accuracy": gt["accuracy"],
        "gan_test": gt,
        "tstr_accuracy": ts["accuracy"],
        "tstr": ts,
        "majority_rate": ts["majority_rate"],
        "memorization": {key: v for key, v in mem.items() if not key.startswith("nearest_train")},
        "closest_pairs": closest_pairs(mem, 8),
        "brightness_gap": brightness_gap(x_tr, y_tr, x_g, y_g),
        "shortcuts": lowres_probe(x_tr, y_tr, x_g, y_g, x_val, y_val),
        "diversity_over_epochs": diversity_over_epochs(p.cfg.run_dir, fw).to_dict(orient="list"),
    }
    if fw in p.fixed:
        ref = p.fixed["real_vs_real"]
        out["fixed"] = {**p.fixed[fw], "real_vs_real": {key: ref[key] for key in (*SET_KEYS, "n_real", "n_fake")}}
    return out


@one_thread
def reference_metrics(p: Prepared, *, k: int = 5, subset_size: int = 100, n_subsets: int = 100) -> dict:
    """Held-out real (validation) images against the real training images: the floor for every set metric."""
    (x_tr, y_tr), (x_val, y_val) = p.images["train"], p.images["val"]
    m = per_class_metrics(
        p.features["train"], y_tr, p.features["val"], y_val, k=k, subset_size=subset_size, n_subsets=n_subsets
    )
    return {
        **_set_part(m),
        "trtr_accuracy": tstr(x_tr, y_tr, x_val, y_val)["accuracy"],
        "majority_rate": majority_rate(y_val),
        "diversity": diversity(x_tr),
        "brightness": brightness_gap(x_tr, y_tr, x_val, y_val),
    }


def evaluate_run(
    cfg,
    feature_extractor: str | None = None,
    feature_weights=None,
    *,
    prepared: Prepared | None = None,
    progress: bool = True,
    write: bool = True,
) -> dict:
    """Notebook 06 in one call: RUN/evaluation/metrics.json = {"feature_extractor", "fixed", "torch": M, "tf": M, ...}.

    "fixed" holds the fixed feature space (version, description) and its real-vs-real reference (two
    disjoint halves of the real training images); each M repeats that reference beside its own fixed-space
    numbers under M["fixed"]. A framework without synthetic images is left out, with a note under "notes".
    """
    from ..files import write_json
    from .report import reading

    p = prepared or prepare(cfg, feature_extractor, feature_weights, progress=progress)
    p.fixed = fixed_space(*p.images["train"], {fw: p.images[fw] for fw in p.frameworks})
    info = {k: v for k, v in p.extractor.info.items() if k not in ("classifier", "scaler")}
    out: dict[str, Any] = {
        "feature_extractor": p.extractor.name,
        "feature_extractor_info": {"description": p.extractor.description, **info},
        "profile": cfg.profile,
        "data": "phantoms" if cfg.uses_phantoms else rel(cfg.data_dir),
        "image_size": int(cfg.image_size),
        "n_real": {
            split: {c: int((p.images[split][1] == i).sum()) for i, c in enumerate(CLASSES)}
            for split in ("train", "val")
        },
        "reference": reference_metrics(p),
        "fixed": {key: p.fixed[key] for key in ("features", "real_vs_real")},
    }
    for fw in p.frameworks:
        out[fw] = evaluate_framework(p, fw)
    out["notes"] = dict(p.notes)
    out["reading"] = reading(out)
    out = clean(out)
    if write:
        write_json(cfg.path("evaluation", "metrics.json"), out)
    return out
