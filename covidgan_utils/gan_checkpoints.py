"""Checkpoints of the GAN training loop: folders, reading, checking, saving, rotation, resuming.

The layout is the same in both frameworks::

    OUT/checkpoints/epoch_0010/state.json    epoch, history, build kwargs, options (written last)
    OUT/checkpoints/epoch_0010/weights.*     models, optimizers, random state (the framework's own format)

A folder is written under a temporary name and renamed when complete. Rotation deletes only real folders (never
a symbolic link, nor anything through one) that load as this framework's checkpoints and hold nothing else;
anything else is reported and left in place.
Every function takes the framework module ``fw`` (``torch_gan`` or ``tf_gan``) for its NAME, WEIGHT_FILES,
save_checkpoint, restore_checkpoint and build_generator.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

from . import files
from .config import rel
from .files import write_json

LAYOUT = 2  # checkpoint layout version, stored in every state.json
STATE = "state.json"
STATE_KEYS = {"epoch", "history", "generator_kwargs", "discriminator_kwargs", "options"}
_FOLDER_RE = re.compile(r"^epoch_(\d{4,})$")
_OLD_FILE_RE = re.compile(r"^ckpt_(\d{4,})\.pt$")  # the PyTorch files of the earlier layout


class OldLayoutError(FileExistsError):
    """Checkpoints of an earlier layout stand in the folder: this version neither resumes nor deletes them."""


def checkpoint_folders(out_dir) -> list[Path]:
    """Folders named like checkpoints (epoch_NNNN) in out_dir/checkpoints, newest first.

    A name is not proof: loading skips damaged or foreign folders and rotation never deletes them.
    """
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _FOLDER_RE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def old_layout(out_dir) -> list[str]:
    """Names of checkpoints in the earlier layouts (PyTorch ckpt_NNNN.pt files, TensorFlow ckpt.* folders)."""
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if (p.is_file() and _OLD_FILE_RE.match(p.name))
        or (p.is_dir() and _FOLDER_RE.match(p.name) and (p / "ckpt.index").exists())
    )


def old_layout_message(out_dir, names: list[str]) -> str:
    return (
        f"{rel(Path(out_dir) / 'checkpoints')} holds {', '.join(names[:3])}: checkpoints in the layout of an earlier "
        "version of this project, which this version cannot resume or load. To train again from the start, delete "
        f"{rel(out_dir)} (or move it away), or use a new run_dir; nothing was deleted."
    )


def _epoch_of(path: Path) -> int:
    return int(_FOLDER_RE.match(path.name).group(1))


def read_state(fw, path: Path) -> dict:
    """state.json of a checkpoint folder of framework ``fw``, checked against the folder's name and layout."""
    state = json.loads((path / STATE).read_text())
    if not isinstance(state, dict) or state.get("layout") != LAYOUT or state.get("framework") != fw.NAME:
        raise ValueError(f"its {STATE} is not a layout-{LAYOUT} {fw.NAME} checkpoint's")
    missing = sorted(STATE_KEYS - set(state))
    if missing:
        raise ValueError(f"its {STATE} lacks {', '.join(missing)}")
    if int(state["epoch"]) != _epoch_of(path):
        raise ValueError(f"it holds epoch {state['epoch']}, not the epoch in its name")
    return state


# Checkpoint folders known to load, by resolved path -> their files' (name, size, mtime_ns): written or read here.
_VERIFIED: dict[str, tuple] = {}
_REPORTED: set[str] = set()  # unloadable folders already explained once by rotation
_ADVICE = (
    "weights_only",
    "weights only",
    "safe_globals",
    "trust",
    "pickle_module",
    "file an issue",
    "documentation of",
)


def _stamp(path: Path) -> tuple:
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()))


def _mark_verified(path: Path) -> None:
    with contextlib.suppress(OSError):
        _VERIFIED[str(path.resolve())] = _stamp(path)


def _own(fw, name: str) -> bool:
    return name == STATE or bool(fw.WEIGHT_FILES.match(name))


def load_error(fw, path: Path) -> Exception | None:
    """None if ``path`` is a complete checkpoint folder of ``fw`` (checked once per process), else why not.

    Complete: only the files a checkpoint write makes, a state.json of this layout and of the epoch in the
    folder's name, and weights that the framework reads in full.
    """
    try:
        if _VERIFIED.get(str(path.resolve())) == _stamp(path):
            return None
        foreign = sorted(p.name for p in path.iterdir() if not (p.is_file() and _own(fw, p.name)))
        if foreign:
            raise ValueError(f"it holds {', '.join(foreign[:3])}, which a checkpoint does not")
        read_state(fw, path)
        fw.restore_checkpoint(path)  # no objects: read everything, change nothing
    except Exception as err:  # noqa: BLE001 - anything that does not load is not ours to delete
        return err
    _mark_verified(path)
    return None


def why_not(err: Exception) -> str:
    """A short reason from a load error, without a framework's advice to load the file unsafely."""
    text = str(err).split("WeightsUnpickler error:")[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not any(word in line.lower() for word in _ADVICE)]
    reason = (lines or [""])[0].split(". ")[0].strip()[:160] or "it holds something other than tensors and plain values"
    return f"{type(err).__name__}: {reason}"


def unloadable_message(path: Path, err: Exception, rotating: bool = False) -> str:
    what = "Not deleting old checkpoint" if rotating else "Skipping unreadable checkpoint"
    return (
        f"{what} {path.name}: not a checkpoint this project wrote, or it is damaged "
        f"({why_not(err)}). It was left in place; move it away or delete it yourself."
    )


