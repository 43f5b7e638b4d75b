"""The frozen part of VGG16 as a feature extractor: preprocessing, the frozen forward pass, features cached once."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
N_FEATURES = 4096
MIN_IMAGE_SIZE = 32


def preprocess(images, image_size: int, device=None) -> torch.Tensor:
    """uint8 (N,H,W,1|3) -> float (N,3,size,size): gray repeated to 3 channels, resized, ImageNet-normalised."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"VGG16 needs images of at least {MIN_IMAGE_SIZE} px (five 2x2 pools), not {image_size}.")
    x = torch.as_tensor(np.asarray(images), device=device)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"Expected images shaped (N, H, W, 1|3), got {tuple(x.shape)}.")
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def frozen_forward(model, x: torch.Tensor) -> torch.Tensor:
    """The frozen part of VGG16: features -> avgpool -> classifier[0..5] (call in eval mode: dropout off)."""
    x = torch.flatten(model.avgpool(model.features(x)), 1)
    return model.classifier[:6](x)


@torch.no_grad()
def extract_features(
    model,
    images,
    image_size: int,
    batch_size: int = 32,
    device=None,
    progress: bool = True,
    desc: str = "features",
    channels_last: bool = True,
):
    """Run the frozen network once per image; float32 (N, 4096) features after classifier[5] (eval mode).

    ``channels_last`` runs the convolutions in NHWC memory order (oneDNN's preferred layout: 1.2-1.3x on a
    2-core CPU, ``benchmarks/vgg16_features.py``); the features equal the default layout's up to float
    rounding, and the model is handed back in the memory order it came in.
    """
    from ..progress import tqdm

    device = device or next(model.parameters()).device
    model.eval()
    n = len(images)
    out = np.empty((n, model.classifier[6].in_features), dtype=np.float32)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    was_channels_last = model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    model.features.to(memory_format=fmt)
    try:
        for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
            x = preprocess(images[start : start + batch_size], image_size, device).contiguous(memory_format=fmt)
            out[start : start + len(x)] = frozen_forward(model, x).float().cpu().numpy()
    finally:
        model.features.to(memory_format=torch.channels_last if was_channels_last else torch.contiguous_format)
    return out


def extract_all(
    model, datasets: dict, image_size: int, batch_size: int = 32, progress: bool = True, cache_dir=None
) -> dict:
    """Features of every image set, computed once: {name: (features, labels)} plus seconds taken.

    Image sets are the entries holding (images, labels): real, val, torch, tf, or any other test set.

    With ``cache_dir`` (notebook 05: RUN/transfer/features) features are also saved, keyed by the
    images' bytes, the input size and the frozen weights, so rerunning with other seeds or epochs
    skips the network entirely; any change of images or weights gives a new key.
    """
    from ..files import write_npz

    out, seconds = {}, {}
    weights_key = _weights_digest(model) if cache_dir is not None else None
    for name, value in datasets.items():
        if not (isinstance(value, tuple) and len(value) == 2 and value[0] is not None):
            continue  # not an image set (val_paths, skipped, an absent test set)
        images, labels = value
        start = time.perf_counter()
        path = None
        if cache_dir is not None:
            digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]
            path = Path(cache_dir) / f"{name}_{image_size}px_{weights_key}_{digest}.npz"
        if path is not None and path.exists():
            with np.load(path) as npz:
                feats = npz["features"]
        else:
            desc = f"VGG16 features: {name}"
            feats = extract_features(model, images, image_size, batch_size, progress=progress, desc=desc)
            if path is not None:
                write_npz(path, features=feats)
        out[name] = (feats, labels)
        seconds[name] = time.perf_counter() - start
    out["seconds"] = seconds
    return out


def _weights_digest(model) -> str:
    """A short fingerprint of the frozen weights (first conv and the last frozen Linear)."""
    h = hashlib.sha256()
    for t in (model.features[0].weight, model.classifier[3].weight):
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]
