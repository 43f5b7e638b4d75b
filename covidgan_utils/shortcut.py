"""Study 1: a planted shortcut across hospitals, and whether the GAN copies it (opt-in; notebook 07, make studies).

The home hospital burns its letter into most COVID images and few normal ones (site "shortcut",
phantom_sites.SITES); the external hospital's letter says nothing about the class and its scanner differs
mildly (site "external"). With phantoms the truth is known, so the study measures what real data cannot:
- the classifier trained at home, scored at home and at the external site, against the same pipeline on a
  home site whose letter is on as many normal as COVID images (arm "clean", the control);
- a flip test: the same images with the letter stamped on and taken off (does the prediction follow it?);
- the letter's rate per class in real and in generated images (does the GAN copy, exaggerate or drop it?),
  and what the generated images do to the augmented classifiers' external accuracy.
Everything is drawn in memory (phantom_sites.draw_set: the same pixels generate_dataset writes); the GANs
are trained here on each arm's home images (a finished demo run cannot be reused: its data has no site).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from . import CLASSES
from .formatting import signed
from .phantom_sites import SITES, draw_set, marker_rates, stamp_marker

ARMS = {"shortcut": "shortcut", "clean": "clean"}  # arm -> home site (phantom_sites.SITES)
EXTERNAL_SITE = "external"

SCALES = {
    # small for testing: every step runs, the numbers mean nothing
    "smoke": dict(image_size=32, train={"COVID": 16, "Normal": 20}, val={"COVID": 8, "Normal": 10},
                  external={"COVID": 10, "Normal": 10}, flip={"COVID": 6, "Normal": 6}, frameworks=("torch",),
                  gan_epochs=1, torch_width=0.125, tf_width=0.125, gan_batch_size=16, target_per_class=24,
                  vgg_image_size=32, vgg_epochs=2, seeds=[0], vgg_weights=None, home_site="shortcut"),
    # the CPU run: the paper's counts at 32 px, a small PyTorch GAN for a few epochs, three head seeds
    "cpu": dict(image_size=32, train={"COVID": 331, "Normal": 601}, val={"COVID": 72, "Normal": 120},
                external={"COVID": 200, "Normal": 200}, flip={"COVID": 100, "Normal": 100}, frameworks=("torch",),
                gan_epochs=6, torch_width=0.25, tf_width=0.25, gan_batch_size=32, target_per_class=1000,
                vgg_image_size=32, vgg_epochs=20, seeds=[0, 1, 2], vgg_weights="auto", home_site="shortcut"),
    # the demo's GAN settings (64 px, both frameworks): hours on 2 CPU cores, minutes on a GPU
    "demo": dict(image_size=64, train={"COVID": 331, "Normal": 601}, val={"COVID": 72, "Normal": 120},
                 external={"COVID": 500, "Normal": 500}, flip={"COVID": 200, "Normal": 200}, frameworks=("torch", "tf"),
                 gan_epochs=40, torch_width=0.5, tf_width=0.25, gan_batch_size=32, target_per_class=1000,
                 vgg_image_size=64, vgg_epochs=20, seeds=[0, 1, 2, 3, 4], vgg_weights="auto", home_site="shortcut"),
}
SEED = 0  # phantom seed of the home sites; val uses later images of the same seed, external seed + 1000
CONDITIONS = ("real", "real+copies", "real+classweight")  # + one real+<framework> per GAN


def settings(scale: str = "cpu", **changes) -> dict:
    """The study's settings: a named scale with changes (e.g. gan_epochs=2, frameworks=("torch",))."""
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}: choose one of {', '.join(SCALES)}.")
    unknown = sorted(set(changes) - set(SCALES[scale]))
    if unknown:
        raise ValueError(f"Unknown study settings {unknown}; known: {', '.join(SCALES[scale])}.")
    out = {**SCALES[scale], **changes, "scale": scale}
    out["frameworks"] = list(out["frameworks"])
    return out


def draw_arm(arm: str, s: dict) -> dict:
    """The arm's home train and validation images and the external site's test images, drawn in memory."""
    site = s.get("home_site", "shortcut") if arm == "shortcut" else ARMS[arm]
    n_train = s["train"]
    return {
        "train": draw_set(n_train, s["image_size"], SEED, site),
        "val": draw_set(s["val"], s["image_size"], SEED, site, start=max(n_train.values())),
        "external": draw_set(s["external"], s["image_size"], SEED + 1000, EXTERNAL_SITE),
        "flip": draw_set(s["flip"], s["image_size"], SEED + 2000, site),
    }


