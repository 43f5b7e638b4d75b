"""The generator's moving average (``Options.ema``) in both frameworks, on tiny configs (16 px, width 1/8).

What it must do: change what is sampled, never what is trained; follow w_avg <- ema * w_avg + (1 - ema) * w after
every step; resume bitwise; be what ``load_generator`` (notebooks 04-06) loads; refuse a resume with another decay.
"""

import numpy as np
import pytest
from gan_helpers import TINY, one_torch_thread, random_data  # noqa: F401 - autouse: tiny models on one thread

DECAY = 0.9
LOSSES = ["d_loss", "g_loss", "d_real", "d_fake"]  # the trained models' statistics (g_test_loss is the sampled G's)


def _module(name):
    if name == "torch":
        pytest.importorskip("torch")
        from covidgan_utils import torch_gan as gan
    else:
        pytest.importorskip("tensorflow")
        from covidgan_utils import tf_gan as gan
    return gan


def _models(gan, seed=0):
    gan.set_seed(seed)
    if gan.NAME == "tf":
        gan.keras.utils.set_random_seed(seed)
    return gan.build_generator(**TINY), gan.build_discriminator(**TINY)


def _weights(gan, model) -> list[np.ndarray]:
    """Every weight and BatchNorm statistic, in the framework's order (running step counters left out)."""
    if gan.NAME == "torch":
        return [v.detach().float().numpy().copy() for v in model.state_dict().values() if v.is_floating_point()]
    return [np.array(v.numpy()) for v in model.weights]


def _train(gan, out_dir, epochs, ema=None, seed=0, **extra):
    g, d = _models(gan, seed)
    kwargs = dict(batch_size=8, checkpoint_every=1, progress=False, samples_per_class=2, keep_last=0)
    if gan.NAME == "torch":
        kwargs["device"] = "cpu"
    images, labels = random_data(8)  # one batch of 8: one step per epoch
    history = gan.train(g, d, images, labels, epochs=epochs, out_dir=out_dir, ema=ema, **kwargs, **extra)
    return g, d, history


@pytest.fixture(scope="module", params=["torch", "tf"])
def runs(request, tmp_path_factory):
    """Per framework: 3 epochs of one step without the average and with it; 2 + a resume for 1 more with it."""
    gan = _module(request.param)
    root = tmp_path_factory.mktemp(f"ema_{request.param}")
    plain = _train(gan, root / "plain", 3)
    averaged = _train(gan, root / "averaged", 3, ema=DECAY)
    _train(gan, root / "resumed", 2, ema=DECAY)
    resumed = _train(gan, root / "resumed", 3, ema=DECAY, seed=123)  # other weights: all from the checkpoint
    initial = _weights(gan, _models(gan)[0])
    return {"gan": gan, "root": root, "plain": plain, "averaged": averaged, "resumed": resumed, "initial": initial}


def test_the_average_changes_what_is_sampled_not_what_is_trained(runs):
    (_, d0, h0), (g1, d1, h1) = runs["plain"], runs["averaged"]
    gan = runs["gan"]
    assert np.array_equal(h0[LOSSES].to_numpy(), h1[LOSSES].to_numpy())  # the same training, bitwise
    assert all(np.array_equal(a, b) for a, b in zip(_weights(gan, d0), _weights(gan, d1)))
    g0 = runs["plain"][0]
    assert not all(np.allclose(a, b) for a, b in zip(_weights(gan, g0), _weights(gan, g1)))  # G is the average


def test_the_average_follows_its_formula(runs):
    """After steps with weights w1, w2, w3 (the plain run's checkpoints, one step per epoch) from w0:
    w_avg = d^3 w0 + d^2 (1-d) w1 + d (1-d) w2 + (1-d) w3."""
    gan = runs["gan"]
    from covidgan_utils import gan_loop

    steps = []
    for epoch in (1, 2, 3):
        g = gan.build_generator(**TINY)
        gan.restore_checkpoint(runs["root"] / "plain" / "checkpoints" / f"epoch_{epoch:04d}", {"generator": g})
        steps.append(_weights(gan, g))
    d = DECAY
    coefs = [d**3, d**2 * (1 - d), d * (1 - d), 1 - d]
    expected = [sum(c * w for c, w in zip(coefs, ws)) for ws in zip(runs["initial"], *steps)]
    got = _weights(gan, runs["averaged"][0])
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert np.allclose(g, e, rtol=1e-5, atol=1e-6)
    loaded = gan.load_generator(runs["root"] / "averaged")  # what notebooks 04-06 sample from: the average
    assert loaded.epoch == 3
    assert all(np.array_equal(a, b) for a, b in zip(_weights(gan, loaded), got))
    assert gan_loop.read_state(gan, gan_loop.checkpoint_folders(runs["root"] / "averaged")[0])["options"]["ema"] == d


def test_resume_with_the_average_is_bitwise(runs):
    gan = runs["gan"]
    (g1, d1, h1), (g3, d3, h3) = runs["averaged"], runs["resumed"]
    assert np.array_equal(h1[LOSSES + ["g_test_loss"]].to_numpy(), h3[LOSSES + ["g_test_loss"]].to_numpy())
    for a, b in ((g1, g3), (d1, d3)):
        assert all(np.array_equal(x, y) for x, y in zip(_weights(gan, a), _weights(gan, b)))


def test_resume_with_another_decay_or_without_is_refused(runs, tmp_path):
    gan = runs["gan"]
    import shutil

    for ema in (0.5, None):
        copy = tmp_path / f"copy_{ema}"
        shutil.copytree(runs["root"] / "averaged", copy)
        with pytest.raises(ValueError, match="trained with"):
            _train(gan, copy, 4, ema=ema)
    with pytest.raises(ValueError, match=r"ema .* must lie in \(0, 1\)"):
        _train(gan, tmp_path / "bad", 1, ema=1.0)
