"""PyTorch cGAN training speed: the project's ``torch_gan.train`` vs a plain loop written the way the report did.

Same machine, same run, same models (the report's Figure 4 architecture at 128 px, width 1, built from
the same seed), same images (phantom PNGs at 299 px, the real database's size, in a temporary
ImageFolder layout), after one warm-up epoch each.

- baseline: torchvision ImageFolder + DataLoader (batch 64, shuffle) that opens, decodes and resizes
  every PNG every epoch; the tutorial's step with ``.item()`` on both losses after every step.
- project: ``torch_gan.train``: images decoded once into the uint8 cache (as notebook 01 does, not
  timed), one float tensor on the device, index-slice batches, losses read once per epoch, no weight
  gradients for the discriminator during the generator step.

Reports training images/s of both, their ratio (goal >= 1.5x), and the achieved GFLOP/s of the
model arithmetic against this machine's fp32 matrix-multiply rate measured here.

    python benchmarks/torch_cgan_train.py [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _timing import result  # noqa: E402

IMAGE_SIZE = 128
FILE_SIZE = 299  # the COVID-19 Radiography Database ships 299 x 299 PNGs


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n torch matmul (2 n^3 flops): this machine's practical peak."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def write_pngs(folder: Path, n: int, size: int = FILE_SIZE, seed: int = 0) -> Path:
    """n gray PNGs in COVID/ and Normal/ (phantoms when available, else smooth random images)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    try:
        from covidgan_utils.phantoms import make_phantom
    except ImportError:
        make_phantom = None
    for i in range(n):
        covid = i % 3 == 0
        if make_phantom is not None:
            img = np.asarray(make_phantom(rng, size, covid))
            if img.dtype != np.uint8:
                img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        else:
            img = rng.integers(0, 256, (size // 8, size // 8), dtype=np.uint8)
            img = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC))
        out = folder / ("COVID" if covid else "Normal") / f"img-{i:04d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(out)
    return folder


def baseline_epochs(folder: Path, generator, discriminator, epochs: int, batch_size: int) -> list[float]:
    """Seconds per epoch of the report-style loop: ImageFolder decoding every epoch, .item() every step."""
    import torch
    from torch import nn
    from torchvision import datasets, transforms

    # ImageFolder sorts class folders: COVID=0, Normal=1; map to the project's COVID=1.
    dataset = datasets.ImageFolder(
        str(folder),
        transform=transforms.Compose([transforms.Resize((IMAGE_SIZE, IMAGE_SIZE)), transforms.ToTensor()]),
        target_transform=lambda k: 1 - k,
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    loss_fn = nn.BCELoss()
    g_opt = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    latent_dim = generator.build_kwargs["latent_dim"]
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        d_losses, g_losses = [], []
        for real_images, labels in loader:
            b = len(labels)
            real_target = torch.ones(b, 1)
            fake_target = torch.zeros(b, 1)
            d_opt.zero_grad()
            d_real_loss = loss_fn(discriminator(real_images, labels), real_target)
            noise = torch.randn(b, latent_dim)
            generated = generator(noise, labels)
            d_fake_loss = loss_fn(discriminator(generated.detach(), labels), fake_target)
            d_loss = (d_real_loss + d_fake_loss) / 2
            d_loss.backward()
            d_opt.step()
            g_opt.zero_grad()
            g_loss = loss_fn(discriminator(generated, labels), real_target)
            g_loss.backward()
            g_opt.step()
            d_losses.append(d_loss.item())
            g_losses.append(g_loss.item())
        times.append(time.perf_counter() - t0)
    return times


def run(quick: bool = False, peak_gflops: float | None = None) -> dict:
    """Both loops on the same images and models; a row in benchmarks/run.py's shape plus details."""
    import numpy as np
    import torch

    from covidgan_utils import torch_gan
    from covidgan_utils.data import load_image

    n_images = 64 if quick else 128
    batch_size = 64
    timed = 1 if quick else 3
    peak = peak_gflops or matmul_peak_gflops(1024 if quick else 2048)

    def models():
        torch.manual_seed(0)
        return torch_gan.build_generator(IMAGE_SIZE), torch_gan.build_discriminator(IMAGE_SIZE)

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_pngs(Path(tmp) / "images", n_images)
        paths = sorted(folder.rglob("*.png"))
        t0 = time.perf_counter()
        images = np.stack([load_image(p, IMAGE_SIZE) for p in paths])[..., None]  # the once-per-run uint8 cache
        cache_s = time.perf_counter() - t0
        labels = np.array([1 if p.parent.name == "COVID" else 0 for p in paths])

        generator, discriminator = models()
        flops = torch_gan.train_flops_per_image(generator, discriminator)
        base = baseline_epochs(folder, generator, discriminator, epochs=1 + timed, batch_size=batch_size)[1:]

        generator, discriminator = models()
        history = torch_gan.train(
            generator,
            discriminator,
            images,
            labels,
            epochs=1 + timed,
            batch_size=batch_size,
            out_dir=Path(tmp) / "run",
            checkpoint_every=10_000,
            sample_every=10_000,
            progress=False,
            samples_per_class=1,
            device="cpu",
        )
        ours = history["seconds"].tolist()[1:]

    base_s, ours_s = statistics.median(base), statistics.median(ours)
    ours_ips, base_ips = n_images / ours_s, n_images / base_s
    gflops = flops * n_images / ours_s / 1e9
    row = result(
        "torch_cgan_train",
        round(ours_ips, 2),
        "images/s",
        baseline=round(base_ips, 2),
        ratio=round(base_s / ours_s, 2),
        target=1.5,
        gflops=round(gflops, 1),
        baseline_gflops=round(flops * n_images / base_s / 1e9, 1),
        peak_gflops=round(peak, 1),
        fraction_of_peak=round(gflops / peak, 3),
        gflop_per_image=round(flops / 1e9, 2),
        images=n_images,
        batch_size=batch_size,
        image_size=IMAGE_SIZE,
        epoch_seconds={"baseline": [round(t, 2) for t in base], "project": [round(t, 2) for t in ours]},
        cache_seconds_once=round(cache_s, 2),
        threads=torch.get_num_threads(),
        machine=f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
        torch=str(torch.__version__),
    )
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 images, one timed epoch each")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    row = run(quick=args.quick)
    print(
        f"report cGAN @ {row['image_size']} px, batch {row['batch_size']}, {row['images']} images, "
        f"{row['threads']} threads\n"
        f"  baseline (ImageFolder + .item() per step): {row['baseline']:7.2f} images/s  "
        f"({row['baseline_gflops']} GFLOP/s)\n"
        f"  project  (torch_gan.train)               : {row['value']:7.2f} images/s  ({row['gflops']} GFLOP/s)\n"
        f"  ratio {row['ratio']}x (goal {row['target']}x); fp32 matmul peak {row['peak_gflops']} GFLOP/s -> "
        f"{100 * row['fraction_of_peak']:.0f}% of peak; {row['gflop_per_image']} GFLOP per image per step; "
        f"epoch seconds {row['epoch_seconds']}"
    )
    if args.out:
        args.out.write_text(json.dumps(row, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
