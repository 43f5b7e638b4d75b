"""VGG16 transfer learning with only the last layer trained, on real and GAN-augmented data.

How the computation is organised (and why it is exact):
- Only ``classifier[6]`` (the final Linear, 4096 -> 2) is trained; everything before it is frozen.
- The frozen part runs in eval mode, so its two Dropout layers (classifier[2] and classifier[5])
  are the identity and the frozen network is a fixed function of the image. Its output
  (the 4096 features after classifier[5]) is therefore computed ONCE per image and cached;
  training the head on the cached features is the same computation as re-running the frozen
  layers every epoch (``train_head_plain`` does that; a test and the benchmark compare them).
- Grayscale X-rays are repeated to 3 channels and normalised with the ImageNet mean/std.
- Input size = cfg.vgg_image_size: 128 in the paper profile because the report resized every
  image to 128x128; smaller in the faster profiles. VGG16's adaptive average pool makes any
  size >= 32 work (five 2x2 max-pools need at least 32 px to leave one pixel).
- Head: cross-entropy on 2 outputs, Adam lr 1e-3 (the Keras default the report's code relied on),
  batch 32, 20 epochs (paper), no class weights (paper; the control ``real+classweight`` weights the
  classes n / (2 n_class), scikit-learn's "balanced"), head init N(0, 0.01) like torchvision's VGG.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import CLASSES
from .config import rel
from .download import DownloadError, download

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_SHA256_PREFIX = "397923af"  # published in the file name (torch.hub's check_hash convention)
VGG16_BYTES = 553_433_881  # 528 MB, said before the download starts
N_FEATURES = 4096
MIN_IMAGE_SIZE = 32
CONDITIONS = (
    "real",
    "real+torch",
    "real+tf",
    "real+copies",
    "real+classweight",
    "synthetic-only:torch",
    "synthetic-only:tf",
)
"""No-GAN controls: ``real+copies`` tops each class up to the same target with copies of real images;
``real+classweight`` trains on the real images with a class-weighted loss (weights n / (2 n_class))."""
NOTEBOOK_04 = "notebooks/04_synthetic_data.ipynb"


# ----------------------------------------------------------------------------- the network


def imagenet_cache_file() -> Path:
    """Where torchvision keeps the ImageNet VGG16 weights once downloaded (the torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG16_URL).name


def _shown_cache() -> str:
    """The cache file path with the home folder shown as ~ (no machine paths in outputs)."""
    path = imagenet_cache_file()
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return path.as_posix()


def _missing_weights_message(reason: str) -> str:
    return (
        f"ImageNet VGG16 weights are not available ({reason}).\n"
        f"Fix, one of:\n"
        f"  - download {VGG16_URL} (528 MB) on a machine with internet and put it at\n"
        f"    {_shown_cache()} (the torch hub cache; TORCH_HOME moves it), then rerun;\n"
        f"  - or pass vgg_weights='<path to a VGG16 state_dict .pth>' (loaded with torch.load(weights_only=True));\n"
        f"  - or pass vgg_weights='random' (None in Python) for a random-init VGG16 (for testing only: its numbers mean little)."
    )


def build_vgg16(weights="auto", n_outputs: int = 2, seed: int = 0, verbose: bool = True):
    """VGG16 with a fresh ``n_outputs`` head; returns (model, info).

    ``weights``: "imagenet" (torchvision download/cache; a failed download raises with the fix),
    a path to a state_dict file, None or "random" (random init, announced loudly) or "auto" (ImageNet if the
    weights are already in the torch hub cache, otherwise random init, announced loudly).
    ``info["used"]`` is "imagenet", "file" or "random"; results.json records it.
    """
    from torchvision.models import VGG16_Weights, vgg16

    info = {"requested": None if weights is None else str(weights)}
    if isinstance(weights, str) and weights.lower() in ("none", "random"):
        weights = None  # a notebook parameter cannot be None (None there means "profile default")
    if weights == "auto":
        if imagenet_cache_file().exists():
            weights = "imagenet"
        else:
            try:  # not cached: one download attempt with timeouts (COVIDGAN_OFFLINE=1 skips it)
                fetch_imagenet_weights(progress=verbose)
                weights = "imagenet"
            except DownloadError as exc:
                info["note"] = f"auto: ImageNet weights not in the torch hub cache and not downloaded ({exc})"
                weights = None
    torch.manual_seed(seed)  # random init (and the unused 1000-class head) are reproducible
    if weights is None:
        model = vgg16(weights=None)
        info.update(used="random", description="random-init VGG16 (no pretrained weights)")
        _announce(
            "VGG16 has RANDOM weights ("
            + ("vgg_weights='auto' and " + info["note"] if "note" in info else "vgg_weights=None")
            + "). Nothing is transferred: training the last layer on random features is a random-features model, "
            + "not transfer learning, so the numbers test the code and compare the conditions among themselves, "
            + "never with the report. For ImageNet weights, run once with internet, put "
            + f"{VGG16_URL} at {_shown_cache()} or pass vgg_weights=<path to a VGG16 state_dict>.",
            verbose,
        )
    elif weights == "imagenet":
        state = imagenet_state_dict(progress=verbose)
        model = _vgg16_from_state(state, imagenet_cache_file().name)
        info.update(used="imagenet", description=f"ImageNet ({VGG16_Weights.IMAGENET1K_V1}, sha256-checked)")
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(_missing_weights_message(f"no file at {weights}"))
        verify_published_name(path)
        model = _vgg16_from_state(torch.load(path, map_location="cpu", weights_only=True), path.name)
        info.update(used="file", file=path.name, description=f"state_dict from file {path.name}")
    model.classifier[6] = new_head(N_FEATURES, n_outputs, seed)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.classifier[6].parameters():
        p.requires_grad_(True)
    model.eval()
    return model, info


