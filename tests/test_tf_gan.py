"""Unit tests of covidgan_utils.tf_gan on tiny configs (small for testing: 16 px, width 1/8).

Tracing the compiled train step costs a few seconds per train() call, so the runs are made once per
module (fixture ``runs``) and several tests read them.
"""

import contextlib
import io
import shutil

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from gan_helpers import (  # noqa: E402
    TINY,
    check_generate_takes_noise_and_labels,
    check_labels_condition_the_output,
    check_loaded_generator_samples,
    check_two_epoch_history,
)
from gan_helpers import random_data as _data  # noqa: E402

from covidgan_utils import files, gan_loop  # noqa: E402
from covidgan_utils import tf_gan as gan  # noqa: E402

TRAIN = dict(batch_size=8, checkpoint_every=1, progress=False, samples_per_class=3)


def _models(seed=0, **kwargs):
    gan.keras.utils.set_random_seed(seed)
    spec = {**TINY, **kwargs}
    return gan.build_generator(**spec), gan.build_discriminator(**spec)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two epochs straight; and one epoch, a corrupt "epoch 2" checkpoint, then a resume for one more."""
    root = tmp_path_factory.mktemp("tf_gan")
    images, labels = _data(21)  # 21 images, batch 8: 2 full batches, the rest dropped
    g1, d1 = _models()
    h1 = gan.train(g1, d1, images, labels, epochs=2, out_dir=root / "straight", **TRAIN)
    g2, d2 = _models()
    gan.train(g2, d2, images, labels, epochs=1, out_dir=root / "resumed", **TRAIN)
    # a torn copy of epoch 2 under its final name: its state says epoch 2, its data file is cut short
    folder = root / "resumed" / "checkpoints"
    shutil.copytree(folder / "epoch_0001", folder / "epoch_0002")
    state = folder / "epoch_0002" / "state.json"
    state.write_text(state.read_text().replace('"epoch": 1', '"epoch": 2'))
    data = folder / "epoch_0002" / "weights.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    (folder / ".tmp-epoch_0003-1").mkdir()  # a half-written folder is never considered
    g3, d3 = _models(seed=123)  # different weights: everything must come from the checkpoint
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        h3 = gan.train(g3, d3, images, labels, epochs=2, out_dir=root / "resumed", **TRAIN)
    return {
        "root": root,
        "straight": (g1, d1, h1),
        "resumed": (g3, d3, h3),
        "data": (images, labels),
        "err": err.getvalue(),
    }


def test_report_parameter_counts():
    """At the defaults the models are the report's Figure 2 models, counted as its table counts them."""
    generator, discriminator = gan.build_generator(), gan.build_discriminator()
    assert gan.count_parameters(generator) == 24_045_504
    assert gan.count_parameters(discriminator) == 866_465
    # the label lookup tables (2x1 and 2x2) are the only parameters the table leaves out
    assert gan.count_parameters(generator, exclude_embeddings=False) == 24_045_504 + 2
    assert gan.count_parameters(discriminator, exclude_embeddings=False) == 866_465 + 4
    summary = gan.model_summary(generator).set_index("layer")
    assert summary.loc["noise_dense", "parameters"] == 6_619_136
    assert summary.loc["conv_transpose_1", "parameters"] == 13_120_000
    assert summary.loc["conv_transpose_out", "parameters"] == 1_600
    assert summary.loc["concat", "output shape"] == "8x8x1025"
    assert summary["output shape"].iloc[-1] == "128x128x1"
    d_summary = gan.model_summary(discriminator).set_index("layer")
    assert d_summary.loc["flatten", "output shape"] == "131072"
    assert d_summary.loc["logit", "parameters"] == 131_073
    momenta = [layer.momentum for layer in generator.layers if isinstance(layer, gan.layers.BatchNormalization)]
    assert momenta == [0.5] * 4
    momenta = [layer.momentum for layer in discriminator.layers if isinstance(layer, gan.layers.BatchNormalization)]
    assert momenta == [0.99] * 4
    assert len(discriminator.losses) == 6  # L1 on the label Dense, four convolutions and the logit Dense


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_at_sizes_and_width(size):
    generator = gan.build_generator(image_size=size, width=0.25)
    discriminator = gan.build_discriminator(image_size=size, width=0.25)
    z, y = np.random.default_rng(0).standard_normal((3, 100)).astype("float32"), np.array([[0], [1], [1]])
    images = generator([z, y], training=False).numpy()
    logits = discriminator([images, y], training=False).numpy()
    assert images.shape == (3, size, size, 1)
    assert images.min() >= -1.0 and images.max() <= 1.0  # tanh output
    assert logits.shape == (3, 1) and np.isfinite(logits).all()
    # width 0.25: a quarter of the report's 64 channels in the last hidden generator layer
    assert generator.get_layer(f"conv_transpose_{int(np.log2(size / 8))}").filters == 16
    assert discriminator.get_layer("conv_4").filters == 128


