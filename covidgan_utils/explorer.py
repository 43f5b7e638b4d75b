"""Play with a trained generator: the class toggle, a latent interpolation, and the samples saved during training.

In JupyterLab :func:`explore` shows ipywidgets (a class toggle over one latent vector, a slider between
two seeds, an epoch slider). A headless run (papermill, nbval, ``make notebooks``) cannot tell whether a
person is watching, so the switch is explicit: ``interactive=False`` (the notebooks' parameter, or
``COVIDGAN_INTERACTIVE=0``, which the pipeline and the tests set) draws the same three views as one
static figure instead.

The generator is reached through ``generate(noise, labels) -> uint8 images`` so one explorer serves both
frameworks (``torch_gan.generate`` / ``tf_gan.generate`` with the generator bound).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from . import CLASSES

ENV_INTERACTIVE = "COVIDGAN_INTERACTIVE"


def interactive_default(value: bool | None = None) -> bool:
    """The notebook parameter if given, else COVIDGAN_INTERACTIVE (default on: a person in JupyterLab)."""
    if value is not None:
        return bool(value)
    return os.environ.get(ENV_INTERACTIVE, "1").strip().lower() not in ("0", "false", "no", "")


def latent(seed: int, latent_dim: int) -> np.ndarray:
    """One standard-normal latent vector, the same for a seed on every machine and in both frameworks."""
    return np.random.default_rng(seed).standard_normal(latent_dim).astype(np.float32)


def class_pair(generate: Callable, latent_dim: int, seed: int) -> np.ndarray:
    """The same latent vector drawn once per class: what the label alone changes."""
    z = np.repeat(latent(seed, latent_dim)[None], len(CLASSES), axis=0)
    return generate(z, np.arange(len(CLASSES)))


def interpolation(generate: Callable, latent_dim: int, seed_a: int, seed_b: int, label: int, steps: int = 8) -> np.ndarray:
    """Images along the straight line between the latent vectors of two seeds, one class."""
    a, b = latent(seed_a, latent_dim), latent(seed_b, latent_dim)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return generate((1 - t) * a + t * b, np.full(steps, label))


def epoch_strip(samples: dict, index: int = 0) -> tuple[list[int], np.ndarray]:
    """Saved epochs and, for each, the sample grid's image number ``index`` (the same noise every epoch)."""
    epochs = sorted(samples)
    return epochs, np.stack([samples[e]["images"][index] for e in epochs]) if epochs else np.empty((0,))


def static_views(generate: Callable, latent_dim: int, samples: dict, seeds=(0, 1, 2, 3), steps: int = 8, size: float = 1.1):
    """The three views as one figure: class toggle per seed, an interpolation per class, the epoch strip."""
    import matplotlib.pyplot as plt

    from .plotting import to_display

    pairs = [class_pair(generate, latent_dim, s) for s in seeds]
    lines = [interpolation(generate, latent_dim, seeds[0], seeds[1], k, steps) for k in range(len(CLASSES))]
    epochs, strip = epoch_strip(samples)
    ncols = max(steps, len(seeds) * len(CLASSES), len(epochs))
    nrows = 1 + len(CLASSES) + (1 if len(epochs) else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.25), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, pair in enumerate(pairs):
        for k, img in enumerate(to_display(pair)):
            ax = axes[0, i * len(CLASSES) + k]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"seed {seeds[i]}\n{CLASSES[k]}", fontsize=7)
    for k, line in enumerate(lines):
        for j, img in enumerate(to_display(line)):
            ax = axes[1 + k, j]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{CLASSES[k]} t={j / (steps - 1):.2f}", fontsize=7)
    if len(epochs):
        for j, (epoch, img) in enumerate(zip(epochs, to_display(strip))):
            ax = axes[-1, j]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"epoch {epoch}", fontsize=7)
    fig.suptitle(
        f"Top: one latent vector per seed drawn as {' and as '.join(CLASSES)}. Middle: seed {seeds[0]} -> "
        f"seed {seeds[1]}. Bottom: one fixed noise vector over training.",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def widgets(generate: Callable, latent_dim: int, samples: dict):
    """The same views as ipywidgets controls (for a person in JupyterLab); returns the widget box."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from .plotting import to_display

    def show(images, titles):
        fig, axes = plt.subplots(1, len(images), figsize=(1.8 * len(images), 2.1), squeeze=False)
        for ax, img, title in zip(axes[0], to_display(images), titles):
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        plt.show()

    def toggle(seed):
        show(class_pair(generate, latent_dim, seed), [f"seed {seed}: {c}" for c in CLASSES])

    def between(seed_a, seed_b, label, t):
        a, b = latent(seed_a, latent_dim), latent(seed_b, latent_dim)
        z = ((1 - t) * a + t * b)[None]
        show(generate(z, np.array([label])), [f"{CLASSES[label]}, t = {t:.2f}"])

    tabs = [
        w.interactive(toggle, seed=w.IntSlider(value=0, min=0, max=99, description="seed")),
        w.interactive(
            between,
            seed_a=w.IntSlider(value=0, min=0, max=99, description="seed A"),
            seed_b=w.IntSlider(value=1, min=0, max=99, description="seed B"),
            label=w.ToggleButtons(options=[(c, k) for k, c in enumerate(CLASSES)], description="class"),
            t=w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="A -> B"),
        ),
    ]
    titles = ["class toggle", "interpolation"]
    epochs = sorted(samples)
    if epochs:
        def at_epoch(epoch, index):
            grid = samples[epoch]
            show(grid["images"][index : index + 1], [f"epoch {epoch}, {CLASSES[int(grid['labels'][index])]}"])

        count = len(samples[epochs[0]]["images"])
        tabs.append(w.interactive(
            at_epoch,
            epoch=w.SelectionSlider(options=epochs, value=epochs[-1], description="epoch"),
            index=w.IntSlider(value=0, min=0, max=count - 1, description="image"),
        ))
        titles.append("training")
    box = w.Tab(children=tabs)
    for i, title in enumerate(titles):
        box.set_title(i, title)
    return box


def explore(generate: Callable, latent_dim: int, samples: dict, interactive: bool | None = None) -> None:
    """Show the widgets when ``interactive`` (a person in JupyterLab), else the static figure (shown once)."""
    if interactive_default(interactive):
        from IPython.display import display

        display(widgets(generate, latent_dim, samples))
        return
    import matplotlib.pyplot as plt

    static_views(generate, latent_dim, samples)
    plt.show()
