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

ENV_PROFILE = "COVIDGAN_PROFILE"
ENV_DATA_DIR = "COVIDGAN_DATA_DIR"
ENV_RUN_DIR = "COVIDGAN_RUN_DIR"

DEFAULT_PROFILE = "demo"

# Paper split (CONTRACT): 331 COVID / 601 Normal train, 72 / 120 validation, 1000/1000 target.
PAPER_TRAIN = {"COVID": 331, "Normal": 601}
PAPER_VAL = {"COVID": 72, "Normal": 120}

PROFILES: dict[str, dict[str, Any]] = {
    # Tiny: every notebook runs in seconds; for tests and CI. Numbers mean nothing.
    "smoke": {
        "image_size": 32,
        "torch_width": 0.125,
        "tf_width": 0.125,
        "phantom_per_class": {"COVID": 30, "Normal": 40},
        "phantom_size": 64,
        "train_per_class": {"COVID": 18, "Normal": 26},
        "val_per_class": {"COVID": 8, "Normal": 10},
        "target_per_class": 30,
        "torch_epochs": 2,
        "tf_epochs": 2,
        "torch_batch_size": 16,
        "tf_batch_size": 16,
        "checkpoint_every": 1,
        "sample_every": 1,
        "vgg_epochs": 2,
        "vgg_image_size": 32,
        "vgg_weights": None,
        "seeds": [0],
    },
    # Laptop walkthrough: the paper's counts on phantoms, reduced size/width/epochs.
    "demo": {
        "image_size": 64,
        "torch_width": 0.5,
        "tf_width": 0.25,  # tf_gan: class-conditional by ~epoch 8 on phantoms; 20 epochs ~ 5 min on 2 cores
        "phantom_per_class": {"COVID": 403, "Normal": 721},
        "phantom_size": 128,
        "train_per_class": dict(PAPER_TRAIN),
        "val_per_class": dict(PAPER_VAL),
        "target_per_class": 1000,
        "torch_epochs": 40,  # torch_gan at width 0.5, batch 32: class-conditional from ~epoch 35 on phantoms
        "tf_epochs": 20,
        "torch_batch_size": 32,  # the report used 64; 32 gives twice the updates per epoch on a CPU budget
        "tf_batch_size": 32,
        "checkpoint_every": 5,
        "sample_every": 5,
        "vgg_epochs": 20,
        "vgg_image_size": 64,
        "vgg_weights": "auto",
        "seeds": [0, 1, 2, 3, 4],
    },
    # The report's settings: real data, 128x128, width 1, 1000 epochs, ImageNet VGG16.
    "paper": {
        "image_size": 128,
        "torch_width": 1.0,
        "tf_width": 1.0,
        "phantom_per_class": {"COVID": 403, "Normal": 721},
        "phantom_size": 256,
        "train_per_class": dict(PAPER_TRAIN),
        "val_per_class": dict(PAPER_VAL),
        "target_per_class": 1000,
        "torch_epochs": 1000,
        "tf_epochs": 1000,
        "torch_batch_size": 64,
        "tf_batch_size": 32,
        "checkpoint_every": 50,
        "sample_every": 50,
        "vgg_epochs": 20,
        "vgg_image_size": 128,
        "vgg_weights": "imagenet",
        "seeds": [0, 1, 2, 3, 4],
    },
}


# Limited-data GAN options (issue: evaluating synthetic data); off by default so every profile keeps the paper's GANs.
for _settings in PROFILES.values():
    _settings.setdefault(
        "gan_variant", "cgan"
    )  # "cgan" (the report's) or "acgan" (Waheed et al.'s auxiliary classifier)
    _settings.setdefault("diffaugment", None)  # None (off) or a DiffAugment policy such as "color,translation,cutout"

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
    profile: str | None = None, data_dir: str | None = None, run_dir: str | None = None, **overrides: Any
) -> Config:
    """Resolve notebook parameters: explicit value, then COVIDGAN_* env var, then profile default.

    Relative ``data_dir`` / ``run_dir`` are taken relative to the repository root.

    Overrides whose value is None are ignored, so a parameters cell can hold ``epochs = None``.
    A run directory holding ``overrides.json`` (written by :mod:`covidgan_utils.sweeps`) applies those
    settings to every notebook run on it, below the explicit overrides.
    """
    profile = profile or os.environ.get(ENV_PROFILE) or DEFAULT_PROFILE
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}: choose one of {', '.join(PROFILES)}.")
    settings = copy.deepcopy(PROFILES[profile])
    data_dir = data_dir or os.environ.get(ENV_DATA_DIR) or None
    run_dir = run_dir or os.environ.get(ENV_RUN_DIR) or None
    # Relative paths are relative to the repository root, wherever the notebook or command runs.
    root = repo_root()
    run_path = (root / Path(run_dir).expanduser() if run_dir else root / "runs" / profile).resolve()
    run_overrides = read_run_overrides(run_path)
    settings.update(copy.deepcopy(run_overrides))
    for name, value in overrides.items():
        if value is None:
            continue
        settings[name] = value
    data_path = (root / Path(data_dir).expanduser()).resolve() if data_dir else None
    return Config(profile=profile, run_dir=run_path, data_dir=data_path, settings=settings, run_overrides=run_overrides)


# Settings that are no profile key but that notebooks read with a default (notebook 01's split options, seeds).
EXTRA_SETTINGS = ("split_seed", "synthesis_seed", "phantom_seed", "skip_unreadable")


def setting_names() -> set[str]:
    """Every name a run's settings may hold: the profiles' keys plus EXTRA_SETTINGS."""
    return set().union(*PROFILES.values()) | set(EXTRA_SETTINGS)


def read_run_overrides(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Settings from RUN/overrides.json ({} if absent); unknown names or a broken file raise naming the file."""
    import json

    path = Path(run_dir) / OVERRIDES_FILE
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot read {rel(path)} ({err}). Fix: repair it or delete it.") from err
    known = setting_names()
    if not isinstance(values, dict) or set(values) - known:
        bad = sorted(set(values) - known) if isinstance(values, dict) else type(values).__name__
        raise ValueError(f"{rel(path)} holds unknown settings {bad}; known: {sorted(known)}.")
    return values


def parse_value(text: str) -> Any:
    """A command-line value the way papermill's -p reads it: int, float, None/True/False, else the string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"None": None, "True": True, "False": False}.get(text, text)


def phantom_dir(cfg: Config) -> Path:
    """Where the built-in phantom dataset for this profile lives (gitignored data/ folder)."""
    counts = cfg.phantom_per_class
    name = f"phantoms-{counts['COVID']}c-{counts['Normal']}n-{cfg.phantom_size}px-seed{cfg.settings.get('phantom_seed', 0)}"
    return repo_root() / "data" / name


def class_index(name: str) -> int:
    """Index of a class name in CLASSES (case-insensitive)."""
    for i, c in enumerate(CLASSES):
        if c.lower() == name.lower():
            return i
    raise ValueError(f"Unknown class {name!r}: expected one of {CLASSES}.")
