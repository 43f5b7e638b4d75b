"""The last layer: trained on cached features (or, for comparison, through the frozen network), one head per
condition and seed, and every head's P(COVID) on any image set."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import CLASSES, NOTEBOOKS
from .features import N_FEATURES, frozen_forward, preprocess

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
NOTEBOOK_04 = NOTEBOOKS["04"]
FUSED_ADAM = True  # one fused Adam kernel per step: most of a head step was Adam's per-op overhead
PREDICTION_COLUMNS = ["condition", "seed", "path", "label", "prob_covid", "pred"]


# ----------------------------------------------------------------------------- one head


def new_head(n_features: int = N_FEATURES, n_outputs: int = 2, seed: int = 0) -> nn.Linear:
    """A fresh last layer, initialised like torchvision's VGG (weights N(0, 0.01), bias 0) from ``seed``."""
    head = nn.Linear(n_features, n_outputs)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.01)
        head.bias.zero_()
    return head


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


def train_head_plain(model, images, labels, image_size: int, **options):
    """The plain way, for comparison: re-run the frozen VGG16 (eval mode) on every batch of every epoch.

    ``options``: those of :func:`train_head` but ``device`` (the model's); the same head comes out of the same options.
    """
    device = next(model.parameters()).device
    model.eval()
    images = np.asarray(images)

    @torch.no_grad()
    def batch(idx):
        return frozen_forward(model, preprocess(images[idx.cpu().numpy()], image_size, device))

    return _fit(batch, labels, model.classifier[6].in_features, device=device, **options)


def _fit(get_batch, labels, n_features: int, *, device, epochs=20, batch_size=32, lr=1e-3, seed=0, class_weight=None):
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
    opt = torch.optim.Adam(head.parameters(), lr=lr, fused=FUSED_ADAM)
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


# ----------------------------------------------------------------------------- every condition and seed


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


def training_set(features: dict, condition: str, seed: int = 0, target_per_class: int | None = None):
    """(features, labels) one head of ``condition`` trains on; ``real+copies`` draws its copies with ``seed``."""
    if condition == "real+copies":
        rx, ry = features["real"]
        extra = topup_indices(ry, target_per_class, seed)
        return np.concatenate([rx, rx[extra]]), np.concatenate([ry, ry[extra]])
    sources = condition_sources(condition)
    return np.concatenate([features[s][0] for s in sources]), np.concatenate([features[s][1] for s in sources])


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
    train_info, skipped). Conditions whose data is absent are skipped, with the reason.

    ``real+copies`` needs ``target_per_class`` (its copies are drawn anew for each seed); ``real+classweight``
    trains on the real images with balanced class weights (:func:`balanced_class_weight`).
    """
    from ..progress import tqdm

    runnable, skipped = [], {}
    for cond in conditions:
        missing = [s for s in condition_sources(cond) if s not in features]
        if cond == "real+copies" and target_per_class is None:
            skipped[cond] = "no target_per_class given"
        elif missing:
            skipped[cond] = f"no synthetic images from {', '.join(missing)} (run {NOTEBOOK_04})"
        else:
            runnable.append(cond)
    heads, info = {}, {}
    jobs = [(c, s) for c in runnable for s in seeds]
    for cond, seed in tqdm(jobs, desc="training heads", disable=not progress, leave=False):
        x, y = training_set(features, cond, seed, target_per_class)
        weight = balanced_class_weight(y) if cond == "real+classweight" else None
        if cond not in info:  # the class counts do not depend on the seed
            info[cond] = {
                "n_train": int(len(y)),
                "n_train_per_class": {c: int((y == k).sum()) for k, c in enumerate(CLASSES)},
            }
            if weight is not None:
                info[cond]["class_weight"] = dict(zip(CLASSES, map(float, weight)))
        head, losses = train_head(
            x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, class_weight=weight
        )
        heads[(cond, int(seed))] = head
        info[cond].setdefault("final_loss", {})[int(seed)] = losses[-1] if losses else None
    for cond, why in skipped.items():
        if progress:
            print(f"skipped {cond}: {why}")
    return heads, info, skipped


def prediction_frame(condition: str, seed: int, paths, labels, prob):
    """Prediction rows (PREDICTION_COLUMNS) of one classifier on one image set: P(COVID) and the decision at 0.5."""
    import pandas as pd

    prob = np.asarray(prob, dtype=np.float64)
    return pd.DataFrame(
        {
            "condition": condition,
            "seed": int(seed),
            "path": list(paths),
            "label": np.asarray(labels, dtype=np.int64),
            "prob_covid": prob,
            "pred": (prob >= 0.5).astype(np.int64),
        }
    )


def predict_conditions(heads: dict, features, labels, paths=None):
    """Every head's P(COVID) on one image set (cached features): one row per image, condition and seed."""
    import pandas as pd

    paths = list(paths) if paths is not None else [f"val-{i:04d}" for i in range(len(labels))]
    frames = [prediction_frame(c, s, paths, labels, predict_proba(h, features)) for (c, s), h in heads.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)


def run_conditions(features: dict, *, val_paths=None, **options):
    """Train every (condition, seed) head and score it on the validation features; returns (predictions,
    train_info, skipped).

    ``options``: those of :func:`train_conditions`. predictions: one row per validation image, condition and seed
    (condition, seed, path, label, prob_covid, pred). :func:`train_conditions` and :func:`predict_conditions` do the
    two halves (to score other test sets too).
    """
    heads, info, skipped = train_conditions(features, **options)
    val_x, val_y = features["val"]
    return predict_conditions(heads, val_x, val_y, val_paths), info, skipped
