"""Test sets beyond validation (an external set, a large independent phantom set) and a pixel baseline beside VGG16."""

from __future__ import annotations

import time

import numpy as np

from .. import CLASSES
from ..config import rel
from ..phantoms import (  # noqa: F401  (the large set is drawn in phantoms; its names stay importable here)
    LARGE_TEST_PER_CLASS,
    LARGE_TEST_SEED_OFFSET,
    LARGE_TEST_SMOKE_PER_CLASS,
    ensure_large_test_phantoms,
    large_test_counts,
)
from .heads import predict_conditions, prediction_frame

PIXEL_BASELINE = "pixels:logistic"
PIXEL_SIZE = 32


def _test_set(cfg, folder, source: dict, progress: bool) -> dict:
    """Load ``folder`` with data.load_external (overlaps with this run's split reported and left out)."""
    from .. import data

    start = time.perf_counter()
    loaded = data.load_external(cfg, folder, image_size=cfg.vgg_image_size, progress=progress)
    report = loaded["report"]
    source.update(
        evaluated=True,
        folder=report["root"],
        counts=report["counts"],
        n=int(len(loaded["labels"])),
        overlap_excluded=report["overlap_excluded"],
        ignored_folders=report.get("ignored_folders", []),
        skipped_unreadable=report.get("skipped_unreadable", []),
        duplicates_removed=len(report.get("duplicates_removed", [])),
        image_size=int(cfg.vgg_image_size),
    )
    seconds = source.setdefault("seconds", {})
    seconds["load"] = round(seconds.get("load", 0) + time.perf_counter() - start, 2)
    return {"images": loaded["images"], "labels": loaded["labels"], "paths": loaded["paths"], "source": source}


def _none(reason: str) -> dict:
    """A test set this run does not have, with the reason."""
    return {"images": None, "labels": None, "paths": None, "source": {"evaluated": False, "reason": reason}}


def load_external_set(cfg, progress: bool = True) -> dict:
    """The run's external test set (another hospital): never trained on, evaluated with every head.

    ``cfg.external_dir``: any folder data.load_external accepts (one class or both). Without it, a phantom run
    uses the built-in external phantoms (other people, another scanner: phantoms.EXTERNAL_SHIFT), and a run on
    real data has none. Returns {"images", "labels", "paths", "source"}; images is None when there is none,
    and ``source["reason"]`` says why.
    """
    from .. import phantoms
    from ..config import external_path

    path = external_path(cfg.external_dir, cfg.run_dir, cfg.data_dir)  # refused inside the run dir or at the data
    if path is not None:
        return _test_set(cfg, path, {"kind": "folder", "description": f"the folder {rel(path)}"}, progress)
    if not cfg.uses_phantoms:
        return _none(
            "real data and no external_dir given: no external evaluation in this run "
            "(pass external_dir, e.g. `run -p external_dir PATH`, to evaluate another hospital's images)"
        )
    start = time.perf_counter()
    made = phantoms.ensure_external_phantoms(cfg)
    shift = ", ".join(f"{k} {v:g}" for k, v in phantoms.EXTERNAL_SHIFT.items())
    source = {
        "kind": "phantoms",
        "description": f"built-in phantoms of other people (seed {cfg.phantom_seed + 1000}) seen by another scanner "
        f"(acquisition shift: {shift})",
        "seed": int(cfg.phantom_seed + 1000),
        "shift": dict(phantoms.EXTERNAL_SHIFT),
        "seconds": {"load": round(time.perf_counter() - start, 2)},
    }
    return _test_set(cfg, made, source, progress)


def load_large_test_set(cfg, progress: bool = True) -> dict:
    """A large independent test set (phantom runs only): the truth the validation set estimates, same form as
    :func:`load_external_set`; images is None on real data (no second draw of the same population exists)."""
    if not cfg.uses_phantoms:
        return _none("real data: no large independent test set can be drawn from the same population")
    start = time.perf_counter()
    counts = large_test_counts(cfg)
    made = ensure_large_test_phantoms(cfg, counts, progress=progress)
    source = {
        "kind": "phantoms",
        "description": f"built-in phantoms of other people (seed {cfg.phantom_seed + LARGE_TEST_SEED_OFFSET}), "
        f"the same scanner as training (no shift), {counts['COVID']} COVID + {counts['Normal']} Normal",
        "seed": int(cfg.phantom_seed + LARGE_TEST_SEED_OFFSET),
        "seconds": {"load": round(time.perf_counter() - start, 2)},
    }
    return _test_set(cfg, made, source, progress)


def load_test_sets(cfg, progress: bool = True) -> dict:
    """Both test sets beyond validation: {"external": ..., "large_test": ...}, each as :func:`load_external_set`."""
    return {"external": load_external_set(cfg, progress), "large_test": load_large_test_set(cfg, progress)}


def test_set_images(test_sets: dict) -> dict:
    """{name: (images, labels)} of the test sets that have images, for :func:`extract_all`."""
    return {k: (t["images"], t["labels"]) for k, t in test_sets.items() if t["images"] is not None}


def predict_test_sets(heads: dict, test_sets: dict, features: dict) -> dict:
    """Every head on every test set with features: {name: {"predictions": frame or None, "source": {...}}};
    the seconds its features took go into its source."""
    out = {}
    for name, t in test_sets.items():
        source = dict(t["source"])
        if name not in features:
            out[name] = {"predictions": None, "source": source}
            continue
        source["seconds"] = {**source.get("seconds", {}), "features": round(features["seconds"][name], 2)}
        start = time.perf_counter()
        frame = predict_conditions(heads, features[name][0], t["labels"], t["paths"])
        source["seconds"]["predictions"] = round(time.perf_counter() - start, 2)
        out[name] = {"predictions": frame, "source": source}
    return out


def pixel_baseline(train, sets: dict, size: int = PIXEL_SIZE):
    """A simple model beside VGG16: logistic regression on the gray pixels downscaled to size x size.

    Trained on ``train`` = (images, labels) (the real training images); scored on each of ``sets``
    {name: (images, labels, paths)}. scikit-learn's defaults (L2, C = 1, lbfgs) after standardising each
    pixel, nothing tuned. Returns ({name: predictions frame}, info).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..fidelity import pixels

    start = time.perf_counter()
    images, labels = train
    labels = np.asarray(labels, dtype=np.int64)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(pixels(images, size), labels)
    out = {}
    for name, (x, y, paths) in sets.items():
        if x is None:
            continue
        prob = model.predict_proba(pixels(x, size))[:, 1]
        paths = list(paths) if paths is not None else [f"{name}-{i:04d}" for i in range(len(y))]
        out[name] = prediction_frame(PIXEL_BASELINE, 0, paths, y, prob)
    info = {
        "name": PIXEL_BASELINE,
        "model": f"logistic regression on {size}x{size} gray pixels (area-averaged, standardised; scikit-learn "
        "defaults: L2, C = 1; nothing tuned)",
        "trained_on": "real",
        "n_train": int(len(labels)),
        "n_train_per_class": {c: int((labels == k).sum()) for k, c in enumerate(CLASSES)},
        "seconds": round(time.perf_counter() - start, 2),
    }
    return out, info