def train_gan(framework: str, images, labels, s: dict, out_dir: Path, progress: bool = False) -> dict:
    """Train one GAN on the arm's home images (resumable in out_dir) and top each class up to the target."""
    from . import synthesis

    gan = _framework(framework)
    width = s[f"{framework}_width"]
    g = gan.build_generator(image_size=s["image_size"], width=width)
    d = gan.build_discriminator(image_size=s["image_size"], width=width)
    start = time.perf_counter()
    gan.train(g, d, images[..., None], labels, epochs=s["gan_epochs"], batch_size=s["gan_batch_size"],
              out_dir=out_dir, checkpoint_every=s["gan_epochs"], progress=progress, seed=0)
    seconds = time.perf_counter() - start
    plan = synthesis.plan({c: int((labels == k).sum()) for k, c in enumerate(CLASSES)}, s["target_per_class"])
    y = np.concatenate([np.full(plan[c], k, dtype=np.int64) for k, c in enumerate(CLASSES)])
    x = gan.sample(gan.load_generator(out_dir), y, 0)
    x = x.mean(axis=-1).round().astype(np.uint8) if x.shape[-1] == 3 else x[..., 0]
    return {"images": x, "labels": y, "seconds": seconds}


def _framework(name: str):
    if name == "torch":
        from . import torch_gan

        return torch_gan
    if name == "tf":
        from . import tf_gan

        return tf_gan
    raise ValueError(f"Unknown framework {name!r}: torch or tf.")


def _metrics(labels, prob) -> dict:
    """Accuracy (with a 95% Wilson interval over the images), balanced accuracy and ROC AUC of P(COVID)."""
    from sklearn.metrics import roc_auc_score
    from statsmodels.stats.proportion import proportion_confint

    labels, prob = np.asarray(labels), np.asarray(prob)
    pred = prob >= 0.5
    correct = pred == labels
    sens, spec = pred[labels == 1].mean(), (~pred[labels == 0]).mean()
    low, high = proportion_confint(int(correct.sum()), len(correct), method="wilson")
    auc = roc_auc_score(labels, prob) if len(set(labels.tolist())) == 2 else float("nan")
    return {"accuracy": float(correct.mean()), "accuracy_ci": [float(low), float(high)],
            "balanced_accuracy": float((sens + spec) / 2), "sensitivity": float(sens), "specificity": float(spec),
            "roc_auc": float(auc), "n": int(len(labels))}


def evaluate_arm(sets: dict, synthetic: dict, s: dict, model, progress: bool = False) -> dict:
    """Heads per condition and seed on VGG16 features; scores at home and external, the flip test, marker rates."""
    from . import transfer

    size = s["vgg_image_size"]
    feats = {}
    for name, (x, y) in {"real": (sets["train"]["images"], sets["train"]["labels"]),
                         **{fw: (v["images"], v["labels"]) for fw, v in synthetic.items()}}.items():
        feats[name] = (transfer.extract_features(model, x[..., None], size, progress=False), y)
    flip = sets["flip"]
    scored = {
        "home": sets["val"]["images"], "external": sets["external"]["images"],
        "flip_on": stamp_marker(flip["unmarked"]), "flip_off": flip["unmarked"],
    }
    scored_feats = {k: transfer.extract_features(model, v[..., None], size, progress=False) for k, v in scored.items()}
    conditions = ["real", *[f"real+{fw}" for fw in synthetic], "real+copies", "real+classweight"]
    heads, _, skipped = transfer.train_conditions(feats, conditions=conditions, seeds=s["seeds"], epochs=s["vgg_epochs"],
                                                  target_per_class=s["target_per_class"], progress=progress)
    out = {}
    for cond in conditions:
        if cond in skipped:
            continue
        prob = {k: np.mean([transfer.predict_proba(heads[(cond, seed)], f) for seed in s["seeds"]], axis=0)
                for k, f in scored_feats.items()}
        on, off = prob["flip_on"], prob["flip_off"]
        out[cond] = {
            "home": _metrics(sets["val"]["labels"], prob["home"]),
            "external": _metrics(sets["external"]["labels"], prob["external"]),
            "flip": {"mean_prob_on": float(on.mean()), "mean_prob_off": float(off.mean()),
                     "mean_shift": float((on - off).mean()),
                     "changed": float(((on >= 0.5) != (off >= 0.5)).mean()),
                     "to_covid": float(((on >= 0.5) & (off < 0.5)).mean()),
                     "accuracy_on": _metrics(flip["labels"], on)["accuracy"],
                     "accuracy_off": _metrics(flip["labels"], off)["accuracy"], "n": int(len(on))},
        }
    return out