def test_bad_size_rejected():
    with pytest.raises(ValueError, match="8 \\* 2\\*\\*k"):
        gan.build_generator(image_size=48)
    with pytest.raises(ValueError, match="8 \\* 2\\*\\*k"):
        gan.build_discriminator(image_size=8)


def test_train_writes_artifacts(runs):
    out = runs["root"] / "straight"
    history = runs["straight"][2]
    check_two_epoch_history(history, out)
    newest = out / "checkpoints" / "epoch_0002"
    assert sorted(p.name for p in newest.iterdir()) == ["state.json", "weights.data-00000-of-00001", "weights.index"]
    assert gan_loop.read_state(gan, newest)["history"][1]["epoch"] == 2
    samples = files.load_samples(out)
    assert sorted(samples) == [0, 1, 2]  # epoch 0 = before training
    grid = samples[2]
    assert grid["images"].shape == (6, 16, 16, 1) and grid["images"].dtype == np.uint8
    assert list(grid["labels"]) == [0, 0, 0, 1, 1, 1]
    assert not np.array_equal(samples[0]["images"], samples[2]["images"])  # training moved the generator
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert not leftovers  # atomic writes leave no temporary files or folders


def test_resume_is_bitwise_equal(runs):
    """2 epochs straight == 1 epoch, stop, resume for 1 more (CPU, op determinism on: bitwise)."""
    (g1, d1, h1), (g3, d3, h3) = runs["straight"], runs["resumed"]
    for a, b in ((g1, g3), (d1, d3)):
        for va, vb in zip(a.weights, b.weights):
            assert np.array_equal(va.numpy(), vb.numpy()), va.path
    cols = ["d_loss", "g_loss", "d_real", "d_fake", "g_test_loss"]
    assert np.array_equal(h1[cols].to_numpy(), h3[cols].to_numpy())


def test_resume_when_done_returns_history(runs, capsys):
    g, d, h = runs["straight"]
    images, labels = runs["data"]
    again = gan.train(g, d, images, labels, epochs=2, out_dir=runs["root"] / "straight", **TRAIN)
    assert len(again) == 2 and np.array_equal(again["g_loss"], h["g_loss"])
    assert "nothing to do" in capsys.readouterr().out


def test_resume_false_refuses_to_overwrite(runs):
    g, d, _ = runs["straight"]
    images, labels = runs["data"]
    with pytest.raises(FileExistsError, match="resume=True"):
        gan.train(g, d, images, labels, epochs=3, out_dir=runs["root"] / "straight", **{**TRAIN, "resume": False})


def test_resume_rejects_other_architecture(runs):
    g_wide, d_wide = _models(width=0.25)
    images, labels = runs["data"]
    with pytest.raises(ValueError, match="new out_dir"):
        gan.train(g_wide, d_wide, images, labels, epochs=3, out_dir=runs["root"] / "straight", **TRAIN)


def test_load_generator_and_sample_round_trip(runs):
    generator = runs["straight"][0]
    loaded = gan.load_generator(runs["root"] / "straight")
    check_loaded_generator_samples(gan, loaded, generator, epoch=2, shape=(16, 16, 1))


def test_load_generator_without_checkpoint_names_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_tensorflow_cgan"):
        gan.load_generator(tmp_path)


def test_corrupt_checkpoint_is_skipped(runs, tmp_path, capsys):
    # training skipped the cut-short epoch 2, resumed from epoch 1 and still matched
    # the uninterrupted run (test_resume_is_bitwise_equal)
    assert "Skipping unreadable checkpoint epoch_0002" in runs["err"]
    assert list(runs["resumed"][2]["epoch"]) == [1, 2]
    out = tmp_path / "run"
    shutil.copytree(runs["root"] / "straight", out)
    data = out / "checkpoints" / "epoch_0002" / "weights.data-00000-of-00001"
    data.write_bytes(b"\0" * data.stat().st_size)  # right size, wrong bytes
    loaded = gan.load_generator(out)
    assert loaded.epoch == 1
    assert "Skipping unreadable checkpoint epoch_0002" in capsys.readouterr().err
    (out / "checkpoints" / "epoch_0001" / "weights.index").unlink()
    with pytest.raises(FileNotFoundError, match="03_tensorflow_cgan"):
        gan.load_generator(out)


def test_labels_condition_the_output():
    check_labels_condition_the_output(gan, _models(image_size=32)[0])


def test_pixel_range_round_trip():
    images = np.array([0, 1, 127, 128, 254, 255], np.uint8).reshape(1, 1, 6, 1)
    x = images.astype(np.float32) / 127.5 - 1.0  # what the compiled step feeds the discriminator
    assert (x.min(), x.max()) == pytest.approx((-1.0, 1.0), abs=1e-6)
    assert np.array_equal(gan._to_uint8(x), images)


def test_generate_takes_noise_and_labels():
    check_generate_takes_noise_and_labels(gan, _models()[0], shape=(16, 16, 1))
