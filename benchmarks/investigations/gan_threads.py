"""Wall time of the demo's two GAN trainings: one after the other on every core, or side by side on one core each.

Each training runs in its own process (as a notebook's kernel does) with a given number of CPU threads; the
demo profile's models, batch sizes and the demo training images. Three arrangements are timed in one run,
so they compare as ratios:

- ``sequential``: PyTorch then TensorFlow, each with all cores (what ``make demo`` did);
- ``sequential-1``: the same with one thread each (the cost of one thread alone);
- ``parallel-1``: both at once, one thread each.

    python -m benchmarks.investigations.gan_threads --epochs 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import sys, tempfile, time
fw, threads, epochs, run_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if fw == "torch":
    import torch
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    from covidgan_utils import torch_gan as gan
else:
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1 if threads == 1 else 0)
    from covidgan_utils import tf_gan as gan
from covidgan_utils import config, data
cfg = config.resolve(profile="demo", run_dir=run_dir, claim=False)
x, y = data.load_split(cfg, "train", channels=1)
s = cfg.settings
gan.set_seed(0)
g = gan.build_generator(cfg.image_size, width=s[f"{fw}_width"])
d = gan.build_discriminator(cfg.image_size, width=s[f"{fw}_width"])
start = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    h = gan.train(g, d, x, y, epochs=epochs, batch_size=s[f"{fw}_batch_size"], out_dir=tmp,
                  checkpoint_every=epochs, progress=False)
print("RESULT", time.perf_counter() - start, float(h["seconds"].iloc[1:].median()))
"""


def launch(fw: str, threads: int, epochs: int, run_dir: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-c", CHILD, fw, str(threads), str(epochs), run_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)


def finish(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    line = [x for x in out.splitlines() if x.startswith("RESULT")]
    if proc.returncode or not line:
        raise RuntimeError(f"child failed ({proc.returncode}): {out[-2000:]}")
    total, per_epoch = map(float, line[-1].split()[1:])
    return {"train_s": round(total, 1), "s_per_epoch": round(per_epoch, 2)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--run-dir", default="runs/inv18")
    args = ap.parse_args(argv)
    from covidgan_utils import config, data

    cfg = config.resolve(profile="demo", run_dir=args.run_dir)
    data.prepare(cfg, progress=False)
    cores = os.cpu_count()
    result = {"cores": cores, "epochs": args.epochs, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
              "load_before": os.getloadavg()}
    for name, threads in (("sequential", cores), ("sequential-1", 1)):
        start = time.perf_counter()
        parts = {fw: finish(launch(fw, threads, args.epochs, args.run_dir)) for fw in ("torch", "tf")}
        result[name] = {"wall_s": round(time.perf_counter() - start, 1), **parts}
    start = time.perf_counter()
    procs = {fw: launch(fw, 1, args.epochs, args.run_dir) for fw in ("torch", "tf")}
    parts = {fw: finish(p) for fw, p in procs.items()}
    result["parallel-1"] = {"wall_s": round(time.perf_counter() - start, 1), **parts}
    result["load_after"] = os.getloadavg()
    seq = result["sequential"]
    result["training_ratio_parallel_vs_sequential"] = round(
        (seq["torch"]["train_s"] + seq["tf"]["train_s"]) / max(p["train_s"] for p in parts.values()), 2)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
