"""Every setting of a run, with its default, type and allowed range; the profiles override the defaults.

A value from a notebook's parameters cell, the command line (``-p NAME VALUE``), ``overrides.json`` or a
sweep grid passes through :func:`check` before anything is written, so a bad value stops with one
message naming the parameter, the value and what is allowed, instead of a traceback from deep inside.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import CLASSES


class SettingError(ValueError):
    """A parameter value outside its type or range; the message names the parameter and what is allowed."""


@dataclass(frozen=True)
class Setting:
    """One knob: name, default, kind ("int", "float", "bool", "choice", "counts", "int_list", "text", "dict"), range."""

    name: str
    default: Any
    kind: str
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    optional: bool = False  # None is allowed (and means "off" or "the default")
    power_of_two: bool = False
    in_run: bool = True  # False: a notebook parameter that is no run setting (04's overwrite, 07's sweep options)


def _check_int(s: Setting, value):
    if isinstance(value, bool):
        raise _bad(s, value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _bad(s, value) from None
    if not isinstance(value, int):
        raise _bad(s, value)
    if (s.low is not None and value < s.low) or (s.high is not None and value > s.high):
        raise _bad(s, value)
    if s.power_of_two and value & (value - 1):
        raise _bad(s, value)
    return value


def _check_float(s: Setting, value):
    if isinstance(value, bool):
        raise _bad(s, value)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _bad(s, value) from None
    if not isinstance(value, (int, float)) or value != value:
        raise _bad(s, value)
    if (s.low is not None and value < s.low) or (s.high is not None and value > s.high):
        raise _bad(s, value)
    return value


_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


def _check_bool(s: Setting, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad(s, value)


def _check_choice(s: Setting, value):
    if value not in s.choices:
        raise _bad(s, value)
    return value


def _parsed(s: Setting, value):
    """A list or dict given as text ("[0, 1]", "0,1", '{"COVID": 30, "Normal": 40}')."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return json.loads(text)
    except ValueError:
        if s.kind == "int_list":
            return [part.strip() for part in text.split(",") if part.strip()]
        raise _bad(s, value) from None


def _check_int_list(s: Setting, value):
    value = _parsed(s, value)
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise _bad(s, value)
    item = Setting(s.name, None, "int", s.help, low=s.low, high=s.high)
    try:
        out = [_check_int(item, v) for v in value]
    except SettingError:
        raise _bad(s, value) from None
    if len(set(out)) != len(out):
        raise _bad(s, value)
    return out


def _check_counts(s: Setting, value):
    value = _parsed(s, value)
    if not isinstance(value, dict) or {str(k) for k in value} != set(CLASSES):
        raise _bad(s, value)
    out = {}
    for c in CLASSES:
        v = value[c]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _bad(s, value)
        if isinstance(v, float) and not v.is_integer():
            if not 0 < v < 1:  # a fraction of the images available
                raise _bad(s, value)
        elif v < (s.low or 0):
            raise _bad(s, value)
        out[c] = int(v) if isinstance(v, float) and v.is_integer() else v
    return out


def _check_text(s: Setting, value):
    if not isinstance(value, str) or not value.strip():
        raise _bad(s, value)
    if s.name == "diffaugment":
        from .augment import parse_policy

        try:
            parse_policy(value)
        except ValueError:
            raise _bad(s, value) from None
    return value


def _check_dict(s: Setting, value):
    value = _parsed(s, value)
    if not isinstance(value, dict) or not value:
        raise _bad(s, value)
    return value


_CHECKS = {
    "int": _check_int, "float": _check_float, "bool": _check_bool, "choice": _check_choice,
    "int_list": _check_int_list, "counts": _check_counts, "text": _check_text, "dict": _check_dict,
}


def allowed(s: Setting) -> str:
    """What a setting accepts, in words."""
    lo, hi = s.low, s.high
    span = ""
    if lo is not None and hi is not None:
        span = f" from {lo:g} to {hi:g}"
    elif lo is not None:
        span = f" >= {lo:g}"
    words = {
        "int": f"an integer{span}" + (" that is a power of two" if s.power_of_two else ""),
        "float": f"a number{span}",
        "bool": "True or False",
        "choice": "one of " + ", ".join(repr(c) for c in s.choices),
        "int_list": f"a non-empty list of distinct integers{span}, e.g. [0, 1, 2]",
        "counts": "a per-class dict such as {'COVID': 331, 'Normal': 601} (counts, or fractions below 1)",
        "text": "a non-empty text" + (" naming a comma-separated subset of color, translation, cutout"
                                      if s.name == "diffaugment" else ""),
        "dict": "a non-empty dict",
    }[s.kind]
    return words + (", or None" if s.optional else "")


