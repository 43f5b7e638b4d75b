"""Built-in phantom dataset: procedural chest-X-ray-like images. PHANTOMS, NOT MEDICAL DATA.

Every image is drawn from a few geometric shapes (body, lungs, ribs, spine, heart, diaphragm,
clavicles) with random person-to-person variation, exposure and noise. The "COVID" class adds
hazy, bilateral, peripheral, lower-zone opacities that loosely mimic ground-glass opacities.
They let every notebook run offline on the real loading path (COVID/, Normal/ PNG folders);
no clinical conclusion can be drawn from them.

The drawing lives in :mod:`covidgan_utils.phantom_drawing`, the sites (another hospital's burned-in
marker, a shortcut study) in :mod:`covidgan_utils.phantom_sites`; their names are importable from here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import CLASSES
from .files import user_umask
from .phantom_drawing import (  # noqa: F401  (re-exported: phantoms.<name> stays importable)
    ACQUISITION,
    EXTERNAL_SHIFT,
    _bands,
    _check_shift,
    _image_seed,
    _polar_lookup,
    _pseudo_angle,
    _sig,
    _smooth_noise,
    _upsampler,
    make_phantom,
)
from .phantom_sites import (  # noqa: F401
    SITES,
    apply_site,
    check_site,
    detect_marker,
    draw_phantom,
    draw_set,
    marker_mask,
    marker_rates,
    marker_score,
    site_rng,
    stamp_marker,
)

PHANTOM_VERSION = 3
"""Bump when the drawing changes: a folder written by another version is not reused."""

DEFAULT_PER_CLASS = {"COVID": 403, "Normal": 721}
MANIFEST = "PHANTOMS.json"


def _counts(per_class: dict | int) -> dict[str, int]:
    """Normalise per_class (an int for both classes, or a dict) to {"COVID": n, "Normal": m}."""
    if isinstance(per_class, (int, np.integer)) and not isinstance(per_class, bool):
        per_class = {name: int(per_class) for name in CLASSES}
    if not isinstance(per_class, dict):
        raise TypeError(f"per_class must be an int or a dict like {DEFAULT_PER_CLASS}, got {per_class!r}.")
    unknown = sorted(set(per_class) - set(CLASSES))
    if unknown:
        raise ValueError(f"Unknown class names {unknown} in per_class; expected {list(CLASSES)}.")
    counts = {name: int(per_class.get(name, 0)) for name in ("COVID", "Normal")}
    if any(n < 0 for n in counts.values()) or sum(counts.values()) == 0:
        raise ValueError(f"per_class needs non-negative counts and at least one image, got {per_class!r}.")
    return counts


def _write_images(job: tuple) -> int:
    """Draw and write one chunk of images (runs in a worker process when parallel)."""
    from PIL import Image, PngImagePlugin

    folder, name, indices, size, seed, shift, site = job
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "covidgan_utils phantom: synthetic, not medical data")
    for i in indices:
        rng = np.random.default_rng(_image_seed(seed, name, i))
        img = make_phantom(rng, size, covid=name == "COVID", shift=shift)
        if site is not None:  # on top of the drawing, from the site's own stream
            img = apply_site(img, name == "COVID", site, site_rng(seed, name, i))[0]
        Image.fromarray(img, mode="L").save(Path(folder) / name / f"{name}-{i + 1}.png", pnginfo=info)
    return len(indices)


def _keep_freed_memory() -> None:
    """In a process of our own: stop glibc returning memory to the OS after every image (~20% of the time)."""
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD = 64 MiB
    except (OSError, AttributeError):
        pass


def _record(counts: dict[str, int], size: int, seed: int, shift: dict | None = None, site: dict | None = None) -> dict:
    record = {
        "what": "covidgan_utils built-in phantoms: synthetic chest-X-ray-like images, NOT medical data",
        "version": PHANTOM_VERSION,
        "per_class": counts,
        "size": int(size),
        "seed": int(seed),
    }
    if shift:
        record["shift"] = shift
    if site:
        record["site"] = site
    return record


def _holds(out_dir: Path, record: dict) -> bool:
    """True when out_dir holds exactly the phantom dataset described by record."""
    try:
        found = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if found != record:
        return False
    for name, n in record["per_class"].items():
        files = {p.name for p in (out_dir / name).glob("*.png")} if (out_dir / name).is_dir() else set()
        if files != {f"{name}-{i + 1}.png" for i in range(n)}:
            return False
    return True


def _describe_existing(out_dir: Path) -> str:
    try:
        found = json.loads((out_dir / MANIFEST).read_text())
        return (
            f"a phantom dataset with per_class={found.get('per_class')}, size={found.get('size')}, "
            f"seed={found.get('seed')}, version={found.get('version')}"
        )
    except (OSError, ValueError):
        return f"{sum(1 for _ in out_dir.iterdir())} entries that are not a phantom dataset"


def _is_stale_phantoms(out_dir: Path, record: dict) -> bool:
    """True when out_dir is a phantom dataset with the same settings written by another generator version."""
    try:
        found = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    same = {k: v for k, v in found.items() if k != "version"} == {k: v for k, v in record.items() if k != "version"}
    return same and found.get("version") != record["version"]


def generate_dataset(
    out_dir,
    per_class: dict | int = DEFAULT_PER_CLASS,
    size: int = 128,
    seed: int = 0,
    progress: bool = True,
    workers: int = 1,
    replace_stale: bool = False,
    shift: dict | None = None,
    site=None,
) -> Path:
    """Write a phantom dataset in the Kaggle layout (out_dir/COVID/COVID-1.png ...), atomically.

    An existing out_dir holding exactly this dataset is returned unchanged; any other non-empty
    out_dir is refused (``replace_stale`` lets a phantom folder from another generator version go).
    ``workers`` > 1 draws in that many forked processes: same bytes; it pays only on idle cores (about
    15 ms of CPU per 128 px image), so the default is 1, which also keeps notebook kernels from forking.
    ``site`` (a name in phantom_sites.SITES or a dict): another hospital, drawn on top of the same people
    (its burned-in marker, brightness and scanner shift); None, the default, draws no site.
    """
    from .progress import tqdm

    out_dir = Path(out_dir)
    counts = _counts(per_class)
    if int(size) < 16:
        raise ValueError(f"Phantom size must be at least 16 px, got {size}.")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    shift = _check_shift(shift)
    site = check_site(site)
    if site and site["shift"]:
        if shift:
            raise ValueError(f"Give the acquisition shift once: site {site['name']!r} has its own ({site['shift']}).")
        shift = site["shift"]
    record = _record(counts, int(size), int(seed), shift, site)
    stale = False
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a folder; choose another OUT_DIR.")
        if _holds(out_dir, record):
            return out_dir
        if any(out_dir.iterdir()):
            stale = replace_stale and _is_stale_phantoms(out_dir, record)
            if not stale:
                raise FileExistsError(
                    f"{out_dir} already holds {_describe_existing(out_dir)}, not the requested phantoms "
                    f"(per_class={counts}, size={size}, seed={seed}, version={PHANTOM_VERSION}). "
                    "Choose another folder or delete this one; nothing was written."
                )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        jobs = []
        for name, n in counts.items():
            (tmp / name).mkdir()
            for start in range(0, n, 25):
                jobs.append((str(tmp), name, list(range(start, min(start + 25, n))), int(size), int(seed), shift, site))
        total = sum(counts.values())
        bar = tqdm(total=total, desc="drawing phantoms", unit="img", disable=not progress)
        if workers > 1:
            import concurrent.futures as cf
            import multiprocessing as mp

            method = "fork" if "fork" in mp.get_all_start_methods() else None
            with cf.ProcessPoolExecutor(
                workers, mp_context=mp.get_context(method), initializer=_keep_freed_memory
            ) as pool:
                for done in pool.map(_write_images, jobs):
                    bar.update(done)
        else:
            for job in jobs:
                bar.update(_write_images(job))
        bar.close()
        (tmp / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
        os.chmod(tmp, 0o777 & ~user_umask())  # mkdtemp makes it private
        if stale:
            trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.replace(out_dir, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        elif out_dir.exists():
            try:
                out_dir.rmdir()  # empty: make way for the rename
            except OSError:
                if _holds(out_dir, record):  # another process (a run beside this one) drew the same dataset meanwhile
                    return out_dir
                raise
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if _holds(out_dir, record):  # another process wrote the same dataset meanwhile
                return out_dir
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def ensure_phantoms(cfg, workers: int = 1) -> Path:
    """Generate (or reuse) the profile's phantom dataset at config.phantom_dir(cfg); returns the folder."""
    from .config import phantom_dir

    return generate_dataset(
        phantom_dir(cfg),
        cfg.phantom_per_class,
        cfg.phantom_size,
        seed=cfg.phantom_seed,
        replace_stale=True,
        workers=workers,
    )


