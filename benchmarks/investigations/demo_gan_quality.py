"""Train one demo-profile GAN with given settings and print the quality numbers notebook 06 gates on.

Uses the pipeline's own functions (config.resolve, data.prepare, torch_gan/tf_gan.train, synthesis.plan,
fidelity): TSTR and its real-trained reference, GAN-test per class with the real ceiling, and KID, FD and
PRDC recall in the fixed features, plus seconds per epoch. One JSON line per run is appended to --out.

    nice -n 10 .venv/bin/python benchmarks/investigations/demo_gan_quality.py torch --epochs 40
    nice -n 10 .venv/bin/python benchmarks/investigations/demo_gan_quality.py tf --lr 4e-4 --diffaugment color,translation
    .venv/bin/python -m benchmarks.investigations.demo_gan_quality torch --lr 5e-4 --ema 0.99
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def plain_name(tag: str) -> bool:
    """A name of one folder below RUN/candidates: no path separator, not '.' or '..', not absolute."""
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    return bool(tag) and tag not in (".", "..") and not any(c in tag for c in seps) and "\0" not in tag


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("framework", choices=("torch", "tf"))
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--width", type=float)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--beta1", type=float, default=0.5)
    ap.add_argument("--diffaugment", default=None)
    ap.add_argument("--ema", type=float, default=None, help="sample from a moving average of G's weights (decay per step)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="", help="a plain folder name: the run's candidates/<tag> (deleted and remade)")
    ap.add_argument("--run-dir", default="runs/inv18")
    ap.add_argument("--out", default="benchmarks/investigations/demo_gan_quality.jsonl")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint folder (default: a fresh one per run)")
    ap.add_argument("--score-only", action="store_true", help="score the checkpoints already in the folder")
    ap.add_argument("--eval-every", type=int, default=0, help="also score the checkpoints every N epochs (0: the last only)")
    args = ap.parse_args(argv)
    if args.tag and not plain_name(args.tag):
        ap.error(f"--tag {args.tag!r} is no plain folder name: it becomes RUN/candidates/<tag>, which is deleted and "
                 "remade. Nothing was written or deleted. Fix: pass a name without '/' or '\\', not '.' or '..', "
                 "e.g. --tag lr5e-4")
    if not args.tag and args.diffaugment and not plain_name(args.diffaugment):
        ap.error(f"--diffaugment {args.diffaugment!r} would make the folder name RUN/candidates/<name> a path. Nothing "
                 "was written or deleted. Fix: pass a policy such as color,translation, or a plain --tag")

    from covidgan_utils import config, data, fidelity, gan_loop, synthesis  # noqa: F401 - loaded before training

    cfg = config.resolve(profile="demo", run_dir=args.run_dir)
    data.prepare(cfg, progress=False)
    if args.framework == "torch":
        from covidgan_utils import torch_gan as gan
    else:
        from covidgan_utils import tf_gan as gan
    fw = args.framework
    width = args.width or cfg.settings[f"{fw}_width"]
    epochs = args.epochs or cfg.settings[f"{fw}_epochs"]
    batch = args.batch_size or cfg.settings[f"{fw}_batch_size"]
    name = args.tag or f"{fw}_w{width}_e{epochs}_b{batch}_lr{args.lr:g}_b1{args.beta1:g}_da{args.diffaugment or 'off'}_ema{args.ema or 'off'}_s{args.seed}"
    out_dir = Path(cfg.run_dir) / "candidates" / name
    if out_dir.parent.is_symlink() or out_dir.is_symlink():
        ap.error(f"{out_dir.parent if out_dir.parent.is_symlink() else out_dir} is a symbolic link; this script deletes "
                 "and remakes RUN/candidates/<tag> and never follows a link. Fix: remove the link or choose another --run-dir")
    if out_dir.exists() and not (args.keep or args.score_only):
        import shutil

        shutil.rmtree(out_dir)

    x_tr, y_tr = data.load_split(cfg, "train", channels=1)
    x_val, y_val = data.load_split(cfg, "val", channels=1)
    gan.set_seed(args.seed)
    generator = gan.build_generator(cfg.image_size, width=width)
    discriminator = gan.build_discriminator(cfg.image_size, width=width)
    every = args.eval_every or epochs
    t0 = time.perf_counter()
    history = None if args.score_only else gan.train(
        generator, discriminator, x_tr, y_tr, epochs=epochs, batch_size=batch, out_dir=out_dir,
        checkpoint_every=every, seed=args.seed, progress=False,
        options=gan.Options(sample_every=every, keep_last=0, lr=args.lr, betas=(args.beta1, 0.999),
                            diffaugment=args.diffaugment, ema=args.ema),
    )
    train_s = time.perf_counter() - t0
    if history is None:
        import pandas as pd

        history = pd.read_csv(out_dir / "history.csv")
    rows = []
    for path in reversed(gan_loop.checkpoint_folders(out_dir)):
        state = gan_loop.read_state(gan, path)
        g = gan.build_generator(**state["generator_kwargs"])
        gan.restore_checkpoint(path, {"generator": g})
        row = score(cfg, gan, fw, g, x_tr, y_tr, x_val, y_val)
        row.update(
            name=name, framework=fw, width=width, epochs=int(state["epoch"]), batch_size=batch, lr=args.lr,
            beta1=args.beta1, diffaugment=args.diffaugment, ema=args.ema, seed=args.seed,
            s_per_epoch=float(np.median(history["seconds"])), train_s=train_s,
            final={k: float(history[k].iloc[int(state["epoch"]) - 1]) for k in ("d_loss", "g_loss", "d_real", "d_fake")},
            load=os.getloadavg(), time=time.strftime("%Y-%m-%d %H:%M:%S"),
        )
        rows.append(row)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        keys = ("name", "epochs", "s_per_epoch", "tstr_ratio", "fidelity_per_class", "caricature", "recall", "kid", "fd")
        print(json.dumps({k: row[k] for k in keys}, default=lambda v: round(v, 4)))
    return rows


def score(cfg, gan, fw, generator, x_tr, y_tr, x_val, y_val) -> dict:
    """Notebook 04's synthetic set from ``generator``, scored as notebook 06 scores it."""
    from covidgan_utils import CLASSES, fidelity, synthesis

    plan = synthesis.plan({c: int((y_tr == k).sum()) for k, c in enumerate(CLASSES)}, cfg.target_per_class)
    y_g = np.concatenate([np.full(plan[c], k, dtype=np.int64) for k, c in enumerate(CLASSES)])
    x_g = fidelity.gray01(gan.sample(generator, y_g, seed=cfg.synthesis_seed))
    x_g = np.round(x_g * 255).astype(np.uint8)[..., None]
    ts = fidelity.tstr(x_g, y_g, x_val, y_val, x_tr, y_tr)
    from covidgan_utils import data

    gt = fidelity.gan_test(x_tr, y_tr, x_g, y_g, independent=data.load_independent(cfg))
    ind = gt["independent"]
    fx = fidelity.fixed_space(x_tr, y_tr, {fw: (x_g, y_g)})
    per_class_n = {c: int((y_g == k).sum()) for k, c in enumerate(CLASSES)}
    return {
        "tstr": ts["accuracy"], "trtr": ts["trtr_accuracy"], "tstr_ratio": ts["accuracy"] / ts["trtr_accuracy"],
        "majority": ts["majority_rate"],
        "fidelity": gt["accuracy"], "fidelity_per_class": gt["per_class_recall"],
        "fidelity_ci": {c: wilson(gt["per_class_recall"][c] * per_class_n[c], per_class_n[c]) for c in per_class_n},
        "ceiling": gt["real_cv_accuracy"],
        "real_cv_per_class": gt["real_cv_per_class_recall"], "real_train_per_class": gt["real_train_per_class_recall"],
        # the independent check: generated minus the GAN's training images, for a classifier that saw neither
        "independent_per_class": ind["per_class_recall"], "independent_real_per_class": ind["real_per_class_recall"],
        "caricature": {c: ind["per_class_recall"][c] - ind["real_per_class_recall"][c] for c in per_class_n},
        "kid": fx[fw]["kid"], "fd": fx[fw]["fd"], "recall": fx[fw]["recall"], "precision": fx[fw]["precision"],
        "coverage": fx[fw]["coverage"],
        "rvr": {k: fx["real_vs_real"][k] for k in ("kid", "fd", "recall", "precision")},
        "contrast": {c: float(x_g[y_g == k].std(axis=(1, 2, 3)).mean()) for k, c in enumerate(CLASSES)},
        "real_contrast": {c: float(x_tr[y_tr == k].std(axis=(1, 2)).mean()) for k, c in enumerate(CLASSES)},
        "brightness": {c: float(x_g[y_g == k].mean()) for k, c in enumerate(CLASSES)},
        "real_brightness": {c: float(x_tr[y_tr == k].mean()) for k, c in enumerate(CLASSES)},
    }


if __name__ == "__main__":
    main()
