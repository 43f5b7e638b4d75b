"""The GAN training loop both frameworks share: input checks, resume, history, samples, checkpoints, progress.

``torch_gan`` and ``tf_gan`` offer the same functions, in the same order (their ``__all__``), and the constants
NAME, NOTEBOOK, BATCH_SIZE and WEIGHT_FILES; the loop calls them (``build_kwargs``, ``Trainer``,
``save_checkpoint``, ``restore_checkpoint``, ``generate``, ``build_generator``). Everything here is plain
Python and NumPy, so the two trainings shuffle, batch, record and checkpoint the same way.

Checkpoint layout, the same in both frameworks::

    OUT/checkpoints/epoch_0010/state.json    epoch, history, build kwargs, options (written last)
    OUT/checkpoints/epoch_0010/weights.*     models, optimizers, random state (the framework's own format)

A folder is written under a temporary name and renamed when complete. Rotation deletes only folders that
load as this framework's checkpoints and hold nothing else; anything else is reported and left in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from . import files
from .augment import parse_policy
from .config import rel
from .files import write_csv, write_json, write_npz

LAYOUT = 2  # checkpoint layout version, stored in every state.json
HISTORY_COLUMNS = ["epoch", "d_loss", "g_loss", "d_real", "d_fake", "g_test_loss", "seconds"]
ACGAN_COLUMNS = ["class_acc"]  # ACGAN only: the auxiliary head's accuracy on the real batch
STATE = "state.json"
STATE_KEYS = {"epoch", "history", "generator_kwargs", "discriminator_kwargs", "options"}
_FOLDER_RE = re.compile(r"^epoch_(\d{4,})$")
_OLD_FILE_RE = re.compile(r"^ckpt_(\d{4,})\.pt$")  # the PyTorch files of the earlier layout


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything ``train`` takes beyond the contract's arguments; the speed switches are marked by framework.

    A switch of the other framework is refused rather than ignored. The speed switches change how fast the
    same arithmetic runs (up to rounding), never what is trained; ``benchmarks/`` measures each one.
    """

    sample_every: int | None = None  # epochs between saved sample grids (None: checkpoint_every)
    samples_per_class: int = 32  # fixed-noise images per class in each sample grid
    keep_last: int = 2  # complete checkpoints kept (0: keep all)
    lr: float = 2e-4  # Adam, as in the report
    betas: tuple = (0.5, 0.999)
    diffaugment: str | None = None  # DiffAugment policy, e.g. "color,translation,cutout" (None: off)
    device: str | None = None  # PyTorch: "cpu", "cuda", "mps" (None: the best available)
    amp: bool = False  # PyTorch on a GPU: bf16 autocast
    compile: bool = False  # PyTorch on a GPU: torch.compile
    channels_last: bool = False  # PyTorch: NHWC memory order (faster convolutions on many CPUs)
    fused_adam: bool | None = None  # PyTorch: one fused Adam kernel for all parameters
    jit_compile: bool | None = None  # TensorFlow: XLA (None: tf_gan.JIT_DEFAULT)
    graph: bool = True  # TensorFlow: run the step as a tf.function (False: eagerly, for debugging)
    deterministic: bool = True  # TensorFlow: op determinism (a resumed run is bitwise the uninterrupted one)

    TORCH_ONLY = ("device", "amp", "compile", "channels_last", "fused_adam")
    TF_ONLY = ("jit_compile", "graph", "deterministic")

    @classmethod
    def make(cls, options: Options | None = None, **changes) -> Options:
        """``options`` (or the defaults) with keyword changes; unknown names are refused with the known ones."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise TypeError(f"Unknown training option(s) {unknown}; the options are: {known}.")
        return dataclasses.replace(options or cls(), **changes)

    def check(self, framework: str) -> None:
        """Refuse a switch of the other framework set to something other than its default."""
        other = self.TF_ONLY if framework == "torch" else self.TORCH_ONLY
        default = type(self)()
        set_here = [name for name in other if getattr(self, name) != getattr(default, name)]
        if set_here:
            which = "TensorFlow" if framework == "torch" else "PyTorch"
            raise ValueError(f"{', '.join(set_here)}: {which} switch(es), not available in this framework.")


def history_columns(variant: str) -> list[str]:
    """History columns: the cGAN's, plus the class head's accuracy for an ACGAN."""
    return HISTORY_COLUMNS[:5] + (ACGAN_COLUMNS if variant == "acgan" else []) + HISTORY_COLUMNS[5:]


def epoch_order(n: int, seed: int, epoch: int, batch_size: int) -> np.ndarray:
    """The batches of one epoch, (steps, batch_size) indices: a function of (seed, epoch) only, so a resumed
    run sees the same batches. The last incomplete batch is dropped (one batch shape, and BatchNorm never
    sees a batch of one)."""
    steps = n // batch_size
    return np.random.default_rng([seed, epoch]).permutation(n)[: steps * batch_size].reshape(steps, batch_size)


def fixed_noise(n: int, latent_dim: int, seed: int) -> np.ndarray:
    """Noise that depends only on (n, latent_dim, seed): the same every epoch, run, machine and framework."""
    return np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)


def as_images(images, channels: int, size: int) -> np.ndarray:
    """uint8 (N,H,W,C) with the model's channels: gray repeated, colour averaged; anything else refused."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N,H,W,C); got {arr.dtype} {arr.shape}.")
    if arr.shape[1:3] != (size, size):
        raise ValueError(f"images are {arr.shape[1:3]} but the models are built for {size}x{size}.")
    if arr.shape[-1] != channels:
        gray = arr if arr.shape[-1] == 1 else arr.mean(axis=-1, keepdims=True).round().astype(np.uint8)
        arr = np.repeat(gray, channels, axis=-1)
    return np.ascontiguousarray(arr)


