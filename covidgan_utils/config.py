"""Profiles (smoke, demo, paper), parameter resolution and run-directory paths.

Every notebook resolves its ``parameters`` cell through :func:`resolve`, so papermill,
nbval (through the COVIDGAN_* environment variables) and a learner clicking "Run all"
get the same settings.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import CLASSES
from . import settings as settings_module

ENV_PROFILE = "COVIDGAN_PROFILE"
ENV_DATA_DIR = "COVIDGAN_DATA_DIR"
ENV_RUN_DIR = "COVIDGAN_RUN_DIR"

DEFAULT_PROFILE = "demo"

# Paper split: 331 COVID / 601 Normal train, 72 / 120 validation, 1000/1000 target.
PAPER_TRAIN = {"COVID": 331, "Normal": 601}
PAPER_VAL = {"COVID": 72, "Normal": 120}

PROFILES = settings_module.PROFILES  # every setting of each profile (covidgan_utils/settings.py)
SettingError = settings_module.SettingError

OVERRIDES_FILE = "overrides.json"  # settings a run directory carries for every notebook run on it (sweeps write it)


def repo_root() -> Path:
    """The repository root: the nearest folder above the cwd holding pyproject.toml."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "covidgan_utils").is_dir():
            return folder
    package_parent = Path(__file__).resolve().parent.parent
    if (package_parent / "pyproject.toml").is_file():
        return package_parent
    return here


def rel(path: str | os.PathLike) -> str:
    """Show a path relative to the repository root (or cwd) so outputs hold no machine paths."""
    p = Path(path).resolve()
    for base in (repo_root(), Path.cwd().resolve()):
        try:
            return p.relative_to(base).as_posix() or "."
        except ValueError:
            continue
    return p.name if p.is_absolute() else p.as_posix()


@dataclass
class Config:
    """Resolved settings of one notebook run: the profile's values plus overrides."""

    profile: str
    run_dir: Path
    data_dir: Path | None
    settings: dict[str, Any] = field(default_factory=dict)
    run_overrides: dict[str, Any] = field(default_factory=dict)
    explicit: set[str] = field(default_factory=set)  # settings given as parameters or by overrides.json

    def is_set(self, name: str) -> bool:
        """Whether ``name`` was given for this run (not the profile's default)."""
        return name in self.explicit

    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(f"Config has no setting {name!r}; known: {sorted(settings)}")

    @property
    def uses_phantoms(self) -> bool:
        return self.data_dir is None

    def path(self, *parts: str) -> Path:
        """A path inside the run directory."""
        return self.run_dir.joinpath(*parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "run_dir": rel(self.run_dir),
            "data_dir": None if self.data_dir is None else rel(self.data_dir),
            **self.settings,
        }

    def describe(self) -> str:
        """A few human lines: profile, data, run dir and the main knobs."""
        data = "built-in phantoms (synthetic, not medical data)" if self.uses_phantoms else rel(self.data_dir)
        s = self.settings
        text = (
            f"profile   : {self.profile}\n"
            f"data      : {data}\n"
            f"run dir   : {rel(self.run_dir)}\n"
            f"image size: {s['image_size']} px, GAN width torch x{s['torch_width']} / tf x{s['tf_width']}\n"
            f"split     : train {s['train_per_class']}, val {s['val_per_class']}"
        )
        if s.get("gan_variant", "cgan") != "cgan" or s.get("diffaugment"):
            text += f"\nGAN       : {s.get('gan_variant', 'cgan')}, DiffAugment {s.get('diffaugment') or 'off'}"
        if self.run_overrides:
            text += f"\noverrides : {self.run_overrides} (from {rel(self.path(OVERRIDES_FILE))})"
        return text


