"""TensorFlow cGAN train step: eager vs tf.function vs tf.function + XLA, images/s and achieved GFLOP/s.

Same run, same machine, after warm-up: the report's architecture at 128 px (width 1) and the demo size.
Achieved GFLOP/s counts the step's convolution and dense work from the layers (``tf_gan.train_flops_per_image``)
and is compared with this machine's fp32 matrix-multiply rate (``_timing.fp32_peak_gflops``, the one peak
all benchmarks use). The fastest compiled mode on the machine that ran it is what ``tf_gan.train(jit_compile=None)`` should use: see JIT_DEFAULT in tf_gan.py.

    python -m benchmarks.tf_cgan_train [--quick] [--out FILE]
"""

from __future__ import annotations

import sys
import time

from benchmarks._timing import command_line, fp32_peak_gflops, machine, result, write_json

MODES = ("eager", "graph", "xla")


def time_mode(mode: str, image_size: int, width: float, batch_size: int, steps: int, warmup: int = 1) -> dict:
    """images/s of one mode ('eager', 'graph', 'xla') on fresh models and random uint8 data."""
    import numpy as np

    from covidgan_utils import tf_gan

    tf = tf_gan.tf
    generator = tf_gan.build_generator(image_size, width=width)
    discriminator = tf_gan.build_discriminator(image_size, width=width)
    data = np.random.default_rng(0)
    images = data.integers(0, 256, (batch_size, image_size, image_size, 1), dtype=np.uint8)
    labels = data.integers(0, 2, batch_size)
    options = tf_gan.Options(graph=mode != "eager", jit_compile=mode == "xla", deterministic=False)
    trainer = tf_gan.Trainer(generator, discriminator, images, labels, seed=0, options=options)
    idx = tf.range(batch_size)  # the project's own step on the whole (random) batch
    t0 = time.perf_counter()
    for _ in range(warmup):
        trainer.step(idx).numpy()
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        losses = trainer.step(idx).numpy()
        times.append(time.perf_counter() - t0)
    best = min(times)
    flops = tf_gan.train_flops_per_image(generator, discriminator) * batch_size
    return {
        "mode": mode,
        "image_size": image_size,
        "width": width,
        "batch_size": batch_size,
        "warmup_s": round(first, 2),
        "step_s_best": round(best, 4),
        "step_s_median": round(float(np.median(times)), 4),
        "images_per_s": round(batch_size / best, 2),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflops": round(flops / best / 1e9, 2),
        "finite": bool(np.isfinite(losses).all()),
    }


def run(quick: bool = False, peak_gflops: float | None = None) -> list[dict]:
    """Eager vs graph vs XLA at the report's size and the demo size; rows in benchmarks/run.py's shape."""
    from covidgan_utils import config, tf_gan  # tf_gan first: it imports TensorFlow quietly

    tf = tf_gan.tf

    demo = config.PROFILES["demo"]
    cases = [  # (name, image_size, width, batch_size, timed steps, modes)
        ("report_128", 128, 1.0, 4 if quick else 32, 3, ("eager", "graph") if quick else MODES),
        ("demo", demo["image_size"], demo["tf_width"], demo["tf_batch_size"], 2 if quick else 8, MODES),
    ]
    peak = peak_gflops or fp32_peak_gflops(1024 if quick else 2048)
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    rows = []
    for name, size, width, batch, steps, modes in cases:
        timings = {}
        for mode in modes:
            # one eager step at 128 px and batch 32 takes tens of seconds on a CPU: time it once
            once = mode == "eager" and size >= 128 and batch > 8
            timings[mode] = time_mode(mode, size, width, batch, steps=1 if once else steps)
            timings[mode]["fraction_of_peak"] = round(timings[mode]["achieved_gflops"] / peak, 3)
            t = timings[mode]
            print(
                f"{name:>10} {mode:>5}: {t['images_per_s']:8.2f} img/s  {t['achieved_gflops']:6.1f} GFLOP/s "
                f"({t['fraction_of_peak']:.0%} of matmul peak)  warm-up {t['warmup_s']:.1f} s",
                flush=True,
            )
        compiled = [m for m in ("graph", "xla") if m in timings]
        fastest = max(compiled, key=lambda m: timings[m]["images_per_s"])
        best, eager = timings[fastest], timings["eager"]
        ratios = {f"{m}_vs_eager": round(timings[m]["images_per_s"] / eager["images_per_s"], 2) for m in compiled}
        if "xla" in timings:
            ratios["xla_vs_graph"] = round(timings["xla"]["images_per_s"] / timings["graph"]["images_per_s"], 2)
        print(f"{name:>10} ratios: " + ", ".join(f"{k} {v}x" for k, v in ratios.items()) + f"; fastest: {fastest}")
        speed = {  # the fastest compiled mode against this machine's matmul rate (goal: half of it)
            "gflops": best["achieved_gflops"],
            "peak_gflops": round(peak, 1),
            "fraction_of_peak": round(best["achieved_gflops"] / peak, 3),
            "fraction_target": 0.5,
            "fastest": fastest,
            "ratios": ratios,
            "modes": timings,
        }
        setting = {"image_size": size, "width": width, "batch_size": batch, "machine": machine(), "gpus": gpus}
        ratio = round(best["images_per_s"] / eager["images_per_s"], 2)
        # the compiled step must pay for its compilation: at least 1.2x the eager step
        row = result(f"tf_cgan_train_{name}", best["images_per_s"], "images/s", eager["images_per_s"], ratio, 1.2)
        rows.append({**row, **speed, **setting, "tensorflow": tf.__version__})
    votes = [r["fastest"] for r in rows if "xla" in r["modes"]]
    print(
        f"fp32 matmul peak {peak:.1f} GFLOP/s; XLA fastest in {votes.count('xla')} of {len(votes)} cases "
        f"(tf_gan.JIT_DEFAULT = {tf_gan.JIT_DEFAULT})"
    )
    return rows


def main(argv=None) -> int:
    args = command_line(__doc__, "demo size in all modes, 128 px at batch 4 without XLA", argv)
    write_json(args.out, run(quick=args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
