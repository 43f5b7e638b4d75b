"""The report's PyTorch conditional GAN (its Figure 4), parametric in size and width, with a fast resumable loop.

Same public names as ``covidgan_utils.tf_gan``: build_generator, build_discriminator, train, sample,
load_generator. Importing this module imports torch; ``import covidgan_utils`` does not.
"""

from __future__ import annotations

import math
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from . import CLASSES, files
from .augment import diffaugment_torch, parse_policy
from .files import atomic_path, write_csv, write_npz

BN_MOMENTUM = 0.1  # PyTorch convention: new = (1 - momentum) * old + momentum * batch; Keras 0.9 is the same thing
BN_EPS = 0.8  # the value printed in the report's Figure 4 (inherited from a tutorial; the usual value is 1e-5)
HISTORY_COLUMNS = ["epoch", "d_loss", "g_loss", "d_real", "d_fake", "seconds"]
ACGAN_COLUMNS = ["class_acc"]  # ACGAN only: the auxiliary head's accuracy on the real batch
VARIANTS = ("cgan", "acgan")
_CKPT_RE = re.compile(r"^ckpt_(\d{4,})\.pt$")
_CKPT_KEYS = {"generator", "discriminator", "g_optimizer", "d_optimizer", "epoch", "rng", "history", "generator_kwargs"}


def _check_size(image_size: int) -> int:
    """Number of stride-2 up-sampling stages from the 4x4 start to ``image_size``."""
    if image_size < 16 or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two >= 16, got {image_size}.")
    return int(math.log2(image_size)) - 2


def _base_channels(width: float) -> int:
    """Channels of the widest-resolution hidden layer: 64 in the report, times the width factor."""
    base = int(round(64 * width))
    if base < 1:
        raise ValueError(f"width {width} leaves no channels (64 * width < 1).")
    return base


