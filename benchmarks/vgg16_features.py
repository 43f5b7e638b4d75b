"""Frozen VGG16 features (notebook 05's one pass over every image): channels_last against the default memory order.

Both sides run ``transfer.extract_features`` on the same images with the same random weights, in interleaved
rounds (so a change in the machine's load hits both alike); the ratio is the default layout's median time over
channels_last's. The features must agree to float rounding (asserted). At the demo profile's 64 px, notebook 05
sends about 5,500 images through this pass, the largest part of its run time on a CPU.
The VGG16 has random weights (no download needed): weights do not change the timing.

    python -m benchmarks.vgg16_features [--quick]
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np

from benchmarks._timing import result


def run(quick: bool = False) -> dict:
    import torch

    from covidgan_utils import transfer

    n, size, rounds = (64, 64, 3) if quick else (256, 64, 5)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with warnings.catch_warnings():  # random weights on purpose: they do not change the timing
        warnings.simplefilter("ignore")
        model, _ = transfer.build_vgg16(None, verbose=False)
    model.to(device)
    images = np.random.default_rng(0).integers(0, 256, (n, size, size, 1), dtype=np.uint8)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def timed(channels_last: bool):
        sync()
        start = time.perf_counter()
        feats = transfer.extract_features(model, images, size, progress=False, channels_last=channels_last)
        sync()
        return time.perf_counter() - start, feats

    for flag in (False, True):  # warm-up: first-call overheads and oneDNN's kernel choice for each layout
        transfer.extract_features(model, images[:32], size, progress=False, channels_last=flag)
    plain_times, fast_times = [], []
    for _ in range(rounds):
        t, plain = timed(False)
        plain_times.append(t)
        t, fast = timed(True)
        fast_times.append(t)
    plain_s, fast_s = float(np.median(plain_times)), float(np.median(fast_times))
    scale = float(np.abs(plain).max())
    max_diff = float(np.abs(plain - fast).max())
    assert max_diff <= 1e-4 * max(scale, 1.0), f"channels_last features differ by {max_diff} (scale {scale})"
    ratio = plain_s / fast_s
    print(
        f"vgg16_features: {n} images at {size} px on {device}, {rounds} interleaved rounds: default layout "
        f"{1000 * plain_s / n:.1f} ms/image, channels_last {1000 * fast_s / n:.1f} ms/image, {ratio:.2f}x; "
        f"features agree to {max_diff:.1e} (largest feature {scale:.2f})"
    )
    return result(
        "vgg16_features",
        round(n / fast_s, 1),
        "img/s",
        baseline=round(n / plain_s, 1),
        ratio=round(ratio, 2),
        target=1.1,
        images=n,
        image_size=size,
        rounds=rounds,
        device=device,
        max_feature_diff=max_diff,
    )


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