def resolve(
    profile: str | None = None,
    data_dir: str | None = None,
    run_dir: str | None = None,
    *,
    claim: bool = True,
    **overrides: Any,
) -> Config:
    """Resolve notebook parameters: explicit value, then COVIDGAN_* env var, then profile default.

    Relative ``data_dir`` / ``run_dir`` are taken relative to the repository root.

    Overrides whose value is None are ignored, so a parameters cell can hold ``epochs = None``.
    A run directory holding ``overrides.json`` (written by :mod:`covidgan_utils.sweeps`) applies those
    settings to every notebook run on it, below the explicit overrides.

    Every value is checked (type and range) before anything is written; then the run directory is
    checked (never the data folder, the repository, home or /; never a folder of someone else's files)
    and, with ``claim``, created and marked as this project's.
    """
    from . import runs

    profile = profile or os.environ.get(ENV_PROFILE) or DEFAULT_PROFILE
    if profile not in PROFILES:
        raise SettingError(f"Parameter 'profile' = {profile!r} is not allowed: choose one of {', '.join(PROFILES)}.")
    settings = settings_module.profile_settings(profile)
    data_dir = data_dir or os.environ.get(ENV_DATA_DIR) or None
    run_dir = run_dir or os.environ.get(ENV_RUN_DIR) or None
    # Relative paths are relative to the repository root, wherever the notebook or command runs.
    root = repo_root()
    run_path = (root / Path(run_dir).expanduser() if run_dir else root / "runs" / profile).resolve()
    data_path = (root / Path(data_dir).expanduser()).resolve() if data_dir else None
    unknown = sorted(k for k, v in overrides.items() if v is not None and k not in settings_module.run_setting_names())
    if unknown:
        raise SettingError(f"Unknown setting(s) {unknown}. Known: {', '.join(sorted(settings_module.run_setting_names()))}.")
    checked = settings_module.check_all({k: v for k, v in overrides.items() if v is not None})
    runs.check_location(run_path, data_path)
    run_overrides = read_run_overrides(run_path)
    explicit = set(run_overrides) | set(checked)
    settings.update(copy.deepcopy(run_overrides))
    settings.update(checked)
    cfg = Config(profile=profile, run_dir=run_path, data_dir=data_path, settings=settings,
                 run_overrides=run_overrides, explicit=explicit)
    external_path(settings.get("external_dir"), run_path, data_path)
    runs.check_owned(run_path)
    if claim:
        runs.claim(run_path)
    return cfg


def external_path(folder: str | os.PathLike | None, run_dir: Path, data_dir: Path | None = None) -> Path | None:
    """The external test folder (setting ``external_dir``) as an absolute path, relative ones taken from the
    repository root; refused when it is, contains or lies inside the run directory (the run's own files, which
    --overwrite deletes, are no hospital's images) or when it is the data folder (the run's own training images)."""
    if folder is None or folder == "":
        return None
    path = Path(folder).expanduser()
    path = (path if path.is_absolute() else repo_root() / path).resolve()
    run_dir = Path(run_dir).resolve()
    given = f"Parameter 'external_dir' = {str(folder)!r}"
    fix = ("Nothing was written. Fix: keep the external images in a folder of their own outside the run directory "
           "(e.g. next to the dataset) and pass that folder as external_dir.")
    if path == run_dir or run_dir in path.parents:
        raise SettingError(f"{given} is or lies inside the run directory {rel(run_dir)}; the run's own files are no "
                           f"external test set and --overwrite deletes what the project writes there. {fix}")
    if path in run_dir.parents:
        raise SettingError(f"{given} contains the run directory {rel(run_dir)}; the run's own images would be read "
                           f"as another hospital's. {fix}")
    if data_dir is not None and path == Path(data_dir).resolve():
        raise SettingError(f"{given} is the data folder {rel(path)}; the run trains on it, so it is no external "
                           f"test set. {fix}")
    return path


def setting_names() -> set[str]:
    """Every name a run's settings may hold (covidgan_utils/settings.py)."""
    return settings_module.run_setting_names()


def read_run_overrides(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Settings from RUN/overrides.json ({} if absent); unknown names or a broken file raise naming the file."""
    import json

    path = Path(run_dir) / OVERRIDES_FILE
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SettingError(f"Cannot read {rel(path)} ({err}). Fix: repair it or delete it.") from err
    known = setting_names()
    if not isinstance(values, dict) or set(values) - known:
        bad = sorted(set(values) - known) if isinstance(values, dict) else type(values).__name__
        raise SettingError(f"{rel(path)} holds unknown settings {bad}; known: {sorted(known)}.")
    try:
        checked = settings_module.check_all(values)
    except SettingError as err:
        raise SettingError(f"{rel(path)}: {err} Fix: correct it or delete it.") from None
    return {k: v for k, v in checked.items() if v is not None}


def parse_value(text: str) -> Any:
    """A command-line value the way papermill's -p reads it: int, float, None/True/False, else the string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"None": None, "True": True, "False": False}.get(text, text)


def phantom_root() -> Path:
    """The gitignored data/ folder of the repository, where built-in phantoms are made."""
    return repo_root() / "data"


def phantom_dir(cfg: Config) -> Path:
    """Where the built-in phantom dataset for this profile lives (gitignored data/ folder)."""
    counts = cfg.phantom_per_class
    name = f"phantoms-{counts['COVID']}c-{counts['Normal']}n-{cfg.phantom_size}px-seed{cfg.phantom_seed}"
    return phantom_root() / name


def class_index(name: str) -> int:
    """Index of a class name in CLASSES (case-insensitive)."""
    for i, c in enumerate(CLASSES):
        if c.lower() == name.lower():
            return i
    raise ValueError(f"Unknown class {name!r}: expected one of {CLASSES}.")
