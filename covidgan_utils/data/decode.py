"""Reading and decoding one image file defensively, the same way every time.

Reading is defensive, because a data folder is whatever a user downloaded: only regular files (a link
is followed, but never to a device, pipe or folder), at most MAX_FILE_BYTES, at most MAX_PIXELS pixels
(Pillow's decompression-bomb guard is an error too), PNG or JPEG by content (not by name), one frame,
EXIF orientation applied. A file that fails any of these is a problem listed with its reason.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from .errors import DataError, _Unusable

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
    for test, what in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
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
