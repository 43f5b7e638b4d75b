"""Study 2: unfreezing VGG16's last convolution blocks (``trainable_blocks``; opt-in: notebook 07, make studies).

``trainable_blocks`` = 0 is the report: every convolution and fc6/fc7 frozen, only the last layer trained.
1 also trains VGG16's last convolution block (block 5), 2 the last two (blocks 4 and 5). fc6/fc7 stay frozen
and, like the Dropout layers, run in eval mode (Dropout is the identity), so everything below the first
trained block is a fixed function of the image: its output is computed once per image and cached
(:func:`block_input`), and training on the cache is the same computation as running the whole network on
every batch (:func:`train_blocks_plain`; a test compares their predictions).

At small inputs the adaptive pool before fc6 only repeats the last feature map (64 px: 2x2 -> 7x7), so fc6
is folded through it exactly (:func:`fold_fc6`): a 4096 x (512*2*2) layer instead of 4096 x 25088.
Optimiser: Adam, lr 1e-3 for the new last layer (as notebook 05) and ``block_lr`` (1e-4) for the unfrozen
convolutions, which start from the pretrained (or, offline, random) weights.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import CLASSES
from .formatting import signed

BLOCK_STARTS = (0, 5, 10, 17, 24)
"""Index in torchvision's ``vgg16().features`` of the first layer of each of the five convolution blocks."""
MAX_BLOCKS = 2


def check_blocks(trainable_blocks) -> int:
    """0, 1 or 2, or a ValueError naming the allowed values."""
    if isinstance(trainable_blocks, bool) or int(trainable_blocks) != trainable_blocks or not 0 <= trainable_blocks <= MAX_BLOCKS:
        raise ValueError(f"trainable_blocks must be 0 (the report: last layer only), 1 or 2, not {trainable_blocks!r}.")
    return int(trainable_blocks)


def cut_index(trainable_blocks: int) -> int:
    """Index in ``model.features`` where the trained part starts (len(features) for 0: nothing convolutional)."""
    k = check_blocks(trainable_blocks)
    return BLOCK_STARTS[len(BLOCK_STARTS) - k] if k else None


def fold_fc6(fc6: nn.Linear, channels: int, h: int, w: int) -> nn.Linear:
    """fc6 composed with the adaptive 7x7 average pool of a (channels, h, w) map: one exact Linear on the map."""
    eye = torch.eye(h * w, dtype=torch.float64).view(h * w, 1, h, w)
    pool = F.adaptive_avg_pool2d(eye, (7, 7)).reshape(h * w, 49)  # row p: how input cell p spreads over the 49 cells
    weight = fc6.weight.detach().double().view(fc6.out_features, channels, 49) @ pool.T  # (out, channels, h*w)
    folded = nn.Linear(channels * h * w, fc6.out_features)
    with torch.no_grad():
        folded.weight.copy_(weight.reshape(fc6.out_features, channels * h * w).float())
        folded.bias.copy_(fc6.bias.detach())
    return folded


class Tail(nn.Module):
    """What is computed on the cache: the trained blocks, the pool, frozen fc6/fc7 (eval mode) and a new last layer."""

    def __init__(self, model, trainable_blocks: int, head: nn.Linear, fold: bool = True, map_shape=None):
        super().__init__()
        k = check_blocks(trainable_blocks)
        self.blocks = copy.deepcopy(model.features[cut_index(k):]) if k else None
        folded = None
        if k and fold and map_shape is not None:
            with torch.no_grad():  # the map the blocks hand to the pool
                out_shape = tuple(self.blocks(torch.zeros(1, *map_shape)).shape[1:])
            if out_shape[1] * out_shape[2] < 49:
                folded = fold_fc6(model.classifier[0], *out_shape)
        self.fc6 = folded if folded is not None else copy.deepcopy(model.classifier[0])
        self.folded = folded is not None
        self.avgpool = None if self.folded else copy.deepcopy(model.avgpool)
        self.rest = copy.deepcopy(model.classifier[1:6])  # ReLU, Dropout, fc7, ReLU, Dropout (eval: no dropout)
        self.head = head
        for p in self.parameters():
            p.requires_grad_(False)
        for p in [*(self.blocks.parameters() if self.blocks is not None else []), *self.head.parameters()]:
            p.requires_grad_(True)
        self.eval()

    def forward(self, x):
        if self.blocks is None:  # trainable_blocks = 0: x is the cached 4096 features after classifier[5]
            return self.head(x)
        x = self.blocks(x)
        x = torch.flatten(x if self.folded else self.avgpool(x), 1)
        return self.head(self.rest(self.fc6(x)))