def verify_checksum(path, sha256_prefix: str) -> None:
    """Raise ValueError, naming the file and the fix, unless the file's sha256 starts with ``sha256_prefix``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(sha256_prefix):
        raise ValueError(
            f"{Path(path).name} does not match its published checksum (sha256 starts with {digest.hexdigest()[:8]}, "
            f"expected {sha256_prefix}): the file is damaged or not the published one. Fix: delete it and download "
            f"{VGG16_URL} again (or pass vgg_weights='random' to go on without pretrained weights)."
        )


def verify_published_name(path) -> bool:
    """Check a weights file named the torch.hub way (``name-<sha256 prefix>.pth``) against that prefix; False if not so named."""
    import re

    match = re.search(r"-([0-9a-f]{8,64})\.(?:pth|pt)$", Path(path).name)
    if match is None:
        return False
    verify_checksum(path, match.group(1))
    return True


def fetch_imagenet_weights(progress: bool = True) -> Path:
    """Download torchvision's ImageNet VGG16 file into the torch hub cache (timeouts, sha256, atomic); raises DownloadError."""
    return download(
        VGG16_URL, imagenet_cache_file(), sha256=VGG16_SHA256_PREFIX, expected_size=VGG16_BYTES, progress=progress
    )


def imagenet_state_dict(progress: bool = True) -> dict:
    """torchvision's ImageNet VGG16 weights: downloaded once, checked against the sha256 in their file name.

    A cached file is checked too; loaded with weights_only=True.
    """
    path = imagenet_cache_file()
    if path.exists():
        verify_checksum(path, VGG16_SHA256_PREFIX)
    else:
        try:
            fetch_imagenet_weights(progress=progress)
        except DownloadError as exc:
            raise RuntimeError(_missing_weights_message(str(exc))) from exc
    return torch.load(path, map_location="cpu", weights_only=True)


def _vgg16_from_state(state: dict, name: str):
    """A torchvision VGG16 holding ``state`` (classifier[6] is left to the caller); raises naming ``name`` if it does not fit."""
    from torchvision.models import vgg16

    with torch.device("meta"):  # no time spent on a random init that is overwritten at once
        model = vgg16(weights=None, init_weights=False)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {
        k: v.float() if v.is_floating_point() else v for k, v in state.items() if not k.startswith("classifier.6.")
    }
    expected = {k for k in model.state_dict() if not k.startswith("classifier.6.")}
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ValueError(
            f"{name} is not a VGG16 state_dict: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}. "
            "Fix: save it with torch.save(torchvision.models.vgg16(...).state_dict(), path)."
        )
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    wrong = [f"{k} {tuple(v.shape)} (VGG16 has {shapes[k]})" for k, v in state.items() if tuple(v.shape) != shapes[k]]
    if wrong:
        raise ValueError(f"{name} does not fit VGG16: {'; '.join(wrong[:5])}.")
    model.load_state_dict(state, strict=False, assign=True)
    return model


def _announce(message: str, verbose: bool) -> None:
    """A loud, visible warning (printed banner, or a Python warning when quiet): never a silent fallback."""
    if verbose:  # a banner in the notebook (a Python warning would print the kernel's temp file path)
        bar = "!" * 78
        print(f"{bar}\n!! WARNING: {message}\n{bar}")
    else:
        warnings.warn(message, stacklevel=3)


