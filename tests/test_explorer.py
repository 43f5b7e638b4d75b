"""The generator explorer on a fake generator (small for testing): same latent per class, interpolation ends, views."""

import numpy as np
import pytest

from covidgan_utils import explorer

LATENT = 6
calls = []


def fake_generate(noise, labels):
    """uint8 images (N, 8, 8, 1) whose pixels encode the noise's mean and the label."""
    noise, labels = np.asarray(noise), np.asarray(labels)
    calls.append((noise.copy(), labels.copy()))
    value = 100 + 20 * noise.mean(axis=1) + 50 * labels
    return np.broadcast_to(value.clip(0, 255).astype(np.uint8)[:, None, None, None], (len(labels), 8, 8, 1)).copy()


def test_class_toggle_draws_one_latent_vector_as_each_class():
    calls.clear()
    images = explorer.class_pair(fake_generate, LATENT, seed=3)
    noise, labels = calls[-1]
    assert images.shape == (2, 8, 8, 1) and list(labels) == [0, 1]
    np.testing.assert_array_equal(noise[0], noise[1])
    np.testing.assert_array_equal(noise[0], explorer.latent(3, LATENT))


def test_interpolation_starts_and_ends_at_the_two_seeds():
    calls.clear()
    explorer.interpolation(fake_generate, LATENT, 1, 2, label=1, steps=5)
    noise, labels = calls[-1]
    np.testing.assert_allclose(noise[0], explorer.latent(1, LATENT), atol=1e-6)
    np.testing.assert_allclose(noise[-1], explorer.latent(2, LATENT), atol=1e-6)
    assert list(labels) == [1] * 5


def test_headless_runs_draw_the_static_views_and_jupyterlab_gets_widgets(monkeypatch):
    samples = {e: {"images": np.full((4, 8, 8, 1), 10 * e, np.uint8), "labels": np.array([0, 0, 1, 1])} for e in (0, 5, 10)}
    monkeypatch.setenv(explorer.ENV_INTERACTIVE, "0")
    assert not explorer.interactive_default() and explorer.interactive_default(True)
    fig = explorer.static_views(fake_generate, LATENT, samples, steps=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "epoch 10" in titles and "seed 0\nCOVID" in titles and "COVID t=1.00" in titles
    import matplotlib.pyplot as plt

    plt.close("all")
    assert explorer.explore(fake_generate, LATENT, samples) is None and len(plt.get_fignums()) == 1  # shown, not returned
    pytest.importorskip("ipywidgets")
    box = explorer.widgets(fake_generate, LATENT, samples)
    assert [box.get_title(i) for i in range(len(box.children))] == ["class toggle", "interpolation", "training"]