def _init_weights(module: nn.Module) -> None:
    """DCGAN initialisation used by the report's tutorial: conv N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """Noise (latent_dim) + class label -> image in [0, 1] (Sigmoid), channels x image_size x image_size."""

    def __init__(self, image_size=128, latent_dim=100, n_classes=2, embedding_dim=100, width=1.0, channels=3):
        super().__init__()
        self.build_kwargs = dict(
            image_size=image_size,
            latent_dim=latent_dim,
            n_classes=n_classes,
            embedding_dim=embedding_dim,
            width=width,
            channels=channels,
        )
        n_up = _check_size(image_size)
        base = _base_channels(width)
        # Hidden channels halve at each up-sampling: 512, 256, 128, 64 at 128 px and width 1.
        hidden = [base * 2 ** (n_up - 2 - i) for i in range(n_up - 1)]
        self.start_channels = hidden[0]
        self.latent_dim = latent_dim
        # The label becomes one extra 4x4 feature plane.
        self.label_embedding = nn.Sequential(nn.Embedding(n_classes, embedding_dim), nn.Linear(embedding_dim, 16))
        self.latent = nn.Sequential(nn.Linear(latent_dim, 16 * self.start_channels), nn.LeakyReLU(0.2, inplace=True))
        layers: list[nn.Module] = []
        c_in = self.start_channels + 1
        for c_out in hidden:
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out, momentum=BN_MOMENTUM, eps=BN_EPS),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        layers += [nn.ConvTranspose2d(c_in, channels, 4, 2, 1, bias=False), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        plane = self.label_embedding(labels).view(-1, 1, 4, 4)
        x = self.latent(z).view(-1, self.start_channels, 4, 4)
        return self.body(torch.cat([x, plane], dim=1))


class Discriminator(nn.Module):
    """Image + class label -> probability that the image is a real X-ray of that class.

    ``variant="acgan"`` (Odena et al.; the design of Waheed et al.'s CovidGAN) drops the label input and
    adds an auxiliary head: image -> (probability that it is real, class logits).
    """

    def __init__(self, image_size=128, n_classes=2, embedding_dim=100, width=1.0, channels=3, variant="cgan"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"Unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}.")
        self.build_kwargs = dict(
            image_size=image_size, n_classes=n_classes, embedding_dim=embedding_dim, width=width, channels=channels
        )
        if variant != "cgan":  # older checkpoints (no variant key) stay loadable as cgan
            self.build_kwargs["variant"] = variant
        self.variant = variant
        _check_size(image_size)
        base = _base_channels(width)
        self.image_size, self.channels, self.n_classes = image_size, channels, n_classes
        in_channels = channels
        if variant == "cgan":  # the label becomes `channels` extra full-size image planes
            self.label_embedding = nn.Sequential(
                nn.Embedding(n_classes, embedding_dim), nn.Linear(embedding_dim, channels * image_size * image_size)
            )
            in_channels = 2 * channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        side = image_size // 2
        c_in = base
        for mult in (2, 4, 8):  # three kernel-4, stride-3, padding-2 convolutions as in the report
            layers += [
                nn.Conv2d(c_in, base * mult, 4, 3, 2, bias=False),
                nn.BatchNorm2d(base * mult, momentum=BN_MOMENTUM, eps=BN_EPS),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            c_in = base * mult
            side = (side + 2 * 2 - 4) // 3 + 1
        self.features = c_in * side * side  # 512 * 3 * 3 = 4608 at 128 px
        if variant == "cgan":
            layers += [nn.Flatten(), nn.Dropout(0.4), nn.Linear(self.features, 1), nn.Sigmoid()]
        else:  # shared trunk; the two heads read the same dropped-out features
            layers += [nn.Flatten(), nn.Dropout(0.4)]
            self.source_head = nn.Sequential(nn.Linear(self.features, 1), nn.Sigmoid())
            self.class_head = nn.Linear(self.features, n_classes)
        self.body = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        if self.variant == "acgan":  # the label is not an input: the class head must find it in the image
            h = self.body(images)
            return self.source_head(h), self.class_head(h)
        # The same numbers as mapping each sample's label, computed once per class and then gathered.
        table = self.label_embedding(torch.arange(self.n_classes, device=labels.device))
        planes = table[labels].view(-1, self.channels, self.image_size, self.image_size)
        return self.body(torch.cat([images, planes], dim=1))


def build_generator(image_size=128, latent_dim=100, n_classes=2, embedding_dim=100, width=1.0, channels=3) -> Generator:
    """The report's generator (7,789,208 parameters at the defaults), scaled by image_size and width."""
    return Generator(image_size, latent_dim, n_classes, embedding_dim, width, channels)


def build_discriminator(
    image_size=128, n_classes=2, embedding_dim=100, width=1.0, channels=3, variant="cgan"
) -> Discriminator:
    """The report's discriminator (7,729,609 parameters at the defaults), scaled by image_size and width; or its ACGAN variant."""
    return Discriminator(image_size, n_classes, embedding_dim, width, channels, variant)


def count_parameters(model: nn.Module) -> int:
    """All parameters of a model (trainable ones; BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def model_summary(model: nn.Module) -> pd.DataFrame:
    """Layer table (name, type, output shape, parameters) from one dry run on a batch of 2."""
    rows, hooks = [], []

    def hook(module, _inputs, output):
        rows.append((module, tuple(output.shape[1:])))

    named = {m: n for n, m in model.named_modules()}
    for module in model.modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(hook))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            labels = torch.tensor([0, 1], device=device)
            if isinstance(model, Generator):
                model(torch.zeros(2, model.latent_dim, device=device), labels)
            else:
                size, ch = model.image_size, model.channels
                model(torch.zeros(2, ch, size, size, device=device), labels)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    table = pd.DataFrame(
        [
            {
                "layer": named[m],
                "type": type(m).__name__,
                "output shape": "x".join(str(s) for s in shape),
                "parameters": sum(p.numel() for p in m.parameters()),
            }
            for m, shape in rows
        ]
    )
    return table


def forward_macs(model: nn.Module) -> int:
    """Multiply-accumulates of one forward pass for one image (Linear, Conv2d, ConvTranspose2d layers)."""
    macs: list[int] = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Linear):
            macs.append(module.in_features * module.out_features)  # per image, as in the report's per-sample model
        elif isinstance(module, nn.ConvTranspose2d):  # every input pixel scatters a k x k x C_out patch
            _, c_in, h, w = inputs[0].shape
            macs.append(h * w * module.kernel_size[0] * module.kernel_size[1] * c_in * module.out_channels)
        elif isinstance(module, nn.Conv2d):
            _, c_out, h, w = output.shape
            macs.append(h * w * module.kernel_size[0] * module.kernel_size[1] * module.in_channels * c_out)

    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad(), _eval_mode(model):
            device = next(model.parameters()).device
            label = torch.zeros(1, dtype=torch.long, device=device)
            if isinstance(model, Generator):
                model(torch.zeros(1, model.latent_dim, device=device), label)
            else:
                model(torch.zeros(1, model.channels, model.image_size, model.image_size, device=device), label)
    finally:
        for h in hooks:
            h.remove()
    return int(sum(macs))


def train_flops_per_image(generator: Generator, discriminator: Discriminator) -> int:
    """FLOPs of one training step per image: G forward+backward (3 passes), D 3 forwards + 2.5 backwards (8 passes)."""
    return 2 * (3 * forward_macs(generator) + 8 * forward_macs(discriminator))


def pick_device(device=None) -> torch.device:
    """The given device, else cuda, else mps, else cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def to_tensor(images: np.ndarray, channels: int, device=None) -> torch.Tensor:
    """uint8 (N,H,W,C) -> float (N,channels,H,W) in [0,1]; gray is repeated, colour averaged as needed."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N,H,W,C); got {arr.dtype} {arr.shape}.")
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[1] != channels:
        x = x.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1)
    return x.contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N,C,H,W) in [0,1] -> uint8 (N,H,W,C)."""
    return x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# ----------------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict:
    """Every random state the loop touches, in types that torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_files(out_dir) -> list[Path]:
    """Files named like checkpoints (ckpt_NNNN.pt) in out_dir/checkpoints, newest (highest epoch) first.

    A name is not proof: a file may be damaged or foreign; :func:`load_checkpoint` skips those and
    rotation never deletes them.
    """
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT_RE.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found, reverse=True)]


def _epoch_of(path: Path) -> int:
    return int(_CKPT_RE.match(path.name).group(1))


# Checkpoint files known to load, by resolved path -> (size, mtime_ns): written or read by this process.
_VERIFIED: dict[str, tuple[int, int]] = {}
_REPORTED: set[str] = set()  # unloadable files already explained once by rotation


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _mark_verified(path: Path) -> None:
    try:
        _VERIFIED[str(path.resolve())] = _stamp(path)
    except OSError:
        pass


def _why_not(err: Exception) -> str:
    """A short reason from a load error, without torch's advice to load the file unsafely."""
    text = str(err).split("WeightsUnpickler error:")[-1]
    advice = (
        "weights_only",
        "weights only",
        "safe_globals",
        "trust",
        "pickle_module",
        "file an issue",
        "documentation of torch.load",
    )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not any(word in line.lower() for word in advice)]
    reason = (lines or [""])[0].split(". ")[0].strip()[:160]
    if not reason:
        reason = "it holds something other than tensors and plain values"
    return f"{type(err).__name__}: {reason}"


