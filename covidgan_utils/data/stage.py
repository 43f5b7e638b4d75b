"""Notebook 01's stage: the manifest, info and uint8 cache in RUN/data, and loading them in every later notebook."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import CLASSES, NOTEBOOKS
from ..config import Config, rel
from ..files import read_json, write_csv, write_json, write_npz
from ..progress import tqdm
from .decode import DECODER_VERSION, _decode, _resize, _Unusable
from .dedupe import scan
from .errors import DataError
from .find import path_of
from .splitting import MANIFEST_COLUMNS, split

NOTEBOOK_01 = NOTEBOOKS["01"]


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
    from ..phantoms import ensure_phantoms

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
        info = read_json(_own_file(info_path))
        _own_file(manifest_path)
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
    keys = ["profile", "train_per_class", "val_per_class"] + [
        k for k in ("split_seed", "skip_unreadable") if cfg.is_set(k)
    ]
    # a key info.json does not record (a hand-made or older run directory) is not compared
    diffs = [
        f"{k}: prepared with {made[k]!r}, asked for {wanted[k]!r}" for k in keys if k in made and made[k] != wanted[k]
    ]
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


def _own_file(path: Path) -> Path:
    """``path`` unless it is a symbolic link: a run's split files are its own, never read through a link."""
    if path.is_symlink():
        raise DataError(
            f"{rel(path)} is a symbolic link (to {os.readlink(path)}); a run's split is read only from its own files, "
            f"and a link could make another file the split. Nothing was read or changed. Fix: remove the link and rerun "
            f"{NOTEBOOK_01} into a new run_dir."
        )
    return path


def read_manifest(cfg: Config):
    """RUN/data/manifest.csv as a DataFrame (path,label,split,sha256, then pixel_sha256), every column text."""
    require_prepared(cfg)
    path = _own_file(cfg.path("data", "manifest.csv"))
    manifest = _read_csv(path)
    missing = [c for c in MANIFEST_COLUMNS[:4] if c not in manifest]
    if missing:
        raise DataError(f"{rel(path)} lacks the columns {missing}: it is no manifest notebook 01 wrote. Fix: rerun "
                        f"{NOTEBOOK_01} into a new run_dir.")
    return manifest


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
    report["overlap_excluded"] = [
        {"path": p, "also_in": s} for p, s in zip(table["path"], overlap) if isinstance(s, str)
    ]
    table = table.loc[overlap.isna()].reset_index(drop=True)
    if table.empty:
        raise DataError(f"The external folder {folder} holds no image that is not already in this run's split.")
    images = build_cache(report["root"], table["path"], image_size, progress=progress)
    labels = table["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(np.int64)
    report["counts"] = {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}
    report["root"] = rel(report["root"])
    return {"images": images, "labels": labels, "paths": table["path"].tolist(), "report": report}


def _folder_key(folder: Path, image_size: int, manifest) -> str:
    """What the independent images' cache depends on: the phantom folder's files (name, size, mtime; its record too),
    the image size, the decoder version and the run's split (pictures also in the split are left out)."""
    import hashlib

    h = hashlib.sha256(f"decoder {DECODER_VERSION}; size {int(image_size)};".encode())
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            st = path.stat()
            h.update(f"{path.relative_to(folder).as_posix()}:{st.st_size}:{st.st_mtime_ns};".encode())
    for key in ("sha256", "pixel_sha256"):
        if key in manifest:
            h.update(",".join(manifest[key]).encode())
    return h.hexdigest()


def load_independent(cfg: Config) -> tuple[np.ndarray, np.ndarray] | None:
    """Images and labels for the independent class-fidelity check (``fidelity.gan_test(independent=...)``): real
    images of both classes that neither the GAN nor the class probe trained on, at the run's image size.

    On the built-in phantoms: a fresh draw of the same population, four times the training split (drawn once into
    the phantom cache, by ``covidgan run`` before the notebooks or else here on first use), decoded once per run
    into RUN/data/independent_<size>.npz (about 6 s for the demo's 3,728 images; the later notebooks read it in a tenth of a second). The cache is used
    only while the phantom folder's files, the image size, the decoder and the split are those it was made from.
    On real data: None, since the split keeps no unused images; the check then reads against the training images'
    own level instead.
    """
    import zipfile

    if not cfg.uses_phantoms:
        return None
    from ..phantoms import ensure_independent_phantoms

    folder = ensure_independent_phantoms(cfg)
    size = int(cfg.image_size)
    key = _folder_key(folder, size, read_manifest(cfg))
    cache = cfg.path("data", f"independent_{size}.npz")
    if cache.is_file() and not cache.is_symlink():
        try:
            with np.load(cache) as npz:
                if str(npz["key"]) == key:
                    return npz["images"], npz["labels"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable or from another version: made again below
    found = load_external(cfg, folder, image_size=size, progress=False)
    write_npz(cache, images=found["images"], labels=found["labels"], key=np.str_(key))
    return found["images"], found["labels"]
