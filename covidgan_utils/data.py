"""Find chest X-rays in the COVID-19 Radiography Database layout, split them, cache them as uint8.

Data flow (notebook 01 writes, every later notebook reads):
    data dir (read only)  ->  RUN/data/manifest.csv      path,label,split,sha256 (CONTRACT)
                              RUN/data/info.json         where the data came from, split settings, report
                              RUN/data/arrays_<size>.npz images uint8 (N, size, size, 1) in manifest order
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import CLASSES
from .config import Config, rel
from .files import read_json, write_csv, write_json, write_npz
from .progress import tqdm

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
IGNORED_FOLDERS = {"masks", "mask", "__macosx"}
MIN_SIZE = 32
NOTEBOOK_01 = "notebooks/01_data_exploration.ipynb"


class DataError(ValueError):
    """Bad input data: the message lists every problem at once, with the file and the fix."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        self.problems = problems or []
        super().__init__(message)


@dataclass
class Inventory:
    """What :func:`find_images` saw: usable images, skipped folders and files, problems."""

    root: Path
    files: list[tuple[Path, int]] = field(default_factory=list)  # (path, class index)
    class_folders: dict[str, list[Path]] = field(default_factory=dict)
    ignored_folders: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)


def _class_of(folder_name: str) -> int | None:
    for k, name in enumerate(CLASSES):
        if folder_name.lower() == name.lower():
            return k
    return None


def _locate_root(data_dir: Path) -> Path:
    """Descend into a single wrapping folder (as a Kaggle zip unpacks) until class folders appear."""
    current = data_dir
    for _ in range(3):
        subdirs = [p for p in current.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if any(_class_of(p.name) is not None for p in subdirs):
            return current
        if len(subdirs) == 1:
            current = subdirs[0]
            continue
        break
    return data_dir


def find_images(data_dir: str | os.PathLike) -> Inventory:
    """List the images of each class under ``data_dir`` (COVID/Normal any case, optional images/)."""
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
        if k is None:
            inv.ignored_folders.append(sub.name)
            continue
        folders = [sub / "images"] if (sub / "images").is_dir() else [sub]
        inv.class_folders.setdefault(CLASSES[k], []).extend(folders)
        for folder in folders:
            for path in sorted(folder.rglob("*")):
                if any(part.lower() in IGNORED_FOLDERS for part in path.relative_to(sub).parts[:-1]):
                    continue
                if path.is_dir() or path.name.startswith("."):
                    continue
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    inv.files.append((path, k))
                else:
                    inv.ignored_files.append(path.relative_to(root).as_posix())
        for extra in sorted(p.name for p in sub.iterdir() if p.is_dir() and p.name.lower() in IGNORED_FOLDERS):
            inv.ignored_folders.append(f"{sub.name}/{extra}")
    missing = [c for c in CLASSES if c not in inv.class_folders]
    if missing:
        found = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) or "no folders"
        raise DataError(
            f"Data directory {data_dir} has no class folder for {', '.join(missing)} (found: {found}). "
            "Fix: the folder must hold one subfolder per class named COVID and Normal (any case), "
            "each with the images directly or under images/."
        )
    for c in CLASSES:
        if not any(k == CLASSES.index(c) for _, k in inv.files):
            raise DataError(f"The {c} folder under {data_dir} holds no PNG or JPEG image. Fix: check the download.")
    return inv


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


def inspect_image(path: Path, min_size: int = MIN_SIZE) -> tuple[dict | None, str | None]:
    """Open and fully decode one file; return (facts, None) or (None, reason it is unusable)."""
    from PIL import Image, UnidentifiedImageError

    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    if not raw:
        return None, "is empty (0 bytes)"
    try:
        import io

        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            facts = {"width": img.width, "height": img.height, "mode": img.mode, "format": img.format}
    except UnidentifiedImageError:
        return None, "is not an image PIL can read"
    except (OSError, SyntaxError, ValueError) as exc:
        return None, f"is truncated or corrupt ({exc})"
    if min(facts["width"], facts["height"]) < min_size:
        return None, f"is too small ({facts['width']}x{facts['height']} px; at least {min_size} px needed)"
    facts["bytes"] = len(raw)
    facts["sha256"] = hashlib.sha256(raw).hexdigest()
    return facts, None