def new_head(n_features: int = N_FEATURES, n_outputs: int = 2, seed: int = 0) -> nn.Linear:
    """A fresh last layer, initialised like torchvision's VGG (weights N(0, 0.01), bias 0) from ``seed``."""
    head = nn.Linear(n_features, n_outputs)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.01)
        head.bias.zero_()
    return head


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
    model, images, image_size: int, batch_size: int = 32, device=None, progress: bool = True, desc: str = "features"
):
    """Run the frozen network once per image; float32 (N, 4096) features after classifier[5] (eval mode)."""
    from .progress import tqdm

    device = device or next(model.parameters()).device
    model.eval()
    n = len(images)
    out = np.empty((n, model.classifier[6].in_features), dtype=np.float32)
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
        x = preprocess(images[start : start + batch_size], image_size, device)
        out[start : start + len(x)] = frozen_forward(model, x).float().cpu().numpy()
    return out


# ----------------------------------------------------------------------------- the head


def train_head(
    features,
    labels,
    *,
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    device=None,
    class_weight=None,
):
    """Train only the last layer on cached features; returns (head, losses per epoch).

    ``class_weight``: None (the paper) or one loss weight per class, in CLASSES order.
    """
    device = device or "cpu"
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32, device=device)
    with head_threads(device):  # everything here is small: one thread for the whole loop
        return _fit(
            lambda idx: x[idx],
            labels,
            x.shape[1],
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            device=device,
            class_weight=class_weight,
        )


def train_head_plain(
    model,
    images,
    labels,
    image_size: int,
    *,
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    class_weight=None,
):
    """The plain way, for comparison: re-run the frozen VGG16 (eval mode) on every batch of every epoch."""
    device = next(model.parameters()).device
    model.eval()
    images = np.asarray(images)

    @torch.no_grad()
    def batch(idx):
        return frozen_forward(model, preprocess(images[idx.cpu().numpy()], image_size, device))

    return _fit(
        batch,
        labels,
        model.classifier[6].in_features,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        class_weight=class_weight,
    )


def _fit(get_batch, labels, n_features: int, *, epochs, batch_size, lr, seed, device, class_weight=None):
    """Shared training loop: same head init, same shuffling, same optimiser for both ways."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=device)
    weight = None
    if class_weight is not None:
        weight = torch.as_tensor(np.asarray(class_weight, dtype=np.float32), device=device)
        if weight.shape != (len(CLASSES),) or not bool((weight > 0).all()):
            raise ValueError(
                f"class_weight must hold {len(CLASSES)} positive weights in CLASSES order {CLASSES}, not {class_weight!r}."
            )
    n = len(y)
    head = new_head(n_features, len(CLASSES), seed).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(int(seed))
    losses = []
    for _ in range(epochs):
        total = torch.zeros((), device=device)
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            idx = idx.to(device)
            x = get_batch(idx)
            with head_threads(device):
                loss = F.cross_entropy(head(x), y[idx], weight=weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * len(idx)
        losses.append(total)
    return head, [float(v) / max(n, 1) for v in losses]  # one host sync per run, not per step


@contextlib.contextmanager
def head_threads(device):
    """One CPU thread for the head's tiny ops (32x4096 @ 4096x2): several threads only add overhead,
    and on a busy CPU their spinning made one 20-epoch head 20x slower (100 s vs 5 s, measured)."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def predict_proba(head, features) -> np.ndarray:
    """P(COVID) for cached features."""
    device = head.weight.device
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32, device=device)
    with head_threads(device):
        return torch.softmax(head(x), dim=1)[:, 1].cpu().numpy()


@torch.no_grad()
def predict_proba_plain(model, head, images, image_size: int, batch_size: int = 32) -> np.ndarray:
    """P(COVID) running the frozen network on the images (the plain way)."""
    device = head.weight.device
    out = []
    for start in range(0, len(images), batch_size):
        x = frozen_forward(model, preprocess(np.asarray(images[start : start + batch_size]), image_size, device))
        with head_threads(device):
            out.append(torch.softmax(head(x), dim=1)[:, 1].cpu())
    return torch.cat(out).numpy()


# ----------------------------------------------------------------------------- the experiment


