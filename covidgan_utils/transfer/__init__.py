"""VGG16 transfer learning with only the last layer trained, on real and GAN-augmented data (notebook 05).

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

One module per job, every name importable from here (``transfer.build_vgg16``, ``transfer.train_head``, ...):
- this file: VGG16 itself and its weights (ImageNet download and cache, a local file, or random, never silently);
- ``features``: preprocessing, the frozen forward pass, features computed once per image and cached;
- ``heads``: the last layer, the conditions and their controls, one head per condition and seed, predictions;
- ``testsets``: the external set, the large independent set and the pixel baseline beside VGG16;
- ``experiment``: notebook 05's stages in order (:class:`Experiment`), shared by the notebook and
  :func:`run_experiment`, ending in RUN/transfer/results.json and its provenance stamp.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch

from ..download import DownloadError, download
from .experiment import MADE_BY, STAGES, Experiment, experiment_settings, headline, load_datasets, run_experiment
from .features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MIN_IMAGE_SIZE,
    N_FEATURES,
    extract_all,
    extract_features,
    frozen_forward,
    preprocess,
)
from .heads import (
    CONDITIONS,
    NOTEBOOK_04,
    PREDICTION_COLUMNS,
    balanced_class_weight,
    condition_sources,
    head_threads,
    new_head,
    predict_conditions,
    predict_proba,
    predict_proba_plain,
    prediction_frame,
    run_conditions,
    topup_indices,
    train_conditions,
    train_head,
    train_head_plain,
    training_set,
)
from .testsets import (
    LARGE_TEST_PER_CLASS,
    LARGE_TEST_SEED_OFFSET,
    LARGE_TEST_SMOKE_PER_CLASS,
    PIXEL_BASELINE,
    PIXEL_SIZE,
    ensure_large_test_phantoms,
    large_test_counts,
    load_external_set,
    load_large_test_set,
    load_test_sets,
    pixel_baseline,
    predict_test_sets,
    test_set_images,
)

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_SHA256_PREFIX = "397923af"  # published in the file name (torch.hub's check_hash convention)
VGG16_BYTES = 553_433_881  # 528 MB, said before the download starts


# ----------------------------------------------------------------------------- the network and its weights


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


__all__ = [
    "CONDITIONS", "IMAGENET_MEAN", "IMAGENET_STD", "LARGE_TEST_PER_CLASS", "LARGE_TEST_SEED_OFFSET",
    "LARGE_TEST_SMOKE_PER_CLASS", "MADE_BY", "MIN_IMAGE_SIZE", "NOTEBOOK_04", "N_FEATURES", "PIXEL_BASELINE",
    "PIXEL_SIZE", "PREDICTION_COLUMNS", "STAGES", "VGG16_BYTES", "VGG16_SHA256_PREFIX", "VGG16_URL", "Experiment",
    "balanced_class_weight", "build_vgg16", "condition_sources", "ensure_large_test_phantoms", "experiment_settings",
    "extract_all", "extract_features", "fetch_imagenet_weights", "frozen_forward", "head_threads", "headline",
    "imagenet_cache_file", "imagenet_state_dict", "large_test_counts", "load_datasets", "load_external_set",
    "load_large_test_set", "load_test_sets", "new_head", "pixel_baseline", "predict_conditions", "predict_proba",
    "predict_proba_plain", "predict_test_sets", "prediction_frame", "preprocess", "run_conditions", "run_experiment",
    "test_set_images", "topup_indices", "train_conditions", "train_head", "train_head_plain", "training_set",
    "verify_checksum", "verify_published_name",
]  # fmt: skip
