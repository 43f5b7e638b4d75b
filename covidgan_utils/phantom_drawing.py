"""Drawing one phantom: procedural chest-X-ray-like images. PHANTOMS, NOT MEDICAL DATA.

Every image is drawn from a few geometric shapes (body, lungs, ribs, spine, heart, diaphragm,
clavicles) with random person-to-person variation, exposure and noise. The "COVID" class adds
hazy, bilateral, peripheral, lower-zone opacities that loosely mimic ground-glass opacities.
:mod:`covidgan_utils.phantoms` writes them as datasets; :mod:`covidgan_utils.phantom_sites` adds a site
(another hospital's burned-in marker and brightness) on top of a drawing, never inside it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage

from . import CLASSES

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



def _image_seed(seed: int, name: str, i: int) -> np.random.SeedSequence:
    """Child seed of image i of a class: the same image whatever the other counts are."""
    return np.random.SeedSequence(seed, spawn_key=(CLASSES.index(name), i))