def ensure_external_phantoms(cfg, per_class: dict | None = None, workers: int = 1) -> Path:
    """The demo's external test set: other people (another seed) seen by another scanner (EXTERNAL_SHIFT)."""
    from .config import phantom_root

    counts = _counts(per_class or cfg.val_per_class)
    seed = cfg.phantom_seed + 1000
    out = phantom_root() / f"external-{counts['COVID']}c-{counts['Normal']}n-{cfg.phantom_size}px-seed{seed}"
    return generate_dataset(out, counts, cfg.phantom_size, seed=seed, replace_stale=True, shift=EXTERNAL_SHIFT,
                            workers=workers)


LARGE_TEST_PER_CLASS = {"COVID": 1000, "Normal": 1000}
"""The large independent phantom test set: about 2 points of accuracy resolution (a 95% interval of +-2 points)."""
LARGE_TEST_SMOKE_PER_CLASS = {"COVID": 50, "Normal": 50}
"""The smoke profile's: small, so the tests stay fast; its numbers mean nothing."""
LARGE_TEST_SEED_OFFSET = 2000
"""The large set's phantom seed is the run's phantom_seed + this: other people than training, validation and the
external set (phantom_seed + 1000)."""


def large_test_counts(cfg) -> dict:
    """Images per class of the large independent test set for this profile."""
    return dict(LARGE_TEST_SMOKE_PER_CLASS if cfg.profile == "smoke" else LARGE_TEST_PER_CLASS)