# ------------------------------------------------------------------------------------- checkpoints


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


def _old_layout_message(out_dir, names: list[str]) -> str:
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
    """Delete a verified checkpoint folder: the files a checkpoint write makes, then the folder if it is empty."""
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


def _resume(fw, out_dir: Path, objects: dict, fingerprint: dict) -> dict | None:
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


# ---------------------------------------------------------------------------------------- training


def train(
    fw,
    generator,
    discriminator,
    images,
    labels,
    *,
    epochs,
    batch_size,
    out_dir,
    checkpoint_every,
    resume,
    progress,
    seed,
    options: Options,
):
    """Train with ``fw``'s Trainer; resumable from out_dir/checkpoints; returns the per-epoch history (a DataFrame).

    Each epoch runs the framework's step on every batch of a (seed, epoch) shuffle, reads the batch-mean
    losses back once, computes the generator test loss on fixed noise (both models in inference mode, the
    report's Figure 3), and appends a row to history.csv; sample grids and checkpoints follow their schedule.
    """
    import pandas as pd

    from .progress import tqdm

    options.check(fw.NAME)
    out_dir = Path(out_dir)
    g_kwargs, d_kwargs = fw.build_kwargs(generator), fw.build_kwargs(discriminator)
    size, channels = g_kwargs["image_size"], g_kwargs["channels"]
    if (d_kwargs["image_size"], d_kwargs["channels"]) != (size, channels):
        raise ValueError("generator and discriminator disagree on image_size or channels.")
    images = as_images(images, channels, size)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    batch_size = min(int(batch_size or fw.BATCH_SIZE), len(images))
    if batch_size < 2:
        raise ValueError("BatchNorm needs batches of at least 2 images.")
    variant = d_kwargs.get("variant", "cgan")
    columns = history_columns(variant)
    fingerprint = {
        "generator_kwargs": g_kwargs,
        "discriminator_kwargs": d_kwargs,
        "options": {"diffaugment": ",".join(parse_policy(options.diffaugment)) or "off", "variant": variant},
    }
    sample_every = options.sample_every or checkpoint_every

    for name in files.remove_leftovers(out_dir / "checkpoints"):  # half-written files of a killed run
        print(f"Removed the unfinished checkpoint file {name} of an interrupted run.", file=sys.stderr)
    if old := old_layout(out_dir):
        raise OldLayoutError(_old_layout_message(out_dir, old))
    if not resume and checkpoint_folders(out_dir):
        raise FileExistsError(
            f"{rel(out_dir)} already holds checkpoints; pass resume=True to continue, or choose a new out_dir."
        )

    history: list[dict] = []
    start = 0
    with fw.Trainer(generator, discriminator, images, labels, seed=seed, options=options) as trainer:
        state = _resume(fw, out_dir, trainer.objects, fingerprint) if resume else None
        if state is not None:
            start, history = int(state["epoch"]), [dict(row) for row in state["history"]]
            if progress:
                print(f"Resuming from {state['path'].name} (epoch {start}).")
            if start >= epochs:
                print(f"Already trained for {start} epochs (asked for {epochs}); nothing to do.")
                return pd.DataFrame(history, columns=columns)

        grid_labels = np.repeat(np.arange(g_kwargs["n_classes"]), options.samples_per_class)
        grid_noise = fixed_noise(len(grid_labels), g_kwargs["latent_dim"], seed)

        def save_samples(epoch: int, images: np.ndarray) -> None:
            write_npz(out_dir / "samples" / f"epoch_{epoch:04d}.npz", images=images, labels=grid_labels, epoch=epoch)

        if start == 0:
            save_samples(0, trainer.evaluate(grid_noise, grid_labels)[0])
        bar = tqdm(total=epochs, initial=start, desc="epochs", disable=not progress, file=sys.stdout, mininterval=1.0)
        for epoch in range(start + 1, epochs + 1):
            t0 = time.perf_counter()
            means = trainer.epoch(epoch_order(len(images), seed, epoch, batch_size))
            fake, g_test_loss = trainer.evaluate(grid_noise, grid_labels)
            row = {"epoch": epoch, **dict(zip(columns[1:-2], means)), "g_test_loss": g_test_loss}
            row["seconds"] = time.perf_counter() - t0
            history.append(row)
            write_csv(out_dir / "history.csv", pd.DataFrame(history, columns=columns))
            if epoch % sample_every == 0 or epoch == epochs:
                save_samples(epoch, fake)
            if epoch % checkpoint_every == 0 or epoch == epochs:
                state = {
                    "epoch": epoch,
                    "history": history,
                    **fingerprint,
                    "seed": seed,
                    "batch_size": batch_size,
                    "lr": options.lr,
                    "betas": list(options.betas),
                    "runtime": fw.runtime(),
                }
                save(fw, out_dir, trainer.objects, state, options.keep_last)
            bar.set_postfix({k: f"{row[k]:.3f}" for k in ("d_loss", "g_loss", "d_real", "d_fake")})
            bar.update(1)
        bar.close()
    return pd.DataFrame(history, columns=columns)


# -------------------------------------------------------------------------------------- generation


def sample(fw, generator, labels, seed: int, batch_size: int) -> np.ndarray:
    """One image per label from noise drawn with ``seed`` (the same noise in both frameworks): uint8 (N,H,W,C)."""
    kwargs = fw.build_kwargs(generator)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    noise = fixed_noise(len(labels), kwargs["latent_dim"], seed)
    out = [
        fw.generate(generator, noise[lo : lo + batch_size], labels[lo : lo + batch_size])
        for lo in range(0, len(labels), batch_size)
    ]
    if not out:
        return np.zeros((0, kwargs["image_size"], kwargs["image_size"], kwargs["channels"]), dtype=np.uint8)
    return np.concatenate(out)


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
        raise FileNotFoundError(_old_layout_message(out_dir, old))
    raise FileNotFoundError(f"No complete checkpoint in {rel(Path(out_dir) / 'checkpoints')}: run {fw.NOTEBOOK} first.")
