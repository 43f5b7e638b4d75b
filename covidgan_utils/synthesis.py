"""Generate synthetic X-rays with a trained cGAN and write them as PNG files plus a manifest.

Layout: RUN/synthetic/<torch|tf>/<COVID|Normal>/*.png and
RUN/synthetic/<torch|tf>/manifest.csv with columns ``path,label,seed`` (path relative to RUN).
A framework folder appears complete or not at all: everything is written into a hidden
temporary folder that is renamed into place at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from . import CLASSES, NOTEBOOKS, provenance
from .config import rel
from .files import read_json, storage_error, user_umask, write_csv, write_json

FRAMEWORKS = ("torch", "tf")
GAN_FOLDERS = {"torch": "torch_gan", "tf": "tf_gan"}
GAN_NOTEBOOKS = {"torch": NOTEBOOKS["02"], "tf": NOTEBOOKS["03"]}
NOTEBOOK_04 = NOTEBOOKS["04"]
MANIFEST_COLUMNS = ["path", "label", "seed"]
MIN_RANGE = 1  # rejected: an image whose pixels all have one value (blank or constant)
FLAT_RANGE = 8  # warned about: fewer gray levels than this (an untrained generator's flat gray)


class SyntheticImageError(ValueError):
    """Generated images failed the checks; the message lists every bad image."""


def plan(train_counts: dict, target_per_class) -> dict:
    """How many images each class needs to reach the target (paper: 331/601 -> 669 COVID + 399 Normal)."""
    counts = {_class_name(k): int(v) for k, v in train_counts.items()}
    targets = target_per_class if isinstance(target_per_class, dict) else {c: target_per_class for c in counts}
    targets = {_class_name(k): int(v) for k, v in targets.items()}
    missing = [c for c in counts if c not in targets]
    if missing:
        raise ValueError(f"No target for class(es) {missing}; give target_per_class as an int or a dict per class.")
    return {c: max(0, targets[c] - counts[c]) for c in CLASSES if c in counts}


def framework_dir(run_dir, framework: str) -> Path:
    """RUN/synthetic/<framework>."""
    _check_framework(framework)
    return Path(run_dir) / "synthetic" / framework


def check_images(images, image_size: int | None = None, min_range: int = MIN_RANGE) -> np.ndarray:
    """Return the images as uint8 (N,H,W,C) or raise SyntheticImageError listing every bad one.

    Rejected: NaN/inf values, blank or constant images (pixel range < min_range), wrong size or channels.
    Float images are taken to be in [0, 1]; uint8 images are used as they are.
    """
    arr = np.asarray(images)
    problems = []
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise SyntheticImageError(f"Expected images shaped (N, H, W, 1|3), got {arr.shape}.")
    n, h, w, _ = arr.shape
    if image_size is not None and (h, w) != (image_size, image_size):
        raise SyntheticImageError(f"Generated images are {h}x{w} px, expected {image_size}x{image_size}.")
    if h != w:
        raise SyntheticImageError(f"Generated images are not square ({h}x{w} px).")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        bad = ~np.isfinite(arr).reshape(n, -1).all(axis=1)
        problems += [(i, "contains NaN or infinite values") for i in np.flatnonzero(bad)]
        arr = np.round(np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    flat = arr.reshape(n, -1)
    spread = flat.max(axis=1).astype(int) - flat.min(axis=1).astype(int)
    flagged = {i for i, _ in problems}
    problems += [
        (i, f"is blank/constant (pixel range {spread[i]})")
        for i in np.flatnonzero(spread < min_range)
        if i not in flagged
    ]
    if problems:
        problems.sort()
        shown = "\n".join(f"  - image {i}: {why}" for i, why in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise SyntheticImageError(
            f"{len(problems)} of {n} generated image(s) failed the checks; nothing was written:\n{shown}{more}\n"
            "Fix: the generator may have diverged or collapsed; look at its samples and loss curves in "
            "notebook 02/03, train longer or resume from an earlier checkpoint."
        )
    return arr


def gan_module(framework: str):
    """The framework's GAN module (``torch_gan`` or ``tf_gan``, same function names): the one place it is chosen."""
    _check_framework(framework)
    if framework == "torch":
        from . import torch_gan as gan
    else:
        from . import tf_gan as gan
    return gan