def gan_reading(real: dict, generated: dict) -> str:
    """Copied, exaggerated, weakened or dropped: the generated images' COVID-minus-normal marker gap vs the real one."""
    gap_real = real["rate"]["COVID"] - real["rate"]["Normal"]
    gap_gen = generated["rate"]["COVID"] - generated["rate"]["Normal"]
    total = generated["rate"]["COVID"] + generated["rate"]["Normal"]
    if total == 0:
        return "dropped (no generated image carries the letter)"
    if gap_real <= 0.05:
        return "no class link to copy" if abs(gap_gen) <= 0.1 else f"a class link created ({signed(gap_gen, 2)})"
    ratio = gap_gen / gap_real
    if ratio > 1.2:
        return f"exaggerated (gap {signed(gap_gen, 2)} vs {signed(gap_real, 2)} in the real images)"
    if ratio >= 0.8:
        return f"copied (gap {signed(gap_gen, 2)} vs {signed(gap_real, 2)})"
    if ratio > 0.2:
        return f"weakened (gap {signed(gap_gen, 2)} vs {signed(gap_real, 2)})"
    return f"dropped (gap {signed(gap_gen, 2)} vs {signed(gap_real, 2)})"


def claim_out_dir(out_dir) -> Path:
    """The study's folder, checked and marked before anything is written (runs.claim_output): a folder of someone
    else's files is refused; one an earlier version wrote (results.json and the arms' GAN folders) is adopted."""
    from . import runs

    return runs.claim_output(
        Path(out_dir), label="Study folder", option="--out",
        is_old=lambda folder: runs.old_results(folder, set(ARMS), {"settings", "arms"}),
    )


def run(scale: str = "cpu", out_dir=None, progress: bool = True, reuse: bool = True, **changes) -> dict:
    """Run study 1 (or read back a finished one with the same settings from out_dir/results.json)."""
    from . import transfer
    from .config import repo_root
    from .files import write_json

    s = settings(scale, **changes)
    out_dir = Path(out_dir) if out_dir is not None else repo_root() / "runs" / "studies" / f"shortcut-{scale}"
    claim_out_dir(out_dir)
    path = out_dir / "results.json"
    if reuse and path.exists():
        found = json.loads(path.read_text())
        if found.get("settings") == json.loads(json.dumps(s)):
            found["reading"] = reading(found)  # the reading of this version of the package
            return found
    start = time.perf_counter()
    model, info = transfer.build_vgg16(s["vgg_weights"], seed=0, verbose=progress)
    sites = {"shortcut": s["home_site"], "clean": ARMS["clean"], "external": EXTERNAL_SITE}
    results = {"settings": s, "vgg16": info["used"], "sites": {k: {"name": v, **SITES[v]} for k, v in sites.items()},
               "arms": {}, "seconds": {}}
    for arm in ARMS:
        t = time.perf_counter()
        sets = draw_arm(arm, s)
        synthetic, rates, gan_seconds = {}, {"real": marker_rates(sets["train"]["images"], sets["train"]["labels"])}, {}
        rates["truth"] = {c: float(sets["train"]["marker"][sets["train"]["labels"] == k].mean()) for k, c in enumerate(CLASSES)}
        for fw in s["frameworks"]:
            if progress:
                print(f"[{arm}] training the {fw} GAN ({s['gan_epochs']} epochs) ...", flush=True)
            synthetic[fw] = train_gan(fw, sets["train"]["images"], sets["train"]["labels"], s, out_dir / arm / f"{fw}_gan")
            rates[fw] = marker_rates(synthetic[fw]["images"], synthetic[fw]["labels"])
            rates[fw]["reading"] = gan_reading(rates["real"], rates[fw])
            gan_seconds[fw] = synthetic[fw]["seconds"]
        if progress:
            print(f"[{arm}] VGG16 features and heads ...", flush=True)
        results["arms"][arm] = {"marker_rates": rates, "conditions": evaluate_arm(sets, synthetic, s, model),
                                "gan_seconds": gan_seconds}
        results["seconds"][arm] = time.perf_counter() - t
    results["seconds"]["total"] = time.perf_counter() - start
    results["reading"] = reading(results)
    from .pipeline import when_measured

    results["measured"] = when_measured()  # a time means little without its date and load
    write_json(path, results)
    return results