def _bad(s: Setting, value) -> SettingError:
    alias = [p for p, target in PARAMETER_ALIASES.items() if s.name in target]
    shown = f"{s.name!r}" + (f" (notebook parameter {alias[0]!r})" if alias else "")
    return SettingError(f"Parameter {shown} = {value!r} is not allowed: it must be {allowed(s)} ({s.help}).")


def check(name: str, value: Any) -> Any:
    """The value of setting or notebook parameter ``name``, checked and converted; SettingError if not allowed."""
    targets = PARAMETER_ALIASES.get(name, (name,))
    if targets[0] not in SETTINGS:
        raise SettingError(f"Unknown parameter {name!r}. Known: {', '.join(sorted(parameter_names()))}.")
    s = SETTINGS[targets[0]]
    if value is None:  # None means "the profile's default" (or "off" where the setting is optional)
        return None
    try:
        return _CHECKS[s.kind](s, value)
    except SettingError:
        raise _bad(s, value) from None  # the message shows the value as given


def check_all(values: dict[str, Any]) -> dict[str, Any]:
    """Check every entry of ``values``; one SettingError listing every bad entry at once."""
    out, problems = {}, []
    for name, value in values.items():
        try:
            out[name] = check(name, value)
        except SettingError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingError(problems[0] if len(problems) == 1 else "\n  - ".join(["Parameters not allowed:", *problems]))
    return out


_POW2 = dict(kind="int", low=16, high=1024, power_of_two=True)