def _unloadable_message(path: Path, err: Exception, rotating: bool = False) -> str:
    what = "Not deleting old checkpoint" if rotating else "Skipping unreadable checkpoint"
    return (
        f"{what} {path.name}: not a checkpoint this project wrote, or it is damaged "
        f"({_why_not(err)}). It was left in place; move it away or delete it yourself."
    )


def _read_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load one checkpoint safely (weights_only=True) and check that it is complete; raises if it is not."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict):
        raise ValueError(f"it holds a {type(ckpt).__name__}, not a checkpoint")
    missing = _CKPT_KEYS - set(ckpt)
    if missing:
        raise ValueError(f"missing {sorted(missing)}")
    if int(ckpt["epoch"]) != _epoch_of(path):
        raise ValueError(f"it holds epoch {int(ckpt['epoch'])}, not the epoch in its name")
    _mark_verified(path)
    return ckpt


def _load_error(path: Path) -> Exception | None:
    """None if ``path`` is a complete checkpoint (checked once per process), else why it is not."""
    try:
        if _VERIFIED.get(str(path.resolve())) == _stamp(path):
            return None
        _read_checkpoint(path)
    except Exception as err:  # noqa: BLE001 - anything that does not load is not ours to delete
        return err
    return None


def load_checkpoint(out_dir, map_location="cpu", verbose: bool = True) -> dict | None:
    """The newest complete checkpoint in out_dir; damaged or foreign files are skipped (and left) with a message."""
    for path in checkpoint_files(out_dir):
        try:
            ckpt = _read_checkpoint(path, map_location)
        except Exception as err:  # noqa: BLE001 - any unreadable file is skipped, never trusted
            if verbose:
                print(_unloadable_message(path, err), file=sys.stderr)
            continue
        ckpt["path"] = path
        return ckpt
    return None


