"""Classifier probes: do generated images carry their class (GAN-test, TSTR), and what shortcuts do they offer?

Every probe is the same plain classifier (``probe``: standardised pixels -> L2 logistic regression) on the
one pixel path of ``features.pixels``; notebooks 02-04 use ``gan_test`` under its older name
``quality.class_fidelity``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .. import CLASSES
from ..formatting import nanmean
from .features import gray01, one_thread, pixels

PROBE_SIZE = 32  # pixels per side seen by the class probes
WELCH = "Welch t-test (two-sided), per class, real training vs generated images"


def probe(seed: int = 0):
    """The probe classifier used throughout: standardised pixels -> L2 logistic regression (C = 0.05)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000, random_state=seed))


def fit_predict(x_train, y_train, x_test, seed: int = 0) -> np.ndarray:
    """Train the probe, predict ``x_test``; with one class only, always answer that class."""
    y_train = np.asarray(y_train)
    if len(np.unique(y_train)) < 2:  # the best a classifier can do with one class is always say it
        return np.full(len(x_test), y_train[0] if len(y_train) else 0)
    return probe(seed).fit(x_train, y_train).predict(x_test)


def majority_rate(labels) -> float:
    """Accuracy of always answering the most common class: the floor any classifier must beat."""
    labels = np.asarray(labels)
    return float(np.bincount(labels, minlength=len(CLASSES)).max() / len(labels)) if len(labels) else math.nan


def scores(y, pred) -> dict:
    """Accuracy, balanced accuracy and per-class recall of predictions ``pred`` for labels ``y``."""
    y, pred = np.asarray(y), np.asarray(pred)
    recalls = {CLASSES[c]: float((pred[y == c] == c).mean()) for c in range(len(CLASSES)) if (y == c).any()}
    return {
        "accuracy": float((pred == y).mean()) if len(y) else math.nan,
        "balanced_accuracy": nanmean(list(recalls.values())),
        "per_class_recall": recalls,
    }


def _real_level(xr, yr, seed: int) -> dict:
    """The probe's cross-validated scores on the real images (pixels ``xr``): the level generated images are read against."""
    from sklearn.model_selection import cross_val_predict

    folds = int(min(5, np.bincount(yr, minlength=len(CLASSES)).min()))
    if folds >= 2:
        real = scores(yr, cross_val_predict(probe(seed), xr, yr, cv=folds))
    else:
        real = {"accuracy": math.nan, "balanced_accuracy": math.nan, "per_class_recall": {}}
    return {"real_cv_accuracy": real["accuracy"], "real_cv_balanced_accuracy": real["balanced_accuracy"],
            "real_cv_per_class_recall": real["per_class_recall"],
            "real_n_per_class": {CLASSES[c]: int((yr == c).sum()) for c in range(len(CLASSES))}}


@one_thread
def real_level(real_images, real_labels, seed: int = 0, size: int = PROBE_SIZE) -> dict:
    """The GAN-test's reference: the probe cross-validated on the real images, overall, balanced and per class."""
    return _real_level(pixels(real_images, size), np.asarray(real_labels), seed)


_FITTED: dict = {}  # the last independent probe: notebooks 04 and 06 score both GANs against the same images


def _independent_probe(xi, yi, seed: int):
    """The probe trained on the independent images, fitted once per set of images and seed (the latest is kept)."""
    import hashlib

    key = (hashlib.sha1(np.ascontiguousarray(xi).tobytes()).hexdigest(), hashlib.sha1(yi.tobytes()).hexdigest(), seed)
    if key not in _FITTED:
        _FITTED.clear()
        _FITTED[key] = probe(seed).fit(xi, yi)
    return _FITTED[key]


@one_thread
def gan_test(real_images, real_labels, fake_images, fake_labels, seed: int = 0, size: int = PROBE_SIZE,
             independent=None) -> dict:
    """GAN-test: the probe trained on real images labels the generated ones (class fidelity).

    Returns accuracy, balanced accuracy and per-class recall on the generated images; the same three for
    the real images, cross-validated (``real_cv_accuracy``, ``real_cv_balanced_accuracy``,
    ``real_cv_per_class_recall``, with ``real_n_per_class``): the level of images as hard to classify as real
    ones, per class, since the probe favours the larger class; ``real_train_per_class_recall``, the probe on the
    very images it was trained on (the level of a generator that copied them); ``chance``, the generated images'
    majority-class rate (the floor). High GAN-test says nothing about variety.

    Generated images come from a GAN trained on the same real images, so they can score above the
    cross-validated level by resembling them, caricature or not. ``independent`` = (images, labels), real images
    that neither the GAN nor this probe has seen, settles it: a second probe trained on them scores the
    generated images and the GAN's training images alike, both new to it (``out["independent"]``).
    """
    xr, yr = pixels(real_images, size), np.asarray(real_labels)
    xf, yf = pixels(fake_images, size), np.asarray(fake_labels)
    pred = fit_predict(xr, yr, np.concatenate([xf, xr]), seed)  # one fit: generated, then its own training images
    out = scores(yf, pred[: len(xf)])
    out.update(_real_level(xr, yr, seed), chance=majority_rate(yf), n_train=int(len(yr)), n_test=int(len(yf)),
               n_per_class={CLASSES[c]: int((yf == c).sum()) for c in range(len(CLASSES)) if (yf == c).any()},
               real_train_per_class_recall=scores(yr, pred[len(xf):])["per_class_recall"])
    if independent is not None:
        xi, yi = pixels(independent[0], size), np.asarray(independent[1])
        if len(xi) != len(yi) or len(np.unique(yi)) < 2:
            raise ValueError(f"independent: images and labels of both classes are needed, got {len(xi)} images with "
                             f"labels {sorted(set(yi.tolist()))}. Fix: pass real images of both classes that neither "
                             "the GAN nor the probe trained on, or None.")
        second = _independent_probe(xi, yi, seed)
        gen, real = scores(yf, second.predict(xf)), scores(yr, second.predict(xr))
        out["independent"] = {
            "per_class_recall": gen["per_class_recall"], "balanced_accuracy": gen["balanced_accuracy"],
            "real_per_class_recall": real["per_class_recall"], "real_balanced_accuracy": real["balanced_accuracy"],
            "n_fresh_per_class": {CLASSES[c]: int((yi == c).sum()) for c in range(len(CLASSES))},
        }
    return out