_SETTINGS = [
    Setting("image_size", 128, help="GAN image side in px; both cGANs grow from 4x4/8x8 by doubling", **_POW2),
    Setting("torch_width", 1.0, "float", "channel width factor of the PyTorch cGAN (1 = the report's)", low=1 / 64, high=4),
    Setting("tf_width", 1.0, "float", "channel width factor of the TensorFlow cGAN (1 = the report's)", low=1 / 64, high=4),
    Setting("phantom_per_class", {"COVID": 403, "Normal": 721}, "counts", "phantom images made per class", low=1),
    Setting("phantom_size", 128, "int", "side in px of the phantom PNG files", low=32, high=2048),
    Setting("phantom_seed", 0, "int", "seed of the built-in phantom dataset", low=0),
    Setting("train_per_class", {"COVID": 331, "Normal": 601}, "counts", "training images per class (the report's 331/601)", low=1),
    Setting("val_per_class", {"COVID": 72, "Normal": 120}, "counts", "validation images per class (the report's 72/120)", low=1),
    Setting("split_seed", 0, "int", "seed of the stratified train/validation split", low=0),
    Setting("skip_unreadable", False, "bool", "leave out unusable image files instead of stopping"),
    Setting("target_per_class", 1000, "int", "images per class after adding synthetic ones (the report's 1000)", low=0, high=1_000_000),
    Setting("synthesis_seed", 0, "int", "seed of the generation noise in notebook 04", low=0),
    Setting("torch_epochs", 1000, "int", "training epochs of the PyTorch cGAN", low=1, high=100_000),
    Setting("tf_epochs", 1000, "int", "training epochs of the TensorFlow cGAN", low=1, high=100_000),
    Setting("torch_batch_size", 64, "int", "batch size of the PyTorch cGAN", low=2, high=4096),
    Setting("tf_batch_size", 32, "int", "batch size of the TensorFlow cGAN", low=2, high=4096),
    Setting("torch_lr", 2e-4, "float", "Adam learning rate of both PyTorch cGAN networks (the report's 2e-4)",
            low=1e-6, high=1e-2),
    Setting("tf_lr", 2e-4, "float", "Adam learning rate of both TensorFlow cGAN networks (the report's 2e-4)",
            low=1e-6, high=1e-2),
    Setting("torch_ema", 0.0, "float", "decay per step of the moving average of the PyTorch generator's weights, "
            "which is what is sampled (0: off, sample the trained weights, as the report did)", low=0, high=0.9999),
    Setting("tf_ema", 0.0, "float", "decay per step of the moving average of the TensorFlow generator's weights, "
            "which is what is sampled (0: off, sample the trained weights, as the report did)", low=0, high=0.9999),
    Setting("checkpoint_every", 50, "int", "epochs between checkpoints", low=1, high=100_000),
    Setting("sample_every", 50, "int", "epochs between saved sample grids", low=1, high=100_000),
    Setting("gan_variant", "cgan", "choice", "the report's cGAN or Waheed et al.'s ACGAN", choices=("cgan", "acgan")),
    Setting("diffaugment", None, "text", "DiffAugment policy applied in GAN training", optional=True),
    Setting("gan_seeds", [0], "int_list", "GAN training seeds, each its own sub-run", low=0),
    Setting("vgg_epochs", 20, "int", "epochs of VGG16 last-layer training", low=1, high=10_000),
    Setting("vgg_image_size", 128, "int", "VGG16 input side in px (five 2x poolings need >= 32)", low=32, high=1024),
    Setting("vgg_weights", "imagenet", "text", "'imagenet', 'auto', 'random' or a local .pth file", optional=True),
    Setting("seeds", [0, 1, 2, 3, 4], "int_list", "classifier-head seeds, one head per seed and condition", low=0),
    Setting("external_dir", None, "text", "an external test folder (another hospital): evaluated, never trained on; "
            "None on phantoms: the shifted phantom set", optional=True),
    # notebook parameters that are no run setting
    Setting("interactive", None, "bool", "notebooks 02/03: widgets (True) or the static explorer figure (False)",
            optional=True, in_run=False),
    Setting("overwrite", None, "bool", "notebook 04: replace synthetic images made with other settings", optional=True, in_run=False),
    Setting("feature_extractor", None, "choice", "notebook 06's feature space", choices=("domain", "vgg16", "inception"),
            optional=True, in_run=False),
    Setting("feature_weights", None, "text", "notebook 06: weights of the feature extractor", optional=True, in_run=False),
    Setting("compare_runs", None, "dict", "notebook 07: label -> finished run directory", optional=True, in_run=False),
    Setting("sweep_name", None, "text", "notebook 07: the sweep's folder name", optional=True, in_run=False),
    Setting("sweep_grid", None, "dict", "notebook 07: name -> list of values", optional=True, in_run=False),
    Setting("sweep_notebooks", None, "text", "notebook 07: notebooks each sweep point runs", optional=True, in_run=False),
    Setting("run_sweeps", None, "bool", "notebook 07: run the sweep's missing points (hours on a CPU; None: only on "
            "the smoke profile)", optional=True, in_run=False),
    Setting("trainable_blocks", None, "int", "study 2: VGG16 convolution blocks trained besides the last layer "
            "(0 = the report; notebook 07 compares 0 up to this)", low=0, high=2, optional=True, in_run=False),
    Setting("finetune_run", None, "text", "notebook 07, study 2: a finished run whose images it uses", optional=True,
            in_run=False),
    Setting("shortcut_scale", None, "choice", "notebook 07, study 1: the shortcut study's size",
            choices=("smoke", "cpu", "demo"), optional=True, in_run=False),
]
SETTINGS: dict[str, Setting] = {s.name: s for s in _SETTINGS}

# Notebook parameters named otherwise than the setting they set (02/03 share `epochs`, `variant`).
PARAMETER_ALIASES: dict[str, tuple[str, ...]] = {
    "epochs": ("torch_epochs", "tf_epochs"),
    "variant": ("gan_variant",),
    "lr": ("torch_lr", "tf_lr"),
    "ema": ("torch_ema", "tf_ema"),
}

