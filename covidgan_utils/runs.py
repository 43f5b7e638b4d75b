"""Run directories are the project's own: created and marked by it, or refused.

Whatever creates a run directory (the pipeline, a sweep, a notebook run by hand) writes the marker
``RUN/.covidgan-run``. A folder is refused as a run directory when it is, contains or lies inside the
data folder, or is (or contains) the repository, the user's home or ``/``; a non-empty folder without
the marker is refused too, unless it is an old run of this project (made before the marker existed: it holds
the ``pipeline.json`` the pipeline writes and nothing but this project's artifacts), which is then marked. Names
alone prove nothing: a user's own ``data/`` and ``figures/`` are not adopted. A run directory where one of
the names in :data:`ARTIFACTS` is a symbolic link is refused (the run would write through it). ``--overwrite``
deletes only the artifacts named in :data:`ARTIFACTS` (a link among them is unlinked, never followed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

MARKER = ".covidgan-run"
LOCK = ".lock"

# Everything the project writes at the top of a run directory; --overwrite deletes these and nothing else.
ARTIFACTS = (
    "pipeline.json", "overrides.json", "provenance.json", "executed", "data", "torch_gan", "tf_gan",
    "synthetic", "transfer", "evaluation", "figures", "studies", "sweeps", "gan_seeds",
)
_KEPT = (MARKER, LOCK)
SETTINGS_FILE = "overrides.json"  # the run's settings, written by a sweep or by the user before the run (README)
KEPT_ON_OVERWRITE = (SETTINGS_FILE,)  # --overwrite starts the run over with the same settings


class RunDirError(ValueError):
    """A folder that cannot serve as a run directory; the message names it and the fix."""


def _shown(path: Path) -> str:
    from .config import rel

    return rel(path)


def _is_within(path: Path, other: Path) -> bool:
    """``path`` equals ``other`` or lies below it."""
    return path == other or other in path.parents


def _temporary(name: str) -> bool:
    """A hidden temporary of an atomic write (files.atomic_path, synthesis, phantoms)."""
    return name.startswith(".") and (name.endswith((".tmp", ".old")) or name.startswith(".tmp-") or ".old-" in name)


def check_location(run_dir: Path, data_dir: Path | None = None, *, label: str = "Run directory",
                   fix: str | None = None) -> None:
    """Refuse a run directory that is a file, or that is, contains or lies inside a folder it must never touch.

    ``label`` and ``fix`` word the message for another output folder (a study's --out, a sweep's folder)."""
    from .config import phantom_root, repo_root

    run_dir = Path(run_dir).resolve()
    fix = fix or "Fix: choose a new folder for the run, e.g. --run-dir runs/<name> (the default is runs/<profile>)."
    danger = "--overwrite would delete in it" if label == "Run directory" else "the project would write in it"
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{label} {_shown(run_dir)} is a file, not a folder. {fix}")
    protected = {"the root folder /": Path(run_dir.anchor), "your home folder": Path.home().resolve(),
                 "the repository": repo_root().resolve()}
    for what, folder in protected.items():
        if _is_within(folder, run_dir):
            raise RunDirError(
                f"{label} {_shown(run_dir)} is or contains {what} ({_shown(folder)}); {danger}. {fix}"
            )
    if _is_within(run_dir, repo_root().resolve() / ".git"):
        raise RunDirError(f"{label} {_shown(run_dir)} lies inside the repository's .git folder. {fix}")
    for folder in (data_dir, phantom_root()):
        if folder is None:
            continue
        folder = Path(folder).resolve()
        if _is_within(folder, run_dir):
            raise RunDirError(
                f"{label} {_shown(run_dir)} is or contains the data folder {_shown(folder)}; "
                f"the project never writes into the data. {fix}"
            )
        if _is_within(run_dir, folder):
            raise RunDirError(
                f"{label} {_shown(run_dir)} lies inside the data folder {_shown(folder)}; its figures would "
                f"be scanned as X-rays and the data folder is never written. {fix}"
            )


def foreign_entries(run_dir: Path) -> list[str]:
    """Names in ``run_dir`` that the project does not write (what --overwrite leaves in place)."""
    return sorted(p.name for p in Path(run_dir).iterdir() if p.name not in ARTIFACTS + _KEPT and not _temporary(p.name))


def is_marked(run_dir: Path) -> bool:
    return (Path(run_dir) / MARKER).is_file()


def is_old_run(run_dir: Path) -> bool:
    """An unmarked folder that the pipeline wrote before the marker existed: its ``pipeline.json`` is a JSON object
    with the run state's ``notebooks`` table (what pipeline.py writes first, before any notebook runs)."""
    data = _json_object(Path(run_dir) / "pipeline.json")
    return data is not None and isinstance(data.get("notebooks"), dict)