def ensure_large_test_phantoms(cfg, per_class: dict | None = None, progress: bool = True,
                               workers: int = 1) -> Path:
    """The large independent test set (notebook 05): phantoms of other people (another seed), the same scanner
    (no shift). Made once in the gitignored data/ folder (like the built-in dataset) and reused by every run after.
    """
    from .config import phantom_root

    counts = dict(per_class or large_test_counts(cfg))
    seed = cfg.phantom_seed + LARGE_TEST_SEED_OFFSET
    out = phantom_root() / f"large-test-{counts['COVID']}c-{counts['Normal']}n-{cfg.phantom_size}px-seed{seed}"
    return generate_dataset(out, counts, cfg.phantom_size, seed=seed, replace_stale=True, progress=progress,
                            workers=workers)


INDEPENDENT_FACTOR = 4  # the independent check's classifier learns from 4x the training split: a steadier classifier
INDEPENDENT_SEED_OFFSET = 3000  # other people than the split (+0), the external set (+1000) and the large set (+2000)


def independent_counts(cfg, per_class: dict | None = None) -> dict:
    """Images per class of the independent check's set: INDEPENDENT_FACTOR times the training split."""
    return {k: INDEPENDENT_FACTOR * v for k, v in _counts(per_class or cfg.train_per_class).items()}


