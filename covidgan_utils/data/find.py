"""Finding the images of each class in a data folder, and writing file names as manifest text.

Paths in the manifest are relative to the data root and are text: bytes that are not UTF-8, control
characters and "%" itself are written as %XX (``relative_name``), so every file name survives the round
trip through the CSV (``path_of``) and ordinary names stay as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import CLASSES
from ..runs import MARKER
from .errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
IGNORED_FOLDERS = {"masks", "mask", "__macosx"}
# Written by the project into each run directory it makes; a folder holding it is never scanned as data.
RUN_MARKER = MARKER


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
        raise DataError(
            f"Data directory {data_dir} is a file, not a folder. Fix: pass the folder holding COVID/ and Normal/."
        )
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
