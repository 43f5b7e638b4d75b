"""Find chest X-rays in the COVID-19 Radiography Database layout, split them, cache them as uint8.

Data flow (notebook 01 writes, every later notebook reads):
    data dir (read only)  ->  RUN/data/manifest.csv      path,label,split,sha256 (fixed, first), pixel_sha256
                              RUN/data/details.csv       the manifest plus what was seen in each file
                              RUN/data/info.json         where the data came from, split settings, report
                              RUN/data/arrays_<size>.npz images uint8 (N, size, size, 1) in manifest order

Reading is defensive, because a data folder is whatever a user downloaded: only regular files (a link
is followed, but never to a device, pipe or folder), at most MAX_FILE_BYTES, at most MAX_PIXELS pixels
(Pillow's decompression-bomb guard is an error too), PNG or JPEG by content (not by name), one frame,
EXIF orientation applied. A file that fails any of these is a problem listed with its reason.

Paths in the manifest are relative to the data root and are text: bytes that are not UTF-8, control
characters and "%" itself are written as %XX (``relative_name``), so every file name survives the round
trip through the CSV (``path_of``) and ordinary names stay as they are.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import CLASSES, NOTEBOOKS
from .config import Config, rel
from .files import read_json, write_csv, write_json, write_npz
from .progress import tqdm
from .runs import MARKER

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
IGNORED_FOLDERS = {"masks", "mask", "__macosx"}
MIN_SIZE = 32
NOTEBOOK_01 = NOTEBOOKS["01"]

# Decoded formats accepted (what Pillow finds in the bytes, whatever the suffix says). A JPEG carrying
# several pictures opens as MPO; it is JPEG here and then refused for having more than one frame.
IMAGE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG"}
# The largest chest X-ray files (16-bit PNG at 4k x 4k) are about 30 MB; a bigger file is not one of them,
# and reading it whole would only cost memory.
MAX_FILE_BYTES = 64 * 2**20
# 8192 x 8192 is beyond any detector; it keeps one decode (up to 8 bytes a pixel while converting 16-bit
# images to gray) near half a gigabyte. Pillow's own bomb guard (Image.MAX_IMAGE_PIXELS) applies too.
MAX_PIXELS = 8192 * 8192
# What the decoding gives changes what the cache holds: a cache made by another version is rebuilt.
# 1 (caches and info.json without the mark): gray uint8, bilinear resize. 2: EXIF orientation applied,
# unusable files (special, huge, bombs, not PNG/JPEG, several frames) refused, duplicates by decoded pixels.
DECODER_VERSION = 2
# Written by the project into each run directory it makes; a folder holding it is never scanned.
RUN_MARKER = MARKER  # a folder holding it is a run directory of this project, never scanned as data
# Two pictures whose 256-bit perceptual hashes (perceptual_hash) differ in at most this many bits are
# reported as near duplicates. Measured on 1124 real chest X-rays and on the phantoms: re-compressed
# (JPEG 75), half-size, one-pixel-edited or brightened copies differ in at most 16 bits; different
# pictures in at least 26 (real X-rays: 50). A 64-bit hash could not tell chest X-rays apart.
NEAR_DUPLICATE_BITS = 20
# The manifest: the four columns every reader relies on first, then the hash of the decoded pixels.
MANIFEST_COLUMNS = ["path", "label", "split", "sha256", "pixel_sha256"]
DETAIL_COLUMNS = ["path", "label", "width", "height", "mode", "format", "orientation", "bytes", "sha256",
                  "pixel_sha256", "phash"]


class DataError(ValueError):
    """Bad input data: the message lists every problem at once, with the file and the fix."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        self.problems = problems or []
        super().__init__(message)


class _Unusable(Exception):
    """One file cannot be used; the argument is the reason, worded to follow the file's name."""


@dataclass
class Inventory:
    """What :func:`find_images` saw: usable images, skipped folders and files, problems."""

    root: Path
    files: list[tuple[Path, int]] = field(default_factory=list)  # (path, class index)
    class_folders: dict[str, list[Path]] = field(default_factory=dict)
    ignored_folders: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ file names
