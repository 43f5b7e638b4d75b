"""A whole run: load the images once, compute features once, then each stage of notebook 06 -> metrics.json.

One path per stage: notebook 06 calls the stage functions below one by one (to show each result), and
:func:`evaluate_run` calls the same functions; each stage's result is kept on the :class:`Prepared` object,
so what the notebook shows is what metrics.json holds, computed once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import CLASSES, NOTEBOOKS
from ..config import rel
from ..formatting import clean
from .distances import SET_KEYS, diversity, per_class_metrics
from .features import FeatureExtractor, build_extractor, domain_predict, one_thread
from .fixed import class_counts, fixed_space, matched_subset
from .memorization import closest_pairs, memorization
from .probes import brightness_gap, gan_test, lowres_probe, majority_rate, tstr

NOTEBOOK_04 = NOTEBOOKS["04"]
NOTEBOOK_06 = NOTEBOOKS["06"]


@dataclass
class Prepared:
    """Images, labels and features of one run: computed once, then every metric reads them."""

    cfg: Any
    extractor: FeatureExtractor
    images: dict  # name -> (uint8 images, labels): "train", "val", and each framework present
    features: dict  # name -> features
    notes: dict  # framework -> why it is left out
    frameworks: list
    fixed: dict = field(default_factory=dict)  # the fixed-space block (fixed.fixed_space), filled by fixed_comparison
    stages: dict = field(default_factory=dict)  # (stage, settings) -> its result, computed once


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


def _once(p: Prepared, key: tuple, compute) -> Any:
    """The stage's result kept on ``p``: computed on the first call, returned as it is on later ones."""
    if key not in p.stages:
        p.stages[key] = compute()
    return p.stages[key]


def set_distances(p: Prepared, *, k: int = 5, subset_size: int = 100, n_subsets: int = 100) -> dict:
    """Stage 4-5: KID, FD, precision/recall/density/coverage per class against the real training features:
    {"reference": held-out real images, fw: generated images} (``distances.per_class_metrics``).

    Each generated set is subsampled (seeded) to the held-out set's size per class, so every row is measured at the
    same n: FD and the k-NN metrics move with n, and the held-out row is the floor only at its own size. Each
    result's ``n_per_class`` says how many images it used."""
    f_tr, y_tr = p.features["train"], p.images["train"][1]

    @one_thread
    def compute():
        y_val = p.images["val"][1]
        sets = {"reference": (p.features["val"], y_val)}
        for fw in p.frameworks:
            keep = matched_subset(p.images[fw][1], class_counts(y_val), seed=0)
            sets[fw] = (p.features[fw][keep], p.images[fw][1][keep])
        kw = {"k": k, "subset_size": subset_size, "n_subsets": n_subsets}
        return {name: {**per_class_metrics(f_tr, y_tr, f, y, **kw), "n_per_class": class_counts(y)}
                for name, (f, y) in sets.items()}

    return _once(p, ("sets", k, subset_size, n_subsets), compute)


def fixed_comparison(p: Prepared) -> dict:
    """Stage 5: the fixed feature space (``fixed.fixed_space``): two real halves, and each framework beside them."""
    if not p.fixed:
        p.fixed = fixed_space(*p.images["train"], {fw: p.images[fw] for fw in p.frameworks})
    return p.fixed


def class_probes(p: Prepared) -> dict:
    """Stage 6: {"reference": TRTR (train on real, test on real), fw: {"gan_test", "tstr"}} with the pixel probe; on
    phantoms the GAN-test carries the independent check (``gan_test(independent=data.load_independent(cfg))``)."""
    (x_tr, y_tr), (x_val, y_val) = p.images["train"], p.images["val"]

    def compute():
        from ..data import load_independent

        # real images neither the GAN nor the probe saw (phantoms only): tells a caricature from a likeness
        independent = load_independent(p.cfg) if p.cfg is not None else None
        out = {"reference": {"tstr": tstr(x_tr, y_tr, x_val, y_val)}}
        for fw in p.frameworks:
            x_g, y_g = p.images[fw]
            out[fw] = {"gan_test": gan_test(x_tr, y_tr, x_g, y_g, independent=independent),
                       "tstr": tstr(x_g, y_g, x_val, y_val, x_tr, y_tr)}
        return out

    return _once(p, ("class",), compute)


def memorization_checks(p: Prepared) -> dict:
    """Stage 7: {fw: nearest-training-image distances against held-out real ones} (``memorization.memorization``)."""
    x_tr, x_val = p.images["train"][0], p.images["val"][0]
    f_tr, f_val = p.features["train"], p.features["val"]
    return _once(
        p,
        ("memorization",),
        lambda: {fw: memorization(p.images[fw][0], x_tr, x_val, p.features[fw], f_tr, f_val) for fw in p.frameworks},
    )


