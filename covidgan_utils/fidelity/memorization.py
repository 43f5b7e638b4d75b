"""Memorization: are generated images closer to the training images than unseen real images are?"""

from __future__ import annotations

import math

import numpy as np

from ..formatting import fmt_p
from .features import gray01, one_thread, pixels

COPY_DISTANCE = 1.0 / 255.0  # RMS pixel distance below which two images count as copies
MANN_WHITNEY = "one-sided Mann-Whitney U (generated-to-train vs held-out-real-to-train nearest distances)"


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
    p_text = ", ".join(f"{space} p = {fmt_p(p)}" for space, p in ps.items())
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
    from ..plotting import image_grid

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