# What each profile changes from the defaults above (the defaults are the paper's settings).
_PROFILE_CHANGES: dict[str, dict[str, Any]] = {
    # Tiny: every notebook runs in seconds; for tests and CI. Numbers mean nothing.
    "smoke": {
        "image_size": 32, "torch_width": 0.125, "tf_width": 0.125,
        "phantom_per_class": {"COVID": 30, "Normal": 40}, "phantom_size": 64,
        "train_per_class": {"COVID": 18, "Normal": 26}, "val_per_class": {"COVID": 8, "Normal": 10},
        "target_per_class": 30, "torch_epochs": 2, "tf_epochs": 2, "torch_batch_size": 16, "tf_batch_size": 16,
        "checkpoint_every": 1, "sample_every": 1, "vgg_epochs": 2, "vgg_image_size": 32, "vgg_weights": None,
        "seeds": [0],
    },
    # Laptop walkthrough: the paper's counts on phantoms, smaller images, narrower GANs, fewer epochs.
    "demo": {
        "image_size": 64,
        # Chosen with benchmarks/investigations/demo_gan_quality.py (one seed; results in demo_gan_quality.jsonl):
        # narrower GANs trained on smaller batches (more updates, less arithmetic per epoch).
        "torch_width": 0.25,  # a third of width 0.5's arithmetic per image
        "tf_width": 0.25,
        "torch_epochs": 50,  # width 0.25, batch 16: the best TSTR and class balance of the candidates (one seed)
        "tf_epochs": 25,  # with lr 5e-4 and the average, two runs at epoch 15 -> 25: recall 0.67 / 0.50 -> 0.74 / 0.64
        "torch_batch_size": 16,  # the report used 64; 16 gives four times the updates per epoch
        "tf_batch_size": 16,  # the report used 32
        # 50 epochs at batch 16 are about 2,900 updates, a fifth of the report's 1000 epochs at batch 64. A larger
        # Adam step for the PyTorch cGAN, three training runs per rate: class-fidelity gap 0.02-0.05 (2e-4:
        # 0.01-0.22), TSTR ratio 0.93-1.00 (0.92-0.95), KID 0.18 / 0.20 / 0.41 (0.37 / 0.43 / 0.55).
        # Both sample from a moving average of the generator's weights (about the last 100 steps): the same
        # training, steadier samples. PyTorch, two training runs: KID 0.195 / 0.181 -> 0.081 / 0.075, recall
        # 0.53 / 0.45 -> 0.58 / 0.57 at the same epochs. The TensorFlow cGAN's 870 updates gained from a larger
        # step only with the average: at epoch 15, lr 5e-4 alone KID 0.48, the average alone 0.26, both 0.09 and
        # 0.15 in two runs (recall 0.65 / 0.56, TSTR ratio 0.97 / 0.99). Ten more TensorFlow epochs (25; 4.3 s each
        # on an AVX-512 CPU) brought both runs' class gap to 0.08 / 0.10, KID to 0.04 / 0.07, TSTR to 0.96 / 0.95;
        # 30 epochs unbalanced one run again (gap 0.16). PyTorch at 60-70 epochs: recall 0.58-0.66 (50: 0.55-0.58),
        # not worth the minute. Numbers: demo_gan_quality.jsonl.
        "torch_lr": 5e-4, "tf_lr": 5e-4,
        "torch_ema": 0.99, "tf_ema": 0.99,
        "checkpoint_every": 5, "sample_every": 5,
        "vgg_image_size": 64, "vgg_weights": "auto",
    },
    # The report's settings: real data, 128x128, width 1, 1000 epochs, ImageNet VGG16.
    "paper": {"phantom_size": 256, "gan_seeds": [0, 1, 2]},
    # The paper's settings for two epochs on 128 px phantoms: proves the instructor's path on a CPU and
    # times it on a GPU (make paper-smoke passes a local VGG16 file as vgg_weights).
    "paper-smoke": {"torch_epochs": 2, "tf_epochs": 2, "checkpoint_every": 1, "sample_every": 1, "gan_seeds": [0, 1, 2]},
}


def is_run_setting(name: str) -> bool:
    """Whether parameter ``name`` (a setting or an alias) sets the run; False for a notebook-only parameter."""
    return SETTINGS[PARAMETER_ALIASES.get(name, (name,))[0]].in_run


def profile_settings(profile: str) -> dict[str, Any]:
    """Every run setting of ``profile``: the defaults with the profile's changes (a fresh copy)."""
    import copy

    if profile not in _PROFILE_CHANGES:
        raise SettingError(f"Unknown profile {profile!r}: choose one of {', '.join(_PROFILE_CHANGES)}.")
    values = {s.name: s.default for s in _SETTINGS if s.in_run}
    values.update(_PROFILE_CHANGES[profile])
    return copy.deepcopy(values)


PROFILES: dict[str, dict[str, Any]] = {name: profile_settings(name) for name in _PROFILE_CHANGES}


def run_setting_names() -> set[str]:
    """Names a run's settings hold (and overrides.json, sweeps and -p may set)."""
    return {s.name for s in _SETTINGS if s.in_run}


def parameter_names() -> set[str]:
    """Every name a notebook parameter or setting may have."""
    return set(SETTINGS) | set(PARAMETER_ALIASES)