def shortcut_probes(p: Prepared) -> dict:
    """Stage 8: the brightness fingerprint and the 4x4 thumbnail probe per framework; real validation images
    against the training images as the reference: {"reference": {"brightness_gap"}, fw: {"brightness_gap", "lowres"}}."""
    (x_tr, y_tr), (x_val, y_val) = p.images["train"], p.images["val"]

    def compute():
        out = {"reference": {"brightness_gap": brightness_gap(x_tr, y_tr, x_val, y_val)}}
        for fw in p.frameworks:
            x_g, y_g = p.images[fw]
            out[fw] = {
                "brightness_gap": brightness_gap(x_tr, y_tr, x_g, y_g),
                "lowres": lowres_probe(x_tr, y_tr, x_g, y_g, x_val, y_val),
            }
        return out

    return _once(p, ("shortcuts",), compute)


def diversity_curves(p: Prepared) -> dict:
    """Stage 9: {"reference": diversity of the real training images (all, per class), fw: diversity_over_epochs}."""
    x_tr, y_tr = p.images["train"]

    @one_thread
    def compute():
        ref = {"all": diversity(x_tr)}
        ref.update(
            {c: diversity(x_tr[y_tr == i]) if (y_tr == i).sum() >= 2 else math.nan for i, c in enumerate(CLASSES)}
        )
        return {"reference": ref, **{fw: diversity_over_epochs(p.cfg.run_dir, fw) for fw in p.frameworks}}

    return _once(p, ("diversity",), compute)


def _set_part(m: dict) -> dict:
    return {**{key: m[key] for key in SET_KEYS}, "per_class": m["per_class"], "n_per_class": m.get("n_per_class")}


def evaluate_framework(p: Prepared, fw: str, *, k: int = 5, subset_size: int = 100, n_subsets: int = 100) -> dict:
    """Every metric of one framework's synthetic images (the M object of metrics.json), from the stages."""
    y_g = p.images[fw][1]
    classes, mem, shortcuts = class_probes(p)[fw], memorization_checks(p)[fw], shortcut_probes(p)[fw]
    out = {
        **_set_part(set_distances(p, k=k, subset_size=subset_size, n_subsets=n_subsets)[fw]),
        "n_generated": {c: int((y_g == i).sum()) for i, c in enumerate(CLASSES)},
        "gan_test_accuracy": classes["gan_test"]["accuracy"],
        "gan_test": classes["gan_test"],
        "tstr_accuracy": classes["tstr"]["accuracy"],
        "tstr": classes["tstr"],
        "majority_rate": classes["tstr"]["majority_rate"],
        "memorization": {key: v for key, v in mem.items() if not key.startswith("nearest_train")},
        "closest_pairs": closest_pairs(mem, 8),
        "brightness_gap": shortcuts["brightness_gap"],
        "shortcuts": shortcuts["lowres"],
        "diversity_over_epochs": diversity_curves(p)[fw].to_dict(orient="list"),
    }
    fixed = fixed_comparison(p)
    if fw in fixed:
        ref = fixed["real_vs_real"]
        out["fixed"] = {**fixed[fw], "real_vs_real": {key: ref[key] for key in (*SET_KEYS, "n_real", "n_fake")}}
    return out


def reference_metrics(p: Prepared, *, k: int = 5, subset_size: int = 100, n_subsets: int = 100) -> dict:
    """Held-out real (validation) images against the real training images: the floor for every set metric."""
    return {
        **_set_part(set_distances(p, k=k, subset_size=subset_size, n_subsets=n_subsets)["reference"]),
        "trtr_accuracy": class_probes(p)["reference"]["tstr"]["accuracy"],
        "majority_rate": majority_rate(p.images["val"][1]),
        "diversity": diversity_curves(p)["reference"]["all"],
        "brightness": shortcut_probes(p)["reference"]["brightness_gap"],
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
    Stages already run on ``prepared`` (by notebook 06) are not run again. RUN/evaluation is stamped with
    the split it was made from (``provenance``).
    """
    from .. import provenance
    from ..files import write_json
    from .report import reading

    p = prepared or prepare(cfg, feature_extractor, feature_weights, progress=progress)
    fixed = fixed_comparison(p)
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
        "fixed": {key: fixed[key] for key in ("features", "real_vs_real")},
    }
    for fw in p.frameworks:
        out[fw] = evaluate_framework(p, fw)
    out["notes"] = dict(p.notes)
    out["reading"] = reading(out)
    out = clean(out)
    if write:
        write_json(cfg.path("evaluation", "metrics.json"), out)
        provenance.stamp(cfg.path("evaluation"), cfg, Path(NOTEBOOK_06).stem, replace=True)
    return out