def _set_aside(path: Path, err: Exception) -> None:
    """Rename an unloadable entry that stands where a new checkpoint goes; it is kept, never deleted."""
    n, aside = 1, path.with_name(path.name + ".unreadable")
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.unreadable-{n}")
    path.rename(aside)
    print(
        f"{path.name} could not be loaded: not a checkpoint this project wrote, or it is damaged ({why_not(err)}). "
        f"A new checkpoint takes its name, so it was renamed {aside.name} and left in place; "
        "move it away or delete it yourself.",
        file=sys.stderr,
    )


def _remove(fw, path: Path) -> None:
    """Delete a verified checkpoint folder: the files a checkpoint write makes, then the folder if it is empty.
    A symbolic link is never followed: its target is not this run's to delete."""
    if path.is_symlink():
        return
    for p in path.iterdir():
        if p.is_file() and _own(fw, p.name):
            p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something else appeared meanwhile: the folder stays
        path.rmdir()
    _VERIFIED.pop(str(path.resolve()), None)


def _rotate(fw, out_dir: Path, epoch: int, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete checkpoints up to ``epoch``; delete only older complete ones.

    Folders that do not load are never deleted (they are explained once), and folders numbered after ``epoch``
    are not part of this run's line of training, so they are not touched at all.
    """
    kept = 0
    for path in checkpoint_folders(out_dir):
        if _epoch_of(path) > epoch:
            continue
        if path.is_symlink():  # never followed: what it points to was not written by this run
            if str(path) not in _REPORTED:
                _REPORTED.add(str(path))
                print(
                    f"Not deleting old checkpoint {path.name}: it is a symbolic link (to {os.readlink(path)}), and "
                    "rotation never deletes through a link. It was left in place; remove the link yourself "
                    "(that removes the link, not its target).",
                    file=sys.stderr,
                )
            continue
        err = load_error(fw, path)
        if err is not None:
            if str(path) not in _REPORTED:
                _REPORTED.add(str(path))
                print(unloadable_message(path, err, rotating=True), file=sys.stderr)
            continue
        kept += 1
        if kept > keep_last:
            _remove(fw, path)


def save(fw, out_dir: Path, objects: dict, state: dict, keep_last: int) -> Path:
    """Write one checkpoint folder (weights, then state.json) under a temporary name and rename it when complete."""
    folder = Path(out_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch_{state['epoch']:04d}"
    tmp = folder / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    fw.save_checkpoint(tmp, objects)
    write_json(tmp / STATE, {"layout": LAYOUT, "framework": fw.NAME, **state})
    final = folder / name
    if final.exists() or final.is_symlink():  # a rerun of the same epoch: replace our own folder, keep anything else
        err = load_error(fw, final) if final.is_dir() else ValueError("it is not a checkpoint folder")
        if err is not None:
            _set_aside(final, err)
        else:
            old = folder / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
            _remove(fw, old)
    os.replace(tmp, final)
    _mark_verified(final)
    if keep_last:
        _rotate(fw, out_dir, state["epoch"], keep_last)
    return final


def check_folder(out_dir: Path, resume: bool) -> None:
    """Before training: remove half-written files of a killed run; refuse checkpoints of an earlier layout, and
    existing checkpoints unless ``resume``."""
    for name in files.remove_leftovers(out_dir / "checkpoints"):
        print(f"Removed the unfinished checkpoint file {name} of an interrupted run.", file=sys.stderr)
    if old := old_layout(out_dir):
        raise OldLayoutError(old_layout_message(out_dir, old))
    if not resume and checkpoint_folders(out_dir):
        raise FileExistsError(
            f"{rel(out_dir)} already holds checkpoints; pass resume=True to continue, or choose a new out_dir."
        )


def restore_newest(fw, out_dir: Path, objects: dict, fingerprint: dict) -> dict | None:
    """Restore the newest loadable checkpoint into ``objects``; refuse one made for other models or options."""
    for path in checkpoint_folders(out_dir):
        try:
            state = read_state(fw, path)
        except Exception as err:  # noqa: BLE001 - an unreadable checkpoint is skipped, never trusted
            print(unloadable_message(path, err), file=sys.stderr)
            continue
        for key, value in fingerprint.items():
            if state.get(key) != value:
                what = f"holds a {key[: -len('_kwargs')]} built with" if key.endswith("_kwargs") else "was trained with"
                raise ValueError(
                    f"The checkpoint {path.name} {what} {state.get(key)}, not {value}: use a new out_dir "
                    "(or run_dir) for a different model or different training options."
                )
        try:
            fw.restore_checkpoint(path, objects)
        except Exception as err:  # noqa: BLE001
            print(unloadable_message(path, err), file=sys.stderr)
            continue
        state["path"] = path
        return state
    return None


def load_generator(fw, out_dir):
    """The generator of the newest loadable checkpoint in out_dir, with its ``epoch``; unreadable ones are skipped."""
    for path in checkpoint_folders(out_dir):
        try:
            state = read_state(fw, path)
            generator = fw.build_generator(**state["generator_kwargs"])
            fw.restore_checkpoint(path, {"generator": generator})
        except Exception as err:  # noqa: BLE001
            print(unloadable_message(path, err), file=sys.stderr)
            continue
        generator.epoch = int(state["epoch"])
        return generator
    if old := old_layout(out_dir):
        raise FileNotFoundError(old_layout_message(out_dir, old))
    raise FileNotFoundError(f"No complete checkpoint in {rel(Path(out_dir) / 'checkpoints')}: run {fw.NOTEBOOK} first.")
