"""The GAN training loop both frameworks share: input checks, resume, history, samples, progress.

``torch_gan`` and ``tf_gan`` offer the same functions, in the same order (their ``__all__``), and the constants
NAME, NOTEBOOK, BATCH_SIZE and WEIGHT_FILES; the loop calls them (``build_kwargs``, ``Trainer``,
``save_checkpoint``, ``restore_checkpoint``, ``generate``, ``build_generator``). Everything here is plain
Python and NumPy, so the two trainings shuffle, batch, record and checkpoint the same way. Their ``train``
and ``sample`` are this module's, with the framework filled in (``for_framework``).

Checkpoints (layout, saving, rotation, resuming) are ``gan_checkpoints``; their names are importable from here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import time
from pathlib import Path

import numpy as np

from .augment import parse_policy
from .files import write_csv, write_npz
from .gan_checkpoints import (  # noqa: F401 - importable from here too
    LAYOUT,
    STATE,
    STATE_KEYS,
    OldLayoutError,
    check_folder,
    checkpoint_folders,
    load_error,
    load_generator,
    old_layout,
    read_state,
    restore_newest,
    save,
    unloadable_message,
    why_not,
)

HISTORY_COLUMNS = ["epoch", "d_loss", "g_loss", "d_real", "d_fake", "g_test_loss", "seconds"]
ACGAN_COLUMNS = ["class_acc"]  # ACGAN only: the auxiliary head's accuracy on the real batch


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
    # Both: sample from a moving average of the generator's weights, w_avg <- ema * w_avg + (1 - ema) * w after
    # every step (BatchNorm's running statistics too). None: off, as in the report. Adam then trains a copy, the
    # Trainers' ``raw_generator``; the average is what is saved as "generator" and sampled.
    ema: float | None = None
    device: str | None = None  # PyTorch: "cpu", "cuda", "mps" (None: the best available)
    amp: bool = False  # PyTorch on a GPU: bf16 autocast
    compile: bool = False  # PyTorch on a GPU: torch.compile
    channels_last: bool = True  # PyTorch: NHWC memory order (oneDNN: 1.3x at 128 px on a 2-core CPU, benchmarks/)
    fused_adam: bool | None = True  # PyTorch: one fused Adam kernel for all parameters (None: torch's choice)
    jit_compile: bool | None = None  # TensorFlow: XLA (None: tf_gan.JIT_DEFAULT)
    graph: bool = True  # TensorFlow: run the step as a tf.function (False: eagerly, for debugging)
    deterministic: bool = True  # both: deterministic kernels, so a rerun (and a resumed run) repeats bitwise

    TORCH_ONLY = ("device", "amp", "compile", "channels_last", "fused_adam")
    TF_ONLY = ("jit_compile", "graph")

    @classmethod
    def make(cls, options: Options | None = None, **changes) -> Options:
        """``options`` (or the defaults) with keyword changes; unknown names are refused with the known ones."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise TypeError(f"Unknown training option(s) {unknown}; the options are: {known}.")
        return dataclasses.replace(options or cls(), **changes)

    def check(self, framework: str) -> None:
        """Refuse a switch of the other framework set to something other than its default, and an ``ema``
        outside (0, 1)."""
        if self.ema is not None and not 0.0 < float(self.ema) < 1.0:
            raise ValueError(f"ema (the generator average's decay per step) must lie in (0, 1), not {self.ema}; "
                             "0.99 averages about the last 100 steps, None turns it off.")
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


def for_framework(func, module_name: str):
    """``func`` of this module (its first argument the framework module) as a function of the framework module
    ``module_name``: the same signature, documentation and behaviour, with ``fw`` filled in."""

    @functools.wraps(func)
    def bound(*args, **kwargs):
        return func(sys.modules[module_name], *args, **kwargs)

    signature = inspect.signature(func)
    bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    bound.__module__ = module_name
    del bound.__wrapped__  # help() and inspect show the signature without ``fw``
    return bound


# ---------------------------------------------------------------------------------------- training


def train(
    fw,
    generator,
    discriminator,
    images,
    labels,
    *,
    epochs: int,
    batch_size: int | None = None,
    out_dir,
    checkpoint_every: int = 10,
    resume: bool = True,
    progress: bool = True,
    seed: int = 0,
    options: Options | None = None,
    **changes,
):
    """Train with the framework's ``Trainer`` (its ``train_step``); resumable from out_dir/checkpoints; returns the
    per-epoch history (a DataFrame).

    ``batch_size`` None is the report's (the framework's BATCH_SIZE: PyTorch 64, TensorFlow 32). ``options`` (or
    keyword changes to it, e.g. ``diffaugment=``, ``channels_last=True`` in PyTorch, ``jit_compile=True`` in
    TensorFlow) hold the schedule, Adam's settings, DiffAugment and the speed switches.

    Each epoch runs the framework's step on every batch of a (seed, epoch) shuffle, reads the batch-mean
    losses back once, computes the generator test loss on fixed noise (both models in inference mode, the
    report's Figure 3), and appends a row to history.csv; sample grids and checkpoints follow their schedule.
    """
    import pandas as pd

    from .progress import tqdm

    options = Options.make(options, **changes)
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
    if options.ema is not None:  # only when on, so checkpoints made before the option still resume
        fingerprint["options"]["ema"] = float(options.ema)
    sample_every = options.sample_every or checkpoint_every

    check_folder(out_dir, resume)

    history: list[dict] = []
    start = 0
    with fw.Trainer(generator, discriminator, images, labels, seed=seed, options=options) as trainer:
        state = restore_newest(fw, out_dir, trainer.objects, fingerprint) if resume else None
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


def sample(fw, generator, labels, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """One image per label, with noise drawn from ``seed`` (the same noise in both frameworks): uint8 (N,H,W,C)."""
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