@one_thread
def tstr(
    fake_images,
    fake_labels,
    val_images,
    val_labels,
    real_images=None,
    real_labels=None,
    size: int = PROBE_SIZE,
    seed: int = 0,
) -> dict:
    """Train on synthetic, test on real (validation) images; with the majority-class rate and the real-trained reference."""
    x_val, y_val = pixels(val_images, size), np.asarray(val_labels)
    out = scores(y_val, fit_predict(pixels(fake_images, size), fake_labels, x_val, seed))
    out["majority_rate"] = majority_rate(y_val)
    out["n_train"], out["n_test"] = int(len(fake_labels)), int(len(y_val))
    if real_images is not None:
        trtr = fit_predict(pixels(real_images, size), real_labels, x_val, seed)
        out["trtr_accuracy"] = scores(y_val, trtr)["accuracy"]
    out["beats_majority"] = bool(out["accuracy"] > out["majority_rate"])
    return out


# ----------------------------------------------------------------------------- shortcut probes


def image_stats(images) -> tuple[np.ndarray, np.ndarray]:
    """Per image: mean brightness and contrast (pixel sd), in gray levels 0-255."""
    arr = gray01(images).reshape(len(images), -1) * 255.0
    return arr.mean(axis=1), arr.std(axis=1)


def _welch_p(a, b) -> float:
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(a, b, equal_var=False).pvalue)


@one_thread
def brightness_gap(real_images, real_labels, fake_images, fake_labels) -> dict:
    """The brightness fingerprint: per class, mean brightness and contrast of real vs generated images (Welch t-test).

    ``difference`` is generated minus real, in gray levels (0-255). ``between_classes`` compares the
    COVID - Normal brightness gap in real and in generated images: a generator that exaggerates it
    hands a classifier a shortcut that has nothing to do with the lungs.
    """
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    rb, rc = image_stats(real_images)
    fb, fc = image_stats(fake_images)
    out: dict[str, Any] = {"test": WELCH, "units": "gray levels 0-255"}
    for c, name in enumerate(CLASSES):
        r, f = real_labels == c, fake_labels == c
        if not r.any() or not f.any():
            continue
        out[name] = {
            "real_mean": float(rb[r].mean()),
            "generated_mean": float(fb[f].mean()),
            "difference": float(fb[f].mean() - rb[r].mean()),
            "p_value": _welch_p(fb[f], rb[r]),
            "real_contrast": float(rc[r].mean()),
            "generated_contrast": float(fc[f].mean()),
            "contrast_difference": float(fc[f].mean() - rc[r].mean()),
            "contrast_p_value": _welch_p(fc[f], rc[r]),
            "n_real": int(r.sum()),
            "n_generated": int(f.sum()),
        }
    if all(name in out for name in CLASSES):
        covid, normal = CLASSES[1], CLASSES[0]
        out["between_classes"] = {
            "real": out[covid]["real_mean"] - out[normal]["real_mean"],
            "generated": out[covid]["generated_mean"] - out[normal]["generated_mean"],
        }
    return out


@one_thread
def lowres_probe(
    real_images, real_labels, fake_images, fake_labels, val_images, val_labels, size: int = 4, seed: int = 0
) -> dict:
    """What a 4x4 thumbnail (global brightness layout, no anatomy) gives away.

    real_val: train on real 4x4 thumbnails, test on real validation (shortcut signal in the real data);
    gan_test / tstr: the same across real and generated; real_vs_generated_auc: cross-validated AUC of telling
    real from generated images from their thumbnails (0.5 = no coarse fingerprint).
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    xr, xf, xv = pixels(real_images, size), pixels(fake_images, size), pixels(val_images, size)
    yr, yf, yv = np.asarray(real_labels), np.asarray(fake_labels), np.asarray(val_labels)
    out = {
        "size": size,
        "real_val_accuracy": scores(yv, fit_predict(xr, yr, xv, seed))["accuracy"],
        "gan_test_accuracy": scores(yf, fit_predict(xr, yr, xf, seed))["accuracy"],
        "tstr_accuracy": scores(yv, fit_predict(xf, yf, xv, seed))["accuracy"],
        "majority_rate_val": majority_rate(yv),
    }
    x = np.concatenate([xr, xf])
    is_fake = np.r_[np.zeros(len(xr), int), np.ones(len(xf), int)]
    folds = int(min(5, len(xr), len(xf)))
    auc = math.nan
    if folds >= 2:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        prob = cross_val_predict(probe(seed), x, is_fake, cv=cv, method="predict_proba")[:, 1]
        auc = float(roc_auc_score(is_fake, prob))
    out["real_vs_generated_auc"] = auc
    return out
