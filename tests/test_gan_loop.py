"""The loop both frameworks share, and the parity of torch_gan and tf_gan (small for testing: 16 px, width 1/8)."""

import inspect

import numpy as np
import pytest

from covidgan_utils import gan_loop

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from covidgan_utils import tf_gan, torch_gan  # noqa: E402

# the report defines the two models differently, and counts their parameters differently (Figure 2 leaves out
# the label lookup tables): these match by name and place only
MODEL_FUNCTIONS = ("build_generator", "build_discriminator", "count_parameters")


def _functions(module) -> list[str]:
    return [name for name in module.__all__ if callable(getattr(module, name))]


def _signature(fn) -> list[tuple]:
    """Parameter names, kinds and defaults (type annotations name each framework's types, so they are left out)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_both_modules_offer_the_same_functions_in_the_same_order_with_the_same_signatures():
    assert torch_gan.__all__ == tf_gan.__all__
    names = _functions(torch_gan)
    assert names[:2] == ["build_generator", "build_discriminator"] and names[-1] == "runtime"
    assert {
        "train_step",
        "save_checkpoint",
        "restore_checkpoint",
        "generate",
        "sample",
        "load_generator",
        "train",
    } <= set(names)
    for name in names:
        a, b = getattr(torch_gan, name), getattr(tf_gan, name)
        if name in MODEL_FUNCTIONS:
            if name.startswith("build_"):  # the contract's part: image_size first, 128 by default
                assert _signature(a)[0][::2] == _signature(b)[0][::2] == ("image_size", 128), name
            continue
        assert _signature(a) == _signature(b), name
        if inspect.isclass(a):
            assert [m for m in vars(a) if not m.startswith("_")] == [m for m in vars(b) if not m.startswith("_")], name
            for method in (m for m in vars(a) if not m.startswith("_")):
                assert _signature(getattr(a, method)) == _signature(getattr(b, method)), f"{name}.{method}"
    for module in (torch_gan, tf_gan):  # every public function defined in the module is listed
        defined = {n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__}
        assert {n for n in defined if not n.startswith("_")} <= set(names), module.NAME
    for const in ("NAME", "NOTEBOOK", "BATCH_SIZE", "WEIGHT_FILES"):
        assert hasattr(torch_gan, const) and hasattr(tf_gan, const), const
    assert (torch_gan.BATCH_SIZE, tf_gan.BATCH_SIZE) == (64, 32)  # the report's


def test_the_step_shown_in_the_notebooks_is_short():
    for module in (torch_gan, tf_gan):
        lines = inspect.getsource(module.train_step).splitlines()
        assert len(lines) <= 45, (module.NAME, len(lines))


def test_options_refuse_unknown_names_and_the_other_frameworks_switches():
    with pytest.raises(TypeError, match="channel_last"):
        gan_loop.Options.make(channel_last=True)
    opts = gan_loop.Options.make(None, channels_last=False, sample_every=3)  # channels_last is on by default
    assert (opts.channels_last, opts.sample_every, opts.keep_last) == (False, 3, 2)
    opts.check("torch")
    with pytest.raises(ValueError, match="channels_last: PyTorch"):
        opts.check("tf")
    with pytest.raises(ValueError, match="jit_compile: TensorFlow"):
        gan_loop.Options(jit_compile=True).check("torch")
    with pytest.raises(ValueError, match="jit_compile: TensorFlow"):
        torch_gan.train(None, None, None, None, epochs=1, out_dir="unused", jit_compile=True)


def test_epoch_order_is_seeded_per_epoch_and_drops_the_last_incomplete_batch():
    order = gan_loop.epoch_order(21, seed=0, epoch=3, batch_size=8)
    assert order.shape == (2, 8) and len(set(order.ravel())) == 16
    assert np.array_equal(order, gan_loop.epoch_order(21, seed=0, epoch=3, batch_size=8))
    assert not np.array_equal(order, gan_loop.epoch_order(21, seed=0, epoch=4, batch_size=8))
    assert not np.array_equal(order, gan_loop.epoch_order(21, seed=1, epoch=3, batch_size=8))


def test_images_are_checked_and_given_the_models_channels():
    gray = np.full((2, 16, 16, 1), 200, np.uint8)
    assert gan_loop.as_images(gray, 3, 16).shape == (2, 16, 16, 3)
    assert gan_loop.as_images(gray[..., 0], 1, 16).shape == (2, 16, 16, 1)
    rgb = np.stack([np.full((16, 16), v, np.uint8) for v in (0, 100, 200)], axis=-1)[None]
    assert gan_loop.as_images(rgb, 1, 16)[0, 0, 0, 0] == 100
    with pytest.raises(ValueError, match="uint8"):
        gan_loop.as_images(gray.astype(np.float32), 1, 16)
    with pytest.raises(ValueError, match="built for 32x32"):
        gan_loop.as_images(gray, 1, 32)


def test_both_frameworks_write_the_same_history_columns_and_checkpoint_layout(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (12, 16, 16, 1), dtype=np.uint8), np.arange(12) % 2
    torch.manual_seed(0)
    tf_gan.keras.utils.set_random_seed(0)
    found = {}
    for gan in (torch_gan, tf_gan):
        g, d = gan.build_generator(16, width=0.125), gan.build_discriminator(16, width=0.125, variant="acgan")
        out = tmp_path / gan.NAME
        history = gan.train(
            g, d, images, labels, epochs=1, batch_size=5, out_dir=out, progress=False, samples_per_class=2
        )
        (folder,) = gan_loop.checkpoint_folders(out)
        state = gan_loop.read_state(gan, folder)
        assert state["batch_size"] == 5 and state["history"][0]["epoch"] == 1
        found[gan.NAME] = (list(history.columns), sorted(state), folder.name)
    assert found["torch"] == found["tf"]
    assert found["torch"][0] == ["epoch", "d_loss", "g_loss", "d_real", "d_fake", "class_acc", "g_test_loss", "seconds"]
