"""The report's PyTorch cGAN: its training step, checkpoints and generation; the shared loop in ``gan_loop`` runs it.

Same public names, in the same order, as ``covidgan_utils.tf_gan``: build_generator, build_discriminator,
build_kwargs, count_parameters, model_summary, train_flops_per_image (from ``torch_models``), set_seed,
train_step, Trainer, save_checkpoint, restore_checkpoint, generate, sample, load_generator, train, runtime.
Importing this module imports torch; ``import covidgan_utils`` does not.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import NOTEBOOKS, gan_loop
from .augment import diffaugment_torch, parse_policy
from .files import atomic_path
from .torch_models import (
    REPORT_PARAMETERS,  # noqa: F401 - the report's counts, for the notebooks
    build_discriminator,
    build_generator,
    build_kwargs,
    count_parameters,
    eval_mode,
    model_summary,
    train_flops_per_image,
)

NAME = "torch"
NOTEBOOK = NOTEBOOKS["02"]
BATCH_SIZE = 64  # the report's
WEIGHT_FILES = re.compile(r"^weights\.pt$")
Options = gan_loop.Options


def _scores(discriminator, images, y):
    """D's probability that each image is a real one of class y, and its class logits (ACGAN) or None."""
    out = discriminator(images, y)
    return out if isinstance(out, tuple) else (out, None)


def _bce(p, target: float):
    return F.binary_cross_entropy(p, torch.full_like(p, target))


def set_seed(seed: int) -> None:
    """Seed torch's random generators (model initialisation, noise, dropout, DiffAugment)."""
    torch.manual_seed(seed)


def train_step(real, y, z, generator, discriminator, g_opt, d_opt, augment=None):
    """One cGAN step: D learns to tell real from generated images of class y, then G learns to fool the updated D.

    Returns [d_loss, g_loss, D(x), D(G(z))(, class accuracy)] on the device. ``augment`` (DiffAugment) edits
    every image D sees; an ACGAN discriminator also names the class, and both losses add its cross-entropy.
    """
    augment = augment or (lambda images: images)
    fake = generator(z, y)

    # 1. Discriminator: real -> 1, generated -> 0; fake.detach() keeps this loss away from G
    d_opt.zero_grad(set_to_none=True)
    p_real, class_real = _scores(discriminator, augment(real), y)
    p_fake, class_fake = _scores(discriminator, augment(fake.detach()), y)
    d_loss = (_bce(p_real, 1.0) + _bce(p_fake, 0.0)) / 2
    if class_real is not None:  # ACGAN: D also names the class of real and generated images
        d_loss = d_loss + (F.cross_entropy(class_real, y) + F.cross_entropy(class_fake, y)) / 2
    d_loss.backward()
    d_opt.step()

    # 2. Generator: the updated D should call the same generated batch real
    g_opt.zero_grad(set_to_none=True)
    discriminator.requires_grad_(False)  # G needs D's input gradients, not its weight gradients
    p_gen, class_gen = _scores(discriminator, augment(fake), y)
    g_loss = _bce(p_gen, 1.0)
    if class_gen is not None:  # ACGAN: G is rewarded when D recognises the class it asked for
        g_loss = g_loss + F.cross_entropy(class_gen, y)
    g_loss.backward()
    g_opt.step()
    discriminator.requires_grad_(True)

    stats = [d_loss, g_loss, p_real.mean(), p_fake.mean()]
    if class_real is not None:
        stats.append((class_real.argmax(dim=1) == y).float().mean())
    return torch.stack(stats).detach()


class _Autocast(nn.Module):
    """A model run under bf16 autocast, returning float32 (the ``amp`` switch on a GPU)."""

    def __init__(self, model: nn.Module, device_type: str):
        super().__init__()
        self.model, self.device_type = model, device_type

    def forward(self, *args):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = self.model(*args)
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


