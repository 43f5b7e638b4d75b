"""Checking and hashing every image of a data folder: copies kept once, near duplicates reported."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .. import CLASSES
from ..progress import tqdm
from .decode import _decode, _Unusable
from .errors import DataError
from .find import find_images, relative_name

MIN_SIZE = 32
# Two pictures whose 256-bit perceptual hashes (perceptual_hash) differ in at most this many bits are
# reported as near duplicates. Measured on 1124 real chest X-rays and on the phantoms: re-compressed
# (JPEG 75), half-size, one-pixel-edited or brightened copies differ in at most 16 bits; different
# pictures in at least 26 (real X-rays: 50). A 64-bit hash could not tell chest X-rays apart.
NEAR_DUPLICATE_BITS = 20
DETAIL_COLUMNS = ["path", "label", "width", "height", "mode", "format", "orientation", "bytes", "sha256",
                  "pixel_sha256", "phash"]  # fmt: skip


def pixel_sha256(gray: np.ndarray) -> str:
    """sha256 of a decoded gray uint8 picture (its shape, then its pixels): equal for the same picture
    however it was encoded (compression level, bit depth, gray or RGB)."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    return hashlib.sha256(f"{gray.shape[0]}x{gray.shape[1]}:".encode() + gray.tobytes()).hexdigest()


_DCT_32 = np.cos(np.pi * (2 * np.arange(32)[None, :] + 1) * np.arange(16)[:, None] / 64)  # 16 lowest of 32


def perceptual_hash(gray: np.ndarray) -> str:
    """256-bit perceptual hash (64 hex digits): the picture shrunk to 32 x 32, its 16 x 16 lowest
    2-D cosine frequencies, one bit each (above their median or not). Nearly the same picture
    (re-compressed, re-scaled, a few pixels edited) gives nearly the same bits."""
    from PIL import Image

    small = np.asarray(
        Image.fromarray(np.asarray(gray, dtype=np.uint8)).resize((32, 32), Image.Resampling.BOX), dtype=np.float64
    )
    low = (_DCT_32 @ small @ _DCT_32.T).ravel()
    median = np.partition(low[1:], 127)[127]  # of the 255 frequencies after the mean (low[0])
    return np.packbits(low > median).tobytes().hex()


def near_duplicate_pairs(hashes, max_bits: int = NEAR_DUPLICATE_BITS) -> list[tuple[int, int, int]]:
    """(i, j, bits) for every i < j whose hashes (equal-length hex strings) differ in at most ``max_bits`` bits.

    With bits as +1/-1, a dot product is (bits - 2 * differing bits): one matrix product per block of rows
    compares every pair (exact in float32 for hashes of up to 2**24 bits), fast for tens of thousands of images.
    """
    hashes = list(hashes)
    if not hashes:
        return []
    bits = np.unpackbits(np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), dtype=np.uint8))
    signs = bits.reshape(len(hashes), -1).astype(np.float32) * 2 - 1
    n, width = signs.shape
    pairs = []
    block = max(1, 2**22 // n)  # rows at a time: 16 MB of products
    for start in range(0, n, block):
        dots = signs[start : start + block] @ signs.T
        i, j = np.nonzero(dots >= width - 2 * max_bits - 0.5)
        keep = j > i + start
        i, j = i[keep], j[keep]
        pairs += [(int(a + start), int(b), int(round((width - d) / 2))) for a, b, d in zip(i, j, dots[i, j])]
    return pairs


def inspect_image(path: Path, min_size: int = MIN_SIZE) -> tuple[dict | None, str | None]:
    """Open and fully decode one file; return (facts, None) or (None, reason it is unusable).

    Facts: width and height (upright), mode, format, EXIF orientation, bytes, sha256 (of the file),
    pixel_sha256 (of the decoded gray picture), phash (perceptual hash, for near duplicates).
    """
    try:
        gray, facts = _decode(Path(path))
    except _Unusable as exc:
        return None, str(exc)
    if min(facts["width"], facts["height"]) < min_size:
        return None, f"is too small ({facts['width']}x{facts['height']} px; at least {min_size} px needed)"
    facts["pixel_sha256"] = pixel_sha256(gray)
    facts["phash"] = perceptual_hash(gray)
    return facts, None


def scan(
    data_dir,
    *,
    skip_unreadable: bool = False,
    min_size: int = MIN_SIZE,
    progress: bool = True,
    both_classes: bool = True,
):
    """Find, decode-check and hash every image; returns (table, report). Raises DataError listing all problems.

    One picture is one decoded image: copies (same bytes, or the same pixels encoded another way) are kept
    once; a picture filed under both classes is dropped everywhere. Near duplicates are reported, not removed.
    """
    import pandas as pd

    inv = find_images(data_dir, both_classes=both_classes)
    rows, problems = [], []
    for path, k in tqdm(inv.files, desc="checking images", disable=not progress, leave=False):
        facts, reason = inspect_image(path, min_size=min_size)
        shown = relative_name(path, inv.root)
        if reason:
            problems.append((shown, reason))
            continue
        rows.append({"path": shown, "label": CLASSES[k], **facts})
    if problems and not skip_unreadable:
        lines = "\n".join(f"  - {p}: {why}" for p, why in problems)
        raise DataError(
            f"{len(problems)} unusable file(s) under {data_dir}:\n{lines}\n"
            "Fix: delete or replace these files (the data folder is never modified by this project), "
            "or set skip_unreadable=True to leave them out; the run records which were skipped.",
            problems,
        )
    table = pd.DataFrame(rows, columns=DETAIL_COLUMNS)
    n_labels = table.groupby("pixel_sha256")["label"].nunique()
    conflicting = table["pixel_sha256"].isin(set(n_labels[n_labels > 1].index))  # under both classes: drop all
    dup_mask = table.duplicated("pixel_sha256", keep="first") & ~conflicting
    first = table.drop_duplicates("pixel_sha256").set_index("pixel_sha256")["path"]
    kept = table.loc[~dup_mask & ~conflicting].reset_index(drop=True)
    near = [[kept.at[i, "path"], kept.at[j, "path"], d] for i, j, d in near_duplicate_pairs(kept["phash"])]
    report = {
        "root": inv.root,
        "found": {c: int(sum(1 for _, k in inv.files if k == i)) for i, c in enumerate(CLASSES)},
        "ignored_folders": inv.ignored_folders,
        "ignored_files": inv.ignored_files,
        "skipped_unreadable": [{"path": p, "reason": r} for p, r in problems],
        "duplicates_removed": table.loc[dup_mask, "path"].tolist(),
        "duplicate_of": {p: first[h] for p, h in zip(table.loc[dup_mask, "path"], table.loc[dup_mask, "pixel_sha256"])},
        "conflicting_labels_removed": table.loc[conflicting, "path"].tolist(),
        "near_duplicates": near,
        "near_duplicate_bits": NEAR_DUPLICATE_BITS,
    }
    return kept, report
