"""The report's PyTorch cGAN models (its Figure 4), parametric in image size and width; counts and summaries.

At the defaults (128 px, width 1) the generator has 7,789,208 parameters and the discriminator 7,729,609,
as in the report. ``covidgan_utils.torch_gan`` trains them; ``tf_models`` holds the TensorFlow pair.
"""

from __future__ import annotations

import contextlib
import math

import pandas as pd
import torch
from torch import nn

BN_MOMENTUM = 0.1  # PyTorch convention: new = (1 - momentum) * old + momentum * batch; Keras 0.9 is the same thing
BN_EPS = 0.8  # the value printed in the report's Figure 4 (inherited from a tutorial; the usual value is 1e-5)
VARIANTS = ("cgan", "acgan")
REPORT_PARAMETERS = {"generator": 7_789_208, "discriminator": 7_729_609}  # the report's, at 128 px and width 1


def _stages(image_size: int) -> int:
    """Stride-2 up-sampling stages from the 4x4 start to ``image_size``: log2(image_size / 4) (5 at 128 px)."""
    if image_size < 16 or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two >= 16, got {image_size}.")
    return int(math.log2(image_size)) - 2


def _width(channels: int, width: float) -> int:
    """Channels scaled by the width factor (at least 1)."""
    scaled = int(round(channels * width))
    if scaled < 1:
        raise ValueError(f"width {width} leaves no channels in a {channels}-channel layer.")
    return scaled


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
        n_up = _stages(image_size)
        base = _width(64, width)
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
        _stages(image_size)
        base = _width(64, width)
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


def build_kwargs(model: nn.Module) -> dict:
    """The keyword arguments that rebuild ``model`` with build_generator / build_discriminator."""
    return dict(model.build_kwargs)


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
    try:
        with torch.no_grad(), eval_mode(model):
            labels = torch.tensor([0, 1], device=device)
            if isinstance(model, Generator):
                model(torch.zeros(2, model.latent_dim, device=device), labels)
            else:
                size, ch = model.image_size, model.channels
                model(torch.zeros(2, ch, size, size, device=device), labels)
    finally:
        for h in hooks:
            h.remove()
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
        with torch.no_grad(), eval_mode(model):
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


@contextlib.contextmanager
def eval_mode(*models: nn.Module):
    """model.eval() inside the block, each model's previous mode restored after."""
    before = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, was in zip(models, before):
            m.train(was)
