"""Notebook 05's stages in one order, shared by the notebook (one stage per section) and :func:`run_experiment`.

Stages (:data:`STAGES`): load the data, load the test sets beyond validation, build VGG16, extract the features
once, train the heads, predict, the pixel baseline, summarize, write. :class:`Experiment` runs them on one run
directory and keeps what each makes; whatever ends up in RUN/transfer comes from these stages, and writing stamps
the folder's provenance, whichever way the stages were run.
"""

from __future__ import annotations

import functools
from pathlib import Path

from .. import NOTEBOOKS
from ..config import rel
from .features import extract_all
from .heads import CONDITIONS, predict_conditions, train_conditions
from .testsets import load_test_sets, pixel_baseline, predict_test_sets, test_set_images

MADE_BY = Path(NOTEBOOKS["05"]).stem
"""The name RUN/transfer is stamped with (provenance.json), whichever way the stages ran."""
STAGES = (
    "load_data",
    "load_test_sets",
    "build_model",
    "extract_features",
    "train_heads",
    "predict",
    "baseline",
    "summarize",
    "write",
)


def load_datasets(cfg, progress: bool = True) -> dict:
    """Real train/val (RUN/data) and each GAN's synthetic images (RUN/synthetic) as uint8 + labels.

    Returns {"real": (x, y), "val": (x, y), "torch": (x, y)?, "tf": (x, y)?, "val_paths": [...],
    "skipped": {framework: why}}. A missing framework is reported, not an error.
    """
    from .. import data, synthesis

    real = data.load_split(cfg, "train", channels=1)
    val = data.load_split(cfg, "val", channels=1)
    manifest = data.read_manifest(cfg)
    out = {
        "real": real,
        "val": val,
        "val_paths": manifest.loc[manifest["split"] == "val", "path"].tolist(),
        "skipped": {},
    }
    for fw in synthesis.FRAMEWORKS:
        try:
            out[fw] = synthesis.load_synthetic(cfg.run_dir, fw, image_size=cfg.image_size, channels=1)
        except FileNotFoundError as exc:
            out["skipped"][fw] = str(exc)
    if progress:
        parts = [f"{name}: {len(out[name][1])}" for name in ("real", "val", "torch", "tf") if name in out]
        print("images  " + ", ".join(parts))
        for fw, why in out["skipped"].items():
            print(f"skipping conditions with {fw}: {why.splitlines()[0]}")
    return out


def experiment_settings(cfg, weights_info: dict, batch_size: int = 32, lr: float = 1e-3) -> dict:
    """What results.json records about how the numbers were made (with the split's provenance fingerprint)."""
    from .. import provenance

    try:
        inputs = provenance.fingerprint(cfg)
    except FileNotFoundError:
        inputs = None
    return {
        "inputs": inputs,
        "profile": cfg.profile,
        "data": "phantoms" if cfg.uses_phantoms else rel(cfg.data_dir),
        "vgg_weights": weights_info.get("used"),
        "vgg_weights_requested": weights_info.get("requested"),
        "vgg_weights_description": weights_info.get("description", "")
        + (f" ({weights_info['note']})" if "note" in weights_info else ""),
        "vgg_image_size": int(cfg.vgg_image_size),
        "image_size": int(cfg.image_size),
        "epochs": int(cfg.vgg_epochs),
        "batch_size": batch_size,
        "optimizer": f"Adam lr {lr:g}",
        "class_weights": {"real+classweight": "balanced: n / (2 n_class) from its training counts", "others": None},
        "trained": "classifier[6] only (4096 -> 2); frozen layers in eval mode (dropout off), features cached once per image",
        "seeds": [int(s) for s in cfg.seeds],
        "gan_seeds": [int(s) for s in _setting(cfg, "gan_seeds", [0])],
    }


def _setting(cfg, name: str, default):
    """A setting the profile may not define yet (read with a default)."""
    settings = getattr(cfg, "settings", None)
    return settings.get(name, default) if hasattr(settings, "get") else getattr(cfg, name, default)


def headline(results: dict) -> dict:
    """The headline numbers of results.json, for RUN/transfer/summary.json."""
    from .. import evaluation, statistics

    conditions = results["conditions"]

    def per_condition(key):
        return {c: v[key] for c, v in conditions.items()}

    large = (results["procedure_error_rate"] or {}).get("large_test") or {}
    return {
        "profile": results["profile"],
        "vgg_weights": results["vgg_weights"],
        "seeds": results["seeds"],
        **{k: per_condition(k) for k in ("accuracy", "accuracy_ci", "accuracy_seed_sd")},
        "mcnemar": results["mcnemar"],
        "mcnemar_vs_copies": results["mcnemar_vs_copies"],
        **{k: per_condition(k) for k in ("balanced_accuracy", "roc_auc", "roc_auc_ci")},
        "primary": [
            {k: e[k] for k in ("a", "b", "metric", "estimate", "interval", "holm_p")}
            for e in results["paired"]
            if e["primary"]
        ],
        "verdicts": {
            c: evaluation.verdict(results, c)["kind"]
            for c in conditions
            if c not in ("real", statistics.PRIOR_CORRECTED)
        },
        "gan_seeds": results["gan_seeds"],
        "skipped": list(results["skipped_conditions"]),
        "external_accuracy": {c: (v.get("external") or {}).get("accuracy") for c, v in conditions.items()},
        "large_test_accuracy_at_validation_mix": {
            c: (v.get("large_test") or {}).get("accuracy_at_validation_mix") for c, v in conditions.items()
        },
        "procedure_against_truth": {
            c: {k: e[k] for k in ("raw_gain", "mcnemar_gain", "rate_is")}
            for c, e in large.get("conditions", {}).items()
        },
    }