def _set_aside(path: Path, err: Exception) -> None:
    """Rename an unloadable file that stands where a new checkpoint goes; it is kept, never deleted."""
    n, aside = 1, path.with_name(path.name + ".unreadable")
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.unreadable-{n}")
    path.rename(aside)
    print(
        f"{path.name} could not be loaded: not a checkpoint this project wrote, or it is damaged ({_why_not(err)}). "
        f"A new checkpoint takes its name, so it was renamed {aside.name} and left in place; "
        "move it away or delete it yourself.",
        file=sys.stderr,
    )


def _rotate(out_dir, epoch: int, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete checkpoints up to ``epoch``; delete only older complete ones.

    Files that do not load are never deleted (they are explained once), and files numbered after ``epoch``
    are not part of this run's line of training, so they are not touched at all.
    """
    kept = 0
    for path in checkpoint_files(out_dir):
        if _epoch_of(path) > epoch:
            continue
        err = _load_error(path)
        if err is not None:
            if str(path) not in _REPORTED:
                _REPORTED.add(str(path))
                print(_unloadable_message(path, err, rotating=True), file=sys.stderr)
            continue
        kept += 1
        if kept > keep_last:
            path.unlink(missing_ok=True)
            _VERIFIED.pop(str(path.resolve()), None)


def _save_checkpoint(out_dir, epoch, generator, discriminator, g_opt, d_opt, history, keep_last, options=None) -> Path:
    path = Path(out_dir) / "checkpoints" / f"ckpt_{epoch:04d}.pt"
    state = {
        "epoch": epoch,
        "generator": generator.state_dict(),
        "discriminator": discriminator.state_dict(),
        "g_optimizer": g_opt.state_dict(),
        "d_optimizer": d_opt.state_dict(),
        "rng": _rng_state(),
        "history": {k: [float(r[k]) if k != "epoch" else int(r[k]) for r in history] for k in _columns(discriminator)},
        "options": dict(options or {}),
        "generator_kwargs": dict(generator.build_kwargs),
        "discriminator_kwargs": dict(discriminator.build_kwargs),
        "torch_version": str(torch.__version__),
    }
    if path.exists() and (err := _load_error(path)) is not None:
        _set_aside(path, err)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    _mark_verified(path)
    if keep_last:
        _rotate(out_dir, epoch, keep_last)
    return path


# ------------------------------------------------------------------------------------- training


def _columns(discriminator) -> list[str]:
    """History columns: the cGAN's, plus the class head's accuracy for an ACGAN."""
    acgan = getattr(discriminator, "variant", "cgan") == "acgan"
    return HISTORY_COLUMNS[:-1] + (ACGAN_COLUMNS if acgan else []) + HISTORY_COLUMNS[-1:]


def fixed_noise(n: int, latent_dim: int, seed: int) -> torch.Tensor:
    """Noise that depends only on (n, latent_dim, seed): the same grid at every epoch and on every device."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, latent_dim, generator=gen)


def _sample_labels(per_class: int, n_classes: int) -> torch.Tensor:
    return torch.arange(n_classes).repeat_interleave(per_class)


def _save_samples(out_dir, epoch, generator, noise, labels) -> Path:
    with torch.no_grad(), _eval_mode(generator):
        images = to_uint8(generator(noise, labels))
    return write_npz(
        Path(out_dir) / "samples" / f"epoch_{epoch:04d}.npz", images=images, labels=labels.cpu().numpy(), epoch=epoch
    )


class _eval_mode:
    """Context: model.eval() inside, the previous mode restored after."""

    def __init__(self, model):
        self.model, self.was = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)


