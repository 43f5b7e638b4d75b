"""Which split and profile a stage's outputs were made from, so a later notebook never uses stale inputs.

Each producing notebook stamps its output folder (``stamp(OUT, cfg, "02_pytorch_cgan")``): OUT/provenance.json
holds the notebook's name and a fingerprint of the prepared split (profile, image_size, a digest of the
train/val sha256 lists of RUN/data/manifest.csv). A consumer calls ``check(folder, cfg, made_by)``: it
raises :class:`StaleInputError`, naming the notebook to rerun, when the stamp is missing or was made from
another split or profile. Folders made before stamps existed (complete outputs, no provenance.json) pass
with a printed warning.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from . import NOTEBOOKS as ALL_NOTEBOOKS
from .config import Config, rel
from .data import NOTEBOOK_01, DataError
from .files import write_json

FILE = "provenance.json"
NOTEBOOKS = {Path(path).stem: path for path in ALL_NOTEBOOKS.values()}  # by stem, as stamps name them
COMPARED = ("profile", "image_size", "split")


class StaleInputError(DataError):
    """A stage's inputs are missing their stamp or were made from another split or profile."""


def _run_dir(cfg) -> Path:
    return cfg.run_dir if isinstance(cfg, Config) else Path(cfg)


def _notebook(made_by: str) -> str:
    return NOTEBOOKS.get(made_by, f"notebooks/{made_by}.ipynb")


def fingerprint(cfg) -> dict:
    """The prepared split this run directory holds: profile, image_size, train/val counts and a digest of their sha256s.

    ``cfg`` is a Config, or a run directory (then the profile comes from RUN/data/info.json and image_size is None).
    """
    run_dir = _run_dir(cfg)
    data_dir = run_dir / "data"
    manifest, info = data_dir / "manifest.csv", data_dir / "info.json"
    if not manifest.exists() or not info.exists():
        raise FileNotFoundError(
            f"No prepared data in run directory {rel(run_dir)}. Run {NOTEBOOK_01} first (with the same profile and run_dir)."
        )
    hashes = {"train": [], "val": []}
    with open(manifest, newline="") as fh:
        for row in csv.DictReader(fh):
            hashes.setdefault(row["split"], []).append(row["sha256"])
    digest = hashlib.sha256()
    for name in ("train", "val"):
        digest.update(f"{name}:{','.join(sorted(hashes[name]))};".encode())
    if isinstance(cfg, Config):
        profile, image_size = cfg.profile, int(cfg.image_size)
    else:
        profile, image_size = json.loads(info.read_text()).get("settings", {}).get("profile"), None
    return {
        "profile": profile,
        "image_size": image_size,
        "split": digest.hexdigest()[:16],
        "n_train": len(hashes["train"]),
        "n_val": len(hashes["val"]),
    }


def stamp(out_dir, cfg, made_by: str, *, replace: bool = False) -> Path:
    """Write out_dir/provenance.json (atomically): which notebook made this folder, from which split.

    Call it before the work that fills out_dir (e.g. before training): a folder stamped from another split
    raises :class:`StaleInputError` instead of being resumed or relabelled, unless ``replace=True``.
    """
    path = Path(out_dir) / FILE
    current = fingerprint(cfg)
    old = read(out_dir)
    diffs = differences(old.get("fingerprint", {}), current) if old and not replace else []
    if diffs:
        notebook = _notebook(made_by)
        raise StaleInputError(
            f"{rel(out_dir)} already holds outputs of {_notebook(old.get('made_by', made_by))} made from other inputs:\n  - "
            + "\n  - ".join(diffs)
            + f"\nFix: delete {rel(out_dir)} (or choose another run_dir), then rerun {notebook}."
        )
    return write_json(path, {"made_by": made_by, "fingerprint": current})


def read(out_dir) -> dict | None:
    """out_dir/provenance.json, or None when there is none."""
    path = Path(out_dir) / FILE
    return json.loads(path.read_text()) if path.exists() else None


def _has_outputs(out_dir: Path) -> bool:
    """Outputs made before stamps existed: checkpoints (torch file or tf folder) or a manifest."""
    ckpts = out_dir / "checkpoints"
    if ckpts.is_dir() and any(
        (p.is_file() and p.name.startswith("ckpt_") and p.suffix == ".pt") or (p.is_dir() and p.name.startswith("epoch_"))
        for p in ckpts.iterdir()
    ):
        return True
    return (out_dir / "manifest.csv").exists() or (out_dir / "results.json").exists()


def differences(stamped: dict, current: dict) -> list[str]:
    """Human lines for each compared field that differs (image_size only when both sides know it)."""
    out = []
    for key in COMPARED:
        a, b = stamped.get(key), current.get(key)
        if key == "image_size" and (a is None or b is None):
            continue
        if a != b:
            what = {"split": "split (train/val images)", "image_size": "image_size (px)"}.get(key, key)
            out.append(f"{what}: made with {a}, now {b}")
    return out


def check(out_dir, cfg, made_by: str) -> dict | None:
    """Stop with :class:`StaleInputError` naming the notebook to rerun unless out_dir was made from cfg's split.

    Returns the stamp; None (with a printed warning) for a folder of complete outputs made before stamps existed.
    ``cfg`` is the consumer's Config (profile, image_size and split compared) or a run directory (split and profile).
    """
    out_dir = Path(out_dir)
    notebook = _notebook(made_by)
    stamped = read(out_dir)
    if stamped is None:
        if _has_outputs(out_dir):
            message = (
                f"{rel(out_dir)} has no {FILE} (made by an older version): its split cannot be checked. "
                f"Rerun {notebook} to be sure it matches this run."
            )
            print(f"WARNING: {message}")  # printed, not warnings.warn: a warning would show a machine path
            return None
        raise StaleInputError(
            f"{rel(out_dir)} holds no finished outputs of {notebook}. Fix: run {notebook} first "
            "(with the same profile and run_dir)."
        )
    diffs = differences(stamped.get("fingerprint", {}), fingerprint(cfg))
    if diffs:
        raise StaleInputError(
            f"{rel(out_dir)} is stale: {notebook} made it from other inputs than run directory "
            f"{rel(_run_dir(cfg))} now holds:\n  - " + "\n  - ".join(diffs) + "\n"
            f"Fix: rerun {notebook} with these settings (same profile and run_dir), "
            "or use the run_dir it was made in."
        )
    return stamped


__all__ = ["FILE", "StaleInputError", "check", "differences", "fingerprint", "read", "stamp"]