def _stage(method):
    """A stage of :class:`Experiment`: it needs every stage before it, and running it again drops the later ones."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        name = method.__name__
        before = STAGES[: STAGES.index(name)]
        missing = [s for s in before if s not in self.done]
        if missing:
            raise RuntimeError(
                f"Stage {name!r} needs {missing[0]!r} first: the stages run in this order: {' -> '.join(STAGES)}."
            )
        self.done = list(before)  # what later stages made is stale from here on
        out = method(self, *args, **kwargs)
        self.done.append(name)
        return out

    return run


class Experiment:
    """Notebook 05 on one run directory: call the stages in :data:`STAGES` order (:meth:`run` calls them all).

    Each stage keeps what it makes as attributes (datasets, test_sets, model, weights_info, features,
    test_features, heads, train_info, skipped, predictions, scored_sets, baseline_predictions, baseline_info,
    results) and returns it.
    """

    def __init__(self, cfg, conditions=CONDITIONS, device=None, progress: bool = True):
        import torch

        self.cfg = cfg
        self.conditions = tuple(conditions)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.progress = progress
        self.done: list[str] = []

    @_stage
    def load_data(self) -> dict:
        """Real train/val and the synthetic images (:func:`load_datasets`)."""
        self.datasets = load_datasets(self.cfg, progress=self.progress)
        return self.datasets

    @_stage
    def load_test_sets(self) -> dict:
        """The external set and the large independent set (:func:`load_test_sets`)."""
        self.test_sets = load_test_sets(self.cfg, progress=self.progress)
        return self.test_sets

    @_stage
    def build_model(self):
        """VGG16 with the run's weights and a fresh 4096 -> 2 head, on the device; returns (model, weights_info)."""
        from . import build_vgg16  # looked up when called: the package's own name, wherever it is set

        model, self.weights_info = build_vgg16(self.cfg.vgg_weights, verbose=self.progress)
        self.model = model.to(self.device)
        return self.model, self.weights_info

    @_stage
    def extract_features(self):
        """The frozen network once per image, cached in RUN/transfer/features; returns (features, test_features)."""
        cache, size = self.cfg.path("transfer", "features"), self.cfg.vgg_image_size
        self.features = extract_all(self.model, self.datasets, size, progress=self.progress, cache_dir=cache)
        sets = test_set_images(self.test_sets)
        self.test_features = extract_all(self.model, sets, size, progress=self.progress, cache_dir=cache)
        return self.features, self.test_features

    @_stage
    def train_heads(self):
        """One head per condition and seed (:func:`train_conditions`); returns (heads, train_info, skipped)."""
        cfg = self.cfg
        self.heads, self.train_info, self.skipped = train_conditions(
            self.features,
            conditions=self.conditions,
            seeds=cfg.seeds,
            epochs=cfg.vgg_epochs,
            target_per_class=cfg.target_per_class,
            progress=self.progress,
            device=self.device,
        )
        return self.heads, self.train_info, self.skipped

    @_stage
    def predict(self):
        """Every head on the validation images and on the other test sets; returns (predictions, scored_sets)."""
        self.predictions = predict_conditions(self.heads, *self.features["val"], self.datasets["val_paths"])
        self.scored_sets = predict_test_sets(self.heads, self.test_sets, self.test_features)
        return self.predictions, self.scored_sets

    @_stage
    def baseline(self):
        """The pixel baseline, trained on the real images and scored on every set; returns (predictions, info)."""
        sets = {"validation": (*self.datasets["val"], self.datasets["val_paths"])}
        sets.update({k: (t["images"], t["labels"], t["paths"]) for k, t in self.test_sets.items()})
        self.baseline_predictions, self.baseline_info = pixel_baseline(self.datasets["real"], sets)
        return self.baseline_predictions, self.baseline_info

    @_stage
    def summarize(self) -> dict:
        """Metrics, intervals, paired comparisons and readings of every condition (evaluation.summarize)."""
        from .. import evaluation

        self.results = evaluation.summarize(
            self.predictions,
            train_info=self.train_info,
            skipped=self.skipped,
            settings=experiment_settings(self.cfg, self.weights_info),
            external=self.scored_sets["external"],
            large_test=self.scored_sets["large_test"],
            baseline={"predictions": self.baseline_predictions, "info": self.baseline_info},
        )
        self.results["feature_seconds"] = {k: round(v, 2) for k, v in self.features["seconds"].items()}
        return self.results

    @_stage
    def write(self) -> dict:
        """RUN/transfer/results.json, predictions*.csv and summary.json, then the folder's provenance stamp."""
        from .. import evaluation, provenance
        from ..files import write_json

        others = {k: v["predictions"] for k, v in self.scored_sets.items()}
        paths = evaluation.write_results(self.cfg.run_dir, self.results, self.predictions, others=others)
        paths["summary"] = write_json(self.cfg.path("transfer", "summary.json"), headline(self.results))
        paths["provenance"] = provenance.stamp(self.cfg.path("transfer"), self.cfg, MADE_BY, replace=True)
        return paths

    def run(self, write: bool = True) -> dict:
        """Every stage in order (without writing when ``write`` is False); returns the results."""
        for name in STAGES if write else STAGES[:-1]:
            getattr(self, name)()
        return self.results


def run_experiment(cfg, conditions=CONDITIONS, progress: bool = True, device=None, write: bool = True) -> dict:
    """The whole of notebook 05 in one call (the same stages, in the same order): data, test sets, VGG16, features,
    heads, predictions, the pixel baseline, metrics, then results.json with its provenance stamp."""
    return Experiment(cfg, conditions=conditions, device=device, progress=progress).run(write=write)


__all__ = ["MADE_BY", "STAGES", "Experiment", "experiment_settings", "headline", "load_datasets", "run_experiment"]
