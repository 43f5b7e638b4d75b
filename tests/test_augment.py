"""DiffAugment (both frameworks), the ACGAN variant and run-directory overrides, on tiny configs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from covidgan_utils import augment, config


def test_parse_policy_normalises_and_rejects_unknown_names():
    assert augment.parse_policy(None) == ()
    assert augment.parse_policy("off") == ()
    assert augment.parse_policy("") == ()
    assert augment.parse_policy(True) == ("color", "translation", "cutout")
    assert augment.parse_policy(" Cutout, color ,cutout") == ("cutout", "color")
    assert augment.describe(None) == "off"
    with pytest.raises(ValueError, match="flip"):
        augment.parse_policy("color,flip")


def _ramp(n=4, size=16):
    """Images whose every pixel is distinct, so a shift or a cutout can be located exactly."""
    base = np.arange(size * size, dtype=np.float32).reshape(size, size) / (size * size)
    return np.stack([base + 0.001 * i for i in range(n)])


def _check_translation(out, x, max_shift, fill):
    """Every output image is the input shifted by whole pixels (at most max_shift), padded with fill."""
    n, size, _ = x.shape
    for k in range(n):
        found = False
        for dy in range(-max_shift, max_shift + 1):
            for dx in range(-max_shift, max_shift + 1):
                shifted = np.full((size, size), fill, dtype=np.float32)
                src = x[k][max(0, -dy) : size - max(0, dy), max(0, -dx) : size - max(0, dx)]
                shifted[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
                if np.allclose(out[k], shifted):
                    found = True
        assert found, f"image {k} is not a whole-pixel shift of its input"


def _check_cutout(out, x, fill, side):
    """Each output differs from its input only inside one square (possibly clipped by the border) set to fill."""
    for k in range(len(x)):
        changed = ~np.isclose(out[k], x[k])
        assert np.allclose(out[k][changed], fill)
        rows, cols = np.nonzero(changed)
        assert rows.max() - rows.min() + 1 <= side and cols.max() - cols.min() + 1 <= side
        assert changed.sum() >= (side // 2) ** 2 - 1  # at least a quarter of the square stays inside the image


def test_diffaugment_torch_ops_do_what_they_say_and_pass_gradients():
    torch = pytest.importorskip("torch")
    x = _ramp()
    xt = torch.from_numpy(x)[:, None]  # (N,1,H,W) in [0,1]
    assert augment.diffaugment_torch(xt, None) is xt
    torch.manual_seed(0)
    out = augment.diffaugment_torch(xt, "translation").numpy()[:, 0]
    _check_translation(out, x, max_shift=2, fill=0.5)
    torch.manual_seed(1)
    out = augment.diffaugment_torch(xt, "cutout").numpy()[:, 0]
    _check_cutout(out, x, fill=0.5, side=8)
    torch.manual_seed(2)
    out = augment.diffaugment_torch(xt, "color").numpy()[:, 0]
    # brightness + contrast is an affine map of each image: corr 1 with the input, different per image
    for k in range(len(x)):
        assert np.corrcoef(out[k].ravel(), x[k].ravel())[0, 1] > 0.9999
    assert not np.allclose(out - x, (out - x)[0])
    leaf = xt.clone().requires_grad_(True)
    augment.diffaugment_torch(leaf, augment.DEFAULT_POLICY).sum().backward()
    assert leaf.grad is not None and float(leaf.grad.abs().sum()) > 0


def test_diffaugment_tf_ops_do_what_they_say_and_pass_gradients():
    import tensorflow as tf

    from covidgan_utils import tf_gan  # noqa: F401 - imports tensorflow the safe way

    x = _ramp() * 2 - 1  # [-1, 1] like the TF GAN
    xt = tf.constant(x[..., None])
    rng = tf.random.Generator.from_seed(0)
    assert augment.diffaugment_tf(xt, "off", rng) is xt
    out = augment.diffaugment_tf(xt, "translation", rng).numpy()[..., 0]
    _check_translation(out, x, max_shift=2, fill=0.0)
    out = augment.diffaugment_tf(xt, "cutout", rng).numpy()[..., 0]
    _check_cutout(out, x, fill=0.0, side=8)
    var = tf.Variable(xt)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(augment.diffaugment_tf(var, augment.DEFAULT_POLICY, rng))
    grad = tape.gradient(total, var)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0


def _tiny_data(n=24, size=16):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, size, size, 1), dtype=np.uint8), np.arange(n) % 2


def test_torch_acgan_discriminator_has_a_class_head_and_trains_resumably(tmp_path):
    torch = pytest.importorskip("torch")
    from covidgan_utils import torch_gan as gan

    d = gan.build_discriminator(16, width=0.125, variant="acgan")
    p, logits = d(torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 0]))
    assert p.shape == (3, 1) and logits.shape == (3, 2)
    assert not hasattr(d, "label_embedding")  # the label is no input of an ACGAN discriminator
    with pytest.raises(ValueError, match="variant"):
        gan.build_discriminator(16, variant="wgan")
    images, labels = _tiny_data()

    def fit(out, epochs):
        torch.manual_seed(0)
        g, dd = gan.build_generator(16, width=0.125), gan.build_discriminator(16, width=0.125, variant="acgan")
        h = gan.train(
            g,
            dd,
            images,
            labels,
            epochs=epochs,
            batch_size=8,
            out_dir=out,
            checkpoint_every=1,
            progress=False,
            diffaugment="color,translation,cutout",
        )
        return g, h

    g_full, h_full = fit(tmp_path / "full", 3)
    assert "class_acc" in h_full and h_full["class_acc"].between(0, 1).all()
    fit(tmp_path / "cut", 2)
    g_res, h_res = fit(tmp_path / "cut", 3)
    assert all(torch.equal(a, b) for a, b in zip(g_full.state_dict().values(), g_res.state_dict().values()))
    assert h_full.drop(columns="seconds").equals(h_res.drop(columns="seconds"))
    with pytest.raises(ValueError, match="trained with"):  # resuming with other options is refused
        g, dd = gan.build_generator(16, width=0.125), gan.build_discriminator(16, width=0.125, variant="acgan")
        gan.train(g, dd, images, labels, epochs=4, batch_size=8, out_dir=tmp_path / "cut", progress=False)


def test_tf_acgan_and_diffaugment_train_resumably(tmp_path):
    import keras

    from covidgan_utils import tf_gan as gan

    d = gan.build_discriminator(16, width=0.125, variant="acgan")
    assert len(d.inputs) == 1 and len(d.outputs) == 2 and gan.variant_of(d) == "acgan"
    assert gan.count_parameters(gan.build_discriminator()) == 866_465  # the cGAN is unchanged
    images, labels = _tiny_data()

    def fit(out, epochs, variant, policy):
        keras.utils.set_random_seed(0)
        g, dd = gan.build_generator(16, width=0.125), gan.build_discriminator(16, width=0.125, variant=variant)
        h = gan.train(
            g,
            dd,
            images,
            labels,
            epochs=epochs,
            batch_size=8,
            out_dir=out,
            checkpoint_every=1,
            progress=False,
            diffaugment=policy,
        )
        return g, h

    for variant, policy in (("cgan", "color,translation,cutout"), ("acgan", None)):
        g_full, h_full = fit(tmp_path / f"{variant}-full", 3, variant, policy)
        assert ("class_acc" in h_full) == (variant == "acgan")
        assert np.isfinite(h_full.drop(columns="epoch").to_numpy()).all()
        fit(tmp_path / f"{variant}-cut", 2, variant, policy)
        g_res, h_res = fit(tmp_path / f"{variant}-cut", 3, variant, policy)
        assert all(np.array_equal(a, b) for a, b in zip(g_full.get_weights(), g_res.get_weights()))
        assert h_full.drop(columns="seconds").equals(h_res.drop(columns="seconds"))
    with pytest.raises(ValueError, match="trained with"):
        fit(tmp_path / "cgan-cut", 4, "cgan", None)


def test_run_dir_overrides_apply_below_explicit_values(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / config.OVERRIDES_FILE).write_text(json.dumps({"gan_variant": "acgan", "tf_epochs": 7}))
    cfg = config.resolve(profile="smoke", run_dir=str(run))
    assert (cfg.gan_variant, cfg.tf_epochs, cfg.torch_epochs) == ("acgan", 7, 2)
    assert "overrides" in cfg.describe() and "acgan" in cfg.describe()
    assert config.resolve(profile="smoke", run_dir=str(run), tf_epochs=3).tf_epochs == 3
    # bad inputs tried: an unknown setting name, and a file that is not JSON
    (run / config.OVERRIDES_FILE).write_text(json.dumps({"tf_epoch": 7}))
    with pytest.raises(ValueError, match="tf_epoch"):
        config.resolve(profile="smoke", run_dir=str(run))
    (run / config.OVERRIDES_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="overrides.json"):
        config.resolve(profile="smoke", run_dir=str(run))