def _sample(framework: str, generator, labels: np.ndarray, seed: int) -> np.ndarray:
    return gan_module(framework).sample(generator, labels, seed=seed)


def load_generators(cfg, frameworks=FRAMEWORKS, progress: bool = True) -> tuple[dict, dict]:
    """The newest trained generator of each framework: ({fw: generator}, {fw: why it is missing}).

    A framework without a checkpoint is left out (notebook 05 skips its conditions); none at all stops here,
    naming the notebooks to run.
    """
    generators, missing = {}, {}
    for fw in frameworks:
        try:
            generators[fw] = gan_module(fw).load_generator(cfg.path(GAN_FOLDERS[fw]))
            line = f"generator from epoch {generators[fw].epoch} of {GAN_NOTEBOOKS[fw]}"
        except FileNotFoundError:
            missing[fw] = f"no trained generator: run {GAN_NOTEBOOKS[fw]} first"
            line = f"MISSING, {missing[fw]}"
        if progress:
            print(f"{fw:5s}: {line}")
    if not generators:
        raise FileNotFoundError(
            f"No trained generator in {rel(cfg.run_dir)}: run notebooks {Path(GAN_NOTEBOOKS['torch']).stem} and/or "
            f"{Path(GAN_NOTEBOOKS['tf']).stem} first (same profile and run_dir)."
        )
    return generators, missing


def train_plan(cfg) -> tuple[dict, dict]:
    """(real training images per class, images to generate per class to reach ``cfg.target_per_class``)."""
    from .data import read_manifest

    manifest = read_manifest(cfg)
    counts = manifest.loc[manifest["split"] == "train", "label"].value_counts().to_dict()
    return counts, plan(counts, cfg.target_per_class)


def chunk_seed(seed: int, class_index: int, chunk: int) -> int:
    """Seed of one generation batch: derived from (seed, class, batch number), so any image can be regenerated."""
    return int(np.random.SeedSequence([seed, class_index, chunk]).generate_state(1)[0] & 0x7FFFFFFF)


