"""How good are the synthetic X-rays? Feature-space distances, manifold metrics, class fidelity,
memorization and shortcut probes: everything notebook 06 reports, in numpy / scipy / scikit-learn.

Feature spaces (``feature_extractor``):
- ``"domain"`` (the default when no weights file is given; works offline): a small classifier (an MLP
  on 32x32 pixels) trained on the real TRAINING X-rays to tell Normal from COVID; the activations of its
  last hidden layer are the features. It knows X-rays, but only what separates the two classes.
- ``"vgg16"``: the 4096 features of notebook 05's frozen VGG16 (same ``vgg_weights`` option).
- ``"inception"``: torchvision's Inception-v3 pool features (2048), from a LOCAL weights file only.
ImageNet features (VGG16, Inception) were learned on colour photographs of objects: they respond to
textures and object parts that gray chest X-rays do not have, and can miss what matters in an X-ray
(lung texture, opacities); published FID values use Inception and are not comparable across domains.

Metric conventions: real reference = the real training images (what the GAN saw); held-out real
validation images against the same reference give the "real vs real" floor each number should be
read against. Top-level numbers of a framework are means of the per-class values, because the
generated set's class mix (e.g. 669 COVID / 399 Normal) differs from the real one by design.
precision/recall/density/coverage follow Naeem et al. (ICML 2020) and are written here with
scikit-learn's NearestNeighbors (the reference package ``prdc`` is not a dependency of this project).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import CLASSES
from .config import rel

EXTRACTORS = ("domain", "vgg16", "inception")
ENV_INCEPTION = "COVIDGAN_INCEPTION_WEIGHTS"
INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
NOTEBOOK_04 = "notebooks/04_synthetic_data.ipynb"
DOMAIN_SIZE = 32
COPY_DISTANCE = 1.0 / 255.0  # RMS pixel distance below which two images count as copies
MANN_WHITNEY = "one-sided Mann-Whitney U (generated-to-train vs held-out-real-to-train nearest distances)"
WELCH = "Welch t-test (two-sided), per class, real training vs generated images"


def one_thread(fn):
    """Run ``fn`` with one BLAS/OpenMP thread: these arrays are small, and on a busy 2-core machine the
    thread pools' spinning made the whole evaluation 8x slower (17 s vs 2 s wall on the smoke run, measured)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return fn(*args, **kwargs)

    return wrapper


# ----------------------------------------------------------------------------- images


def gray01(images) -> np.ndarray:
    """(N,H,W,C) / (N,C,H,W) / (N,H,W) uint8 or float images -> float32 (N,H,W) gray in [0,1]."""
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    arr = arr.astype(np.float32) / scale
    if arr.ndim == 4:
        arr = arr.mean(axis=-1)
    if arr.ndim != 3:
        raise ValueError(f"Expected images shaped (N, H, W[, C]), got {np.asarray(images).shape}.")
    return arr


def pixels(images, size: int | None = None) -> np.ndarray:
    """Flattened gray pixels in [0,1], block-averaged (or resized) to ``size`` x ``size`` if given."""
    arr = gray01(images)
    n, h, w = arr.shape
    if size is not None and (h, w) != (size, size):
        if h % size == 0 and w % size == 0:
            arr = arr.reshape(n, size, h // size, size, w // size).mean(axis=(2, 4))
        else:
            from PIL import Image

            arr = np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BOX)) for a in arr])
    return arr.reshape(n, -1)


# ----------------------------------------------------------------------------- feature extractors


@dataclass
class FeatureExtractor:
    """A named function from images to feature vectors, with a description and facts for the record."""

    name: str
    description: str
    fn: Any
    info: dict = field(default_factory=dict)

    def __call__(self, images) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.info.get("dim", 0)), np.float32)
        return np.asarray(self.fn(images), dtype=np.float64)


def choose_extractor(feature_extractor: str | None = None, feature_weights=None) -> str:
    """None means Inception when its weights file is given (argument or COVIDGAN_INCEPTION_WEIGHTS), else "domain"."""
    if feature_extractor is None:
        return "inception" if (feature_weights or os.environ.get(ENV_INCEPTION)) else "domain"
    name = str(feature_extractor).lower()
    if name not in EXTRACTORS:
        raise ValueError(f"feature_extractor must be one of {EXTRACTORS} (or None), not {feature_extractor!r}.")
    return name