def _json_object(path: Path) -> dict | None:
    """The JSON object in the regular file ``path`` (never through a link), or None."""
    import json

    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_no_links(run_dir: Path) -> None:
    """Refuse a run directory where a name the project writes (an artifact, the marker, the lock) is a symbolic link:
    the notebooks would write, and delete stale files, through it in the link's target."""
    import os

    run_dir = Path(run_dir)
    links = sorted(p for p in run_dir.iterdir() if p.name in ARTIFACTS + _KEPT and p.is_symlink())
    if links:
        shown = ", ".join(f"{p.name} -> {os.readlink(p)}" for p in links)
        first = _shown(links[0])
        raise RunDirError(
            f"Run directory {_shown(run_dir)} holds symbolic links where the project writes ({shown}); the run would "
            "write, and delete stale files, in the links' targets. Nothing was written or deleted. "
            f"Fix: remove the link(s) (e.g. rm {first} removes the link, not its target) or choose another --run-dir."
        )


def check_owned(run_dir: Path) -> None:
    """Refuse an existing non-empty folder that is no run directory of this project (marked, or an old run)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    check_no_links(run_dir)
    if is_marked(run_dir):
        return
    entries = sorted(p.name for p in run_dir.iterdir() if not _temporary(p.name) and p.name != LOCK)
    if not entries or entries == [SETTINGS_FILE]:  # empty, or only the lock and the settings written before the run
        return
    fix = "Nothing was written or deleted. Fix: choose a new or empty folder for the run, e.g. --run-dir runs/<name>."
    foreign = foreign_entries(run_dir)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise RunDirError(f"{_shown(run_dir)} is not empty and is no run directory of this project (it holds {shown}). {fix}")
    if not is_old_run(run_dir):
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise RunDirError(
            f"{_shown(run_dir)} is not empty and is no run directory of this project (it holds {shown}, but no "
            f"{MARKER} marker and no pipeline.json of a run: folders of these names may be your own). {fix}"
        )


def claim(run_dir: Path) -> Path:
    """Create ``run_dir`` if needed and mark it as this project's (after :func:`check_owned`)."""
    from .files import write_json

    run_dir = Path(run_dir)
    check_owned(run_dir)
    if not is_marked(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / MARKER, {"what": "a run directory of covidgan-utils; --overwrite deletes only its own artifacts",
                                      "artifacts": list(ARTIFACTS)})
    return run_dir


def claim_output(folder: Path, *, label: str, option: str, is_old: Callable[[Path], bool],
                 data_dir: Path | None = None) -> Path:
    """Check and mark an output folder (a study's --out, a sweep's folder) the way :func:`claim` marks a run directory.

    Refused, before anything is written: a file; a folder that is, contains or lies inside the data, the repository,
    home or /; a non-empty folder without the marker unless ``is_old(folder)`` recognises this project's earlier
    output there (then it is marked). ``option`` is the command-line option that chose it, named in the fix.
    """
    from .files import write_json

    folder = Path(folder)
    fix = f"Nothing was written or deleted. Fix: choose a new or empty folder with {option}."
    check_location(folder, data_dir, label=label, fix=fix)
    if folder.is_symlink():
        raise RunDirError(f"{label} {_shown(folder)} is a symbolic link; the project never writes through one. {fix}")
    if folder.is_dir() and not is_marked(folder):
        entries = sorted(p.name for p in folder.iterdir() if not _temporary(p.name))
        if entries and not is_old(folder):
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            raise RunDirError(
                f"{label} {_shown(folder)} is not empty and is no output folder of this project (it holds {shown}); "
                f"its results would replace files of yours. {fix}"
            )
    if not is_marked(folder):
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / MARKER, {"what": f"an output folder of covidgan-utils ({label})"})
    return folder


def old_results(folder: Path, names: set[str], keys: set[str], result: str = "results.json") -> bool:
    """An output folder of an earlier version: ``result`` is a JSON object with ``keys`` and every entry is in
    ``names`` (the folder's own files and subfolders)."""
    folder = Path(folder)
    data = _json_object(folder / result)
    entries = {p.name for p in folder.iterdir() if not _temporary(p.name)}
    return data is not None and keys <= set(data) and entries <= names | {result, MARKER}


def clear(run_dir: Path) -> list[str]:
    """Delete the artifacts the project wrote in a marked run directory; returns the names left in place."""
    import shutil

    run_dir = Path(run_dir)
    if not is_marked(run_dir):
        raise RunDirError(f"{_shown(run_dir)} is not marked as a run directory of this project; refusing to delete in it.")
    for child in sorted(run_dir.iterdir()):
        if (child.name in ARTIFACTS and child.name not in KEPT_ON_OVERWRITE) or _temporary(child.name):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    left = foreign_entries(run_dir)
    if left:
        print(f"note: --overwrite left in place what this project did not write in {_shown(run_dir)}: {', '.join(left)}")
    return left