def condition_sources(condition: str) -> list[str]:
    """Training sources of a condition: 'real+torch' -> ['real', 'torch'], 'synthetic-only:tf' -> ['tf']."""
    if condition == "real":
        return ["real"]
    if condition == "real+copies":
        return ["real"]  # topped up with copies of real images (see topup_indices)
    if condition == "real+classweight":
        return ["real"]  # the real images, a class-weighted loss (see balanced_class_weight)
    if condition.startswith("real+"):
        return ["real", condition.split("+", 1)[1]]
    if condition.startswith("synthetic-only:"):
        return [condition.split(":", 1)[1]]
    raise ValueError(f"Unknown condition {condition!r}; known: {CONDITIONS}")


def balanced_class_weight(labels) -> np.ndarray:
    """Loss weight per class, n / (2 n_class): scikit-learn's compute_class_weight("balanced")."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels)
    missing = [CLASSES[k] for k in range(len(CLASSES)) if not (labels == k).any()]
    if missing:
        raise ValueError(f"Class weights need every class in the training labels; none of {missing}.")
    return compute_class_weight("balanced", classes=np.arange(len(CLASSES)), y=labels)


def topup_indices(labels, target_per_class: int, seed: int = 0) -> np.ndarray:
    """Real images drawn (seeded; with replacement only when a class has fewer than it needs) to top
    each class up to the target: the control that adds no new information, only class balance."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 20_200_430])
    picks = []
    for k in range(len(CLASSES)):
        pool = np.flatnonzero(labels == k)
        need = max(0, int(target_per_class) - len(pool))
        if need and len(pool):
            picks.append(rng.choice(pool, need, replace=need > len(pool)))
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


def load_datasets(cfg, progress: bool = True) -> dict:
    """Real train/val (RUN/data) and each GAN's synthetic images (RUN/synthetic) as uint8 + labels.

    Returns {"real": (x, y), "val": (x, y), "torch": (x, y)?, "tf": (x, y)?, "val_paths": [...],
    "skipped": {framework: why}}. A missing framework is reported, not an error.
    """
    from . import data, synthesis

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


def extract_all(
    model, datasets: dict, image_size: int, batch_size: int = 32, progress: bool = True, cache_dir=None
) -> dict:
    """Features of every image set, computed once: {name: (features, labels)} plus seconds taken.

    Image sets are the entries holding (images, labels): real, val, torch, tf, or any other test set.

    With ``cache_dir`` (notebook 05: RUN/transfer/features) features are also saved, keyed by the
    images' bytes, the input size and the frozen weights, so rerunning with other seeds or epochs
    skips the network entirely; any change of images or weights gives a new key.
    """
    from .files import write_npz

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


def run_conditions(
    features: dict,
    *,
    conditions=CONDITIONS,
    seeds=(0,),
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 1e-3,
    val_paths=None,
    target_per_class: int | None = None,
    progress: bool = True,
    device=None,
):
    """Train one head per (condition, seed) on cached features; returns (predictions, train_info, skipped).

    predictions: one row per validation image, condition and seed
    (condition, seed, path, label, prob_covid, pred). Conditions whose data is absent are skipped;
    ``real+copies`` needs ``target_per_class`` (its copies are drawn anew for each seed);
    ``real+classweight`` trains on the real images with balanced class weights (``balanced_class_weight``).
    :func:`train_conditions` and :func:`predict_conditions` do the two halves (to score other test sets too).
    """
    heads, info, skipped = train_conditions(
        features,
        conditions=conditions,
        seeds=seeds,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        target_per_class=target_per_class,
        progress=progress,
        device=device,
    )
    val_x, val_y = features["val"]
    return predict_conditions(heads, val_x, val_y, val_paths), info, skipped