def _escape_name(text: str) -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (kept by surrogateescape)
            out.append(f"%{code - 0xDC00:02X}")
        elif ch == "%" or code < 0x20 or code == 0x7F:
            out.append(f"%{code:02X}")
        else:
            out.append(ch)
    return "".join(out)


def relative_name(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to ``root`` as manifest text: '/'-separated, with %XX for bytes that are not UTF-8,
    control characters and '%'. :func:`path_of` turns it back into the same file."""
    relative = Path(path).relative_to(root).as_posix()
    return _escape_name(os.fsencode(relative).decode("utf-8", "surrogateescape"))


def path_of(root: str | os.PathLike, name: str) -> Path:
    """The file a manifest ``name`` (from :func:`relative_name`) stands for under ``root``."""
    from urllib.parse import unquote_to_bytes

    return Path(root) / os.fsdecode(unquote_to_bytes(name))


# ------------------------------------------------------------------------------------------ discovery
def _class_of(folder_name: str) -> int | None:
    for k, name in enumerate(CLASSES):
        if folder_name.lower() == name.lower():
            return k
    return None


def _is_run_dir(folder: Path) -> bool:
    return os.path.lexists(folder / RUN_MARKER)


def _locate_root(data_dir: Path) -> Path:
    """Descend into a single wrapping folder (as a Kaggle zip unpacks) until class folders appear."""
    current = data_dir
    for _ in range(3):
        subdirs = [p for p in current.iterdir() if p.is_dir() and not p.name.startswith(".") and not _is_run_dir(p)]
        if any(_class_of(p.name) is not None for p in subdirs):
            return current
        if len(subdirs) == 1:
            current = subdirs[0]
            continue
        break
    return data_dir


def _walk(folder: Path, root: Path, inv: Inventory) -> list[Path]:
    """Every candidate file under ``folder`` (links not followed into folders), sorted.

    Skipped: folders named in IGNORED_FOLDERS (silently), run directories of this project (reported),
    links to folders (reported), hidden files.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if RUN_MARKER in filenames:
            inv.ignored_folders.append(relative_name(here, root))
            dirnames[:] = []
            continue
        for name in list(dirnames):
            sub = here / name
            if name.lower() in IGNORED_FOLDERS:
                dirnames.remove(name)
            elif sub.is_symlink():  # os.walk does not follow it; an image name still gets its reason
                dirnames.remove(name)
                if sub.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(sub)
                else:
                    inv.ignored_folders.append(relative_name(sub, root))
        found += [here / name for name in filenames if not name.startswith(".")]
    return sorted(found)


def find_images(data_dir: str | os.PathLike, *, both_classes: bool = True) -> Inventory:
    """List the images of each class under ``data_dir`` (COVID/Normal any case, optional images/).

    ``both_classes=False`` (an external test set) accepts a folder holding only one of the classes.
    """
    data_dir = Path(data_dir).expanduser()
    if not data_dir.exists():
        raise DataError(
            f"Data directory {data_dir} does not exist. Fix: pass the folder that holds COVID/ and Normal/ "
            "(e.g. the unzipped Kaggle 'COVID-19 Radiography Database'), or leave data_dir empty to use the "
            "built-in phantoms."
        )
    if not data_dir.is_dir():
        raise DataError(f"Data directory {data_dir} is a file, not a folder. Fix: pass the folder holding COVID/ and Normal/.")
    root = _locate_root(data_dir)
    inv = Inventory(root=root)
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        k = _class_of(sub.name)
        if k is None or _is_run_dir(sub):
            inv.ignored_folders.append(relative_name(sub, root))
            continue
        folders = [sub / "images"] if (sub / "images").is_dir() else [sub]
        inv.class_folders.setdefault(CLASSES[k], []).extend(folders)
        for folder in folders:
            for path in _walk(folder, root, inv):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    inv.files.append((path, k))
                else:
                    inv.ignored_files.append(relative_name(path, root))
        for extra in sorted(p.name for p in sub.iterdir() if p.is_dir() and p.name.lower() in IGNORED_FOLDERS):
            inv.ignored_folders.append(relative_name(sub / extra, root))
    missing = [c for c in CLASSES if c not in inv.class_folders]
    if len(missing) == len(CLASSES) or (missing and both_classes):
        found = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) or "no folders"
        raise DataError(
            f"Data directory {data_dir} has no class folder for {', '.join(missing)} (found: {found}). "
            "Fix: the folder must hold one subfolder per class named COVID and Normal (any case), "
            "each with the images directly or under images/."
        )
    for c in inv.class_folders:
        if not any(k == CLASSES.index(c) for _, k in inv.files):
            raise DataError(f"The {c} folder under {data_dir} holds no PNG or JPEG image. Fix: check the download.")
    return inv


