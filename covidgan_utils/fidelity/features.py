"""From images to vectors: the one pixel path, and the learned feature extractors ("domain", "vgg16", "inception").

The fixed, run-independent feature map used for gates and comparisons across runs is in ``fixed.py``.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import rel

EXTRACTORS = ("domain", "vgg16", "inception")
ENV_INCEPTION = "COVIDGAN_INCEPTION_WEIGHTS"
INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
DOMAIN_SIZE = 32


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
    """(N,H,W,C) / (N,C,H,W) / (N,H,W) images -> float32 (N,H,W) gray in [0,1] (uint8 is divided by 255)."""
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
    """Flattened gray pixels in [0,1]; at ``size`` x ``size`` if given, by area averaging.

    The one pixel representation of the package (the probes, diversity, memorization and the fixed
    features all read it): a side that divides evenly is block-averaged, any other is resized with
    Pillow's BOX filter, which is the same area average.
    """
    arr = gray01(images)
    n, h, w = arr.shape
    if size is not None and (h, w) != (size, size):
        if h % size == 0 and w % size == 0:
            arr = arr.reshape(n, size, h // size, size, w // size).mean(axis=(2, 4))
        else:
            from PIL import Image

            resized = [np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BOX)) for a in arr]
            arr = np.stack(resized) if n else np.zeros((0, size, size), np.float32)
    return arr.reshape(n, arr.shape[1] * arr.shape[2])


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
    from .. import transfer

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

    from ..progress import tqdm
    from ..transfer import IMAGENET_MEAN, IMAGENET_STD, verify_published_name

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