def scan(data_dir, *, skip_unreadable: bool = False, min_size: int = MIN_SIZE, progress: bool = True):
    """Find, decode-check and hash every image; returns (table, report). Raises DataError listing all problems."""
    import pandas as pd
    inv = find_images(data_dir)
    rows, problems = [], []
    for path, k in tqdm(inv.files, desc="checking images", disable=not progress, leave=False):
        facts, reason = inspect_image(path, min_size=min_size)
        shown = path.relative_to(inv.root).as_posix()
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
    table = pd.DataFrame(rows, columns=["path", "label", "width", "height", "mode", "format", "bytes", "sha256"])
    n_labels = table.groupby("sha256")["label"].nunique()
    conflicting = set(n_labels[n_labels > 1].index)  # one picture filed under both classes: drop all copies
    dup_mask = table.duplicated("sha256", keep="first") & ~table["sha256"].isin(conflicting)
    report = {
        "root": inv.root,
        "found": {c: int(sum(1 for _, k in inv.files if k == i)) for i, c in enumerate(CLASSES)},
        "ignored_folders": inv.ignored_folders,
        "ignored_files": inv.ignored_files,
        "skipped_unreadable": [{"path": p, "reason": r} for p, r in problems],
        "duplicates_removed": table.loc[dup_mask, "path"].tolist(),
        "conflicting_labels_removed": table.loc[table["sha256"].isin(conflicting), "path"].tolist(),
    }
    table = table.loc[~dup_mask & ~table["sha256"].isin(conflicting)].reset_index(drop=True)
    return table, report


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


def load_image(path: Path, image_size: int) -> np.ndarray:
    """Decode, convert to gray uint8 and resize one image to (image_size, image_size)."""
    from PIL import Image

    with Image.open(path) as img:
        gray = to_gray_uint8(img)
    if gray.shape != (image_size, image_size):
        gray = np.asarray(Image.fromarray(gray).resize((image_size, image_size), Image.Resampling.BILINEAR))
    return gray


def build_cache(root: Path, paths, image_size: int, progress: bool = True) -> np.ndarray:
    """Decode and resize every image once: uint8 array (N, size, size, 1)."""
    out = np.empty((len(paths), image_size, image_size, 1), dtype=np.uint8)
    for i, p in enumerate(tqdm(paths, desc=f"decoding to {image_size}px", disable=not progress, leave=False)):
        out[i, ..., 0] = load_image(Path(root) / p, image_size)
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
        "split_seed": cfg.settings.get("split_seed", 0),
        "skip_unreadable": bool(cfg.settings.get("skip_unreadable", False)),
    }


def prepare(cfg: Config, progress: bool = True) -> dict:
    """Notebook 01's job: scan, dedupe, split, write manifest + info + cache. Reuses a matching prepared run."""
    data_out = cfg.path("data")
    info_path = data_out / "info.json"
    settings = _split_settings(cfg)
    root = source_dir(cfg)
    if info_path.exists():
        info = read_json(info_path)
        same = info.get("settings") == settings and info.get("source") == str(Path(root).resolve())
        if same and (data_out / "manifest.csv").exists():
            ensure_cache(cfg, cfg.image_size, progress=progress)
            return info
        raise DataError(
            f"Run directory {rel(cfg.run_dir)} already holds a split made with other settings or data "
            f"({info.get('settings')}). Fix: choose a new run_dir, or delete {rel(data_out)} to start over."
        )
    table, report = scan(root, skip_unreadable=settings["skip_unreadable"], progress=progress)
    manifest = split(table, cfg.train_per_class, cfg.val_per_class, seed=settings["split_seed"])
    images = build_cache(report["root"], manifest["path"], cfg.image_size, progress=progress)
    write_npz(data_out / f"arrays_{cfg.image_size}.npz", images=images, sha256=manifest["sha256"].to_numpy(dtype=str))
    write_csv(data_out / "details.csv", manifest)
    info = {
        "source": str(Path(root).resolve()),
        "root": str(Path(report["root"]).resolve()),
        "phantoms": cfg.uses_phantoms,
        "settings": settings,
        "counts": manifest.groupby(["split", "label"]).size().unstack(fill_value=0).to_dict(),
        "report": {k: v for k, v in report.items() if k != "root"},
    }
    write_json(info_path, info)
    # the manifest is written last: its presence means the data stage is complete
    write_csv(data_out / "manifest.csv", manifest[["path", "label", "split", "sha256"]])
    return info


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
    keys = ["profile", "train_per_class", "val_per_class"] + [k for k in ("split_seed", "skip_unreadable") if k in cfg.settings]
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


def read_manifest(cfg: Config):
    """RUN/data/manifest.csv as a DataFrame (path,label,split,sha256)."""
    import pandas as pd

    require_prepared(cfg)
    return pd.read_csv(cfg.path("data", "manifest.csv"))


def ensure_cache(cfg: Config, image_size: int, progress: bool = True) -> Path:
    """Make RUN/data/arrays_<size>.npz if it is missing (decode each image once per size)."""
    info = require_prepared(cfg)
    path = cfg.path("data", f"arrays_{image_size}.npz")
    if not path.exists():
        manifest = read_manifest(cfg)
        images = build_cache(Path(info["root"]), manifest["path"], image_size, progress=progress)
        write_npz(path, images=images, sha256=manifest["sha256"].to_numpy(dtype=str))
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


def split_counts(manifest) -> object:
    """Table of images per split and class."""
    return manifest.groupby(["split", "label"]).size().unstack(fill_value=0).reindex(columns=list(CLASSES))


def class_counts(labels) -> Counter:
    return Counter(CLASSES[int(k)] for k in labels)
