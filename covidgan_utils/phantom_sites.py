"""Sites (hospitals) for the phantoms: a burned-in marker and a brightness offset that may go with COVID.

Hospitals burn a letter into the corner of their X-rays; when one hospital sends most of the COVID
images, "has the letter" predicts "COVID" without any disease in it: a shortcut (DeGrave et al.,
Nature Machine Intelligence 2021). A site here is applied *on top of* a drawn phantom with its own
random stream, so the person, the disease and the scanner are the same with or without a site, and
the default dataset (no site) is unchanged to the bit. The marker's place and shape are known, so
:func:`detect_marker` can count it in any image, real or generated.
"""

from __future__ import annotations

import numpy as np

from . import CLASSES
from .phantom_drawing import EXTERNAL_SHIFT, _check_shift, _image_seed, make_phantom

MARKER_BOX = (0.78, 0.94, 0.82, 0.94)
"""Where the marker sits, as fractions of the side: rows y0..y1, columns x0..x1 (bottom right corner)."""
MARKER_STROKE = 0.05  # stroke width of the letter "L", as a fraction of the side
MARKER_LEVEL = 250  # gray level of the burned-in letter (burned-in text is near white)
MARKER_MIN_LEVEL = 228.0
"""Mean gray level the letter's pixels must reach to count as a marker (no unmarked phantom's corner does)."""
MARKER_MIN_CONTRAST = 20.0
"""Gray levels by which the letter's pixels must outshine the rest of its box (a bright corner is no letter)."""
SITE_STREAM = 7  # spawn-key tag of a site's own random stream (the drawing's stream is left untouched)

def _site(marker_covid: float, marker_normal: float, about: str, brightness_covid: float = 0.0, shift=None) -> dict:
    return {"marker": {"COVID": marker_covid, "Normal": marker_normal},
            "brightness": {"COVID": brightness_covid, "Normal": 0.0}, "shift": shift, "about": about}


SITES = {
    "shortcut": _site(0.8, 0.1, "home hospital: its burned-in letter is on most COVID images and few normal ones"),
    "shortcut-bright": _site(0.8, 0.1, "home hospital: the letter and a slightly brighter exposure go with COVID",
                             brightness_covid=0.03),
    "clean": _site(0.1, 0.1, "home hospital, control: the same letter on as many normal as COVID images"),
    "external": _site(0.1, 0.1, "another hospital: the letter says nothing about the class; a mild scanner shift "
                      "(EXTERNAL_SHIFT)", shift=dict(EXTERNAL_SHIFT)),
}
"""Named sites; a site may also be given as a dict with the keys marker, brightness and shift."""


def check_site(site) -> dict | None:
    """A site by name or as a dict, checked and completed; None stays None (no site: the default phantoms)."""
    if site is None:
        return None
    if isinstance(site, str):
        if site not in SITES:
            raise ValueError(f"Unknown site {site!r}: use one of {', '.join(SITES)} or a dict.")
        return {"name": site, **{k: v for k, v in SITES[site].items() if k != "about"}}
    if not isinstance(site, dict):
        raise TypeError(f"site must be a name ({', '.join(SITES)}) or a dict, got {site!r}.")
    unknown = sorted(set(site) - {"name", "marker", "brightness", "shift"})
    if unknown:
        raise ValueError(f"Unknown site keys {unknown}: use marker, brightness, shift.")
    out = {"name": str(site.get("name", "custom"))}
    for key, low, high in (("marker", 0.0, 1.0), ("brightness", -0.5, 0.5)):
        values = site.get(key) or {}
        if set(values) - set(CLASSES):
            raise ValueError(f"site {key} needs class names {list(CLASSES)}, got {sorted(values)}.")
        values = {c: float(values.get(c, 0.0)) for c in ("COVID", "Normal")}
        if any(not low <= v <= high for v in values.values()):
            raise ValueError(f"site {key} values must lie in [{low}, {high}], got {values}.")
        out[key] = values
    out["shift"] = _check_shift(site.get("shift"))
    return out


def marker_mask(size: int) -> np.ndarray:
    """The burned-in letter "L" at a fixed place (bottom right): a bool (size, size) mask, any size >= 16."""
    y0, y1, x0, x1 = MARKER_BOX
    c = (np.arange(size) + 0.5) / size
    rows, cols = (c >= y0) & (c <= y1), (c >= x0) & (c <= x1)
    vertical = rows[:, None] & (cols & (c <= x0 + MARKER_STROKE))[None, :]
    horizontal = (rows & (c >= y1 - MARKER_STROKE))[:, None] & cols[None, :]
    return vertical | horizontal


def marker_box(size: int) -> np.ndarray:
    """The marker's box (the letter and the background around it): a bool (size, size) mask."""
    y0, y1, x0, x1 = MARKER_BOX
    c = (np.arange(size) + 0.5) / size
    return ((c >= y0) & (c <= y1))[:, None] & ((c >= x0) & (c <= x1))[None, :]