def build_extractor(
    feature_extractor: str | None,
    real_images,
    real_labels,
    *,
    feature_weights=None,
    vgg_weights="auto",
    vgg_image_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> FeatureExtractor:
    """Make the chosen feature extractor; "domain" is trained here on the real TRAINING images only."""
    name = choose_extractor(feature_extractor, feature_weights)
    if name == "domain":
        return domain_extractor(real_images, real_labels, seed=seed)
    if name == "vgg16":
        return vgg16_extractor(
            feature_weights if feature_weights is not None else vgg_weights, vgg_image_size, progress
        )
    return inception_extractor(feature_weights or os.environ.get(ENV_INCEPTION), progress=progress)


@one_thread
def domain_extractor(real_images, real_labels, *, size: int = DOMAIN_SIZE, hidden=(128, 64), seed: int = 0):
    """An MLP trained on real training X-rays (size x size pixels) to tell Normal from COVID; features = last hidden layer."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    x = pixels(real_images, size)
    y = np.asarray(real_labels)
    scaler = StandardScaler().fit(x)
    mlp = MLPClassifier(hidden_layer_sizes=tuple(hidden), alpha=1e-2, max_iter=300, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(scaler.transform(x), y)

    def hidden_layer(images):
        h = scaler.transform(pixels(images, size))
        for w, b in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1]):
            h = np.maximum(h @ w + b, 0.0)
        return h

    train_feats = hidden_layer(real_images)
    keep = train_feats.std(axis=0) > 1e-6  # units dead on the real images carry nothing
    mean, sd = train_feats[:, keep].mean(axis=0), train_feats[:, keep].std(axis=0)

    @one_thread
    def features(images):
        return (hidden_layer(images)[:, keep] - mean) / sd

    info = {
        "dim": int(keep.sum()),
        "input": f"{size}x{size} gray pixels",
        "hidden": list(hidden),
        "train_accuracy": float(mlp.score(scaler.transform(x), y)),
        "iterations": int(mlp.n_iter_),
        "classifier": mlp,
        "scaler": scaler,
        "size": size,
    }
    desc = (
        f"domain classifier: MLP {size}x{size} px -> {' -> '.join(map(str, hidden))} -> 2, trained on the real "
        f"training X-rays; features = its last hidden layer ({info['dim']} live units, standardised on the real images)"
    )
    return FeatureExtractor("domain", desc, features, info)


def domain_predict(extractor: FeatureExtractor, images) -> np.ndarray:
    """Class predictions of the domain classifier (for its accuracy on held-out real images)."""
    info = extractor.info
    return info["classifier"].predict(info["scaler"].transform(pixels(images, info["size"])))


def vgg16_extractor(weights="auto", image_size: int = 64, progress: bool = True) -> FeatureExtractor:
    """Notebook 05's frozen VGG16: 4096 features after classifier[5] (weights as transfer.build_vgg16 takes them)."""
    from . import transfer

    model, info = transfer.build_vgg16(weights, verbose=progress)

    def features(images):
        return transfer.extract_features(model, images, image_size, progress=progress, desc="VGG16 features")

    desc = f"VGG16 ({info['description']}), {image_size} px input, 4096 features after classifier[5]"
    return FeatureExtractor(
        "vgg16", desc, features, {"dim": 4096, "weights": info.get("used"), "image_size": image_size}
    )


def _missing_inception_message(reason: str) -> str:
    return (
        f"Inception-v3 features need a local weights file ({reason}); nothing is downloaded here.\n"
        "Fix, one of:\n"
        f"  - on a machine with internet, download {INCEPTION_URL} (104 MB, torchvision's Inception-v3),\n"
        f"    then pass feature_weights='<path to that .pth>' (or set {ENV_INCEPTION});\n"
        "  - or use feature_extractor='domain' (trained here on the real X-rays, offline) or 'vgg16'.\n"
        "Note: published FID numbers use the TensorFlow Inception port (pytorch-fid / torch-fidelity), so values\n"
        "from torchvision's weights are close but not identical to them."
    )


def inception_extractor(weights, progress: bool = True, batch_size: int = 32) -> FeatureExtractor:
    """torchvision Inception-v3 (2048 pool features, 299 px input) from a local state_dict file only."""
    if not weights:
        raise FileNotFoundError(_missing_inception_message("no weights file given"))
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(_missing_inception_message(f"no file at {rel(path)}"))
    import torch
    import torch.nn.functional as F
    from torchvision.models import inception_v3

    from .progress import tqdm
    from .transfer import IMAGENET_MEAN, IMAGENET_STD, verify_published_name

    verify_published_name(path)  # e.g. inception_v3_google-0cc3c7bd.pth: its sha256 must start with 0cc3c7bd
    model = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        model.load_state_dict(state)
    except Exception as exc:
        raise ValueError(f"{path.name} is not a torchvision Inception-v3 state_dict: {str(exc)[:300]}") from exc
    model.fc = torch.nn.Identity()
    model.eval()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    @torch.no_grad()
    def features(images):
        arr = gray01(images)
        out = []
        for start in tqdm(range(0, len(arr), batch_size), desc="Inception features", disable=not progress, leave=False):
            x = torch.as_tensor(arr[start : start + batch_size])[:, None].expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            out.append(model((x - mean) / std).numpy())
        return np.concatenate(out)

    desc = f"Inception-v3 (torchvision, weights from {path.name}), 299 px input, 2048 pool features"
    return FeatureExtractor("inception", desc, features, {"dim": 2048, "weights": path.name})


# ----------------------------------------------------------------------------- distances between sets


@one_thread
def frechet_distance(x, y, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets: |mu_x - mu_y|^2 + Tr(Sx + Sy - 2 (Sx Sy)^1/2).

    With fewer dimensions than images, (Sx Sy)^1/2 comes from scipy.linalg.sqrtm as in the usual FID code.
    With more (VGG16's 4096 or Inception's 2048 features from a few hundred images) the same trace is
    the sum of the singular values of Xc Yc^T / sqrt((n-1)(m-1)) (Xc, Yc the centred features): exact,
    and an n x m problem instead of a d x d matrix square root.
    """
    from scipy import linalg

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or len(y) < 2:
        return math.nan
    xc, yc = x - x.mean(0), y - y.mean(0)
    diff = x.mean(0) - y.mean(0)
    tr_x, tr_y = (xc**2).sum() / (len(x) - 1), (yc**2).sum() / (len(y) - 1)
    if x.shape[1] <= min(len(x), len(y)):
        s_x, s_y = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a near-singular product is handled below
            covmean = linalg.sqrtm(s_x @ s_y)
        tr_covmean = np.trace(covmean)
        if not np.isfinite(covmean).all() or abs(tr_covmean.imag) > 1e-6 * max(abs(tr_covmean.real), 1.0):
            offset = eps * np.eye(len(s_x))
            tr_covmean = np.trace(linalg.sqrtm((s_x + offset) @ (s_y + offset)))
        tr_covmean = float(np.real(tr_covmean))
    else:
        tr_covmean = float(np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / math.sqrt((len(x) - 1) * (len(y) - 1)))
    return float(max(diff @ diff + tr_x + tr_y - 2.0 * tr_covmean, 0.0))


def _poly_kernel(a, b, dim: int):
    return (a @ b.T / dim + 1.0) ** 3


@one_thread
def kid(x, y, subset_size: int = 100, n_subsets: int = 100, seed: int = 0) -> dict:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, mean and sd over random subsets.

    Unlike the Fréchet distance, the estimate has no bias that depends on the number of images, so
    values from a few hundred images can be compared (Binkowski et al., ICLR 2018).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m = int(min(subset_size, len(x), len(y)))
    if m < 2:
        return {"kid": math.nan, "kid_std": math.nan, "subset_size": m, "n_subsets": 0}
    rng = np.random.default_rng(seed)
    dim = x.shape[1]
    values = []
    for _ in range(n_subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        k_aa, k_bb, k_ab = _poly_kernel(a, a, dim), _poly_kernel(b, b, dim), _poly_kernel(a, b, dim)
        within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
        values.append(within - 2.0 * k_ab.mean())
    values = np.asarray(values)
    return {"kid": float(values.mean()), "kid_std": float(values.std()), "subset_size": m, "n_subsets": int(n_subsets)}


def _kth_neighbour_radii(x, k: int) -> np.ndarray:
    """Distance of each point to its k-th nearest other point of the same set."""
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return dist[:, k]


@one_thread
def prdc(real, fake, k: int = 5) -> dict:
    """Precision, recall, density, coverage (Naeem et al. 2020) from k-nearest-neighbour balls.

    precision: share of generated points inside some real point's k-NN ball (realism);
    recall: share of real points inside some generated point's ball (variety);
    density: mean count of real balls holding each generated point, / k (about 1 when alike);
    coverage: share of real points whose ball holds at least one generated point.
    """
    from sklearn.metrics import pairwise_distances

    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    k = int(min(k, len(real) - 1, len(fake) - 1))
    if k < 1:
        return {"precision": math.nan, "recall": math.nan, "density": math.nan, "coverage": math.nan, "k": k}
    r_real = _kth_neighbour_radii(real, k)
    r_fake = _kth_neighbour_radii(fake, k)
    d = pairwise_distances(real, fake)  # (n_real, n_fake)
    inside_real = d < r_real[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d < r_fake[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) < r_real).mean()),
        "k": k,
    }


def set_metrics(real, fake, *, k: int = 5, subset_size: int = 100, n_subsets: int = 100, seed: int = 0) -> dict:
    """KID (mean, sd), Fréchet distance and precision/recall/density/coverage of two feature sets."""
    out = kid(real, fake, subset_size, n_subsets, seed)
    out["fd"] = frechet_distance(real, fake)
    out.update(prdc(real, fake, k))
    out["n_real"], out["n_generated"] = int(len(real)), int(len(fake))
    return out


@one_thread
def size_dependence(x, y, sizes, repeats: int = 5, seed: int = 0):
    """FD and KID of random n-image subsets of ``y`` against all of ``x``, for each n: shows FD's bias with n."""
    import pandas as pd

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        n = int(min(n, len(y)))
        for r in range(repeats):
            sub = y[rng.choice(len(y), n, replace=False)]
            k = kid(x, sub, subset_size=n, n_subsets=20, seed=seed + r)
            rows.append({"n": n, "repeat": r, "fd": frechet_distance(x, sub), "kid": k["kid"]})
    return pd.DataFrame(rows)


SET_KEYS = ("kid", "kid_std", "fd", "precision", "recall", "density", "coverage")


def per_class_metrics(real_feats, real_labels, fake_feats, fake_labels, **kwargs) -> dict:
    """set_metrics per class, plus their class means at the top level (the class mix is not a quality)."""
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    per_class = {}
    for c, name in enumerate(CLASSES):
        if (real_labels == c).sum() >= 2 and (fake_labels == c).sum() >= 2:
            per_class[name] = set_metrics(real_feats[real_labels == c], fake_feats[fake_labels == c], **kwargs)
    out = {key: _nanmean([m[key] for m in per_class.values()]) for key in SET_KEYS}
    out["per_class"] = per_class
    return out


# ----------------------------------------------------------------------------- class fidelity


def _classifier(seed: int = 0):
    """The probe classifier used throughout: standardised pixels -> L2 logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000, random_state=seed))


def _fit_predict(x_train, y_train, x_test, seed: int = 0) -> np.ndarray:
    y_train = np.asarray(y_train)
    if len(np.unique(y_train)) < 2:  # one class only: the best a classifier can do is always say it
        return np.full(len(x_test), y_train[0] if len(y_train) else 0)
    return _classifier(seed).fit(x_train, y_train).predict(x_test)


def majority_rate(labels) -> float:
    """Accuracy of always answering the most common class: the floor any classifier must beat."""
    labels = np.asarray(labels)
    return float(np.bincount(labels, minlength=len(CLASSES)).max() / len(labels)) if len(labels) else math.nan


def _scores(y, pred) -> dict:
    y, pred = np.asarray(y), np.asarray(pred)
    recalls = {CLASSES[c]: float((pred[y == c] == c).mean()) for c in range(len(CLASSES)) if (y == c).any()}
    return {
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": _nanmean(list(recalls.values())),
        "per_class_recall": recalls,
    }


@one_thread
def gan_test(real_images, real_labels, fake_images, fake_labels, seed: int = 0) -> dict:
    """GAN-test: a classifier trained on real training images labels the generated ones (quality.class_fidelity)."""
    from .quality import class_fidelity

    return class_fidelity(real_images, real_labels, fake_images, fake_labels, seed=seed)


@one_thread
def tstr(
    fake_images, fake_labels, val_images, val_labels, real_images=None, real_labels=None, size: int = 32, seed: int = 0
) -> dict:
    """Train on synthetic, test on real (validation) images; with the majority-class rate and the real-trained reference."""
    x_val, y_val = pixels(val_images, size), np.asarray(val_labels)
    out = _scores(y_val, _fit_predict(pixels(fake_images, size), fake_labels, x_val, seed))
    out["majority_rate"] = majority_rate(y_val)
    out["n_train"], out["n_test"] = int(len(fake_labels)), int(len(y_val))
    if real_images is not None:
        out["trtr_accuracy"] = _scores(y_val, _fit_predict(pixels(real_images, size), real_labels, x_val, seed))[
            "accuracy"
        ]
    out["beats_majority"] = bool(out["accuracy"] > out["majority_rate"])
    return out


# ----------------------------------------------------------------------------- memorization


def nearest(query, reference) -> tuple[np.ndarray, np.ndarray]:
    """Distance to, and index of, each query vector's nearest reference vector (Euclidean)."""
    from sklearn.neighbors import NearestNeighbors

    query, reference = np.asarray(query, np.float64), np.asarray(reference, np.float64)
    if len(query) == 0:
        return np.zeros(0), np.zeros(0, np.int64)
    dist, idx = NearestNeighbors(n_neighbors=1).fit(reference).kneighbors(query)
    return dist[:, 0], idx[:, 0]


def pixel_distances(query_images, train_images) -> tuple[np.ndarray, np.ndarray]:
    """Nearest training image per query in pixel space: RMS gray difference per pixel (0 = identical, 1 = inverted)."""
    q, t = pixels(query_images), pixels(train_images)
    dist, idx = nearest(q, t)
    return dist / math.sqrt(q.shape[1]), idx


def _space_test(gen_dist, heldout_dist) -> dict:
    from scipy.stats import mannwhitneyu

    gen_dist, heldout_dist = np.asarray(gen_dist), np.asarray(heldout_dist)
    threshold = float(np.percentile(heldout_dist, 1)) if len(heldout_dist) else math.nan
    p = math.nan
    if len(gen_dist) and len(heldout_dist):
        p = float(mannwhitneyu(gen_dist, heldout_dist, alternative="less").pvalue)
    return {
        "generated_median": float(np.median(gen_dist)) if len(gen_dist) else math.nan,
        "heldout_median": float(np.median(heldout_dist)) if len(heldout_dist) else math.nan,
        "heldout_p1": threshold,
        "fraction_below_heldout_p1": float((gen_dist < threshold).mean()) if len(gen_dist) else math.nan,
        "mannwhitney_p": p,
    }


@one_thread
def memorization(
    gen_images,
    train_images,
    heldout_images,
    gen_features=None,
    train_features=None,
    heldout_features=None,
    alpha: float = 0.05,
) -> dict:
    """Are generated images closer to the training images than unseen real images are? Pixel and feature space.

    For each generated and each held-out real image: the distance to its nearest training image. Under
    no memorization the generated distances are not smaller (one-sided Mann-Whitney U), and about 1% of
    them fall below the 1st percentile of the held-out distances. Exact copies are counted separately.
    """
    spaces = {}
    gen_px, gen_idx = pixel_distances(gen_images, train_images)
    held_px, _ = pixel_distances(heldout_images, train_images)
    spaces["pixel"] = _space_test(gen_px, held_px)
    if gen_features is not None and train_features is not None and heldout_features is not None:
        gen_f, _ = nearest(gen_features, train_features)
        held_f, _ = nearest(heldout_features, train_features)
        spaces["feature"] = _space_test(gen_f, held_f)
    copies = int((gen_px < COPY_DISTANCE).sum())
    out = {
        "test": MANN_WHITNEY,
        "alpha": alpha,
        "n_generated": int(len(gen_px)),
        "n_heldout": int(len(held_px)),
        "n_copies": copies,
        "copy_distance": COPY_DISTANCE,
        **spaces,
        "nearest_train_index": gen_idx.tolist(),
        "nearest_train_distance": gen_px.tolist(),
    }
    out["verdict"] = memorization_verdict(out)
    return out


def memorization_verdict(m: dict) -> str:
    """One line: copies, closer-than-real, or no sign of memorization; names the test and its p-values."""
    alpha = m.get("alpha", 0.05)
    ps = {space: m[space]["mannwhitney_p"] for space in ("pixel", "feature") if space in m}
    p_text = ", ".join(f"{space} p = {_fmt_p(p)}" for space, p in ps.items())
    px = m["pixel"]
    if m["n_copies"]:
        return (
            f"MEMORIZED: {m['n_copies']} of {m['n_generated']} generated images are copies of training images "
            f"(pixel RMS distance < 1/255); {MANN_WHITNEY}: {p_text}."
        )
    closer = [space for space, p in ps.items() if p < alpha]
    if closer:
        return (
            f"POSSIBLE MEMORIZATION: generated images lie closer to the training images than held-out real images do "
            f"in {' and '.join(closer)} space ({MANN_WHITNEY}: {p_text}); "
            f"{100 * px['fraction_below_heldout_p1']:.1f}% are within the real 1st percentile (1% expected): inspect the closest pairs."
        )
    far = px["generated_median"] > px["heldout_median"]
    return (
        f"No sign of memorization: generated images are not closer to the training images than held-out real ones "
        f"({MANN_WHITNEY}: {p_text}; {100 * px['fraction_below_heldout_p1']:.1f}% within the real 1st percentile, 1% expected)"
        + (
            f"; they are FARTHER (median pixel distance {px['generated_median']:.3f} vs {px['heldout_median']:.3f}), "
            "which also says they are not yet like real images."
            if far
            else "."
        )
    )


def closest_pairs(mem: dict, n: int = 8) -> list[dict]:
    """The ``n`` generated images nearest to a training image: [{generated, train, distance}], closest first."""
    dist = np.asarray(mem["nearest_train_distance"])
    idx = np.asarray(mem["nearest_train_index"])
    order = np.argsort(dist, kind="stable")[:n]
    return [{"generated": int(i), "train": int(idx[i]), "distance": float(dist[i])} for i in order]


def pairs_figure(pairs, gen_images, train_images=None, title: str = ""):
    """Gallery of closest pairs: generated (top row) above its nearest training image (bottom row, only if given).

    Pass ``train_images=None`` for runs on real patient data: only generated images are drawn, with distances.
    """
    from .plotting import image_grid

    gen = np.asarray(gen_images)[[p["generated"] for p in pairs]]
    titles = [f"d={p['distance']:.3f}" for p in pairs]
    if train_images is None:
        return image_grid(gen, ncols=len(pairs), titles=titles, row_labels=["generated"], suptitle=title or None)
    train = np.asarray(train_images)[[p["train"] for p in pairs]]
    grid = np.concatenate([gray01(gen), gray01(train)])
    return image_grid(
        grid,
        ncols=len(pairs),
        titles=titles + [f"train #{p['train']}" for p in pairs],
        row_labels=["generated", "nearest train"],
        suptitle=title or None,
    )


# ----------------------------------------------------------------------------- shortcut probes


def image_stats(images) -> tuple[np.ndarray, np.ndarray]:
    """Per image: mean brightness and contrast (pixel sd), in gray levels 0-255."""
    arr = gray01(images).reshape(len(images), -1) * 255.0
    return arr.mean(axis=1), arr.std(axis=1)


@one_thread
def brightness_gap(real_images, real_labels, fake_images, fake_labels) -> dict:
    """The brightness fingerprint: per class, mean brightness and contrast of real vs generated images (Welch t-test).

    ``difference`` is generated minus real, in gray levels (0-255). ``between_classes`` compares the
    COVID - Normal brightness gap in real and in generated images: a generator that exaggerates it
    hands a classifier a shortcut that has nothing to do with the lungs.
    """
    from scipy.stats import ttest_ind

    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    rb, rc = image_stats(real_images)
    fb, fc = image_stats(fake_images)
    out: dict[str, Any] = {"test": WELCH, "units": "gray levels 0-255"}

    def _p(a, b):
        if len(a) < 2 or len(b) < 2:
            return math.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(ttest_ind(a, b, equal_var=False).pvalue)

    for c, name in enumerate(CLASSES):
        r, f = real_labels == c, fake_labels == c
        if not r.any() or not f.any():
            continue
        out[name] = {
            "real_mean": float(rb[r].mean()),
            "generated_mean": float(fb[f].mean()),
            "difference": float(fb[f].mean() - rb[r].mean()),
            "p_value": _p(fb[f], rb[r]),
            "real_contrast": float(rc[r].mean()),
            "generated_contrast": float(fc[f].mean()),
            "contrast_difference": float(fc[f].mean() - rc[r].mean()),
            "contrast_p_value": _p(fc[f], rc[r]),
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
        "real_val_accuracy": _scores(yv, _fit_predict(xr, yr, xv, seed))["accuracy"],
        "gan_test_accuracy": _scores(yf, _fit_predict(xr, yr, xf, seed))["accuracy"],
        "tstr_accuracy": _scores(yv, _fit_predict(xf, yf, xv, seed))["accuracy"],
        "majority_rate_val": majority_rate(yv),
    }
    x = np.concatenate([xr, xf])
    is_fake = np.r_[np.zeros(len(xr), int), np.ones(len(xf), int)]
    folds = int(min(5, len(xr), len(xf)))
    auc = math.nan
    if folds >= 2:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        prob = cross_val_predict(_classifier(seed), x, is_fake, cv=cv, method="predict_proba")[:, 1]
        auc = float(roc_auc_score(is_fake, prob))
    out["real_vs_generated_auc"] = auc
    return out


# ----------------------------------------------------------------------------- diversity over training


@one_thread
def diversity_over_epochs(run_dir, framework: str, max_images: int = 200) -> Any:
    """quality.diversity of the fixed-noise samples saved at each epoch (all, and per class): a DataFrame."""
    import pandas as pd

    from .quality import diversity

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


# ----------------------------------------------------------------------------- a whole run


@dataclass
class Prepared:
    """Images, labels and features of one run: computed once, then every metric reads them."""

    cfg: Any
    extractor: FeatureExtractor
    images: dict  # name -> (uint8 images, labels): "train", "val", and each framework present
    features: dict  # name -> features
    notes: dict  # framework -> why it is left out
    frameworks: list


def prepare(cfg, feature_extractor: str | None = None, feature_weights=None, progress: bool = True) -> Prepared:
    """Load real train/val and each framework's synthetic images; build the feature extractor; compute features once."""
    from . import data, synthesis

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
def evaluate_framework(p: Prepared, fw: str, *, k: int = 5, subset_size: int = 100, n_subsets: int = 100) -> dict:
    """Every metric of one framework's synthetic images (the M object of metrics.json)."""
    (x_tr, y_tr), (x_val, y_val), (x_g, y_g) = p.images["train"], p.images["val"], p.images[fw]
    f_tr, f_val, f_g = p.features["train"], p.features["val"], p.features[fw]
    m = per_class_metrics(f_tr, y_tr, f_g, y_g, k=k, subset_size=subset_size, n_subsets=n_subsets)
    gt = gan_test(x_tr, y_tr, x_g, y_g)
    ts = tstr(x_g, y_g, x_val, y_val, x_tr, y_tr)
    mem = memorization(x_g, x_tr, x_val, f_g, f_tr, f_val)
    div = diversity_over_epochs(p.cfg.run_dir, fw)
    return {
        **{key: m[key] for key in SET_KEYS},
        "per_class": m["per_class"],
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
        "diversity_over_epochs": div.to_dict(orient="list"),
    }


@one_thread
def reference_metrics(p: Prepared, *, k: int = 5, subset_size: int = 100, n_subsets: int = 100) -> dict:
    """Held-out real (validation) images against the real training images: the floor for every set metric."""
    (x_tr, y_tr), (x_val, y_val) = p.images["train"], p.images["val"]
    m = per_class_metrics(
        p.features["train"], y_tr, p.features["val"], y_val, k=k, subset_size=subset_size, n_subsets=n_subsets
    )
    from .quality import diversity

    return {
        **{key: m[key] for key in SET_KEYS},
        "per_class": m["per_class"],
        "trtr_accuracy": tstr(x_tr, y_tr, x_val, y_val)["accuracy"],
        "majority_rate": majority_rate(y_val),
        "diversity": diversity(x_tr),
        "brightness": brightness_gap(x_tr, y_tr, x_val, y_val),
    }


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
            parts.append(
                f"KID {m['kid']:.4f} vs {floor:.4f} for held-out real images"
                + (f" ({m['kid'] / floor:.0f}x the floor)" if floor and floor > 0 and m["kid"] > floor else "")
            )
        parts.append(
            f"precision {_f(m['precision'])} / recall {_f(m['recall'])} (real: {_f(ref.get('precision'))} / {_f(ref.get('recall'))})"
        )
        rate = m["majority_rate"]
        tstr_word = "above" if m["tstr_accuracy"] > rate else "NOT above"
        parts.append(f"train-on-synthetic {m['tstr_accuracy']:.3f}, {tstr_word} the majority rate {rate:.3f}")
        parts.append(f"GAN-test {m['gan_test_accuracy']:.3f}")
        bg = m["brightness_gap"]
        big = [
            f"{c} {bg[c]['difference']:+.1f} gray levels (p = {_fmt_p(bg[c]['p_value'])})"
            for c in CLASSES
            if c in bg and bg[c]["p_value"] is not None and math.isfinite(bg[c]["p_value"]) and bg[c]["p_value"] < 0.05
        ]
        parts.append("brightness fingerprint: " + ", ".join(big) if big else "no significant brightness gap")
        if "between_classes" in bg:
            between = bg["between_classes"]
            parts.append(
                f"COVID minus Normal brightness {between['generated']:+.1f} gray levels generated vs {between['real']:+.1f} real"
            )
        verdict = m["memorization"]["verdict"].split(":")[0]
        parts.append(verdict.lower() if not verdict.isupper() else verdict)
        lines.append(f"{fw}: " + "; ".join(parts) + ".")
    return lines


def evaluate_run(
    cfg,
    feature_extractor: str | None = None,
    feature_weights=None,
    *,
    prepared: Prepared | None = None,
    progress: bool = True,
    write: bool = True,
) -> dict:
    """Notebook 06 in one call: RUN/evaluation/metrics.json = {"feature_extractor", "torch": M, "tf": M, ...}.

    A framework without synthetic images is left out, with a note under "notes".
    """
    from .files import write_json

    p = prepared or prepare(cfg, feature_extractor, feature_weights, progress=progress)
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
    }
    for fw in p.frameworks:
        out[fw] = evaluate_framework(p, fw)
    out["notes"] = dict(p.notes)
    out["reading"] = reading(out)
    out = _clean(out)
    if write:
        write_json(cfg.path("evaluation", "metrics.json"), out)
    return out


def summary_table(metrics: dict):
    """One row per metric, one column per image set (held-out real reference, torch, tf)."""
    import pandas as pd

    ref = metrics.get("reference", {})
    rows = {
        "KID (lower is better)": "kid",
        "KID sd over subsets": "kid_std",
        "Fréchet distance": "fd",
        "precision": "precision",
        "recall": "recall",
        "density": "density",
        "coverage": "coverage",
    }
    cols = {"held-out real": {name: ref.get(key) for name, key in rows.items()}}
    cols["held-out real"].update(
        {"train-on-X accuracy (real val)": ref.get("trtr_accuracy"), "majority-class rate": ref.get("majority_rate")}
    )
    for fw in ("torch", "tf"):
        if fw not in metrics:
            continue
        m = metrics[fw]
        col = {name: m.get(key) for name, key in rows.items()}
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
        cols[fw] = col
    return pd.DataFrame(cols)


def _nanmean(values) -> float:
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return math.nan if arr.size == 0 or np.all(np.isnan(arr)) else float(np.nanmean(arr))


def _fmt_p(p) -> str:
    return "n/a" if p is None or not math.isfinite(p) else f"{p:.2g}"


def _f(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.2f}"


def _clean(obj):
    """JSON-safe copy (NaN/inf -> None, numpy -> Python)."""
    from .evaluation import _clean as clean

    return clean(obj)


__all__ = [
    "EXTRACTORS",
    "FeatureExtractor",
    "Prepared",
    "brightness_gap",
    "build_extractor",
    "choose_extractor",
    "closest_pairs",
    "diversity_over_epochs",
    "evaluate_framework",
    "evaluate_run",
    "frechet_distance",
    "gan_test",
    "kid",
    "lowres_probe",
    "majority_rate",
    "memorization",
    "memorization_verdict",
    "pairs_figure",
    "prdc",
    "prepare",
    "reading",
    "reference_metrics",
    "set_metrics",
    "size_dependence",
    "summary_table",
    "tstr",
]
