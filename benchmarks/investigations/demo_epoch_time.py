"""Seconds per epoch of demo-profile GAN configurations, measured in one process so that they compare as ratios.

Each configuration trains a few epochs on the demo training images (rounds interleaved, so a change in the
machine's load hits every configuration alike); the median of the epochs after the first is reported.

    nice -n 10 .venv/bin/python benchmarks/investigations/demo_epoch_time.py torch:0.5:32 torch:0.25:16 tf:0.25:32
    .venv/bin/python -m benchmarks.investigations.demo_epoch_time torch:0.25:16 torch:0.25:16:0.99   # + weight average
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="framework:width:batch_size[:ema]")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--run-dir", default="runs/inv18")
    args = ap.parse_args(argv)

    from covidgan_utils import config, data

    cfg = config.resolve(profile="demo", run_dir=args.run_dir)
    data.prepare(cfg, progress=False)
    x, y = data.load_split(cfg, "train", channels=1)
    seconds: dict[str, list[float]] = {c: [] for c in args.configs}
    for _ in range(args.rounds):
        for spec in args.configs:
            fw, width, batch, *ema = spec.split(":")
            if fw == "torch":
                from covidgan_utils import torch_gan as gan
            else:
                from covidgan_utils import tf_gan as gan
            gan.set_seed(0)
            g = gan.build_generator(cfg.image_size, width=float(width))
            d = gan.build_discriminator(cfg.image_size, width=float(width))
            with tempfile.TemporaryDirectory() as tmp:
                h = gan.train(g, d, x, y, epochs=args.epochs, batch_size=int(batch), out_dir=tmp,
                              checkpoint_every=args.epochs, progress=False, ema=float(ema[0]) if ema else None)
            seconds[spec] += list(h["seconds"].iloc[1:])
    out = {spec: float(np.median(s)) for spec, s in seconds.items()}
    base = args.configs[0]
    print(json.dumps({"load": os.getloadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                      "seconds_per_epoch": out, "ratio_to_first": {k: v / out[base] for k, v in out.items()}}))
    return out


if __name__ == "__main__":
    main()