def _train_step(discriminator, g_step, d_step, g_opt, d_opt, real, y, z, autocast, policy=()) -> torch.Tensor:
    """One discriminator update, then one generator update; returns (d_loss, g_loss, D(x), D(G(z))[, class_acc]) on the device.

    With a DiffAugment ``policy`` every image D sees (real and fake, in both steps) is augmented first.
    With an ACGAN discriminator both losses add the cross-entropy of D's class head: on real and fake images
    for D, on fake images for G (so G is rewarded for images whose class D can recognise).
    """
    b = len(y)
    ones = torch.ones(b, 1, device=real.device)
    zeros = torch.zeros(b, 1, device=real.device)
    acgan = getattr(discriminator, "variant", "cgan") == "acgan"

    def judge(images):
        out = d_step(diffaugment_torch(images, policy), y)
        return out if acgan else (out, None)

    d_opt.zero_grad(set_to_none=True)
    with autocast:
        p_real, c_real = judge(real)
        fake = g_step(z, y)
        p_fake, c_fake = judge(fake.detach())
    d_loss = (F.binary_cross_entropy(p_real.float(), ones) + F.binary_cross_entropy(p_fake.float(), zeros)) / 2
    if acgan:
        d_loss = d_loss + (F.cross_entropy(c_real.float(), y) + F.cross_entropy(c_fake.float(), y)) / 2
    d_loss.backward()
    d_opt.step()

    g_opt.zero_grad(set_to_none=True)
    discriminator.requires_grad_(False)  # the generator step needs D's input gradients, not its weights'
    with autocast:
        p_gen, c_gen = judge(fake)
    g_loss = F.binary_cross_entropy(p_gen.float(), ones)
    if acgan:
        g_loss = g_loss + F.cross_entropy(c_gen.float(), y)
    g_loss.backward()
    g_opt.step()
    discriminator.requires_grad_(True)
    with torch.no_grad():
        stats = [d_loss, g_loss, p_real.float().mean(), p_fake.float().mean()]
        if acgan:
            stats.append((c_real.argmax(dim=1) == y).float().mean())
        return torch.stack(stats).detach()


