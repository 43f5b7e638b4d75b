"""What notebooks 02 and 03 show about a GAN, written once: the step's source, sizes, checks, figures, summary.

Each helper takes the framework module (``torch_gan`` or ``tf_gan``, imported as ``gan``) where it needs one,
so the two notebooks call the same lines and differ only where the frameworks do.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from . import CLASSES, config, files, plotting, quality

PAPER_EPOCHS, PAPER_IMAGES = 1000, 932  # the report's training: 1000 epochs over 331 + 601 images
LOSS_FIGURE = {"torch": 5, "tf": 3}  # the report's loss-curve figure of each framework
ASSUMED_GPU_FLOPS = 20e12  # a data-centre GPU's sustained rate on these convolutions (an assumption, stated)


def setup(gan, seed: int, out_dir) -> None:
    """Print the setup line: framework versions, device, seed and where the outputs go."""
    import platform

    info = gan.runtime()
    versions = " | ".join(f"{k} {v}" for k, v in info["versions"].items())
    print(f"python {platform.python_version()} | {versions} | numpy {np.__version__}")
    threads = f" | {info['threads']} CPU threads" if info.get("threads") else ""
    print(f"device {info['device']}{threads} | seed {seed} | outputs in {config.rel(out_dir)}")


def parameter_counts(gan, generator, discriminator) -> None:
    """The report models' parameter counts next to the report's own numbers (the check of the notebooks' section 4)."""
    for name, model in (("generator", generator), ("discriminator", discriminator)):
        print(f"{name:14s}: {gan.count_parameters(model):,} parameters (report: {gan.REPORT_PARAMETERS[name]:,})")


def model_sizes(gan, models: dict):
    """Parameters and training arithmetic of (generator, discriminator) pairs, one column per pair."""
    import pandas as pd

    rows = ["generator parameters", "discriminator parameters", "GFLOP per image per training step"]
    table = {
        label: [gan.count_parameters(g), gan.count_parameters(d), round(gan.train_flops_per_image(g, d) / 1e9, 3)]
        for label, (g, d) in models.items()
    }
    return pd.DataFrame(table, index=rows, dtype=object)  # counts stay integers beside the GFLOP


def show(function) -> None:
    """Display a function's source, as it runs in the package (not a copy)."""
    from IPython.display import Code, display

    display(Code(inspect.getsource(function), language="python"))


def loss_figures(gan, history, run_dir) -> None:
    """The loss curves (with log 2, a guessing discriminator's loss) and D's mean outputs on real and generated images."""
    import matplotlib.pyplot as plt

    title = f"{gan.runtime()['framework']} cGAN losses (cf. report Figure {LOSS_FIGURE[gan.NAME]})"
    fig = plotting.history_plot(history, title=title, test_column="g_test_loss")
    for ax in fig.axes:
        ax.axhline(np.log(2), ls="--", c="gray", lw=1)
    plotting.save_fig(fig, f"{gan.NAME}_losses", run_dir)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(history["epoch"], history["d_real"], label="D(x): real images")
    ax.plot(history["epoch"], history["d_fake"], label="D(G(z)): generated images")
    ax.set(xlabel="epoch", ylabel="mean discriminator output", ylim=(0, 1))
    ax.legend()
    plotting.save_fig(fig, f"{gan.NAME}_d_outputs", run_dir)


def class_fidelity(gan, generator, images, labels, *, seed: int, run_dir, n_per_class: int = 200, independent=None):
    """The GAN-test: a classifier trained on the real images labels generated ones of known class.

    ``independent`` = (images, labels) that neither the GAN nor the classifier trained on (``data.load_independent``):
    a second classifier trained on them scores generated and training images alike, which tells a caricature from
    a likeness of the training images. Draws the per-class bar chart (generated against real, cross-validated, and
    chance) and returns (the result dict, a table: one row per set of images and classifier).
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    fake_labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    fake = gan.sample(generator, fake_labels, seed=seed + 1)
    fidelity = quality.class_fidelity(images, labels, fake, fake_labels, seed=seed, independent=independent)
    real = fidelity.get("real_cv_per_class_recall") or {}
    names = list(fidelity["per_class_recall"])
    fig, ax = plt.subplots(figsize=(5, 2.6))
    y = np.arange(len(names))
    ax.barh(y + 0.2, [fidelity["per_class_recall"][k] for k in names], height=0.4, color="C0", label="generated")
    ax.barh(y - 0.2, [real.get(k, np.nan) for k in names], height=0.4, color="C2", label="real (cross-validated)")
    trained = fidelity.get("real_train_per_class_recall") or {}
    ax.scatter([trained.get(k, np.nan) for k in names], y - 0.2, marker="|", s=300, c="k",
               label="real, the classifier's own training images")
    ax.axvline(0.5, ls="--", c="gray", lw=1, label="chance")
    ax.set(yticks=y, yticklabels=names, xlim=(0, 1), xlabel="share labelled with its own class by a classifier of real images")
    ax.legend(fontsize=7, loc="lower left")
    plotting.save_fig(fig, f"{gan.NAME}_class_fidelity", run_dir)
    n_real = sum((fidelity.get("real_n_per_class") or {}).values()) or np.nan
    rows = {"generated": (fidelity["per_class_recall"], fidelity["balanced_accuracy"], len(fake_labels)),
            "real (cross-validated)": (real, fidelity.get("real_cv_balanced_accuracy", np.nan), n_real),
            "real, the classifier's training images": (trained, np.mean(list(trained.values())) if trained else np.nan,
                                                       n_real)}
    ind = fidelity.get("independent")
    if ind:
        rows["generated, independent classifier"] = (ind["per_class_recall"], ind["balanced_accuracy"], len(fake_labels))
        rows["real training images, independent classifier"] = (ind["real_per_class_recall"],
                                                                 ind["real_balanced_accuracy"], n_real)
    table = pd.DataFrame(
        {
            **{f"recall {k}": [r.get(k, np.nan) for r, _, _ in rows.values()] for k in names},
            "balanced accuracy": [b for _, b, _ in rows.values()],
            "images": [m for _, _, m in rows.values()],
        },
        index=list(rows),
    ).round(3)
    return fidelity, table


def _difference_ci(k1: float, n1: int, k2: float, n2: int) -> tuple[float, float]:
    """95% Newcombe interval of p1 - p2 for two independent proportions (statsmodels)."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(round(k1), n1, round(k2), n2, method="newcomb", compare="diff")
    return float(low), float(high)


def _against_real(gen: float, n_gen: int, real: float, n_real: int) -> tuple[str, tuple[float, float]]:
    """'above', 'below' or 'level': generated against real recall, by the 95% interval of the difference."""
    low, high = _difference_ci(gen * n_gen, n_gen, real * n_real, n_real)
    return ("above" if low > 0 else "below" if high < 0 else "level"), (low, high)


def fidelity_reading(fidelity: dict, n_per_class: int | None = None, gap: float = 0.1) -> list[str]:
    """What the class-fidelity check says, computed: each class's recall with its 95% Wilson interval against the
    real images' own recall (cross-validated, the same classifier), the gap between the classes against the real
    images' gap, and the overall balanced accuracy against the real images'.

    Above the cross-validated level is no success, but not yet a caricature: the GAN learned from the classifier's
    own training images, and images like those score up to the classifier's level on them
    (``real_train_per_class_recall``). Only above that is a caricature shown. Where ``fidelity["independent"]``
    holds a second classifier trained on images neither has seen, it decides: generated images against the GAN's
    training images, both new to it. Results without the real per-class recall (older runs) are read overall only.
    """
    from .evaluation import wilson_ci

    recall = fidelity["per_class_recall"]
    real = fidelity.get("real_cv_per_class_recall") or {}
    n_real = fidelity.get("real_n_per_class") or {}
    if not real:
        return _fidelity_reading_overall(fidelity, n_per_class or 200, gap)
    n_gen = fidelity.get("n_per_class") or {name: n_per_class or 200 for name in recall}
    n = sum(n_gen.values())
    acc, chance = fidelity["balanced_accuracy"], 1 / len(recall)  # balanced accuracy's chance level
    low_all, high_all = wilson_ci(round(acc * n), n)
    follows_label = low_all > chance
    trained = fidelity.get("real_train_per_class_recall") or {}
    ind = fidelity.get("independent")
    lines, ind_where = [], {}
    for name, r in recall.items():
        low, high = wilson_ci(round(r * n_gen[name]), n_gen[name])
        where, (dl, dh) = _against_real(r, n_gen[name], real[name], n_real[name])
        if where != "above":
            words = {"below": "less recognisable than real ones", "level": "as recognisable as real ones (not told apart)"}[where]
        elif not follows_label:
            words = "above the real level only because the images look like this class whatever was asked (last line)"
        elif name not in trained:
            words = "MORE recognisable than real ones: a caricature of the class"
        elif _against_real(r, n_gen[name], trained[name], n_real[name])[0] == "above":
            words = (f"MORE recognisable than real ones, even than the {trained[name]:.2f} of the training images the "
                     "classifier learned from: a caricature of the class")
        else:
            words = (f"more recognisable than real images new to the classifier, not more than the training images it "
                     f"learned from ({trained[name]:.2f}): the GAN learned from those too, so this check cannot tell a "
                     "caricature from a likeness of the training images" + (" (the independent check below can)" if ind
                                                                             else ""))
        lines.append(f"{name}: {r:.2f} [{low:.2f}, {high:.2f}] of the {n_gen[name]} generated {name} images are labelled {name}; "
                     f"real {name} images {real[name]:.2f} (cross-validated, {n_real[name]} images): {words} "
                     f"(difference {r - real[name]:+.2f}, 95% [{dl:+.2f}, {dh:+.2f}])")
    if ind:
        n_fresh = sum(ind["n_fresh_per_class"].values())
        for name, r in ind["per_class_recall"].items():
            ref = ind["real_per_class_recall"][name]
            where, (dl, dh) = _against_real(r, n_gen[name], ref, n_real[name])
            ind_where[name] = where
            words = {"above": "MORE recognisable than real ones: a caricature of the class" if follows_label else
                              "above the real level only because the images look like this class whatever was asked",
                     "below": "less recognisable than real ones",
                     "level": "as recognisable as real ones: no caricature shown"}[where]
            lines.append(f"independent check, {name}: a classifier trained on {n_fresh} other real images, which neither "
                         f"the first classifier nor the GAN saw, calls {r:.2f} of the generated {name} images {name}, "
                         f"and {ref:.2f} of the GAN's {n_real[name]} real {name} training images: {words} (difference "
                         f"{r - ref:+.2f}, 95% [{dl:+.2f}, {dh:+.2f}])")
    first, second = list(recall)[:2]
    spread, real_spread = recall[first] - recall[second], real[first] - real[second]
    similar = abs(spread - real_spread) <= gap
    lines.append(f"{first} minus {second}: {spread:+.2f} in the generated images, {real_spread:+.2f} in the real ones "
                 "(the classifier favours the larger class): "
                 + ("about as in the real images, so the gap is no fault in itself" if similar else
                    f"more than {gap:g} from the real images' gap: the classes are drawn more unevenly than real ones"))
    real_acc, n_r = fidelity["real_cv_balanced_accuracy"], sum(n_real.values())
    where, (dl, dh) = _against_real(acc, n, real_acc, n_r)
    if not follows_label:
        verdict = "not shown above chance: the generator may ignore its label"
    elif where == "above" and ind:
        shown = [k for k, w in ind_where.items() if w == "above"]
        verdict = ("ABOVE the real images' level, and the independent check confirms a caricature of "
                   + " and ".join(shown) if shown else
                   "above the real images' level, but the independent check shows no class more recognisable than "
                   "real images: the excess is a likeness of the training images, not a caricature")
    else:
        verdict = {"above": "ABOVE the real images' level: the generated classes are easier to tell apart than real "
                            "ones" + (", a caricature or a likeness of the training images (per class above)" if trained
                                      else ", a caricature"),
                   "below": "below the real images' level: the label shows, less clearly than in real images",
                   "level": "at the real images' level"}[where]
    lines.append(f"balanced accuracy {acc:.3f} [{low_all:.3f}, {high_all:.3f}] against {real_acc:.3f} on real images "
                 f"(cross-validated; difference 95% [{dl:+.3f}, {dh:+.3f}]) and chance {chance:.2f}: {verdict}")
    lines.append("the intervals cover the sampling of the scored images only: one GAN training run (one seed) and one "
                 "classifier; another run of the GAN can land elsewhere")
    return lines


def _fidelity_reading_overall(fidelity: dict, n_per_class: int, gap: float) -> list[str]:
    """The reading of results that carry the real images' overall accuracy only (runs made before per class)."""
    from .evaluation import wilson_ci

    recall = fidelity["per_class_recall"]
    lines = []
    for name, r in recall.items():
        low, high = wilson_ci(round(r * n_per_class), n_per_class)
        lines.append(f"{name}: {r:.2f} [{low:.2f}, {high:.2f}] of the generated {name} images are labelled {name}")
    spread = max(recall.values()) - min(recall.values())
    lines.append(f"the classes differ by {spread:.2f}: " + ("balanced, both classes are drawn about as recognisably"
                 if spread <= gap else "unbalanced: one class is drawn far more recognisably than the other"))
    n = n_per_class * len(recall)
    acc, ceiling = fidelity["accuracy"], fidelity["real_cv_accuracy"]
    low, high = wilson_ci(round(acc * n), n)
    if low > ceiling:
        verdict = "ABOVE the real images' level: the generated classes are easier to tell apart than real ones, a caricature"
    elif low <= fidelity["chance"]:
        verdict = "not shown above chance: the generator may ignore its label"
    elif high < ceiling:
        verdict = "below the real images' level: the label shows, less clearly than in real images"
    else:
        verdict = "at the real images' level"
    lines.append(f"overall {acc:.3f} [{low:.3f}, {high:.3f}] against {ceiling:.3f} on real images (cross-validated) "
                 f"and chance {fidelity['chance']:.2f}: {verdict}")
    return lines


def diversity(gan, out_dir, images, labels, *, run_dir):
    """Variety of the fixed-noise samples saved during training, per class, beside the real images' (dashed).

    Returns (a DataFrame, one row per saved epoch; the real images' level per class).
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = []
    for epoch, grid in files.load_samples(out_dir).items():
        row = {"epoch": epoch}
        row.update({name: quality.diversity(grid["images"][grid["labels"] == k]) for k, name in enumerate(CLASSES)})
        rows.append(row)
    generated = pd.DataFrame(rows)
    real = {name: quality.diversity(images[labels == k]) for k, name in enumerate(CLASSES)}
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for k, name in enumerate(CLASSES):
        ax.plot(generated["epoch"], generated[name], marker="o", c=f"C{k}", label=f"generated {name}")
        ax.axhline(real[name], ls="--", c=f"C{k}", lw=1, label=f"real {name}")
    ax.set(xlabel="epoch", ylabel="mean pairwise distance")
    ax.legend(fontsize=8)
    plotting.save_fig(fig, f"{gan.NAME}_diversity", run_dir)
    return generated, real


def paper_cost(gan, history, models, report_models, *, n_images: int, batch_size: int):
    """Estimates for the paper setting from the arithmetic per image (counted from the layers) and this run's rate."""
    import pandas as pd

    flops_here = gan.train_flops_per_image(*models)
    flops_paper = gan.train_flops_per_image(*report_models)
    seconds = float(history["seconds"].median())
    steps = n_images // min(batch_size, n_images)  # the last incomplete batch of an epoch is dropped
    rate = flops_here * steps * batch_size / seconds  # FLOP/s this run achieved
    paper_total = PAPER_EPOCHS * PAPER_IMAGES * flops_paper
    device = gan.runtime()["device"]
    estimates = {
        "this run: seconds per epoch": seconds,
        "this run: achieved GFLOP/s": rate / 1e9,
        "paper profile: total PFLOP": paper_total / 1e15,
        f"paper profile on this {device}: hours (at the same rate)": paper_total / rate / 3600,
        f"paper profile on a GPU at an assumed {ASSUMED_GPU_FLOPS / 1e12:.0f} TFLOP/s: minutes": paper_total
        / ASSUMED_GPU_FLOPS
        / 60,
    }
    return pd.Series(estimates).round(2).to_frame("estimate")


def summary(cfg, gan, history, *, width, batch_size, models, report_models, train_seconds, fidelity, diversity, real):
    """The headline numbers of notebook 02 or 03, for RUN/<torch_gan|tf_gan>/summary.json."""
    (generator, discriminator), (report_g, report_d) = models, report_models
    return {
        "profile": cfg.profile,
        "data": "phantoms" if cfg.uses_phantoms else "data_dir",
        "image_size": cfg.image_size,
        "width": width,
        "epochs": int(history["epoch"].iloc[-1]),
        "variant": cfg.gan_variant,
        "diffaugment": cfg.diffaugment,
        "batch_size": batch_size,
        "device": gan.runtime()["device"],
        "parameters": {
            "generator": gan.count_parameters(generator),
            "discriminator": gan.count_parameters(discriminator),
        },
        "report_parameters": {
            "generator": gan.count_parameters(report_g),
            "discriminator": gan.count_parameters(report_d),
        },
        "final": {k: float(history[k].iloc[-1]) for k in ("d_loss", "g_loss", "d_real", "d_fake", "g_test_loss")},
        "seconds_per_epoch": float(history["seconds"].median()),
        "train_seconds_this_call": float(train_seconds),
        "class_fidelity": fidelity,
        "diversity": {
            "generated": {k: float(diversity[k].iloc[-1]) for k in CLASSES},
            "real": real,
            "by_epoch": diversity.to_dict(orient="list"),
        },
    }


def write_summary(out_dir, summary_dict: dict) -> None:
    """Write summary.json and say where, with the class-fidelity headline."""
    path = files.write_json(Path(out_dir) / "summary.json", summary_dict)
    fidelity = summary_dict["class_fidelity"]
    print(f"wrote {config.rel(path)}: class fidelity {fidelity['accuracy']:.3f} (chance {fidelity['chance']:.2f})")


# ------------------------------------------------------------------------- where the artefacts come from


def overlap_pattern(kernel: int, stride: int) -> np.ndarray:
    """How many kernel taps reach each output pixel of one stride x stride tile of a transposed convolution.

    Every input pixel scatters a kernel x kernel patch, shifted by ``stride`` per pixel; away from the border
    an output pixel at phase (i, j) receives ceil-or-floor(kernel / stride) taps per axis. Equal counts
    (kernel divisible by stride) tile evenly; unequal counts are the checkerboard of Odena et al. (2016).
    """
    per_axis = np.array([len(range(phase, kernel, stride)) for phase in range(stride)])
    return np.outer(per_axis, per_axis)


def tile_pattern(images, period: int) -> float:
    """Strength of a pattern that repeats every ``period`` pixels: the spread of the average period x period tile.

    The gray images (in [0, 1]) are cut into period x period tiles and all tiles of all images are averaged;
    anatomy varies from tile to tile and averages out, a grid that sits at the same place in every tile
    does not. The standard deviation of that average tile, in gray levels (0-255).
    """
    from .fidelity import gray01

    x = gray01(images)
    n, h, w = x.shape
    h, w = h - h % period, w - w % period
    tile = x[:, :h, :w].reshape(n, h // period, period, w // period, period).mean(axis=(0, 1, 3))
    return float(tile.std() * 255.0)


def fine_detail(images, block: int = 4) -> float:
    """Mean per-image sd of what the ``block`` x ``block`` average leaves out (ribs, edges), in gray levels 0-255."""
    from .fidelity import gray01

    x = gray01(images)
    n, h, w = x.shape
    h, w = h - h % block, w - w % block
    x = x[:, :h, :w]
    coarse = x.reshape(n, h // block, block, w // block, block).mean(axis=(2, 4))
    rest = x - np.repeat(np.repeat(coarse, block, axis=1), block, axis=2)
    return float(rest.reshape(n, -1).std(axis=1).mean() * 255.0)


def artefacts(images, samples: dict, periods=(2, 4, 8)):
    """Grid strength (``tile_pattern`` at each period), fine detail, contrast and brightness: samples vs real images.

    ``samples``: the fixed-noise grids saved during training (``files.load_samples(OUT)``). One row per saved
    epoch and a row for the real training images; contrast is the mean per-image pixel sd, brightness the
    mean gray level, fine detail what a 4 x 4 average leaves out (``fine_detail``), all in gray levels 0-255.
    """
    import pandas as pd

    from .fidelity import image_stats

    def row(x):
        brightness, contrast = image_stats(x)
        return {
            **{f"grid every {p} px": tile_pattern(x, p) for p in periods},
            "fine detail": fine_detail(x),
            "contrast": float(contrast.mean()),
            "brightness": float(brightness.mean()),
        }

    rows = {f"epoch {e}": row(grid["images"]) for e, grid in samples.items()}
    rows["real training images"] = row(images)
    return pd.DataFrame(rows).T


def artefact_reading(table) -> list[str]:
    """Sentences computed from an ``artefacts`` table: the strongest grid against real images, and the contrast."""
    real, epochs = table.loc["real training images"], table.drop(index="real training images")
    first, last = epochs.iloc[0], epochs.iloc[-1]
    grids = [c for c in table.columns if c.startswith("grid")]
    ratio = {c: last[c] / real[c] for c in grids if real[c] > 0}
    worst = max(ratio, key=ratio.get)
    detail = last["fine detail"] / real["fine detail"]
    return [
        f"Strongest grid in the last samples ({epochs.index[-1]}): {worst}, {last[worst]:.2f} gray levels against "
        f"{real[worst]:.2f} in real images ({ratio[worst]:.1f}x).",
        f"Contrast (pixel sd): {first['contrast']:.1f} gray levels at {epochs.index[0]}, {last['contrast']:.1f} at "
        f"{epochs.index[-1]}, {real['contrast']:.1f} in real images ({last['contrast'] / real['contrast']:.0%} of it).",
        f"Fine detail (what a 4x4 average leaves out): {last['fine detail']:.1f} gray levels at {epochs.index[-1]}, "
        f"{real['fine detail']:.1f} in real images ({detail:.0%} of it).",
    ]
