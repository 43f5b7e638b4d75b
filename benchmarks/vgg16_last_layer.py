"""Last-layer VGG16 training: features cached once vs the frozen network run again every epoch.

Baseline (the plain way): 20 epochs, each batch goes through the frozen VGG16 (eval mode) and
then the trainable last layer. Project: the frozen VGG16 runs once per training image, then the
last layer trains 20 epochs on the cached 4096-d features. Same head init, same shuffling,
same seed: the predictions on the validation images must agree (asserted). The ratio is about the number of
epochs (20x; the forward pass dominates both) times the gain of the channels_last memory order, which only the
cached way (``extract_features``) uses.
The VGG16 here has random weights (no download needed): weights do not change the timing.

    python -m benchmarks.vgg16_last_layer [--quick]
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np

from benchmarks._timing import result

EPOCHS = 20  # the paper's setting


def _images(n: int, size: int, seed: int):
    """Gray uint8 stand-in X-rays with a class-dependent bright patch (COVID = 1)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 120, (n, size, size, 1), dtype=np.uint8)
    q = size // 4
    for i, k in enumerate(labels):
        images[i, q + 2 * q * k : 2 * q + 2 * q * k, q : 2 * q] = 230
    return images, labels.astype(np.int64)


def run(quick: bool = False) -> dict:
    import torch

    from covidgan_utils import transfer

    n_train, n_val, size = (32, 16, 32) if quick else (128, 64, 64)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with warnings.catch_warnings():  # random weights on purpose: they do not change the timing
        warnings.simplefilter("ignore")
        model, _ = transfer.build_vgg16(None, verbose=False)
    model.to(device)
    train_x, train_y = _images(n_train, size, seed=0)
    val_x, _ = _images(n_val, size, seed=1)
    transfer.extract_features(model, train_x[:4], size, progress=False)  # warm-up (first-call overheads)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def cached_way():
        feats = transfer.extract_features(model, train_x, size, progress=False)
        return transfer.train_head(feats, train_y, epochs=EPOCHS, batch_size=32, seed=0, device=device)[0]

    times = []
    for _ in range(3):  # cheap: take the median of three, the plain way runs once
        sync()
        start = time.perf_counter()
        head_a = cached_way()
        sync()
        times.append(time.perf_counter() - start)
    cached = float(np.median(times))

    start = time.perf_counter()
    head_b, _ = transfer.train_head_plain(model, train_x, train_y, size, epochs=EPOCHS, batch_size=32, seed=0)
    sync()
    plain = time.perf_counter() - start

    prob_a = transfer.predict_proba(head_a, transfer.extract_features(model, val_x, size, progress=False))
    prob_b = transfer.predict_proba_plain(model, head_b, val_x, size)
    max_diff = float(np.abs(prob_a - prob_b).max())
    assert ((prob_a >= 0.5) == (prob_b >= 0.5)).all(), "cached and plain training disagree on a prediction"
    assert max_diff < 1e-4, f"cached and plain probabilities differ by {max_diff}"
    ratio = plain / cached
    print(
        f"vgg16_last_layer: {n_train} train images at {size} px, {EPOCHS} epochs on {device}: "
        f"plain (frozen forward every epoch) {plain:.1f} s, cached features {cached:.2f} s, {ratio:.1f}x "
        f"(expected about {EPOCHS}x, the number of epochs, times the channels_last gain of vgg16_features: only the "
        f"cached way uses it); same predictions (max prob diff {max_diff:.1e})"
    )
    return result(
        "vgg16_last_layer",
        round(cached, 2),
        "s",
        baseline=round(plain, 2),
        ratio=round(ratio, 1),
        target=15.0,
        images=n_train,
        image_size=size,
        epochs=EPOCHS,
        device=device,
        max_prob_diff=max_diff,
    )


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