def train_conditions(
    features: dict,
    *,
    conditions=CONDITIONS,
    seeds=(0,),
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 1e-3,
    target_per_class: int | None = None,
    progress: bool = True,
    device=None,
):
    """Train one head per (condition, seed) on cached features; returns (heads {(condition, seed): head},
    train_info, skipped). Conditions whose data is absent are skipped, with the reason."""
    from .progress import tqdm

    runnable, skipped, info = [], {}, {}
    for cond in conditions:
        if cond == "real+copies":
            if target_per_class is None:
                skipped[cond] = "no target_per_class given"
                continue
            runnable.append(cond)
            y = features["real"][1]
            y = np.concatenate([y, y[topup_indices(y, target_per_class, 0)]])
            info[cond] = {
                "n_train": int(len(y)),
                "n_train_per_class": {c: int((y == k).sum()) for k, c in enumerate(CLASSES)},
            }
            continue
        missing = [s for s in condition_sources(cond) if s not in features]
        if missing:
            skipped[cond] = f"no synthetic images from {', '.join(missing)} (run {NOTEBOOK_04})"
            continue
        runnable.append(cond)
        y = np.concatenate([features[s][1] for s in condition_sources(cond)])
        info[cond] = {
            "n_train": int(len(y)),
            "n_train_per_class": {c: int((y == k).sum()) for k, c in enumerate(CLASSES)},
        }
        if cond == "real+classweight":
            info[cond]["class_weight"] = dict(zip(CLASSES, map(float, balanced_class_weight(y))))
    heads = {}
    jobs = [(c, s) for c in runnable for s in seeds]
    for cond, seed in tqdm(jobs, desc="training heads", disable=not progress, leave=False):
        if cond == "real+copies":
            rx, ry = features["real"]
            extra = topup_indices(ry, target_per_class, seed)
            x, y = np.concatenate([rx, rx[extra]]), np.concatenate([ry, ry[extra]])
        else:
            srcs = condition_sources(cond)
            x = np.concatenate([features[s][0] for s in srcs])
            y = np.concatenate([features[s][1] for s in srcs])
        weight = balanced_class_weight(y) if cond == "real+classweight" else None
        head, losses = train_head(
            x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, class_weight=weight
        )
        heads[(cond, int(seed))] = head
        info[cond].setdefault("final_loss", {})[int(seed)] = losses[-1] if losses else None
    for cond, why in skipped.items():
        if progress:
            print(f"skipped {cond}: {why}")
    return heads, info, skipped


PREDICTION_COLUMNS = ["condition", "seed", "path", "label", "prob_covid", "pred"]