def _gray(images) -> np.ndarray:
    """(N, H, W) view of uint8 images given as (H, W), (N, H, W) or (N, H, W, 1)."""
    x = np.asarray(images)
    if x.ndim == 4:
        x = x[..., 0]
    return x[None] if x.ndim == 2 else x


def stamp_marker(images) -> np.ndarray:
    """A copy of the image(s) with the site's letter burned in (the same shape and dtype as given)."""
    out = np.array(images, copy=True)
    mask = marker_mask(_gray(out).shape[-1])
    if out.ndim == 4:
        out[:, mask, :] = MARKER_LEVEL
    else:
        out[..., mask] = MARKER_LEVEL
    return out


def marker_score(images) -> np.ndarray:
    """Per image: mean gray level of the letter's pixels minus that of the rest of its box (gray levels)."""
    x = _gray(images).astype(np.float32)
    size = x.shape[-1]
    letter, box = marker_mask(size), marker_box(size)
    rest = box & ~letter
    return x[:, letter].mean(axis=1) - x[:, rest].mean(axis=1)


def letter_level(images) -> np.ndarray:
    """Per image: mean gray level of the letter's pixels."""
    x = _gray(images).astype(np.float32)
    return x[:, marker_mask(x.shape[-1])].mean(axis=1)


def detect_marker(images, min_level: float = MARKER_MIN_LEVEL, min_contrast: float = MARKER_MIN_CONTRAST) -> np.ndarray:
    """True where an image carries the letter: near-white letter pixels that outshine the rest of the box.

    On phantoms drawn at their own size it finds every drawn marker and nothing else (a test checks it);
    on generated images it counts letters as bright and as sharp as the site's, a blurred copy scores lower
    (``marker_rates`` also gives the mean letter level, which needs no threshold)."""
    return (letter_level(images) >= min_level) & (marker_score(images) >= min_contrast)


def marker_rates(images, labels) -> dict:
    """The detected marker's rate per class ({"COVID": r, "Normal": r}) and the counts it rests on."""
    found, labels = detect_marker(images), np.asarray(labels)
    out = {"rate": {}, "n": {}, "with_marker": {}, "mean_score": {}, "mean_level": {}}
    scores, levels = marker_score(images), letter_level(images)
    for k, name in enumerate(CLASSES):
        sel = labels == k
        out["n"][name] = int(sel.sum())
        out["with_marker"][name] = int(found[sel].sum())
        out["rate"][name] = float(found[sel].mean()) if sel.any() else float("nan")
        out["mean_score"][name] = float(scores[sel].mean()) if sel.any() else float("nan")
        out["mean_level"][name] = float(levels[sel].mean()) if sel.any() else float("nan")
    return out


def site_rng(seed: int, name: str, i: int) -> np.random.Generator:
    """The site's own random stream for image i of a class (the drawing's stream is not consumed)."""
    parent = _image_seed(seed, name, i)
    return np.random.default_rng(np.random.SeedSequence(parent.entropy, spawn_key=(*parent.spawn_key, SITE_STREAM)))


def apply_site(img: np.ndarray, covid: bool, site: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """(image, image without the marker, marker drawn?) for one drawn phantom at a site (see check_site)."""
    name = "COVID" if covid else "Normal"
    offset = site["brightness"][name]
    out = img
    if offset:
        out = np.clip(img.astype(np.int16) + int(round(offset * 255)), 0, 255).astype(np.uint8)
    has = bool(rng.random() < site["marker"][name])
    return (stamp_marker(out) if has else out), out, has


def draw_phantom(seed: int, name: str, i: int, size: int, site=None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Image i of class ``name`` as the dataset draws it, at ``site``: (image, image without marker, marker?)."""
    site = check_site(site)
    covid = name == "COVID"
    img = make_phantom(np.random.default_rng(_image_seed(seed, name, i)), size, covid=covid,
                       shift=site["shift"] if site else None)
    if site is None:
        return img, img, False
    return apply_site(img, covid, site, site_rng(seed, name, i))


def draw_set(per_class: dict, size: int, seed: int, site=None, start: int = 0) -> dict:
    """Phantoms drawn in memory (the same pixels as generate_dataset writes): images (N, H, W), labels
    (COVID = 1), marker (ground truth: drawn or not) and unmarked (the same images without the letter).

    ``start`` skips the first images of each class (another part of the same dataset)."""
    images, unmarked, labels, marker = [], [], [], []
    for k, name in enumerate(CLASSES):
        for i in range(start, start + int(per_class.get(name, 0))):
            img, plain, has = draw_phantom(seed, name, i, size, site)
            images.append(img)
            unmarked.append(plain)
            labels.append(k)
            marker.append(has)
    return {
        "images": np.stack(images),
        "unmarked": np.stack(unmarked),
        "labels": np.array(labels, dtype=np.int64),
        "marker": np.array(marker, dtype=bool),
    }