def ensure_independent_phantoms(cfg, per_class: dict | None = None, workers: int = 1) -> Path:
    """Images new to the GAN and to the class probe, for the independent class-fidelity check: other people of the
    same population (another seed, no scanner shift), INDEPENDENT_FACTOR times the training split per class.

    Measured on the demo run's PyTorch images: the check's COVID difference moved from +0.00 to +0.12 over six
    draws of 932 images, and from +0.04 to +0.08 over three draws of four times as many."""
    from .config import phantom_root

    counts = independent_counts(cfg, per_class)
    seed = cfg.phantom_seed + INDEPENDENT_SEED_OFFSET
    out = phantom_root() / f"independent-{counts['COVID']}c-{counts['Normal']}n-{cfg.phantom_size}px-seed{seed}"
    return generate_dataset(out, counts, cfg.phantom_size, seed=seed, replace_stale=True, progress=False,
                            workers=workers)


PARALLEL_FROM = 500
"""draw_all uses its worker processes only for a set of at least this many images (smaller ones: no fork)."""


def draw_all(cfg, workers: int = 2) -> list[Path]:
    """Every phantom set a run reads (the dataset, the external and large test sets, the independent check's
    images), drawn before the notebooks start, in ``workers`` processes for sets of PARALLEL_FROM images or more; a
    set already drawn is reused as it is. Returns the folders. ``covidgan run`` calls it on phantom runs: its own
    process has no notebook kernel to fork, and on 2 idle cores a first run's drawing takes about half as long.
    """
    plan = [
        (cfg.phantom_per_class, lambda w: ensure_phantoms(cfg, workers=w)),
        (cfg.val_per_class, lambda w: ensure_external_phantoms(cfg, workers=w)),
        (large_test_counts(cfg), lambda w: ensure_large_test_phantoms(cfg, progress=False, workers=w)),
        (independent_counts(cfg), lambda w: ensure_independent_phantoms(cfg, workers=w)),
    ]
    return [ensure(workers if sum(_counts(counts).values()) >= PARALLEL_FROM else 1) for counts, ensure in plan]


def main(argv=None) -> int:
    """``python -m covidgan_utils phantoms OUT_DIR --per-class N --size S --seed K``."""
    import time

    ap = argparse.ArgumentParser(
        prog="python -m covidgan_utils phantoms",
        description="Write the built-in phantom dataset (synthetic chest-X-ray-like images, not medical data) "
        "as OUT_DIR/COVID/*.png and OUT_DIR/Normal/*.png.",
    )
    ap.add_argument("out_dir", metavar="OUT_DIR")
    ap.add_argument(
        "--per-class", type=int, default=None, metavar="N", help="images per class (default: 403 COVID, 721 Normal)"
    )
    ap.add_argument("--covid", type=int, default=None, metavar="N", help="COVID images (overrides --per-class)")
    ap.add_argument("--normal", type=int, default=None, metavar="M", help="Normal images (overrides --per-class)")
    ap.add_argument("--size", type=int, default=128, metavar="S", help="image side in pixels (default 128)")
    ap.add_argument("--seed", type=int, default=0, metavar="K", help="seed (default 0)")
    ap.add_argument("--workers", type=int, default=1, help="processes drawing images (default 1; 2 pays on idle cores)")
    ap.add_argument("--site", default=None, choices=sorted(SITES),
                    help="draw the images at a site (a hospital's burned-in marker; default: none)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    counts = dict(DEFAULT_PER_CLASS) if args.per_class is None else {name: args.per_class for name in CLASSES}
    if args.covid is not None:
        counts["COVID"] = args.covid
    if args.normal is not None:
        counts["Normal"] = args.normal
    _keep_freed_memory()  # this command's own process
    start = time.perf_counter()
    try:
        out = generate_dataset(
            args.out_dir, counts, args.size, args.seed, progress=not args.quiet, workers=args.workers, site=args.site
        )
    except (FileExistsError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{sum(counts.values())} phantom images ({counts['COVID']} COVID, {counts['Normal']} Normal, {args.size} px, "
        f"seed {args.seed}; synthetic, not medical data) in {out} ({time.perf_counter() - start:.1f} s)"
    )
    return 0
