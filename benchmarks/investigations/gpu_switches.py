"""GPU switches against the plain GPU path: step time, ratio, losses, and the paper profile's two trainings vs 15 minutes.

On a CUDA machine, for the paper-profile models (128 px, width 1, batch 64 for PyTorch and 32 for TensorFlow)
on phantom images, each switch trains a few epochs through the project's own loops (``torch_gan.train``,
``tf_gan.train``) from the same seed, and is compared with the plain GPU path:

- PyTorch: bf16 autocast (``amp=True``), ``channels_last=True``, ``torch.compile`` (``compile=True``),
  ``fused_adam=True``, and all four together;
- TensorFlow: XLA (``jit_compile=True``), mixed precision (models built under Keras' ``mixed_bfloat16``
  policy: bf16 compute, float32 variables, the logit and the image already float32), and both.

For each it prints the median epoch seconds after the first (which holds compilation), the ratio to plain,
the last epoch's losses next to plain's, and a second plain run with another seed as the noise scale
("within noise": the difference to plain is at most twice the seed-to-seed difference, or 0.05). It then
extrapolates the paper profile's two 1000-epoch trainings on 932 images: first epoch + 999 x the median,
fastest PyTorch switch + fastest TensorFlow switch, against the 15-minute goal.

    python -m benchmarks.investigations.gpu_switches [--epochs 6] [--images 932] [--out FILE]
    python -m benchmarks.investigations.gpu_switches --cpu-dry-run    # every switch, 2 steps at 32 px, on the CPU
    python -m benchmarks.investigations.gpu_switches --frameworks tf --switches xla    # a subset

(from the repository root, with the package installed: ``pip install -e .``)

Without a GPU it prints "no GPU: nothing measured" and exits 0. PyTorch and TensorFlow run in separate child
processes, so that neither framework holds GPU memory the other needs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._timing import QUIET_TRAINING

ROOT = Path(__file__).resolve().parents[2]

GOAL_S = 15 * 60
PAPER_EPOCHS = 1000
PAPER_IMAGES = 932  # 331 COVID + 601 Normal training images
TORCH_PLAIN = {"channels_last": False, "fused_adam": False}  # train()'s CPU speed switches are on by default
TORCH_SWITCHES = {
    "plain": TORCH_PLAIN,
    "bf16_autocast": {**TORCH_PLAIN, "amp": True},
    "channels_last": {**TORCH_PLAIN, "channels_last": True},
    "compile": {**TORCH_PLAIN, "compile": True},
    "fused_adam": {**TORCH_PLAIN, "fused_adam": True},
    "all_four": {"amp": True, "channels_last": True, "compile": True, "fused_adam": True},
}
TF_SWITCHES = {
    "plain": {"jit_compile": False},
    "xla": {"jit_compile": True},
    "mixed_bf16": {"jit_compile": False, "policy": "mixed_bfloat16"},
    "xla+mixed_bf16": {"jit_compile": True, "policy": "mixed_bfloat16"},
}


def phantom_data(n: int, size: int, seed: int = 0):
    """n phantom X-rays (uint8, N x size x size x 1) and labels (COVID = 1 for every third image)."""
    import numpy as np

    from covidgan_utils.phantoms import make_phantom

    labels = (np.arange(n) % 3 == 0).astype(np.int64)
    rng = np.random.default_rng(seed)
    images = np.stack([np.asarray(make_phantom(rng, size, bool(c))) for c in labels])
    return images[..., None], labels


def _summary(history, batch: int, n: int) -> dict:
    """Epoch seconds, step seconds and the last epoch's losses from a train() history frame."""
    seconds = [float(s) for s in history["seconds"]]
    later = seconds[1:] or seconds
    steps = max(n // batch, 1)
    last = history.iloc[-1]
    return {
        "epoch_s": [round(s, 4) for s in seconds],
        "first_epoch_s": round(seconds[0], 3),
        "epoch_s_median": round(statistics.median(later), 4),
        "step_s_median": round(statistics.median(later) / steps, 5),
        "d_loss": round(float(last["d_loss"]), 4),
        "g_loss": round(float(last["g_loss"]), 4),
        "finite": bool(history[["d_loss", "g_loss"]].notna().all().all()),
    }


def _timed_training(gan, fw, name, g, d, images, labels, epochs, batch, seed, **options) -> dict:
    """One switch: ``gan.train`` (torch_gan or tf_gan) from ``seed`` without checkpoints, summarised and printed."""
    with tempfile.TemporaryDirectory() as tmp:
        history = gan.train(
            g,
            d,
            images,
            labels,
            epochs=epochs,
            batch_size=batch,
            out_dir=tmp,
            seed=seed,
            checkpoint_every=10_000,
            **QUIET_TRAINING,
            **options,
        )
    r = _summary(history, batch, len(images))
    print(
        f"  {fw:5s} {name:28s} {r['epoch_s_median']:8.3f} s/epoch  first {r['first_epoch_s']:7.2f} s  "
        f"d_loss {r['d_loss']:.4f} g_loss {r['g_loss']:.4f}",
        flush=True,
    )
    return r


def run_torch(size, width, batch, n, epochs, device, switches: dict, noise_run: bool = True) -> dict:
    """Each switch through torch_gan.train from the same seed; plain once more with seed 1 as the noise scale."""
    import torch

    from covidgan_utils import torch_gan

    images, labels = phantom_data(n, size)
    results = {}
    runs = [(name, opts, 0) for name, opts in switches.items()] + (
        [("plain_seed1", TORCH_PLAIN, 1)] if noise_run else []
    )
    for name, opts, seed in runs:
        torch.manual_seed(seed)
        g = torch_gan.build_generator(size, width=width)
        d = torch_gan.build_discriminator(size, width=width)
        kwargs = {k: v for k, v in opts.items() if k in ("amp", "compile", "channels_last", "fused_adam")}
        results[name] = _timed_training(
            torch_gan, "torch", name, g, d, images, labels, epochs, batch, seed, device=device, **kwargs
        )
    return results


def run_tf(size, width, batch, n, epochs, switches: dict, noise_run: bool = True) -> dict:
    """Each switch through tf_gan.train from the same seed; plain once more with seed 1 as the noise scale."""
    from covidgan_utils import tf_gan

    keras = tf_gan.keras
    images, labels = phantom_data(n, size)
    results = {}
    runs = [(name, opts, 0) for name, opts in switches.items()]
    runs += [("plain_seed1", {"jit_compile": False}, 1)] if noise_run else []
    for name, opts, seed in runs:
        keras.utils.set_random_seed(seed)
        keras.mixed_precision.set_global_policy(opts.get("policy", "float32"))
        try:  # the policy applies to the layers built under it
            g = tf_gan.build_generator(size, width=width)
            d = tf_gan.build_discriminator(size, width=width)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        results[name] = _timed_training(
            tf_gan, "tf", name, g, d, images, labels, epochs, batch, seed, jit_compile=opts["jit_compile"]
        )
        results[name]["compute_dtype"] = str(g.layers[-2].compute_dtype)
    return results


def compare(results: dict) -> dict:
    """Ratios to plain, losses within noise, and the 1000-epoch extrapolation of each switch."""
    plain, other = results["plain"], results.get("plain_seed1")
    noise = max(abs(plain["d_loss"] - other["d_loss"]), abs(plain["g_loss"] - other["g_loss"])) if other else 0.0
    out = {}
    for name, r in results.items():
        if name == "plain_seed1":
            continue
        diff = max(abs(r["d_loss"] - plain["d_loss"]), abs(r["g_loss"] - plain["g_loss"]))
        out[name] = {
            **r,
            "ratio_vs_plain": round(plain["epoch_s_median"] / r["epoch_s_median"], 2),
            "loss_diff_vs_plain": round(diff, 4),
            "seed_noise": round(noise, 4),
            "within_noise": bool(diff <= max(2 * noise, 0.05)),
            "paper_1000_epochs_s": round(r["first_epoch_s"] + (PAPER_EPOCHS - 1) * r["epoch_s_median"], 1),
        }
    return out


def child(framework: str, args) -> dict:
    """One framework's measurements (run in its own process)."""
    from covidgan_utils import config

    paper = config.PROFILES["paper"]
    if args.cpu_dry_run:  # the code path only: 2 steps per switch at 32 px
        size, width, epochs = 32, 0.125, 1
        batch = 8
        n = 2 * batch
        device = "cpu"
    else:
        size, epochs, n = paper["image_size"], args.epochs, args.images
        width = paper[f"{framework}_width"]
        batch = paper[f"{framework}_batch_size"]
        device = "cuda"
    print(f"{framework}: {size} px, width {width}, batch {batch}, {n} images, {epochs} epochs per switch", flush=True)
    wanted = set(args.switches.split(",")) | {"plain"} if args.switches else None
    table = TORCH_SWITCHES if framework == "torch" else TF_SWITCHES
    switches = {k: v for k, v in table.items() if wanted is None or k in wanted}
    noise_run = not args.cpu_dry_run  # the seed-to-seed spread means nothing after 2 steps
    if framework == "torch":
        res = run_torch(size, width, batch, n, epochs, device, switches, noise_run)
        extra = {}
    else:
        from covidgan_utils import tf_gan

        gpus = [d.name for d in tf_gan.tf.config.list_physical_devices("GPU")]
        if not gpus and not args.cpu_dry_run:
            return {"framework": framework, "skipped": "TensorFlow sees no GPU (install a CUDA build of tensorflow)"}
        for gpu in tf_gan.tf.config.list_physical_devices("GPU"):
            tf_gan.tf.config.experimental.set_memory_growth(gpu, True)
        res = run_tf(size, width, batch, n, epochs, switches, noise_run)
        extra = {"gpus": gpus}
    return {
        "framework": framework,
        "image_size": size,
        "width": width,
        "batch_size": batch,
        "images": n,
        "epochs": epochs,
        "switches": compare(res),
        **extra,
    }


def _gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs per switch (the first holds compilation)")
    parser.add_argument("--images", type=int, default=PAPER_IMAGES, help="training images per epoch")
    parser.add_argument("--cpu-dry-run", action="store_true", help="each switch for 2 steps at 32 px on the CPU")
    parser.add_argument("--frameworks", default="torch,tf", help="comma list: torch, tf")
    parser.add_argument("--switches", default=None, help="comma list of switch names (plain always runs)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    if args.child:
        print("CHILD-RESULT " + json.dumps(child(args.child, args)), flush=True)
        return 0
    gpu = _gpu_name()
    if gpu is None and not args.cpu_dry_run:
        print("no GPU: nothing measured (run on a CUDA machine, or pass --cpu-dry-run to check the code path)")
        return 0
    print(f"device: {gpu or 'cpu (dry run: the code path only, no timing means anything)'}", flush=True)
    report = {"device": gpu or "cpu", "dry_run": args.cpu_dry_run, "goal_s": GOAL_S, "frameworks": {}}
    failed = False
    for fw in args.frameworks.split(","):
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.investigations.gpu_switches",
            "--child",
            fw,
            "--epochs",
            str(args.epochs),
            "--images",
            str(args.images),
        ] + (["--cpu-dry-run"] if args.cpu_dry_run else [])
        cmd += ["--switches", args.switches] if args.switches else []
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        lines = proc.stdout.splitlines()
        for line in lines:
            if not line.startswith("CHILD-RESULT "):
                print(line)
        found = [json.loads(line[len("CHILD-RESULT ") :]) for line in lines if line.startswith("CHILD-RESULT ")]
        if proc.returncode or not found:
            print(proc.stderr[-3000:], file=sys.stderr)
            report["frameworks"][fw] = {"framework": fw, "error": f"exit {proc.returncode}"}
            failed = True
            continue
        found[0]["wall_s"] = round(time.perf_counter() - t0, 1)
        report["frameworks"][fw] = found[0]

    print(f"\n{'switch':34s} {'s/epoch':>9s} {'ratio':>6s} {'losses vs plain':>16s} {'1000 epochs':>12s}")
    best = {}
    for fw, res in report["frameworks"].items():
        for name, r in res.get("switches", {}).items():
            ok = "within noise" if r["within_noise"] else "DIFFERENT"
            print(
                f"{fw + ' ' + name:34s} {r['epoch_s_median']:9.3f} {r['ratio_vs_plain']:5.2f}x "
                f"{ok:>16s} {r['paper_1000_epochs_s']:10.0f} s"
            )
            if r["within_noise"] and r["finite"] and (fw not in best or r["paper_1000_epochs_s"] < best[fw][1]):
                best[fw] = (name, r["paper_1000_epochs_s"])
        if res.get("skipped"):
            print(f"{fw}: skipped: {res['skipped']}")
    if len(best) == 2:
        total = sum(s for _, s in best.values())
        plain_total = sum(res["switches"]["plain"]["paper_1000_epochs_s"] for res in report["frameworks"].values())
        report["paper_two_trainings"] = {
            "best": {fw: name for fw, (name, _) in best.items()},
            "seconds": round(total, 1),
            "plain_seconds": round(plain_total, 1),
            "meets_goal": total <= GOAL_S,
        }
        verdict = "meets" if total <= GOAL_S else "misses"
        print(
            f"\npaper profile, two 1000-epoch trainings on {PAPER_IMAGES} images: plain {plain_total / 60:.1f} min, "
            f"best switches ({best['torch'][0]} + {best['tf'][0]}) {total / 60:.1f} min: {verdict} the 15-minute goal"
            + (" (dry run: meaningless)" if args.cpu_dry_run else "")
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