def predict_conditions(heads: dict, features, labels, paths=None):
    """Every head's P(COVID) on one image set (cached features): one row per image, condition and seed."""
    import pandas as pd

    labels = np.asarray(labels, dtype=np.int64)
    paths = list(paths) if paths is not None else [f"val-{i:04d}" for i in range(len(labels))]
    frames = []
    for (cond, seed), head in heads.items():
        prob = predict_proba(head, features)
        frames.append(
            pd.DataFrame(
                {
                    "condition": cond,
                    "seed": int(seed),
                    "path": paths,
                    "label": labels,
                    "prob_covid": prob.astype(np.float64),
                    "pred": (prob >= 0.5).astype(np.int64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)


# ----------------------------------------------------------------------------- test sets beyond validation

LARGE_TEST_PER_CLASS = {"COVID": 1000, "Normal": 1000}
"""The large independent phantom test set: about 2 points of accuracy resolution (a 95% interval of +-2 points)."""
LARGE_TEST_SMOKE_PER_CLASS = {"COVID": 50, "Normal": 50}
"""The smoke profile's: small, so the tests stay fast; its numbers mean nothing."""
LARGE_TEST_SEED_OFFSET = 2000
"""The large set's phantom seed is the run's phantom_seed + this: other people than training, validation and the
external set (phantom_seed + 1000)."""


def large_test_counts(cfg) -> dict:
    """Images per class of the large independent test set for this profile."""
    return dict(LARGE_TEST_SMOKE_PER_CLASS if cfg.profile == "smoke" else LARGE_TEST_PER_CLASS)


def ensure_large_test_phantoms(cfg, per_class: dict | None = None, progress: bool = True) -> Path:
    """The large independent test set: phantoms of other people (another seed), the same scanner (no shift).

    Made once in the gitignored data/ folder (like the built-in dataset) and reused by every run after.
    """
    from . import phantoms
    from .config import phantom_root

    counts = dict(per_class or large_test_counts(cfg))
    seed = cfg.phantom_seed + LARGE_TEST_SEED_OFFSET
    out = phantom_root() / f"large-test-{counts['COVID']}c-{counts['Normal']}n-{cfg.phantom_size}px-seed{seed}"
    return phantoms.generate_dataset(out, counts, cfg.phantom_size, seed=seed, replace_stale=True, progress=progress)


def _test_set(cfg, folder, source: dict, progress: bool) -> dict:
    """Load ``folder`` with data.load_external (overlaps with this run's split reported and left out)."""
    from . import data

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


def load_external_set(cfg, progress: bool = True) -> dict:
    """The run's external test set (another hospital): never trained on, evaluated with every head.

    ``cfg.external_dir``: any folder data.load_external accepts (one class or both). Without it, a phantom run
    uses the built-in external phantoms (other people, another scanner: phantoms.EXTERNAL_SHIFT), and a run on
    real data has none. Returns {"images", "labels", "paths", "source"}; images is None when there is none,
    and ``source["reason"]`` says why.
    """
    from . import phantoms

    folder = cfg.external_dir
    if folder is not None:
        path = Path(folder).expanduser()
        if not path.is_absolute():
            from .config import repo_root

            path = repo_root() / path
        return _test_set(cfg, path.resolve(), {"kind": "folder", "description": f"the folder {rel(path)}"}, progress)
    if not cfg.uses_phantoms:
        reason = (
            "real data and no external_dir given: no external evaluation in this run "
            "(pass external_dir, e.g. `run -p external_dir PATH`, to evaluate another hospital's images)"
        )
        return {"images": None, "labels": None, "paths": None, "source": {"evaluated": False, "reason": reason}}
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
        reason = "real data: no large independent test set can be drawn from the same population"
        return {"images": None, "labels": None, "paths": None, "source": {"evaluated": False, "reason": reason}}
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


PIXEL_BASELINE = "pixels:logistic"
PIXEL_SIZE = 32


def pixel_baseline(train, sets: dict, size: int = PIXEL_SIZE):
    """A simple model beside VGG16: logistic regression on the gray pixels downscaled to size x size.

    Trained on ``train`` = (images, labels) (the real training images); scored on each of ``sets``
    {name: (images, labels, paths)}. scikit-learn's defaults (L2, C = 1, lbfgs) after standardising each
    pixel, nothing tuned. Returns ({name: predictions frame}, info).
    """
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .fidelity import pixels

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
        y = np.asarray(y, dtype=np.int64)
        out[name] = pd.DataFrame(
            {
                "condition": PIXEL_BASELINE,
                "seed": 0,
                "path": list(paths) if paths is not None else [f"{name}-{i:04d}" for i in range(len(y))],
                "label": y,
                "prob_covid": prob.astype(np.float64),
                "pred": (prob >= 0.5).astype(np.int64),
            }
        )
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


def experiment_settings(cfg, weights_info: dict, batch_size: int = 32, lr: float = 1e-3) -> dict:
    """What results.json records about how the numbers were made (with the split's provenance fingerprint)."""
    from . import provenance

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


def run_experiment(cfg, conditions=CONDITIONS, progress: bool = True, device=None, write: bool = True) -> dict:
    """The whole of notebook 05 in one call: data, test sets, VGG16, features, heads, the pixel baseline, metrics,
    results.json."""
    from . import evaluation

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    datasets = load_datasets(cfg, progress=progress)
    test_sets = {"external": load_external_set(cfg, progress), "large_test": load_large_test_set(cfg, progress)}
    model, weights_info = build_vgg16(cfg.vgg_weights, verbose=progress)
    model.to(device)
    cache = cfg.path("transfer", "features")
    features = extract_all(model, datasets, cfg.vgg_image_size, progress=progress, cache_dir=cache)
    test_features = extract_all(
        model, test_set_images(test_sets), cfg.vgg_image_size, progress=progress, cache_dir=cache
    )
    heads, info, skipped = train_conditions(
        features,
        conditions=conditions,
        seeds=cfg.seeds,
        epochs=cfg.vgg_epochs,
        target_per_class=cfg.target_per_class,
        progress=progress,
        device=device,
    )
    predictions = predict_conditions(heads, *features["val"], datasets["val_paths"])
    scored = predict_test_sets(heads, test_sets, test_features)
    baseline_sets = {"validation": (*datasets["val"], datasets["val_paths"])}
    baseline_sets.update({k: (t["images"], t["labels"], t["paths"]) for k, t in test_sets.items()})
    baseline_predictions, baseline_info = pixel_baseline(datasets["real"], baseline_sets)
    settings = experiment_settings(cfg, weights_info)
    results = evaluation.summarize(
        predictions,
        train_info=info,
        skipped=skipped,
        settings=settings,
        external=scored["external"],
        large_test=scored["large_test"],
        baseline={"predictions": baseline_predictions, "info": baseline_info},
    )
    results["feature_seconds"] = {k: round(v, 2) for k, v in features["seconds"].items()}
    if write:
        from . import provenance

        others = {k: v["predictions"] for k, v in scored.items()}
        evaluation.write_results(cfg.run_dir, results, predictions, others=others)
        provenance.stamp(cfg.path("transfer"), cfg, "05_vgg16_transfer_learning", replace=True)
    return results