def generate(
    framework: str,
    generator,
    plan: dict,
    out_dir,
    seed: int = 0,
    progress: bool = True,
    *,
    image_size: int | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
    sample_fn=None,
    min_range: int = MIN_RANGE,
):
    """Generate ``plan`` images per class, check them, write PNGs + manifest atomically; return the manifest.

    ``out_dir`` is RUN/synthetic/<framework>; manifest paths are relative to RUN (two levels up).
    An existing folder made with the same plan and seed is reused; a different one raises unless
    ``overwrite=True``. ``sample_fn(generator, labels, seed)`` replaces the framework's ``sample`` (tests).
    Images with fewer than FLAT_RANGE gray levels are written but announced (an undertrained generator).
    """
    import pandas as pd
    from PIL import Image

    from .progress import tqdm

    _check_framework(framework)
    out_dir = Path(out_dir)
    plan = {_class_name(k): int(v) for k, v in plan.items()}
    plan = {c: plan[c] for c in CLASSES if c in plan}  # always Normal then COVID
    settings = {"framework": framework, "plan": plan, "seed": int(seed), "batch_size": int(batch_size)}
    _check_own_folder(out_dir)
    run_dir = out_dir.parent.parent
    stamped = _has_split(run_dir)
    if stamped and (run_dir / GAN_FOLDERS[framework]).exists():
        provenance.check(run_dir / GAN_FOLDERS[framework], run_dir, Path(GAN_NOTEBOOKS[framework]).stem)
    if (out_dir / "manifest.csv").exists():
        old = _read_settings(out_dir)
        old = {k: v for k, v in (old or {}).items() if k != "nearly_flat_images"} or None
        made = provenance.read(out_dir) if stamped else None
        if made and provenance.differences(made["fingerprint"], provenance.fingerprint(run_dir)):
            old = {**(old or {}), "split": made["fingerprint"]}  # made from another split: never reused
        if old == settings and not overwrite:
            if progress:
                print(f"{_shown(out_dir)} already holds this plan (seed {seed}): reusing it.")
            return pd.read_csv(out_dir / "manifest.csv")
        if not overwrite:
            raise FileExistsError(
                f"{_shown(out_dir)} already holds synthetic images made with other settings ({old}). "
                "Fix: pass overwrite=True to replace them, or use another run_dir."
            )
    sample_fn = sample_fn or (lambda g, labels, s: _sample(framework, g, labels, s))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.parent.glob(f".{out_dir.name}.*.tmp"), *out_dir.parent.glob(f".{out_dir.name}.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a run killed mid-way (the run dir is locked by one run)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    rows, flat = [], 0
    try:
        total = sum(plan.values())
        bar = tqdm(total=total, desc=f"generating ({framework})", disable=not progress, leave=False)
        for name, count in plan.items():
            k = CLASSES.index(name)
            (tmp / name).mkdir()
            for chunk, start in enumerate(range(0, count, batch_size)):
                n = min(batch_size, count - start)
                s = chunk_seed(seed, k, chunk)
                images = check_images(sample_fn(generator, np.full(n, k, dtype=np.int64), s), image_size, min_range)
                pixels = images.reshape(len(images), -1).astype(np.int16)
                flat += int(((pixels.max(1) - pixels.min(1)) < FLAT_RANGE).sum())
                if len(images) != n:
                    raise SyntheticImageError(f"The generator returned {len(images)} images for {n} labels.")
                for j, img in enumerate(images):
                    rel_path = f"{name}/{name}-{start + j:05d}.png"
                    _write_png(tmp / rel_path, img, Image)
                    rows.append({"path": f"synthetic/{framework}/{rel_path}", "label": name, "seed": s})
                bar.update(n)
        bar.close()
        manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        write_json(tmp / "settings.json", {**settings, "nearly_flat_images": flat})
        write_csv(tmp / "manifest.csv", manifest)
        if stamped:
            provenance.stamp(tmp, run_dir, Path(NOTEBOOK_04).stem)
        _swap_into_place(tmp, out_dir)
    except OSError as exc:  # disk full, read-only run_dir: say so, the previous folder is left as it was
        better = storage_error(exc, out_dir)
        if better is None:
            raise
        raise better from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if flat:
        message = (
            f"{flat} of {len(manifest)} {framework} images are nearly flat (fewer than {FLAT_RANGE} gray levels): "
            "the generator has barely learned; fine for a smoke test, not for an experiment."
        )
        warnings.warn(message, stacklevel=2)
        if progress:
            print("WARNING:", message)
    if progress:
        print(f"wrote {len(manifest)} images to {_shown(out_dir)} ({', '.join(f'{v} {k}' for k, v in plan.items())})")
    return manifest


def generate_run(
    cfg, framework: str, generator, plan: dict, *, overwrite: bool = False, progress: bool = True, **kwargs
):
    """:func:`generate` into RUN/synthetic/<framework> with the run's ``synthesis_seed`` and ``image_size``."""
    out_dir = framework_dir(cfg.run_dir, framework)
    return generate(
        framework,
        generator,
        plan,
        out_dir,
        seed=cfg.synthesis_seed,
        progress=progress,
        image_size=cfg.image_size,
        overwrite=overwrite,
        **kwargs,
    )


def synthesize(cfg, *, overwrite: bool = False, progress: bool = True) -> dict:
    """Notebook 04 in one call: every trained generator tops the classes up to the target; {framework: manifest}.

    The same stages as the notebook (:func:`train_plan`, :func:`load_generators`, :func:`generate_run`); each
    RUN/synthetic/<framework> folder is stamped with the split it was made from (``provenance``).
    """
    _, todo = train_plan(cfg)
    generators, _ = load_generators(cfg, progress=progress)
    return {fw: generate_run(cfg, fw, g, todo, overwrite=overwrite, progress=progress) for fw, g in generators.items()}


def load_synthetic(run_dir, framework: str, image_size: int | None = None, channels: int = 1):
    """Synthetic images (uint8 (N,H,W,channels), resized to image_size) and int64 labels from RUN/synthetic/<fw>."""
    import pandas as pd
    from PIL import Image

    folder = framework_dir(run_dir, framework)
    if not (folder / "manifest.csv").exists():
        raise FileNotFoundError(
            f"No synthetic {framework} images in {_shown(folder)}. Run {NOTEBOOK_04} first "
            f"(it needs the generator trained by {GAN_NOTEBOOKS[framework]})."
        )
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    if _has_split(run_dir):
        provenance.check(folder, run_dir, Path(NOTEBOOK_04).stem)
    manifest = pd.read_csv(folder / "manifest.csv")
    images = []
    for p in manifest["path"]:
        with Image.open(Path(run_dir) / p) as img:
            img = img.convert("L")
            if image_size is not None and img.size != (image_size, image_size):
                img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
            images.append(np.asarray(img, dtype=np.uint8))
    if images:
        arr = np.stack(images)[..., None]
    else:
        arr = np.zeros((0, image_size or 0, image_size or 0, 1), np.uint8)
    if channels == 3:
        arr = np.repeat(arr, 3, axis=-1)
    labels = manifest["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(np.int64)
    return arr, labels


def available(run_dir) -> list[str]:
    """Frameworks whose synthetic images exist in the run directory."""
    return [fw for fw in FRAMEWORKS if (framework_dir(run_dir, fw) / "manifest.csv").exists()]


def _write_png(path: Path, img: np.ndarray, Image) -> None:
    """Gray images (1 channel, or 3 equal channels) are stored as 8-bit gray PNG."""
    if img.shape[-1] == 3 and not (
        np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
    ):
        Image.fromarray(img, mode="RGB").save(path)
    else:
        Image.fromarray(img[..., 0]).save(path)


def _is_own_folder(out_dir: Path) -> bool:
    """A folder :func:`generate` wrote: a manifest.csv with the synthetic manifest's header (settings.json beside it
    since settings were recorded; older folders have the manifest alone)."""
    manifest = out_dir / "manifest.csv"
    if manifest.is_symlink() or not manifest.is_file():
        return False
    try:
        with open(manifest, encoding="utf-8") as fh:
            header = fh.readline().strip()
    except (OSError, UnicodeDecodeError):
        return False
    return header.split(",") == MANIFEST_COLUMNS


def _check_own_folder(out_dir: Path) -> None:
    """Refuse, before anything is written, an ``out_dir`` that replacing would delete someone else's files in:
    a link, a file, or a non-empty folder that is no synthetic folder of this project."""
    fix = "Nothing was written or deleted. Fix: move your files elsewhere, or pass another out_dir / run_dir."
    if out_dir.is_symlink():
        raise FileExistsError(f"{_shown(out_dir)} is a symbolic link; synthetic images are never written through a "
                              f"link. {fix.replace('move your files elsewhere', 'remove the link (not its target)')}")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{_shown(out_dir)} is a file, not a folder of synthetic images. {fix}")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _is_own_folder(out_dir):
        names = sorted(p.name for p in out_dir.iterdir())
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise FileExistsError(
            f"{_shown(out_dir)} is not empty and is no folder of synthetic images this project wrote (no manifest.csv "
            f"of its own; it holds {shown}); replacing it would delete them. {fix}"
        )


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished temporary folder onto out_dir; an old folder is moved away first, then deleted."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, old)
    os.chmod(tmp, 0o777 & ~user_umask())  # mkdtemp makes the folder private
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _shown(out_dir: Path) -> str:
    """RUN/synthetic/<fw> shown as <run dir>/synthetic/<fw> (no machine paths)."""
    return f"{rel(out_dir.parent.parent)}/synthetic/{out_dir.name}"


def _has_split(run_dir: Path) -> bool:
    """Whether the run directory holds notebook 01's split (then inputs and outputs carry provenance stamps)."""
    return (Path(run_dir) / "data" / "manifest.csv").exists() and (Path(run_dir) / "data" / "info.json").exists()


def _read_settings(out_dir: Path) -> dict | None:
    path = out_dir / "settings.json"
    return read_json(path) if path.exists() else None


def _check_framework(framework: str) -> None:
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, not {framework!r}")


def _class_name(name) -> str:
    if isinstance(name, (int, np.integer)):
        return CLASSES[int(name)]
    for c in CLASSES:
        if str(name).lower() == c.lower():
            return c
    raise ValueError(f"Unknown class {name!r}: expected one of {CLASSES}.")