def time_train_step(generator, discriminator, batch_size: int = 8, repeats: int = 2, device=None) -> float:
    """Median seconds of one training step on random data, on copies of the models (the originals are untouched)."""
    import copy
    import statistics

    device = pick_device(device)
    g, d = copy.deepcopy(generator).to(device).train(), copy.deepcopy(discriminator).to(device).train()
    g_opt = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    size, ch = g.build_kwargs["image_size"], g.build_kwargs["channels"]
    off = torch.autocast(device.type, enabled=False)
    times = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # leave the caller's RNG alone
        real = torch.rand(batch_size, ch, size, size, device=device)
        y = torch.arange(batch_size, device=device) % g.build_kwargs["n_classes"]
        z = torch.randn(batch_size, g.build_kwargs["latent_dim"], device=device)
        for i in range(repeats + 1):  # the first step is a warm-up
            t0 = time.perf_counter()
            _train_step(d, g, d, g_opt, d_opt, real, y, z, off).tolist()
            if i:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train(
    generator: Generator,
    discriminator: Discriminator,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 64,
    out_dir,
    checkpoint_every: int = 10,
    sample_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    seed: int = 0,
    lr: float = 2e-4,
    betas=(0.5, 0.999),
    device=None,
    amp: bool = False,
    compile: bool = False,
    samples_per_class: int = 32,
    keep_last: int = 2,
    diffaugment=None,
    channels_last: bool = False,
    fused_adam: bool | None = None,
) -> pd.DataFrame:
    """Train the cGAN with BCE and Adam; resumable from out_dir/checkpoints; returns the per-epoch history.

    The dataset lives on the device as one float tensor; batches are index slices of a seeded permutation
    and the losses stay on the device until the end of each epoch (one host sync per epoch).
    ``diffaugment`` (None: off; e.g. "color,translation,cutout") augments every image the discriminator
    sees; an ACGAN discriminator (``build_discriminator(variant="acgan")``) adds the class losses.
    ``channels_last`` keeps models and images in NHWC memory order (faster convolutions; docs/performance.md);
    ``fused_adam=True`` updates all parameters in one fused kernel (torch's default, None, loops over them).
    """
    from .progress import tqdm

    out_dir = Path(out_dir)
    device = pick_device(device)
    if (amp or compile) and device.type != "cuda":
        print(f"amp/compile are GPU switches; ignored on {device.type}.", file=sys.stderr)
        amp = compile = False
    sample_every = sample_every or checkpoint_every
    channels = generator.build_kwargs["channels"]
    if (
        discriminator.build_kwargs["channels"] != channels
        or discriminator.build_kwargs["image_size"] != (generator.build_kwargs["image_size"])
    ):
        raise ValueError("generator and discriminator disagree on image_size or channels.")
    labels_np = np.asarray(labels).astype(np.int64)
    if len(labels_np) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels_np)} labels.")
    size = generator.build_kwargs["image_size"]
    if np.asarray(images).shape[1:3] != (size, size):
        raise ValueError(f"images are {np.asarray(images).shape[1:3]} but the models are built for {size}x{size}.")

    policy = parse_policy(diffaugment)
    options = {"diffaugment": ",".join(policy) or "off", "variant": getattr(discriminator, "variant", "cgan")}
    columns = _columns(discriminator)
    generator.to(device).train()
    discriminator.to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    generator.to(memory_format=fmt)
    discriminator.to(memory_format=fmt)
    g_opt = torch.optim.Adam(generator.parameters(), lr=lr, betas=tuple(betas), fused=fused_adam)
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=tuple(betas), fused=fused_adam)

    history: list[dict] = []
    start = 0
    for name in files.remove_leftovers(out_dir / "checkpoints"):  # half-written files of a killed run
        print(f"Removed the unfinished checkpoint file {name} of an interrupted run.", file=sys.stderr)
    ckpt = load_checkpoint(out_dir) if resume else None
    if not resume and checkpoint_files(out_dir):
        raise FileExistsError(
            f"{out_dir} already holds checkpoints; pass resume=True to continue, or choose a new out_dir."
        )
    if ckpt is not None:
        for name, model in (("generator", generator), ("discriminator", discriminator)):
            saved = ckpt.get(f"{name}_kwargs", ckpt["generator_kwargs"] if name == "generator" else None)
            if saved is not None and dict(saved) != model.build_kwargs:
                raise ValueError(
                    f"The checkpoint {ckpt['path'].name} holds a {name} built with {dict(saved)}, "
                    f"not {model.build_kwargs}: use a new out_dir for a different model."
                )
        saved_options = dict(ckpt.get("options") or {"diffaugment": "off", "variant": "cgan"})
        if saved_options != options:
            raise ValueError(
                f"The checkpoint {ckpt['path'].name} was trained with {saved_options}, not {options}: "
                "use a new out_dir (or run_dir) for different training options."
            )
        generator.load_state_dict(ckpt["generator"])
        discriminator.load_state_dict(ckpt["discriminator"])
        g_opt.load_state_dict(ckpt["g_optimizer"])
        d_opt.load_state_dict(ckpt["d_optimizer"])
        _set_rng_state(ckpt["rng"])
        start = int(ckpt["epoch"])
        h = ckpt["history"]
        history = [{k: h[k][i] for k in columns} for i in range(len(h["epoch"]))]
        if progress:
            print(f"Resuming from {ckpt['path'].name} (epoch {start}).")
        if start >= epochs:
            print(f"Already trained for {start} epochs (asked for {epochs}); nothing to do.")
            return pd.DataFrame(history, columns=columns)
    else:
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    x_all = to_tensor(images, channels, device).contiguous(memory_format=fmt)
    y_all = torch.from_numpy(labels_np).to(device)
    n = len(x_all)
    latent_dim = generator.build_kwargs["latent_dim"]
    n_classes = generator.build_kwargs["n_classes"]
    grid_labels = _sample_labels(samples_per_class, n_classes).to(device)
    grid_noise = fixed_noise(len(grid_labels), latent_dim, seed).to(device)
    if start == 0:
        _save_samples(out_dir, 0, generator, grid_noise, grid_labels)

    g_step, d_step = generator, discriminator
    if compile:
        g_step, d_step = torch.compile(generator), torch.compile(discriminator)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    bar = tqdm(total=epochs, initial=start, desc="epochs", disable=not progress, file=sys.stdout, mininterval=1.0)
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n).to(device)
        sums = torch.zeros(
            len(columns) - 2, device=device
        )  # d_loss, g_loss, D(x), D(G(z))[, class_acc], batch-weighted
        seen = 0
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            b = len(idx)
            if b < 2:  # BatchNorm needs two samples; at most one image is skipped this epoch
                continue
            seen += b
            real, y = x_all[idx], y_all[idx]
            z = torch.randn(b, latent_dim, device=device)
            sums += b * _train_step(discriminator, g_step, d_step, g_opt, d_opt, real, y, z, autocast, policy)
        means = (sums / seen).tolist()  # the one host sync of the epoch
        d_l, g_l, d_x, d_gz = means[:4]
        row = {"epoch": epoch, **dict(zip(columns[1:-1], means))}
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        frame = pd.DataFrame(history, columns=columns)
        write_csv(out_dir / "history.csv", frame)
        if epoch % sample_every == 0 or epoch == epochs:
            _save_samples(out_dir, epoch, generator, grid_noise, grid_labels)
        if epoch % checkpoint_every == 0 or epoch == epochs:
            _save_checkpoint(out_dir, epoch, generator, discriminator, g_opt, d_opt, history, keep_last, options)
        bar.set_postfix(d_loss=f"{d_l:.3f}", g_loss=f"{g_l:.3f}", d_real=f"{d_x:.2f}", d_fake=f"{d_gz:.2f}")
        bar.update(1)
    bar.close()
    return pd.DataFrame(history, columns=columns)