# ------------------------------------------------------------------------------------------ decoding
def to_gray_uint8(img) -> np.ndarray:
    """Convert any PIL image (gray, RGB, RGBA, palette, CMYK, 8/16-bit) to a uint8 gray array, always the same way."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        if mode == "I" and arr.max() <= 255:
            return arr.clip(0, 255).astype(np.uint8)
        return np.round(arr.clip(0, 65535) / 257.0).astype(np.uint8)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        return np.round(np.clip(arr * scale, 0, 255)).astype(np.uint8)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA").convert("RGB")  # alpha is dropped, not blended
    if mode == "1":
        img = img.convert("L")
    if img.mode != "L":
        img = img.convert("RGB").convert("L")
    return np.asarray(img, dtype=np.uint8)


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "a special file"


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file (links followed), at most MAX_FILE_BYTES; anything else is _Unusable.

    The kind of file is checked before opening, and again on the open descriptor (opened without blocking,
    so a pipe swapped in meanwhile cannot hang the read).
    """
    link = " (the name is a link)" if os.path.islink(path) else ""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise _Unusable("is a link to a file that does not exist" if link else "no longer exists") from None
    except OSError as exc:
        raise _Unusable(f"cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise _Unusable(f"is {_kind(info.st_mode)}{link}, not a regular file, so it is not read")
    too_big = f"is larger than {MAX_FILE_BYTES // 2**20} MB, the most a chest X-ray file is allowed (MAX_FILE_BYTES)"
    if info.st_size > MAX_FILE_BYTES:
        raise _Unusable(too_big)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise _Unusable(f"cannot be read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Unusable(f"is {_kind(info.st_mode)}{link}, not a regular file, so it is not read")
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, min(2**20, MAX_FILE_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _Unusable(f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise _Unusable(too_big)
    return b"".join(chunks)


def _too_many_pixels(detail: str) -> str:
    return (
        f"has too many pixels ({detail}; at most {MAX_PIXELS:,} are decoded), a guard against decompression "
        "bombs (small files that expand to gigabytes)"
    )


def _frames(img) -> int:
    n = int(getattr(img, "n_frames", 1) or 1)
    return max(n, 2) if getattr(img, "is_animated", False) else n


def _decode(path: Path) -> tuple[np.ndarray, dict]:
    """Read and fully decode one file, upright (EXIF orientation applied), as gray uint8; raises _Unusable."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    raw = _read_regular(path)
    if not raw:
        raise _Unusable("is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(raw)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise _Unusable(_too_many_pixels(f"{width} x {height}"))
                fmt, frames = img.format, _frames(img)
                if fmt not in IMAGE_FORMATS:
                    several = f" with {frames} frames" if frames > 1 else ""
                    raise _Unusable(
                        f"is a {fmt or 'unknown'} image{several}, not PNG or JPEG (whatever its name says); "
                        "convert it to PNG"
                    )
                if frames > 1:
                    raise _Unusable(
                        f"holds {frames} frames (an animated or multi-picture {fmt}); only single pictures are "
                        "used: save the one frame wanted as PNG"
                    )
                img.load()
                orientation = img.getexif().get(0x0112, 1)  # EXIF Orientation
                mode = img.mode
                upright = ImageOps.exif_transpose(img)
                gray = to_gray_uint8(upright)
        except _Unusable:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _Unusable(_too_many_pixels(f"Pillow: {str(exc).split(',')[0]}")) from None
        except UnidentifiedImageError:
            raise _Unusable("is not an image PIL can read") from None
        except MemoryError:
            raise _Unusable("needs more memory to decode than is free") from None
        except Exception as exc:  # Pillow's parsers raise many kinds of error on damaged files
            raise _Unusable(f"is truncated or corrupt ({exc})") from None
    facts = {
        "width": int(gray.shape[1]),
        "height": int(gray.shape[0]),
        "mode": mode,
        "format": IMAGE_FORMATS[fmt],
        "orientation": int(orientation) if isinstance(orientation, int) else 1,
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    return gray, facts


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

    small = np.asarray(Image.fromarray(np.asarray(gray, dtype=np.uint8)).resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
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


def scan(data_dir, *, skip_unreadable: bool = False, min_size: int = MIN_SIZE, progress: bool = True,
         both_classes: bool = True):
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


def _counts(spec: dict, available: dict) -> dict:
    """Turn a per-class spec of counts (int) or fractions (float < 1) into counts."""
    out = {}
    for c in CLASSES:
        v = spec[c]
        out[c] = int(round(v * available[c])) if isinstance(v, float) and v < 1 else int(v)
    return out


def split(table, train_per_class: dict, val_per_class: dict, seed: int = 0):
    """Seeded stratified split: per class, shuffle, take validation first, then training.

    Counts are per class ({"COVID": 331, "Normal": 601}) or fractions of what is available.
    Raises DataError saying how many images are needed and found when there are too few.
    """
    available = table["label"].value_counts().reindex(list(CLASSES), fill_value=0).to_dict()
    n_val, n_train = _counts(val_per_class, available), _counts(train_per_class, available)
    short = [
        f"{c}: {n_train[c]} train + {n_val[c]} val = {n_train[c] + n_val[c]} needed, {available[c]} found"
        for c in CLASSES
        if n_train[c] + n_val[c] > available[c]
    ]
    if short:
        raise DataError(
            "Too few images for the requested split (after removing duplicates):\n  - "
            + "\n  - ".join(short)
            + "\nFix: use a larger dataset, or ask for fewer images (train_per_class / val_per_class)."
        )
    rng = np.random.default_rng(seed)
    parts = []
    for c in CLASSES:
        rows = table[table["label"] == c].sort_values("path")
        order = rng.permutation(len(rows))
        val = rows.iloc[order[: n_val[c]]].assign(split="val")
        train = rows.iloc[order[n_val[c] : n_val[c] + n_train[c]]].assign(split="train")
        parts += [train, val]
    import pandas as pd

    out = pd.concat(parts).sort_values(["split", "label", "path"], ascending=[False, True, True])
    return out.reset_index(drop=True)


def _resize(gray: np.ndarray, image_size: int) -> np.ndarray:
    from PIL import Image

    if gray.shape != (image_size, image_size):
        gray = np.asarray(Image.fromarray(gray).resize((image_size, image_size), Image.Resampling.BILINEAR))
    return gray


def load_image(path: Path, image_size: int) -> np.ndarray:
    """Decode (upright: EXIF orientation applied), convert to gray uint8 and resize one image to (image_size, image_size).

    A file that cannot be used raises DataError naming it and the reason (the same checks as :func:`inspect_image`).
    """
    try:
        gray, _ = _decode(Path(path))
    except _Unusable as exc:
        raise DataError(f"{path} {exc}. Fix: replace or remove this file.", [(str(path), str(exc))]) from None
    return _resize(gray, image_size)


def build_cache(root: Path, paths, image_size: int, progress: bool = True, sha256=None) -> np.ndarray:
    """Decode and resize every image once: uint8 array (N, size, size, 1).

    ``paths`` are manifest names under ``root``. With ``sha256`` (the manifest's file hashes) a file whose
    bytes changed since it was checked is a problem too. Problems are collected and raised together.
    """
    paths = list(paths)
    expected = list(sha256) if sha256 is not None else [None] * len(paths)
    out = np.empty((len(paths), image_size, image_size, 1), dtype=np.uint8)
    problems = []
    for i, (name, digest) in enumerate(
        tqdm(list(zip(paths, expected)), desc=f"decoding to {image_size}px", disable=not progress, leave=False)
    ):
        try:
            gray, facts = _decode(path_of(root, name))
        except _Unusable as exc:
            problems.append((name, str(exc)))
            continue
        if digest is not None and facts["sha256"] != digest:
            problems.append((name, "changed since notebook 01 checked it (other bytes)"))
            continue
        out[i, ..., 0] = _resize(gray, image_size)
    if problems:
        lines = "\n".join(f"  - {p}: {why}" for p, why in problems)
        raise DataError(
            f"{len(problems)} image(s) under {root} cannot be cached:\n{lines}\n"
            f"Fix: the data folder changed after {NOTEBOOK_01} checked it: restore these files, or rerun "
            f"{NOTEBOOK_01} into a new run_dir.",
            problems,
        )
    return out


def source_dir(cfg: Config) -> Path:
    """The folder images are read from: the user's data_dir, or the built-in phantoms (made on demand)."""
    if cfg.data_dir is not None:
        return cfg.data_dir
    from .phantoms import ensure_phantoms

    return ensure_phantoms(cfg)


def _split_settings(cfg: Config) -> dict:
    return {
        "profile": cfg.profile,
        "train_per_class": cfg.train_per_class,
        "val_per_class": cfg.val_per_class,
        "split_seed": cfg.split_seed,
        "skip_unreadable": cfg.skip_unreadable,
    }


def _write_cache(path: Path, images: np.ndarray, manifest) -> Path:
    return write_npz(
        path,
        images=images,
        sha256=manifest["sha256"].to_numpy(dtype=str),
        pixel_sha256=manifest["pixel_sha256"].to_numpy(dtype=str),
        decoder_version=np.int64(DECODER_VERSION),
    )


def _cache_matches(path: Path, manifest) -> bool:
    """True when arrays_<size>.npz was made by this decoder version for exactly these manifest rows."""
    import zipfile

    if not path.is_file():
        return False
    try:
        with np.load(path) as npz:
            if "decoder_version" not in npz.files or int(npz["decoder_version"]) != DECODER_VERSION:
                return False
            hashes = npz["sha256"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return False
    return len(hashes) == len(manifest) and bool((hashes == manifest["sha256"].to_numpy(dtype=str)).all())


def prepare(cfg: Config, progress: bool = True) -> dict:
    """Notebook 01's job: scan, dedupe, split, write manifest + info + cache. Reuses a matching prepared run.

    A data stage made by another decoder version is made again; its split is kept only when the new reading
    gives the same split (otherwise a DataError says to use a new run_dir). The manifest is written last:
    its presence means the stage is complete; a failure before it removes what this call wrote.
    """
    data_out = cfg.path("data")
    info_path, manifest_path = data_out / "info.json", data_out / "manifest.csv"
    settings = _split_settings(cfg)
    root = source_dir(cfg)
    source = str(Path(root).resolve())
    previous = None
    if info_path.exists() and manifest_path.exists():
        info = read_json(info_path)
        same = info.get("settings") == settings and info.get("source") == source
        if not same:
            raise DataError(
                f"Run directory {rel(cfg.run_dir)} already holds a split made with other settings or data "
                f"({info.get('settings')}). Fix: choose a new run_dir, or delete {rel(data_out)} to start over."
            )
        if info.get("decoder_version") == DECODER_VERSION:
            ensure_cache(cfg, cfg.image_size, progress=progress)
            return info
        previous = (_read_csv(manifest_path), info.get("decoder_version", 1))
    try:
        table, report = scan(root, skip_unreadable=settings["skip_unreadable"], progress=progress)
    except DataError as exc:
        if previous is None:
            raise
        raise DataError(
            f"{exc}\nRun directory {rel(cfg.run_dir)} was prepared by an earlier version of the image reader "
            f"(decoder version {previous[1]}), which read these files. Fix: prepare a new run_dir instead.",
            exc.problems,
        ) from None
    manifest = split(table, cfg.train_per_class, cfg.val_per_class, seed=settings["split_seed"])
    if previous is not None:
        _same_split_or_stop(cfg, previous, manifest)
    where = dict(zip(manifest["path"], manifest["split"]))
    report["near_duplicates_across_split"] = [
        pair for pair in report["near_duplicates"] if {where.get(pair[0]), where.get(pair[1])} == {"train", "val"}
    ]
    images = build_cache(report["root"], manifest["path"], cfg.image_size, progress=progress)
    info = {
        "source": source,
        "root": str(Path(report["root"]).resolve()),
        "phantoms": cfg.uses_phantoms,
        "settings": settings,
        "decoder_version": DECODER_VERSION,
        "counts": manifest.groupby(["split", "label"]).size().unstack(fill_value=0).to_dict(),
        "report": {k: v for k, v in report.items() if k != "root"},
    }
    written = []
    try:
        for stale in sorted(data_out.glob("arrays_*.npz")):  # left by an earlier stage: made again when used
            if not _cache_matches(stale, manifest):
                stale.unlink()
        written.append(_write_cache(data_out / f"arrays_{cfg.image_size}.npz", images, manifest))
        written.append(write_csv(data_out / "details.csv", manifest))
        written.append(write_json(info_path, info))
        # the manifest is written last: its presence means the data stage is complete
        write_csv(manifest_path, manifest[MANIFEST_COLUMNS])
    except BaseException:
        if previous is None:  # a fresh stage: leave nothing of it behind
            for path in written:
                path.unlink(missing_ok=True)
        raise
    return info


def _same_split_or_stop(cfg: Config, previous, manifest) -> None:
    old, version = previous
    fixed = MANIFEST_COLUMNS[:4]

    def rows(frame) -> set:
        return set(map(tuple, frame[fixed].astype(str).to_numpy().tolist()))

    if set(old.columns) >= set(fixed) and rows(old) == rows(manifest):
        return
    raise DataError(
        f"Run directory {rel(cfg.run_dir)} holds a split made by another version of the image reader "
        f"(decoder version {version}, now {DECODER_VERSION}: EXIF orientation, duplicates by decoded pixels, "
        "unusable files refused), and reading the data again gives a different split. Fix: choose a new run_dir "
        f"(this one stays as it was), or delete {rel(cfg.path('data'))} and the later stages to start over."
    )


def require_prepared(cfg: Config) -> dict:
    """Stop with a clear message unless notebook 01 has prepared this run directory."""
    data_out = cfg.path("data")
    if not (data_out / "manifest.csv").exists() or not (data_out / "info.json").exists():
        raise FileNotFoundError(
            f"No prepared data in run directory {rel(cfg.run_dir)}. Run {NOTEBOOK_01} first "
            "(with the same profile and run_dir)."
        )
    info = read_json(data_out / "info.json")
    made, wanted = info.get("settings", {}), _split_settings(cfg)
    # split_seed and skip_unreadable are notebook 01's own parameters: compared only when cfg sets them
    keys = ["profile", "train_per_class", "val_per_class"] + [k for k in ("split_seed", "skip_unreadable") if cfg.is_set(k)]
    # a key info.json does not record (a hand-made or older run directory) is not compared
    diffs = [f"{k}: prepared with {made[k]!r}, asked for {wanted[k]!r}" for k in keys if k in made and made[k] != wanted[k]]
    if diffs:
        raise DataError(
            f"Run directory {rel(cfg.run_dir)} holds a split prepared with other settings:\n  - "
            + "\n  - ".join(diffs)
            + f"\nFix: rerun {NOTEBOOK_01} with these settings into a new run_dir, or use the run_dir of "
            f"profile {made.get('profile')!r} (the default is runs/<profile>)."
        )
    return info


def _read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False)


def read_manifest(cfg: Config):
    """RUN/data/manifest.csv as a DataFrame (path,label,split,sha256, then pixel_sha256), every column text."""
    require_prepared(cfg)
    return _read_csv(cfg.path("data", "manifest.csv"))


def ensure_cache(cfg: Config, image_size: int, progress: bool = True) -> Path:
    """Make RUN/data/arrays_<size>.npz unless it holds exactly the manifest's images decoded by this decoder version
    (decode each image once per size); the files' bytes are checked against the manifest while decoding."""
    info = require_prepared(cfg)
    path = cfg.path("data", f"arrays_{image_size}.npz")
    manifest = read_manifest(cfg)
    if not _cache_matches(path, manifest):
        root = info.get("root")
        if not root or not Path(root).is_dir():
            raise DataError(
                f"The image cache {rel(path)} is missing, or does not hold this manifest's images decoded by this "
                f"version of the image reader (decoder version {DECODER_VERSION}), and the images it comes from "
                f"({root or 'not recorded'}) are not there to make it again. "
                f"Fix: rerun {NOTEBOOK_01} into a new run_dir."
            )
        if "pixel_sha256" not in manifest:
            manifest = manifest.assign(pixel_sha256="")
        images = build_cache(Path(root), manifest["path"], image_size, progress=progress, sha256=manifest["sha256"])
        _write_cache(path, images, manifest)
    return path


def load_split(cfg: Config, split: str = "train", channels: int = 1, image_size: int | None = None):
    """Cached uint8 images (N, H, W, channels) and int64 labels (COVID = 1) of one split ("train", "val", "all")."""
    image_size = image_size or cfg.image_size
    manifest = read_manifest(cfg)
    with np.load(ensure_cache(cfg, image_size)) as npz:
        images, hashes = npz["images"], npz["sha256"]
    if len(hashes) != len(manifest) or (hashes != manifest["sha256"].to_numpy()).any():
        raise DataError(
            f"The image cache in {rel(cfg.path('data'))} does not match manifest.csv. Fix: delete the "
            f"arrays_*.npz files there and rerun {NOTEBOOK_01}."
        )
    mask = np.ones(len(manifest), bool) if split == "all" else (manifest["split"] == split).to_numpy()
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', not {split!r}")
    labels = manifest["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(np.int64)[mask]
    images = images[mask]
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    elif channels != 1:
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    return images, labels


def load_external(cfg: Config, folder, image_size: int | None = None, progress: bool = True) -> dict:
    """An external test set (another hospital): images, labels and a report; never trained on.

    Any folder the loader accepts, with both classes or only one. Pictures that are also in this run's
    training or validation set (same bytes or same decoded pixels) are reported and left out.
    """
    image_size = image_size or cfg.image_size
    table, report = scan(folder, skip_unreadable=cfg.skip_unreadable, progress=progress, both_classes=False)
    manifest = read_manifest(cfg)
    known = {}
    for key in ("sha256", "pixel_sha256"):
        if key in manifest:
            known.update({h: split for h, split in zip(manifest[key], manifest["split"])})
    overlap = table["sha256"].map(known).fillna(table["pixel_sha256"].map(known))
    report["overlap_excluded"] = [{"path": p, "also_in": s} for p, s in zip(table["path"], overlap) if isinstance(s, str)]
    table = table.loc[overlap.isna()].reset_index(drop=True)
    if table.empty:
        raise DataError(f"The external folder {folder} holds no image that is not already in this run's split.")
    images = build_cache(report["root"], table["path"], image_size, progress=progress)
    labels = table["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(np.int64)
    report["counts"] = {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}
    report["root"] = rel(report["root"])
    return {"images": images, "labels": labels, "paths": table["path"].tolist(), "report": report}


def split_counts(manifest) -> object:
    """Table of images per split and class."""
    return manifest.groupby(["split", "label"]).size().unstack(fill_value=0).reindex(columns=list(CLASSES))


def class_counts(labels) -> Counter:
    return Counter(CLASSES[int(k)] for k in labels)
