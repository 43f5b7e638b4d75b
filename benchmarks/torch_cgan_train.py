"""PyTorch cGAN training speed: the project's ``torch_gan.train`` vs a plain loop written the way the report did.

Same machine, same run, same models (the report's Figure 4 architecture at 128 px, width 1, built from
the same seed), same images (phantom PNGs at 299 px, the real database's size, in a temporary
ImageFolder layout), after one warm-up epoch each.

- baseline: torchvision ImageFolder + DataLoader (batch 64, shuffle) that opens, decodes and resizes
  every PNG every epoch; the tutorial's step with ``.item()`` on both losses after every step.
- project: ``torch_gan.train`` with its defaults (the headline), and with its CPU speed switches off
  (``plain``: channels_last=False, fused_adam=False); ``--switches`` adds each switch alone. Images decoded
  once into the uint8 cache (as notebook 01 does, not timed), one float tensor on the device, index-slice
  batches, losses read once per epoch, no weight gradients for the discriminator during the generator step.
  All project loops start from the same weights and see the same batches: the largest difference of their
  losses from the defaults' after the same epochs is reported (float rounding only).

Reports training images/s of the baseline and the default loop, their ratio (goal >= 1.5x), and the
achieved GFLOP/s of the model arithmetic against this machine's fp32 matrix-multiply rate measured here.
Epochs of all loops are interleaved so that a change in machine load hits them alike. The demo model (64 px, half width) is
measured the same way, to show how the share of the data path grows as the model shrinks.

What limits it on a CPU: at 128 px a training step is ~5 GFLOP per image of convolution arithmetic that
both loops do identically (oneDNN kernels); decoding 299 px PNGs every epoch is a few percent of that and
``.item()`` costs nothing without an accelerator to wait for. The per-step sync and the host-side decode
are what starve a GPU, where the project loop is meant to pay off.

    python -m benchmarks.torch_cgan_train [--quick] [--switches] [--out FILE]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._timing import QUIET_TRAINING, command_line, fp32_peak_gflops, machine, result, write_json

IMAGE_SIZE = 128
SWITCHES_HELP = "also time each CPU speed switch alone (channels_last, fused_adam): two more loops"
FILE_SIZE = 299  # the COVID-19 Radiography Database ships 299 x 299 PNGs


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


def make_baseline(folder: Path, generator, discriminator, image_size: int, batch_size: int):
    """The report-style loop as a callable that trains one epoch and returns its seconds."""
    import torch
    from torch import nn
    from torchvision import datasets, transforms

    # ImageFolder sorts class folders: COVID=0, Normal=1; map to the project's COVID=1.
    dataset = datasets.ImageFolder(
        str(folder),
        transform=transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor()]),
        target_transform=lambda k: 1 - k,
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    loss_fn = nn.BCELoss()
    g_opt = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    latent_dim = generator.build_kwargs["latent_dim"]

    def data_pass() -> float:
        t0 = time.perf_counter()
        for _ in loader:  # the data path alone: what decoding every epoch costs
            pass
        return time.perf_counter() - t0

    def epoch() -> float:
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
        return time.perf_counter() - t0

    epoch.data_pass = data_pass
    return epoch


# Project loops timed beside the baseline: the defaults (the headline), and the speed switches off ("plain").
# ``--switches`` adds each CPU switch alone, to show what each buys in the same run.
LOOPS = {"default": {}, "plain": {"channels_last": False, "fused_adam": False}}
SWITCH_LOOPS = {
    "channels_last": {"channels_last": True, "fused_adam": False},
    "fused_adam": {"channels_last": False, "fused_adam": True},
}


def compare(folder: Path, image_size: int, width: float, timed: int, batch_size: int, work: Path, loops=LOOPS) -> dict:
    """Baseline and project epochs on the same PNGs and same-seed models, interleaved after one warm-up each.

    ``loops``: name -> options of ``torch_gan.train`` (``{}``: its defaults); the first is the headline. Every
    project loop starts from the same weights and trains on the same batches, so their losses after the same
    epochs differ only by float rounding (``max_loss_diff``).
    """
    import numpy as np
    import torch

    from covidgan_utils import torch_gan
    from covidgan_utils.data import load_image

    def models():
        torch.manual_seed(0)
        return torch_gan.build_generator(image_size, width=width), torch_gan.build_discriminator(
            image_size, width=width
        )

    paths = sorted(folder.rglob("*.png"))
    t0 = time.perf_counter()
    images = np.stack([load_image(p, image_size) for p in paths])[..., None]  # the once-per-run uint8 cache
    cache_s = time.perf_counter() - t0
    labels = np.array([1 if p.parent.name == "COVID" else 0 for p in paths])

    g_base, d_base = models()
    flops = torch_gan.train_flops_per_image(g_base, d_base)
    baseline = make_baseline(folder, g_base, d_base, image_size, batch_size)

    def project(name: str, options: dict):
        generator, discriminator = models()
        histories = []

        def epoch(epochs: int) -> float:
            history = torch_gan.train(
                generator,
                discriminator,
                images,
                labels,
                epochs=epochs,
                batch_size=batch_size,
                out_dir=work / f"run_{image_size}_{name}",
                checkpoint_every=1,
                device="cpu",
                **QUIET_TRAINING,
                **options,
            )
            histories.append(history)
            return float(history["seconds"].iloc[-1])

        epoch.histories = histories
        return epoch

    ours = {name: project(name, options) for name, options in loops.items()}
    baseline()  # warm-up epochs
    for loop in ours.values():
        loop(1)
    times = {"baseline": [], **{name: [] for name in ours}}
    for e in range(timed):  # interleaved, so a change in machine load hits every loop alike
        times["baseline"].append(baseline())
        for name, loop in ours.items():
            times[name].append(loop(2 + e))
    data_s = baseline.data_pass()
    median = {name: statistics.median(t) for name, t in times.items()}
    losses = ["d_loss", "g_loss", "d_real", "d_fake", "g_test_loss"]
    final = {name: loop.histories[-1][losses].to_numpy() for name, loop in ours.items()}
    head = next(iter(ours))
    n = len(paths)
    return {
        "image_size": image_size,
        "width": width,
        "images": n,
        "batch_size": batch_size,
        "images_per_s": round(n / median[head], 2),
        "baseline_images_per_s": round(n / median["baseline"], 2),
        "ratio": round(median["baseline"] / median[head], 2),
        "loops": {name: loops[name] for name in ours},
        "ratios": {name: round(median["baseline"] / median[name], 2) for name in ours},
        "max_loss_diff": {name: float(np.abs(final[name] - final[head]).max()) for name in ours},
        "gflops": round(flops * n / median[head] / 1e9, 1),
        "baseline_gflops": round(flops * n / median["baseline"] / 1e9, 1),
        "gflop_per_image": round(flops / 1e9, 3),
        "epoch_seconds": {name: [round(s, 2) for s in t] for name, t in times.items()},
        "cache_seconds_once": round(cache_s, 2),
        "baseline_data_seconds_per_epoch": round(data_s, 2),
        "baseline_data_fraction": round(data_s / median["baseline"], 3),
    }


def run(quick: bool = False, peak_gflops: float | None = None, switches: bool = False) -> dict:
    """Report architecture at 128 px (the headline row) and the demo model at 64 px; JSON-ready."""
    import torch

    from covidgan_utils import config

    n_images = 64 if quick else 128
    timed = 3  # interleaved epoch pairs; one pair alone swings with the machine's load
    peak = peak_gflops or fp32_peak_gflops(1024 if quick else 2048)
    demo = config.PROFILES["demo"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_pngs(Path(tmp) / "images", n_images)
        loops = {**LOOPS, **SWITCH_LOOPS} if switches else LOOPS
        report = compare(folder, IMAGE_SIZE, 1.0, timed, 64, Path(tmp), loops)
        small = compare(
            folder, demo["image_size"], demo["torch_width"], timed, demo["torch_batch_size"], Path(tmp), loops
        )
    for case in (report, small):
        case["fraction_of_peak"] = round(case["gflops"] / peak, 3)
    return result(
        "torch_cgan_train",
        report["images_per_s"],
        "images/s",
        baseline=report["baseline_images_per_s"],
        ratio=report["ratio"],
        target=1.5,
        gflops=report["gflops"],
        peak_gflops=round(peak, 1),
        fraction_of_peak=report["fraction_of_peak"],
        report_128=report,
        demo=small,
        threads=torch.get_num_threads(),
        machine=machine(),
        torch=str(torch.__version__),
    )


def main(argv=None) -> int:
    args = command_line(
        __doc__, "64 images (one batch of 64), 3 interleaved timed epochs each", argv, switches=SWITCHES_HELP
    )
    row = run(quick=args.quick, switches=args.switches)
    print(f"{row['threads']} threads; fp32 matmul peak {row['peak_gflops']} GFLOP/s")
    for name in ("report_128", "demo"):
        c = row[name]
        print(
            f"{name}: {c['image_size']} px, width {c['width']}, batch {c['batch_size']}, {c['images']} images, "
            f"{c['gflop_per_image']} GFLOP per image per step\n"
            f"  baseline (ImageFolder + .item() per step): {c['baseline_images_per_s']:8.2f} images/s "
            f"({c['baseline_gflops']} GFLOP/s)\n"
            f"  project  (torch_gan.train, defaults)     : {c['images_per_s']:8.2f} images/s "
            f"({c['gflops']} GFLOP/s, {100 * c['fraction_of_peak']:.0f}% of peak)\n"
            f"  ratio {c['ratio']}x (goal 1.5x at 128 px); every loop vs the baseline: {c['ratios']}\n"
            f"  largest loss difference from the defaults after the last epoch: {c['max_loss_diff']}\n"
            f"  epoch seconds {c['epoch_seconds']}\n"
            f"  the baseline's decode-every-epoch data path alone: {c['baseline_data_seconds_per_epoch']} s per "
            f"epoch ({100 * c['baseline_data_fraction']:.0f}% of its epoch); the rest is arithmetic both loops share"
        )
    write_json(args.out, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