def table(results: dict):
    """One row per arm and condition: accuracy at home and external, the drop, and the flip test."""
    import pandas as pd

    rows = []
    for arm, a in results["arms"].items():
        for cond, c in a["conditions"].items():
            rows.append({"arm": arm, "condition": cond, "home accuracy": c["home"]["accuracy"],
                         "external accuracy": c["external"]["accuracy"],
                         "drop": c["home"]["accuracy"] - c["external"]["accuracy"],
                         "external sensitivity": c["external"]["sensitivity"],
                         "external AUC": c["external"]["roc_auc"],
                         "flip: class changed": c["flip"]["changed"], "flip: P(COVID) shift": c["flip"]["mean_shift"]})
    return pd.DataFrame(rows)


def rates_table(results: dict):
    """The letter's detected rate per class in the real and the generated images of each arm."""
    import pandas as pd

    rows = []
    for arm, a in results["arms"].items():
        for source, r in a["marker_rates"].items():
            if source == "truth":
                continue
            rows.append({"arm": arm, "images": source, "COVID rate": r["rate"]["COVID"],
                         "Normal rate": r["rate"]["Normal"], "COVID letter level": r["mean_level"]["COVID"],
                         "Normal letter level": r["mean_level"]["Normal"], "reading": r.get("reading", "")})
    return pd.DataFrame(rows)


