"""Quick, honest checks of generated images: class fidelity and diversity.

Used by notebooks 02 and 03 to show that a GAN learned *class-conditional* chest-like images,
and by later notebooks as a baseline; notebook 06 goes much further (KID, precision/recall...).
"""

from __future__ import annotations

import numpy as np

from . import CLASSES


def _features(images: np.ndarray, size: int = 32) -> np.ndarray:
    """Gray, downsampled, flattened pixels in [0,1]: a cheap, framework-free representation."""
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    arr = arr.astype(np.float32)
    if arr.max() > 1.5:
        arr = arr / 255.0
    if arr.ndim == 4:
        arr = arr.mean(axis=-1)
    n, h, w = arr.shape
    if h != size or w != size:
        if h % size == 0 and w % size == 0:
            arr = arr.reshape(n, size, h // size, size, w // size).mean(axis=(2, 4))
        else:
            from PIL import Image

            arr = np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR)) for a in arr])
    return arr.reshape(n, -1)


def class_fidelity(real_images, real_labels, fake_images, fake_labels, seed: int = 0) -> dict:
    """Train a classifier on real images, score it on generated ones (the "GAN-test").

    Returns accuracy on the generated images, per-class recall, the classifier's cross-validated
    accuracy on real images (its ceiling), and the chance level (majority-class rate of the fakes).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xr, yr = _features(real_images), np.asarray(real_labels)
    xf, yf = _features(fake_images), np.asarray(fake_labels)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000, random_state=seed))
    folds = int(min(5, np.bincount(yr).min()))
    real_cv = float(cross_val_score(clf, xr, yr, cv=folds).mean()) if folds >= 2 else float("nan")
    clf.fit(xr, yr)
    pred = clf.predict(xf)
    per_class = {CLASSES[k]: float((pred[yf == k] == k).mean()) for k in range(len(CLASSES)) if (yf == k).any()}
    return {
        "accuracy": float((pred == yf).mean()),
        "per_class_recall": per_class,
        "real_cv_accuracy": real_cv,
        "chance": float(np.bincount(yf, minlength=2).max() / len(yf)),
    }


def diversity(images, max_images: int = 200, seed: int = 0) -> float:
    """Mean pairwise Euclidean distance between images (downsampled pixels, per pixel RMS).

    Shrinks towards 0 when the generator collapses onto a few outputs; compare with real images.
    """
    x = _features(images)
    if len(x) > max_images:
        x = x[np.random.default_rng(seed).choice(len(x), max_images, replace=False)]
    if len(x) < 2:
        return 0.0
    sq = (x**2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    iu = np.triu_indices(len(x), 1)
    return float(np.sqrt(d2[iu] / x.shape[1]).mean())