@torch.no_grad()
def block_input(model, images, image_size: int, trainable_blocks: int, batch_size: int = 32) -> np.ndarray:
    """The cache: the frozen network's output at the first trained block's input, float32, once per image.

    trainable_blocks 0 gives the 4096 features after classifier[5] (transfer.extract_features)."""
    from . import transfer

    k = check_blocks(trainable_blocks)
    if k == 0:
        return transfer.extract_features(model, images, image_size, batch_size, progress=False)
    device = next(model.parameters()).device
    model.eval()
    bottom = model.features[: cut_index(k)]
    out = []
    for start in range(0, len(images), batch_size):
        out.append(bottom(transfer.preprocess(images[start : start + batch_size], image_size, device)).float().cpu())
    return torch.cat(out).numpy()


def _bottom(model, trainable_blocks: int, image_size: int):
    """The frozen part as a function of uint8 images (the plain way)."""
    from . import transfer

    k = check_blocks(trainable_blocks)
    device = next(model.parameters()).device

    @torch.no_grad()
    def run(images):
        x = transfer.preprocess(images, image_size, device)
        return transfer.frozen_forward(model, x) if k == 0 else model.features[: cut_index(k)](x)

    return run


def _fit(model, get_batch, labels, trainable_blocks, map_shape, *, epochs, batch_size, lr, block_lr, seed,
         class_weight=None, fold=True):
    """One loop for the cached and the plain way: same init, same shuffling, same optimiser (as transfer._fit)."""
    from . import transfer

    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    weight = None if class_weight is None else torch.as_tensor(np.asarray(class_weight, dtype=np.float32))
    head = transfer.new_head(model.classifier[6].in_features, len(CLASSES), seed)
    tail = Tail(model, trainable_blocks, head, fold=fold, map_shape=map_shape)
    groups = [{"params": list(tail.head.parameters()), "lr": lr}]
    if tail.blocks is not None:
        groups.append({"params": [p for p in tail.blocks.parameters() if p.requires_grad], "lr": block_lr})
    opt = torch.optim.Adam(groups, lr=lr)
    gen = torch.Generator().manual_seed(int(seed))
    losses = []
    for _ in range(epochs):
        total = torch.zeros(())
        for idx in torch.randperm(len(y), generator=gen).split(batch_size):
            loss = F.cross_entropy(tail(get_batch(idx)), y[idx], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        losses.append(total)
    return tail, [float(v) / max(len(y), 1) for v in losses]


def train_blocks(model, cached, labels, trainable_blocks: int, *, epochs: int = 20, batch_size: int = 32,
                 lr: float = 1e-3, block_lr: float = 1e-4, seed: int = 0, class_weight=None, fold: bool = True):
    """Train the last layer (and the last ``trainable_blocks`` blocks) on the cache; returns (tail, losses)."""
    x = torch.as_tensor(np.asarray(cached), dtype=torch.float32)
    shape = tuple(x.shape[1:]) if x.ndim == 4 else None
    return _fit(model, lambda idx: x[idx], labels, trainable_blocks, shape, epochs=epochs, batch_size=batch_size,
                lr=lr, block_lr=block_lr, seed=seed, class_weight=class_weight, fold=fold)


def train_blocks_plain(model, images, labels, image_size: int, trainable_blocks: int, *, epochs: int = 20,
                       batch_size: int = 32, lr: float = 1e-3, block_lr: float = 1e-4, seed: int = 0,
                       class_weight=None, fold: bool = True):
    """The plain way, for comparison: the frozen part runs on every batch of every epoch (no cache, no fold)."""
    images = np.asarray(images)
    bottom = _bottom(model, trainable_blocks, image_size)
    shape = tuple(bottom(images[:1]).shape[1:])
    shape = shape if len(shape) == 3 else None
    return _fit(model, lambda idx: bottom(images[idx.numpy()]), labels, trainable_blocks, shape, epochs=epochs,
                batch_size=batch_size, lr=lr, block_lr=block_lr, seed=seed, class_weight=class_weight, fold=fold)


@torch.no_grad()
def predict(tail, cached, batch_size: int = 256) -> np.ndarray:
    """P(COVID) from the cache."""
    x = torch.as_tensor(np.asarray(cached), dtype=torch.float32)
    return torch.cat([torch.softmax(tail(x[i : i + batch_size]), 1)[:, 1] for i in range(0, len(x), batch_size)]).numpy()


@torch.no_grad()
def predict_plain(model, tail, images, image_size: int, trainable_blocks: int, batch_size: int = 32) -> np.ndarray:
    """P(COVID) running the frozen part on the images (the plain way)."""
    bottom = _bottom(model, trainable_blocks, image_size)
    images = np.asarray(images)
    return torch.cat([torch.softmax(tail(bottom(images[i : i + batch_size])), 1)[:, 1]
                      for i in range(0, len(images), batch_size)]).numpy()


# ----------------------------------------------------------------------------- the study

CONDITIONS = ("real", "real+torch", "real+tf", "real+copies", "real+classweight")


def _training_set(cache: dict, labels: dict, cond: str, target_per_class: int, seed: int):
    """(cached inputs, labels, class weight or None) of a condition, as notebook 05 builds it, from each image
    set's cache (real, torch, tf: computed once per trainable_blocks)."""
    from . import transfer

    if cond == "real+copies":
        x, y = cache["real"], labels["real"]
        extra = transfer.topup_indices(y, target_per_class, seed)
        return np.concatenate([x, x[extra]]), np.concatenate([y, y[extra]]), None
    srcs = transfer.condition_sources(cond)
    x = np.concatenate([cache[src] for src in srcs])
    y = np.concatenate([labels[src] for src in srcs])
    return x, y, (transfer.balanced_class_weight(y) if cond == "real+classweight" else None)


def run(run_dir, out_dir=None, *, blocks=(0, 1, 2), conditions=CONDITIONS, seeds=(0,), epochs: int = 3,
        vgg_weights="auto", profile: str = "demo", reuse: bool = True, progress: bool = True, threads: int | None = None) -> dict:
    """Study 2 on a finished run's images (its real split and notebook 04's synthetic images, no retraining):
    per trainable_blocks, condition and seed, validation accuracy, balanced accuracy and ROC AUC; with its time."""
    from . import config, transfer
    from .files import write_json

    cfg = config.resolve(profile=profile, run_dir=str(run_dir))
    out_dir = Path(out_dir) if out_dir is not None else cfg.path("studies", "finetune")
    from . import runs

    # checked and marked before anything is written: a folder of someone else's files is refused
    runs.claim_output(out_dir, label="Study folder", option="--out", data_dir=cfg.data_dir,
                      is_old=lambda folder: runs.old_results(folder, set(), {"settings", "rows"}))
    s = {"run_dir": config.rel(run_dir), "blocks": [check_blocks(b) for b in blocks], "conditions": list(conditions),
         "seeds": [int(v) for v in seeds], "epochs": int(epochs), "vgg_weights": vgg_weights,
         # trainable_blocks = 0 is the report's head: on cached features its epochs cost seconds, so it gets
         # notebook 05's (an under-trained baseline would flatter every unfrozen block)
         "head_epochs": int(max(epochs, cfg.vgg_epochs)),
         "vgg_image_size": cfg.vgg_image_size, "target_per_class": cfg.target_per_class, "block_lr": 1e-4, "lr": 1e-3}
    path = out_dir / "results.json"
    if reuse and path.exists():
        found = json.loads(path.read_text())
        if found.get("settings") == s and found.get("val_labels") and all("prob" in r for r in found["rows"]):
            found["reading"] = reading(found)  # the reading of this version of the package
            return found
    if threads:
        torch.set_num_threads(threads)
    datasets = transfer.load_datasets(cfg, progress=progress)
    model, info = transfer.build_vgg16(vgg_weights, seed=0, verbose=progress)
    val_x, val_y = datasets["val"]
    rows, seconds = [], {}
    for k in s["blocks"]:
        start = time.perf_counter()
        names = [n for n in ("real", "torch", "tf", "val") if n in datasets]
        cache = {n: block_input(model, datasets[n][0], cfg.vgg_image_size, k) for n in names}
        labels = {n: datasets[n][1] for n in names}
        for cond in conditions:
            missing = [src for src in transfer.condition_sources(cond) if src not in datasets]
            if missing:
                continue
            for seed in s["seeds"]:
                x, y, weight = _training_set(cache, labels, cond, cfg.target_per_class, seed)
                t = time.perf_counter()
                tail, losses = train_blocks(model, x, y, k, epochs=s["head_epochs"] if k == 0 else epochs, seed=seed,
                                            class_weight=weight)
                prob = predict(tail, cache["val"])
                pred = (prob >= 0.5).astype(int)
                sens, spec = pred[val_y == 1].mean(), 1 - pred[val_y == 0].mean()
                rows.append({"trainable_blocks": k, "condition": cond, "seed": seed, "n_train": int(len(y)),
                             "accuracy": float((pred == val_y).mean()), "balanced_accuracy": float((sens + spec) / 2),
                             "roc_auc": float(_auc(val_y, prob)), "final_loss": losses[-1],
                             "train_seconds": time.perf_counter() - t,
                             "prob": [round(float(v), 6) for v in prob]})  # per validation image: the paired test
                if progress:
                    print(f"blocks {k} {cond:18s} seed {seed}: accuracy {rows[-1]['accuracy']:.3f} "
                          f"({rows[-1]['train_seconds']:.0f} s)", flush=True)
        seconds[str(k)] = time.perf_counter() - start
    results = {"settings": s, "vgg16": info["used"], "rows": rows, "seconds": seconds,
               "n_val": int(len(val_y)), "val_labels": [int(v) for v in val_y], "torch_threads": torch.get_num_threads()}
    results["reading"] = reading(results)
    from .pipeline import when_measured

    results["measured"] = when_measured()  # a time means little without its date and load
    write_json(path, results)
    return results


def _auc(labels, prob) -> float:
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(labels, prob) if len(set(np.asarray(labels).tolist())) == 2 else float("nan")


def table(results: dict):
    """Mean over seeds per (trainable_blocks, condition): accuracy, balanced accuracy, ROC AUC, training seconds."""
    import pandas as pd

    df = pd.DataFrame(results["rows"])
    if df.empty:
        return df
    return (df.groupby(["trainable_blocks", "condition"], sort=False)
              [["accuracy", "balanced_accuracy", "roc_auc", "train_seconds"]].mean().reset_index())


PAIRED_TEST = ("notebook 05's test: ROC AUC of each real+GAN condition minus the best no-GAN control's on the same "
               "validation images, class-stratified paired bootstrap (head seeds averaged), Holm-corrected within "
               "each trainable_blocks")


def _probabilities(results: dict, k: int, cond: str) -> np.ndarray | None:
    """(seeds, images) validation probabilities of one condition at trainable_blocks k, or None (older results)."""
    rows = [r for r in results["rows"] if r["trainable_blocks"] == k and r["condition"] == cond]
    if not rows or any("prob" not in r for r in rows):
        return None
    return np.array([r["prob"] for r in sorted(rows, key=lambda r: r["seed"])], float)


def gains(results: dict, n_resamples: int = 2000, seed: int = 0):
    """Gain of each real+GAN condition over real and over the best no-GAN control, per trainable_blocks (ROC AUC
    and balanced accuracy). Where the results hold per-image probabilities (``val_labels`` and each row's
    ``prob``), the gain over the best control gets notebook 05's paired test (PAIRED_TEST): its 95% interval,
    p and Holm p; older results get the means only."""
    import pandas as pd

    from .statistics.bootstrap import holm, paired_differences, stratified_counts

    t = table(results)
    labels = np.asarray(results.get("val_labels") or [], int)
    counts = stratified_counts(labels, n_resamples, seed) if len(labels) else None
    rows = []
    for k, part in t.groupby("trainable_blocks"):
        by = part.set_index("condition")
        if "real" not in by.index:
            continue
        controls = [c for c in ("real+copies", "real+classweight") if c in by.index]
        best = max(controls, key=lambda c: by.loc[c, "roc_auc"]) if controls else None
        family = []
        for cond in by.index:
            if not cond.startswith("real+") or cond in controls:
                continue
            row = {"trainable_blocks": k, "condition": cond,
                   "AUC gain vs real": by.loc[cond, "roc_auc"] - by.loc["real", "roc_auc"],
                   "AUC gain vs best control": by.loc[cond, "roc_auc"] - by.loc[best, "roc_auc"] if best else np.nan,
                   "balanced accuracy gain vs real": by.loc[cond, "balanced_accuracy"] - by.loc["real", "balanced_accuracy"],
                   "best control": best}
            a, b = (_probabilities(results, k, best), _probabilities(results, k, cond)) if best else (None, None)
            if counts is not None and a is not None and b is not None:
                d = paired_differences(labels, a, b, counts=counts)["roc_auc"]
                row.update({"AUC vs best control, 95% low": d["interval"][0],
                            "AUC vs best control, 95% high": d["interval"][1], "p": d["p"]})
                family.append(row)
            rows.append(row)
        for row, p in zip(family, holm([r["p"] for r in family])):
            row["Holm p"] = p
    return pd.DataFrame(rows)


def _verdict(row, alpha: float = 0.05) -> str:
    if row["Holm p"] < alpha:
        return "a better classifier than " + row["best control"] if row["AUC gain vs best control"] > 0 else \
            "a worse classifier than " + row["best control"]
    return "not shown to differ from " + row["best control"]


def reading(results: dict) -> list[str]:
    """What the comparison says, computed from it: gains per trainable_blocks, judged by notebook 05's paired test
    where per-image probabilities are held (described only, without a verdict, where not), the cost, and what
    random weights mean."""
    g, s = gains(results), results["settings"]
    paired = len(g) and "Holm p" in g and g["Holm p"].notna().any()
    lines = []
    for k, part in g.groupby("trainable_blocks") if len(g) else []:
        if paired:
            parts = [f"{r['condition']} {signed(r['AUC gain vs real'], 3)} AUC vs real, "
                     f"{signed(r['AUC gain vs best control'], 3)} [{signed(r['AUC vs best control, 95% low'], 3)}, "
                     f"{signed(r['AUC vs best control, 95% high'], 3)}] vs {r['best control']} (Holm p "
                     f"{r['Holm p']:.2f}): {_verdict(r)}" for _, r in part.iterrows()]
        else:
            parts = [f"{r['condition']} {signed(r['AUC gain vs real'], 3)} AUC vs real, "
                     f"{signed(r['AUC gain vs best control'], 3)} vs {r['best control']}" for _, r in part.iterrows()]
        what = "last layer only (the report)" if k == 0 else f"last {k} block(s) trained too"
        lines.append(f"trainable_blocks = {k} ({what}): " + "; ".join(parts) + ".")
    if paired:
        lines.append(f"Judged by {PAIRED_TEST}. The intervals cover the sampling of the {results['n_val']} validation "
                     f"images only: {len(s['seeds'])} head seed(s) averaged, {s['epochs']} epochs with blocks unfrozen, "
                     "one GAN training run each; another GAN seed can land elsewhere.")
    elif len(g) and g["AUC gain vs best control"].notna().any():  # without a control there is no verdict to weigh
        best = g.loc[g["AUC gain vs best control"].idxmax()]
        lines.append(
            "Described only: these results hold no per-image predictions, so notebook 05's paired test cannot be "
            f"applied; the largest gain over the best control here is {signed(best['AUC gain vs best control'], 3)} "
            f"({best['condition']}, trainable_blocks = {best['trainable_blocks']}), a difference of means from "
            f"{len(s['seeds'])} head seed(s), {s['epochs']} epochs and one GAN seed on {results['n_val']} validation "
            "images, without an interval: too few to call it a gain. Rerun the study to get the test.")
    t = table(results)
    one_class = t[t["balanced_accuracy"] <= 0.55]
    if len(one_class):
        lines.append("Heads that call nearly every image one class (balanced accuracy <= 0.55): "
                     + ", ".join(f"{r['condition']} at trainable_blocks = {r['trainable_blocks']}"
                                 for _, r in one_class.iterrows())
                     + ": too few epochs for them; their ROC AUC still ranks the images, their accuracy means little.")
    epochs_0 = s.get("head_epochs", s["epochs"])
    lines.append(f"Epochs: {epochs_0} at trainable_blocks = 0 (notebook 05's head), {s['epochs']} with blocks unfrozen.")
    lines.append("Time: " + ", ".join(f"trainable_blocks = {k}: {v / 60:.1f} min" for k, v in results["seconds"].items())
                 + f" ({results['torch_threads']} CPU thread(s)).")
    if results["vgg16"] == "random":
        lines.append("VGG16 has random weights (offline: no download possible): nothing is transferred, so unfreezing "
                     "trains random convolutions, not ImageNet features; the claim under test (GAN images help only "
                     "when the last blocks adapt) is about pretrained features and is not tested by this run.")
    return lines


def results_in_run(run_dir) -> dict | None:
    """Study 2's results held by a run (RUN/studies/finetune/results.json), or None: for notebook 05's optional cell."""
    path = Path(run_dir) / "studies" / "finetune" / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def comparison(run_dir):
    """(table, gains, reading) of study 2 when the run holds it, else None (notebook 05 shows it when present)."""
    results = results_in_run(run_dir)
    if results is None:
        return None
    return table(results), gains(results), results["reading"]


def main(argv=None) -> int:
    """``python -m covidgan_utils.finetune RUN_DIR [--blocks 0,1,2] [--seeds 0] [--epochs 3] [--out DIR]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m covidgan_utils.finetune", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a finished run (notebooks 01-04: its split and synthetic images are used)")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--blocks", default="0,1,2")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--weights", default="auto", help="VGG16 weights: auto, imagenet, random or a file")
    ap.add_argument("--out", default=None, help="output folder (default RUN_DIR/studies/finetune)")
    args = ap.parse_args(argv)
    from .runs import RunDirError

    try:
        res = _run_cli(args)
    except RunDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(res).round(3).to_string(index=False))
    print("\n".join(res["reading"]))
    return 0


def _run_cli(args) -> dict:
    return run(args.run_dir, args.out, blocks=[int(b) for b in args.blocks.split(",")],
              seeds=[int(v) for v in args.seeds.split(",")], epochs=args.epochs, vgg_weights=args.weights,
              profile=args.profile)


if __name__ == "__main__":
    raise SystemExit(main())