def plot(results: dict):
    """Left: the letter's rate per class in real and generated images (each arm). Right: accuracy at home and at
    the external site per condition, with the shortcut and without (the control); the dashed line is chance."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    rt = rates_table(results)
    labels = [f"{r['arm']}\n{r['images']}" for _, r in rt.iterrows()]
    pos = np.arange(len(rt))
    ax1.bar(pos - 0.2, rt["COVID rate"], 0.4, label="COVID")
    ax1.bar(pos + 0.2, rt["Normal rate"], 0.4, label="Normal")
    ax1.set_xticks(pos, labels)
    ax1.set_ylim(0, 1)
    ax1.set_ylabel("images with the letter")
    ax1.set_title("the site's letter: real vs generated")
    ax1.legend()
    t = table(results)
    conds = list(dict.fromkeys(t["condition"]))
    pos = np.arange(len(conds))
    for j, (arm, shift) in enumerate((("shortcut", -0.2), ("clean", 0.2))):
        part = t[t["arm"] == arm].set_index("condition").reindex(conds)
        ax2.bar(pos + shift, part["external accuracy"], 0.4, label=f"{arm}: external", color=f"C{j + 2}")
        ax2.scatter(pos + shift, part["home accuracy"], color="k", marker="_", s=200, zorder=3,
                    label="home" if j == 0 else None)
    ax2.axhline(0.5, ls="--", color="gray", lw=1)
    ax2.set_xticks(pos, conds, rotation=20)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("accuracy")
    ax2.set_title("trained at home, tested at home and external")
    ax2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def accuracy_difference(plus: list[dict], minus: list[dict], z: float = 1.96) -> tuple[float, float, float]:
    """sum(plus accuracies) - sum(minus accuracies) with a conservative 95% interval: the binomial variances of the
    accuracies (each scored on its own ``n`` images) added as if they were independent. The arms score the same
    people, whose errors go together, so the true interval is narrower; a difference outside this one is real."""
    diff = sum(p["accuracy"] for p in plus) - sum(m["accuracy"] for m in minus)
    var = sum(p["accuracy"] * (1 - p["accuracy"]) / p["n"] for p in [*plus, *minus])
    return diff, diff - z * var ** 0.5, diff + z * var ** 0.5


def _interval(low: float, high: float) -> str:
    return f"95% [{signed(low, 3)}, {signed(high, 3)}]"


def _changed_ci(flip: dict) -> list[float]:
    """Wilson 95% interval of the share of predictions the flip changed."""
    from .evaluation.scores import wilson_ci

    return wilson_ci(round(flip["changed"] * flip["n"]), flip["n"])


def reading(results: dict) -> list[str]:
    """The study's reading, computed from its numbers (one sentence per finding), each difference with its interval."""
    arms, s = results["arms"], results["settings"]
    sc, cl = arms["shortcut"]["conditions"]["real"], arms["clean"]["conditions"]["real"]
    drop_sc = sc["home"]["accuracy"] - sc["external"]["accuracy"]
    drop_cl = cl["home"]["accuracy"] - cl["external"]["accuracy"]
    did, low, high = accuracy_difference([sc["home"], cl["external"]], [sc["external"], cl["home"]])
    if low > 0:
        cost = ("the shortcut costs external accuracy beyond the scanner shift (difference of the drops "
                f"{signed(did, 3)}, {_interval(low, high)}).")
    elif high < 0:
        cost = (f"the arm with the shortcut drops less than the clean one ({signed(did, 3)}, {_interval(low, high)}).")
    else:
        cost = (f"the difference of the drops, {signed(did, 3)} ({_interval(low, high)}, conservative), cannot be told "
                f"from zero with {sc['home']['n']} home and {sc['external']['n']} external images: the flip test "
                "(next) needs no external site and is the sharper check.")
    (sc_low, sc_high), (_, cl_high) = _changed_ci(sc["flip"]), _changed_ci(cl["flip"])
    follows = sc["flip"]["changed"] > 0.05 and sc_low > cl_high
    lines = [
        f"Trained on real home images, the classifier scores {sc['home']['accuracy']:.3f} at home and "
        f"{sc['external']['accuracy']:.3f} at the external site with the shortcut (a drop of {signed(drop_sc, 3)}), "
        f"against {cl['home']['accuracy']:.3f} and {cl['external']['accuracy']:.3f} without it ({signed(drop_cl, 3)}): "
        + cost,
        f"Flip test on the same {sc['flip']['n']} images: stamping the letter moves P(COVID) by "
        f"{signed(sc['flip']['mean_shift'], 3)} and changes {sc['flip']['changed']:.0%} of the predictions with the "
        f"shortcut (95% [{sc_low:.0%}, {sc_high:.0%}]), {signed(cl['flip']['mean_shift'], 3)} and "
        f"{cl['flip']['changed']:.0%} in the control (at most {cl_high:.0%}): "
        + ("the prediction follows the letter." if follows else "the prediction hardly follows the letter."),
    ]
    flips = {c: (v["flip"]["changed"], arms["clean"]["conditions"].get(c, {}).get("flip", {}).get("changed", float("nan")))
             for c, v in arms["shortcut"]["conditions"].items()}
    most = max(flips, key=lambda c: flips[c][0])
    lines.append(f"Across the training conditions the flip changes up to {flips[most][0]:.0%} of the predictions "
                 f"({most}; in the control: {flips[most][1]:.0%})"
                 + (": a head that calls fewer images normal reads the letter more." if most != "real" else "."))
    for fw in s["frameworks"]:
        r = arms["shortcut"]["marker_rates"]
        lines.append(
            f"The {fw} GAN's images carry the letter on {r[fw]['rate']['COVID']:.0%} of COVID and "
            f"{r[fw]['rate']['Normal']:.0%} of normal images (real: {r['real']['rate']['COVID']:.0%} and "
            f"{r['real']['rate']['Normal']:.0%}): {r[fw]['reading']}.")
        aug = arms["shortcut"]["conditions"].get(f"real+{fw}")
        if aug:
            diff, low, high = accuracy_difference([aug["external"]], [sc["external"]])
            text = (f"Adding its images changes external accuracy by {signed(diff, 3)} ({_interval(low, high)}, "
                    "conservative) with the shortcut")
            ctrl = arms["clean"]["conditions"].get(f"real+{fw}")
            if ctrl:
                c_diff, c_low, c_high = accuracy_difference([ctrl["external"]], [cl["external"]])
                text += f" and by {signed(c_diff, 3)} ({_interval(c_low, c_high)}) in the control"
                d, d_low, d_high = accuracy_difference([aug["external"], cl["external"]],
                                                       [sc["external"], ctrl["external"]])
                text += (f"; the difference, {signed(d, 3)} ({_interval(d_low, d_high)}), is what the GAN's images do to "
                         "the shortcut itself: " + ("they weaken it" if d_low > 0 else "they strengthen it"
                                                    if d_high < 0 else "not told from zero here"))
            lines.append(text + ".")
    if results["vgg16"] == "random":
        lines.append("VGG16 has random weights here: nothing was transferred; the heads read random features of "
                     "the pixels, and a bright corner letter is easy to see in any features.")
    n_gan = f"{s['gan_epochs']} epoch(s), one GAN seed" if s["frameworks"] else "no GAN"
    lines.append(f"Intervals cover the sampling of the scored images only; head seeds {s['seeds']} are "
                 f"averaged; {n_gan}; one phantom draw per site: a limitation.")
    return lines


def main(argv=None) -> int:
    """``python -m covidgan_utils.shortcut [--scale cpu] [--out DIR]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m covidgan_utils.shortcut", description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="cpu", choices=sorted(SCALES))
    ap.add_argument("--out", default=None, help="output folder (default runs/studies/shortcut-<scale>)")
    ap.add_argument("--gan-epochs", type=int, default=None)
    args = ap.parse_args(argv)
    changes = {"gan_epochs": args.gan_epochs} if args.gan_epochs else {}
    from .runs import RunDirError

    try:
        res = run(args.scale, args.out, **changes)
    except RunDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(res["reading"]))
    print(f"seconds: {res['seconds']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