# ----------------------------------------------------------------------------------- generation


def sample(generator: Generator, labels, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """Generate one image per label with noise drawn from ``seed``: uint8 (N,H,W,C)."""
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    device = next(generator.parameters()).device
    noise = fixed_noise(len(labels_t), generator.build_kwargs["latent_dim"], seed)
    out = []
    with torch.no_grad(), _eval_mode(generator):
        for lo in range(0, len(labels_t), batch_size):
            z = noise[lo : lo + batch_size].to(device)
            out.append(to_uint8(generator(z, labels_t[lo : lo + batch_size].to(device))))
    if not out:
        size, ch = generator.build_kwargs["image_size"], generator.build_kwargs["channels"]
        return np.zeros((0, size, size, ch), dtype=np.uint8)
    return np.concatenate(out)


def load_generator(out_dir, device=None) -> Generator:
    """Rebuild the generator of the newest complete checkpoint in out_dir, in eval mode."""
    ckpt = load_checkpoint(out_dir)
    if ckpt is None:
        raise FileNotFoundError(
            f"No complete checkpoint in {Path(out_dir) / 'checkpoints'}: run notebook 02_pytorch_cgan first."
        )
    generator = build_generator(**ckpt["generator_kwargs"])
    generator.load_state_dict(ckpt["generator"])
    generator.epoch = int(ckpt["epoch"])
    return generator.to(pick_device(device)).eval()


load_samples = files.load_samples  # framework-free; shared with torch_gan/tf_gan

__all__ = [
    "CLASSES",
    "Discriminator",
    "Generator",
    "build_discriminator",
    "build_generator",
    "count_parameters",
    "forward_macs",
    "load_checkpoint",
    "load_generator",
    "load_samples",
    "model_summary",
    "sample",
    "time_train_step",
    "train",
    "train_flops_per_image",
]