class _GlobalRNG:
    """torch's global random state (noise, dropout, DiffAugment) as a checkpointable object."""

    def state_dict(self) -> dict:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _device(device=None) -> torch.device:
    """The given device, else cuda, else mps, else cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N,C,H,W) in [0,1] -> uint8 (N,H,W,C)."""
    return x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class Trainer:
    """Models, Adam optimizers, random state and the training images on the device: what ``train`` steps and saves.

    The dataset lives on the device as one float tensor in [0, 1] (the Sigmoid's range); an epoch's batch
    indices go there in one copy, and the losses stay there until the epoch ends (one host sync per epoch).
    """

    def __init__(
        self, generator, discriminator, images: np.ndarray, labels: np.ndarray, *, seed: int, options: Options
    ):
        self.device = _device(options.device)
        if options.deterministic:  # without it, two runs on a multi-threaded CPU differ after the first steps
            torch.use_deterministic_algorithms(True, warn_only=True)
        amp, compile_ = options.amp, options.compile
        if (amp or compile_) and self.device.type != "cuda":
            print(f"amp/compile are GPU switches; ignored on {self.device.type}.", file=sys.stderr)
            amp = compile_ = False
        fmt = torch.channels_last if options.channels_last else torch.contiguous_format
        # Adam trains raw_generator. With ``ema`` on, the caller's generator holds the moving average of its
        # weights (what is sampled and saved as "generator") and raw_generator is a copy that training updates.
        raw = generator
        if options.ema is not None:
            raw = build_generator(**build_kwargs(generator))
            raw.load_state_dict(generator.state_dict())
        self.generator = generator.to(self.device, memory_format=fmt).train()
        self.raw_generator = raw.to(self.device, memory_format=fmt).train()
        self.discriminator = discriminator.to(self.device, memory_format=fmt).train()
        adam = functools.partial(torch.optim.Adam, lr=options.lr, betas=tuple(options.betas), fused=options.fused_adam)
        self.g_opt, self.d_opt = adam(raw.parameters()), adam(discriminator.parameters())
        set_seed(seed)
        self.objects = {
            "generator": generator,
            "discriminator": discriminator,
            "g_optimizer": self.g_opt,
            "d_optimizer": self.d_opt,
            "rng": _GlobalRNG(),
        }
        self.ema = options.ema
        self._averaged = []
        if self.ema is not None:
            self.objects["raw_generator"] = raw
            # state_dict tensors share the models' storage: updating them in place updates the average
            self._averaged = list(zip(generator.state_dict().values(), raw.state_dict().values()))
        self.x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        self.x = self.x.contiguous(memory_format=fmt)
        self.y = torch.from_numpy(labels).to(self.device)
        self.g_step, self.d_step = raw, discriminator
        if amp:
            self.g_step, self.d_step = _Autocast(raw, "cuda"), _Autocast(discriminator, "cuda")
        if compile_:
            self.g_step, self.d_step = torch.compile(self.g_step), torch.compile(self.d_step)
        policy = parse_policy(options.diffaugment)
        self.augment = functools.partial(diffaugment_torch, policy=policy) if policy else None
        self.latent_dim = build_kwargs(generator)["latent_dim"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        """One train_step on the batch images[idx] with fresh noise; the statistics stay on the device."""
        z = torch.randn(len(idx), self.latent_dim, device=self.device)
        stats = train_step(self.x[idx], self.y[idx], z, self.g_step, self.d_step, self.g_opt, self.d_opt, self.augment)
        if self._averaged:
            self._average()
        return stats

    @torch.no_grad()
    def _average(self) -> None:
        """One step of the generator's moving average: w_avg <- ema * w_avg + (1 - ema) * w, BatchNorm's running
        statistics included (its step counter is copied)."""
        for avg, new in self._averaged:
            if avg.is_floating_point():
                avg.lerp_(new, 1.0 - self.ema)
            else:
                avg.copy_(new)

    def epoch(self, order: np.ndarray) -> list[float]:
        """Every batch of one epoch ((steps, batch) indices); the batch-mean statistics, read back once."""
        order = torch.from_numpy(order).to(self.device)
        total = sum(self.step(idx) for idx in order)
        return (total / len(order)).tolist()

    def evaluate(self, noise: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
        """Images of fixed noise and labels, and the generator's loss on them, both models in inference mode."""
        with torch.no_grad(), eval_mode(self.generator, self.discriminator):
            y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
            fake = self.generator(torch.from_numpy(noise).to(self.device), y)
            p, _ = _scores(self.discriminator, fake, y)
            return _to_uint8(fake), float(_bce(p, 1.0))


def save_checkpoint(folder, objects: dict) -> Path:
    """Write the state of ``objects`` (models, optimizers, random state) to folder/weights.pt, atomically."""
    path = Path(folder) / "weights.pt"
    with atomic_path(path) as tmp:
        torch.save({name: obj.state_dict() for name, obj in objects.items()}, tmp)
    return path


def restore_checkpoint(folder, objects: dict | None = None) -> None:
    """Load folder/weights.pt safely (weights_only=True) into ``objects``; with none, only check that it loads."""
    state = torch.load(Path(folder) / "weights.pt", map_location="cpu", weights_only=True)
    wanted = list(objects or ("generator", "discriminator", "g_optimizer", "d_optimizer", "rng"))
    if not isinstance(state, dict) or not all(isinstance(state.get(name), dict) for name in wanted):
        raise ValueError(f"it does not hold the state of {', '.join(wanted)}")
    for name, obj in (objects or {}).items():
        obj.load_state_dict(state[name])


def generate(generator, noise: np.ndarray, labels) -> np.ndarray:
    """Images from float32 noise (N, latent_dim) and integer labels: uint8 (N,H,W,C), generator in eval mode."""
    device = next(generator.parameters()).device
    with torch.no_grad(), eval_mode(generator):
        z = torch.as_tensor(np.asarray(noise, dtype=np.float32), device=device)
        y = torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1), device=device)
        return _to_uint8(generator(z, y))


# one image per label, with noise drawn from ``seed``: uint8 (N,H,W,C)
sample = gan_loop.for_framework(gan_loop.sample, __name__)


def load_generator(out_dir):
    """The generator of the newest complete checkpoint in out_dir, on the best device, in eval mode, with ``epoch``."""
    generator = gan_loop.load_generator(sys.modules[__name__], out_dir)
    return generator.to(_device()).eval()


# the shared loop (gan_loop.train) running this module's Trainer; resumable; returns the per-epoch history
train = gan_loop.for_framework(gan_loop.train, __name__)


def runtime() -> dict:
    """Framework, versions and device of this process: for the notebook's setup line and the checkpoints."""
    device = _device()
    return {
        "framework": "PyTorch",
        "versions": {"torch": torch.__version__},
        "device": device.type,
        "threads": torch.get_num_threads(),
    }


__all__ = [  # the same names in the same order as tf_gan (tests/test_gan_loop.py checks)
    "build_generator", "build_discriminator", "build_kwargs", "count_parameters", "model_summary",
    "train_flops_per_image", "set_seed", "train_step", "Trainer", "save_checkpoint", "restore_checkpoint",
    "generate", "sample", "load_generator", "train", "runtime",
]  # fmt: skip
