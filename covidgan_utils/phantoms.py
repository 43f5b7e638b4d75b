"""Built-in phantom dataset: procedural chest-X-ray-like images. PHANTOMS, NOT MEDICAL DATA.

Every image is drawn from a few geometric shapes (body, lungs, ribs, spine, heart, diaphragm,
clavicles) with random person-to-person variation, exposure and noise. The "COVID" class adds
hazy, bilateral, peripheral, lower-zone opacities that loosely mimic ground-glass opacities.
They let every notebook run offline on the real loading path (COVID/, Normal/ PNG folders);
no clinical conclusion can be drawn from them.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import CLASSES
from .files import user_umask

PHANTOM_VERSION = 3
"""Bump when the drawing changes: a folder written by another version is not reused."""

DEFAULT_PER_CLASS = {"COVID": 403, "Normal": 721}
MANIFEST = "PHANTOMS.json"

ACQUISITION = ("brightness", "contrast", "blur", "noise")
"""An acquisition shift (another hospital's scanner): brightness offset, contrast gain, blur and noise factors."""
EXTERNAL_SHIFT = {"brightness": 0.04, "contrast": 0.88, "blur": 1.4, "noise": 1.6}
"""The mild shift of the demo's external test set: brighter, flatter, softer and noisier than home."""


def _sig(x: np.ndarray) -> np.ndarray:
    """Logistic function: soft edges for masks."""
    return 0.5 + 0.5 * np.tanh(0.5 * x)


@functools.lru_cache(maxsize=32)
def _upsampler(size: int, cells: int) -> np.ndarray:
    """Gaussian interpolation weights (size x cells+1) from a coarse noise grid to pixel rows."""
    t = (np.arange(size) + 0.5) / size * cells
    w = np.exp(-0.5 * ((t[:, None] - np.arange(cells + 1)[None, :]) / 0.6) ** 2)
    return (w / np.sqrt((w**2).sum(1, keepdims=True))).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise of unit variance with ``cells`` blobs across; the same pattern at any size."""
    w = _upsampler(size, cells)
    return w @ rng.standard_normal((cells + 1, cells + 1)).astype(np.float32) @ w.T


def _polar_lookup(grid: np.ndarray, turn: np.ndarray, radial: np.ndarray) -> np.ndarray:
    """Bilinear lookup in an (angle, radius) noise grid; ``turn`` is periodic with period 1, ``radial`` in cells."""
    n_a, n_r = grid.shape
    flat = np.concatenate([grid, grid[:1]]).ravel()  # repeat the first row: the angle wraps around
    a = np.minimum((turn - np.floor(turn)) * n_a, n_a - 1e-3)
    b = np.clip(radial, 0, n_r - 1.001)
    fa, fb = a - np.floor(a), b - np.floor(b)
    a0, b0 = a.astype(np.int32), b.astype(np.int32)
    idx = a0 * n_r + b0
    top = flat.take(idx) * (1 - fb) + flat.take(idx + 1) * fb
    bottom = flat.take(idx + n_r) * (1 - fb) + flat.take(idx + n_r + 1) * fb
    return top * (1 - fa) + bottom * fa


def _pseudo_angle(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """A cheap monotonic stand-in for the angle of (dx, dy), in turns [0, 1) (no arctan needed)."""
    p = dy / (np.abs(dx) + np.abs(dy) + 1e-6)  # in [-1, 1]
    return np.where(dx < 0, 2 - p, np.where(dy < 0, 4 + p, p)) * 0.25


def _bands(phase: np.ndarray, duty: float, soft: float) -> np.ndarray:
    """Periodic bone bands along ``phase`` (one per unit): a bright core with brighter cortical edges."""
    d = np.abs(phase - np.floor(phase) - 0.5)  # 0 at the middle of a band, 0.5 between bands
    core = _sig((duty / 2 - d) / soft)
    return core * (0.8 + 0.3 * (d / (duty / 2)) ** 2)


def make_phantom(
    rng: np.random.Generator, size: int, covid: bool, severity: float | None = None, shift: dict | None = None
) -> np.ndarray:
    """Draw one chest-X-ray-like phantom (uint8, size x size); COVID adds ground-glass-like opacities.

    ``severity`` in [0, 1] sets the extent and density of the opacities (drawn at random when None,
    mild cases included); it is ignored for normal images. ``shift`` (keys in ACQUISITION) draws the same
    person as another scanner would: the random draws are the same, only the acquisition changes.
    """
    shift = _check_shift(shift)
    if size < 16:
        raise ValueError(f"Phantom size must be at least 16 px, got {size}.")
    u = rng.uniform
    # --- person and positioning: rotation, zoom, shift ---
    angle = np.deg2rad(rng.normal(0, 3.0))
    zoom = u(0.9, 1.12)
    shift_x, shift_y = rng.normal(0, 0.04), rng.normal(0.03, 0.04)
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1).astype(np.float32)
    gy, gx = np.meshgrid(c, c, indexing="ij")
    gx, gy = (gx - shift_x) / zoom, (gy - shift_y) / zoom
    X = np.float32(np.cos(angle)) * gx + np.float32(np.sin(angle)) * gy
    Y = np.float32(-np.sin(angle)) * gx + np.float32(np.cos(angle)) * gy
    ax = np.abs(X)
    # each side's anatomy is drawn only on the columns that can reach it (a little past the midline)
    half = {}
    for s in (-1, 1):
        cols = np.flatnonzero((s * X > -0.12).any(axis=0))
        half[s] = slice(cols[0], cols[-1] + 1) if len(cols) else slice(None)
    px = 2.0 / size / zoom  # one pixel in body units
    edge = max(0.6 * px, 0.006)  # soft-edge width

    body_w = u(0.86, 1.04)
    apex_y = u(-0.8, -0.66)
    base_y = u(0.42, 0.6)
    lung_depth = u(0.58, 0.74)

    # --- body: neck, shoulders, chest wall ---
    shoulder_y = -0.8 + 0.45 * np.clip(ax / body_w - 0.3, 0, None) ** 2 + rng.normal(0, 0.03)
    wall = body_w * (0.96 + 0.06 * np.clip(Y + 0.2, -1, 0.6))
    thickness = np.sqrt(np.clip(1 - (ax / (wall * 1.1)) ** 2, 0, None))
    torso = np.maximum(_sig((Y - shoulder_y) / 0.04), 0.85 * _sig((0.22 - ax) / 0.03)) * _sig((wall - ax) / 0.025)
    T = (0.82 * thickness + 0.25 * np.exp(-((X / 0.3) ** 2))) * torso  # thickest at the mediastinum
    if rng.random() < 0.5:  # arms at the sides
        arm = np.clip(1 - ((ax - body_w - u(0.16, 0.26)) / 0.14) ** 2, 0, None)
        T += 0.7 * np.sqrt(arm) * _sig((Y + 0.75) / 0.05)

    # --- heart (image right of centre), merging into the diaphragm ---
    heart_w = u(0.3, 0.4)
    hcx, hcy = u(0.08, 0.15), base_y - u(0.1, 0.18)
    ha = np.deg2rad(u(10, 25))
    hxr = np.float32(np.cos(ha)) * (X - hcx) + np.float32(np.sin(ha)) * (Y - hcy)
    hyr = np.float32(-np.sin(ha)) * (X - hcx) + np.float32(np.cos(ha)) * (Y - hcy)
    heart = _sig((1 - np.sqrt((hxr / heart_w) ** 2 + (hyr / (heart_w * u(0.62, 0.76))) ** 2)) / 0.05)

    # --- lungs (the patient's right lung on the image's left) ---
    air = np.zeros_like(X)
    lung_any = np.zeros_like(X)
    regions = {}
    for s in (-1, 1):
        Xs, Ys = X[:, half[s]], Y[:, half[s]]
        uu = s * Xs  # distance from the midline, outwards
        med = u(0.08, 0.13)
        lat = body_w * u(0.74, 0.84)
        base = base_y + (0.04 if s > 0 else 0.0) + rng.normal(0, 0.02)
        top = apex_y + rng.normal(0, 0.02)
        v = np.clip((Ys - top) / (base - top), 0, 1.2)
        width = lat - med
        vc = np.clip(v, 0, 1)
        u_lat = med + width * (1 - (1 - vc) ** 2) ** 0.35 * (1 + 0.04 * np.sin(np.pi * vc))
        u_med = med + 0.05 * np.clip(0.25 - vc, 0, None)  # narrower at the apex
        p = np.clip((uu - med) / width, 0, 1)
        dia_y = base - u(0.14, 0.22) * np.clip(np.sin(np.pi * p**0.8), 0, 1) ** 0.7
        apex = top + 0.12 * np.clip((0.3 - p) / 0.3, 0, 1) ** 2 + 0.2 * np.clip((p - 0.3) / 0.7, 0, 1) ** 2
        margin = np.minimum(np.minimum(uu - u_med, u_lat - uu), np.minimum(dia_y - Ys, Ys - apex))
        mask = _sig(margin / edge)
        regions[s] = (mask, p, v)
        lung_any[:, half[s]] = np.maximum(lung_any[:, half[s]], mask)
        # more soft tissue in front of the lower lung and near the hilum
        air[:, half[s]] += mask * (1 - 0.18 * vc - 0.12 * np.clip(1 - p * 2.5, 0, 1))
    air *= 1 - 0.9 * heart
    T -= lung_depth * air
    T += 0.05 * air * _smooth_noise(rng, size, 7) + 0.035 * air * _smooth_noise(rng, size, 30)

    # vessels radiating from the hila, slightly wavy
    wiggle = _smooth_noise(rng, size, 16)
    for s in (-1, 1):
        Xs, Ys, Ts = X[:, half[s]], Y[:, half[s]], T[:, half[s]]
        hx, hy = s * u(0.15, 0.2), u(-0.1, 0.02)
        dx, dy = s * (Xs - hx), Ys - hy
        r = np.sqrt(dx * dx + dy * dy)
        t01 = _pseudo_angle(dx, dy) + 0.006 * wiggle[:, half[s]]
        rr = np.clip(r, 0, 1.4)
        # fine and coarse angular noise, summed on the fine (angle, radius) grid, then one lookup
        turns, cells = np.meshgrid(np.arange(96) / 96, np.arange(10) * 4 / 7, indexing="ij")
        coarse = _polar_lookup(rng.standard_normal((60, 6)).astype(np.float32), turns, cells)
        grid = rng.standard_normal((96, 10)).astype(np.float32) + 0.7 * coarse
        vessels = np.clip(_polar_lookup(grid, t01, rr * 7) - 0.5, 0, None)
        Ts += 0.16 * vessels * np.exp(-r / 0.45) * regions[s][0]
        Ts += 0.2 * np.exp(-(((Xs - hx) / 0.06) ** 2 + ((Ys - hy) / 0.13) ** 2))  # hilum

    # --- spine and trachea, aortic knob ---
    mx = rng.normal(0, 0.015)
    vert = 0.8 + 0.2 * np.cos(2 * np.pi * (Y / u(0.1, 0.13) + u(0, 1)))
    T += 0.12 * _sig((0.07 - np.abs(X - mx)) / edge) * vert
    T -= 0.2 * _sig((0.032 - np.abs(X - mx)) / edge) * _sig((-0.25 - Y) / 0.05)
    T += 0.12 * _sig((0.075 - np.sqrt((X - 0.11 - mx) ** 2 + (Y + u(0.22, 0.32)) ** 2)) / 0.015)

    # --- ribs (one phase field per side), clavicles, scapulae ---
    spacing = (base_y - apex_y) / u(7.8, 8.6)
    first = apex_y - 0.08
    for s in (-1, 1):
        Ys, Ts = Y[:, half[s]], T[:, half[s]]
        uu = s * X[:, half[s]]
        lat = body_w * 0.9
        chest = _sig((lat - uu) / 0.03) * _sig((base_y + 0.1 - Ys) / 0.06) * (0.3 + 0.7 * lung_any[:, half[s]])
        # posterior ribs: from the spine, briefly up, then curving down to the lateral wall
        post = (Ys - first + 0.15 * uu - 0.6 * uu**2) / spacing
        Ts += 0.13 * _bands(post, 0.36, 0.05) * _sig((uu - 0.05) / 0.015) * _sig(post / 0.1) * chest
        # anterior ribs: from the lateral wall down towards the sternum, fainter
        ant = (Ys - first - 0.25 - 0.55 * (lat - uu) + 0.2 * (lat - uu) ** 2) / spacing
        Ts += 0.06 * _bands(ant, 0.3, 0.06) * _sig((uu - 0.28) / 0.04) * _sig(ant / 0.1) * chest
        # clavicle: from the sternal notch outwards and slightly up
        cy = apex_y + 0.1 + rng.normal(0, 0.03) - 0.24 * (uu - 0.1) + 0.12 * (uu - 0.1) ** 2
        Ts += (
            0.25
            * _bands((Ys - cy) / 0.09 + 0.5, 0.8, 0.06)
            * (np.abs(Ys - cy) < 0.045)
            * _sig((uu - 0.07) / 0.02)
            * _sig((0.75 - uu) / 0.05)
        )
        Ts += 0.07 * _sig((uu - body_w * u(0.74, 0.84)) / 0.04) * _sig((-0.05 - Ys) / 0.1) * _sig((body_w - uu) / 0.03)

    # --- breast shadows (either class): lower-lateral haze, a confounder ---
    if rng.random() < 0.4:
        amp = u(0.05, 0.16)
        by = base_y - u(0.0, 0.12)
        for s in (-1, 1):
            blob = 1 - np.sqrt(((s * X - 0.52) / 0.42) ** 2 + ((Y - by) / 0.3) ** 2)
            T += amp * _sig(blob / 0.1) * _sig((by + 0.22 - Y) / 0.03)
    # abdomen: bowel and stomach gas under the diaphragm
    below = _sig((Y - base_y - 0.05) / 0.05) * torso
    T -= 0.08 * below * np.clip(_smooth_noise(rng, size, 14), 0, None)
    if rng.random() < 0.6:
        sx, sy = u(0.3, 0.5), base_y + u(0.04, 0.14)
        T -= u(0.12, 0.28) * _sig((1 - np.sqrt(((X - sx) / u(0.08, 0.15)) ** 2 + ((Y - sy) / 0.07) ** 2)) / 0.15)

    # --- COVID: bilateral, peripheral, lower-zone ground-glass opacities ---
    # drawn for every image (same random stream), applied only to COVID: a normal and a COVID image
    # from the same seed show the same person
    drawn = 0.1 + 0.9 * rng.beta(2.2, 1.2)
    sides = u(0.6, 1.0, 2)
    patches = _smooth_noise(rng, size, 10) + 0.5 * _smooth_noise(rng, size, 22)
    if covid:
        sev = float(np.clip(drawn if severity is None else severity, 0, 1))
        for s, side in zip((-1, 1), sev * sides):
            mask, p, v = regions[s]
            zone = _sig((p - (0.75 - 0.45 * side)) / 0.1) * _sig((v - (0.7 - 0.5 * side)) / 0.12)
            patchy = _sig((patches[:, half[s]] + 0.8 - 1.6 * (1 - side)) / 0.45)
            T[:, half[s]] += (0.12 + 0.65 * side) * lung_depth * zone * patchy * mask

    # --- exposure, contrast, blur and noise ---
    k = u(1.3, 2.2)
    img = (1 - np.exp(-np.clip(T, 0, None) * k)) / (1 - math.exp(-1.3 * k))
    img = img ** u(0.75, 1.35)
    img = img * u(0.85, 1.05) + rng.normal(0.0, 0.04)
    if shift:
        img = (img - 0.5) * shift.get("contrast", 1.0) + 0.5 + shift.get("brightness", 0.0)
    sigma = u(0.3, 0.9) * size / 128 * (shift.get("blur", 1.0) if shift else 1.0)
    if sigma > 0.15:
        img = ndimage.gaussian_filter(img, sigma)
    noise = u(0.008, 0.03) * (shift.get("noise", 1.0) if shift else 1.0)
    if rng.random() < 0.25:  # a burned-in marker in a corner, in either class
        m = max(size // 16, 2)
        r0 = int(u(0.02, 0.06) * size)
        c0 = int(u(0.02, 0.06) * size) if rng.random() < 0.5 else size - int(u(0.02, 0.06) * size) - m
        img[r0 : r0 + m, c0 : c0 + m] = 0.95
    img = img + noise * rng.standard_normal(img.shape, dtype=np.float32)  # drawn last: the rest is size-independent
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _check_shift(shift: dict | None) -> dict | None:
    if not shift:
        return None
    unknown = sorted(set(shift) - set(ACQUISITION))
    if unknown:
        raise ValueError(f"Unknown acquisition shift {unknown}: use {', '.join(ACQUISITION)}.")
    for key, value in shift.items():
        if not isinstance(value, (int, float)) or (key != "brightness" and value <= 0) or abs(value) > 10:
            raise ValueError(f"Acquisition shift {key}={value!r}: a factor > 0 (brightness: an offset in [-1, 1]).")
    return {k: float(v) for k, v in shift.items()}


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


def _image_seed(seed: int, name: str, i: int) -> np.random.SeedSequence:
    """Child seed of image i of a class: the same image whatever the other counts are."""
    return np.random.SeedSequence(seed, spawn_key=(CLASSES.index(name), i))


def _write_images(job: tuple) -> int:
    """Draw and write one chunk of images (runs in a worker process when parallel)."""
    from PIL import Image, PngImagePlugin

    folder, name, indices, size, seed, shift = job
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "covidgan_utils phantom: synthetic, not medical data")
    for i in indices:
        rng = np.random.default_rng(_image_seed(seed, name, i))
        img = make_phantom(rng, size, covid=name == "COVID", shift=shift)
        Image.fromarray(img, mode="L").save(Path(folder) / name / f"{name}-{i + 1}.png", pnginfo=info)
    return len(indices)


def _keep_freed_memory() -> None:
    """In a process of our own: stop glibc returning memory to the OS after every image (~20% of the time)."""
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD = 64 MiB
    except (OSError, AttributeError):
        pass


def _record(counts: dict[str, int], size: int, seed: int, shift: dict | None = None) -> dict:
    record = {
        "what": "covidgan_utils built-in phantoms: synthetic chest-X-ray-like images, NOT medical data",
        "version": PHANTOM_VERSION,
        "per_class": counts,
        "size": int(size),
        "seed": int(seed),
    }
    if shift:
        record["shift"] = shift
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
) -> Path:
    """Write a phantom dataset in the Kaggle layout (out_dir/COVID/COVID-1.png ...), atomically.

    An existing out_dir holding exactly this dataset is returned unchanged; any other non-empty
    out_dir is refused (``replace_stale`` lets a phantom folder from another generator version go).
    ``workers`` > 1 draws in that many forked processes: same bytes; it pays only on idle cores (about
    15 ms of CPU per 128 px image), so the default is 1, which also keeps notebook kernels from forking.
    """
    from .progress import tqdm

    out_dir = Path(out_dir)
    counts = _counts(per_class)
    if int(size) < 16:
        raise ValueError(f"Phantom size must be at least 16 px, got {size}.")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    shift = _check_shift(shift)
    record = _record(counts, int(size), int(seed), shift)
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
                jobs.append((str(tmp), name, list(range(start, min(start + 25, n))), int(size), int(seed), shift))
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
            out_dir.rmdir()  # empty: make way for the rename
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


def ensure_phantoms(cfg) -> Path:
    """Generate (or reuse) the profile's phantom dataset at config.phantom_dir(cfg); returns the folder."""
    from .config import phantom_dir

    return generate_dataset(
        phantom_dir(cfg),
        cfg.phantom_per_class,
        cfg.phantom_size,
        seed=cfg.phantom_seed,
        replace_stale=True,
    )


def ensure_external_phantoms(cfg, per_class: dict | None = None) -> Path:
    """The demo's external test set: other people (another seed) seen by another scanner (EXTERNAL_SHIFT)."""
    from .config import phantom_root

    counts = _counts(per_class or cfg.val_per_class)
    seed = cfg.phantom_seed + 1000
    out = phantom_root() / f"external-{counts['COVID']}c-{counts['Normal']}n-{cfg.phantom_size}px-seed{seed}"
    return generate_dataset(out, counts, cfg.phantom_size, seed=seed, replace_stale=True, shift=EXTERNAL_SHIFT)


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
            args.out_dir, counts, args.size, args.seed, progress=not args.quiet, workers=args.workers
        )
    except (FileExistsError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{sum(counts.values())} phantom images ({counts['COVID']} COVID, {counts['Normal']} Normal, {args.size} px, "
        f"seed {args.seed}; synthetic, not medical data) in {out} ({time.perf_counter() - start:.1f} s)"
    )
    return 0
