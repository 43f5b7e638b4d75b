"""Checks shared by test_torch_gan and test_tf_gan (imported as ``from gan_helpers import ...``).

Both framework modules offer the same functions under the same names, so the same checks apply to each; every
helper takes the module (``gan``) first. Small for testing: 16-32 px images, width 1/8.
"""

import numpy as np
import pandas as pd
import pytest

TINY = dict(image_size=16, width=0.125)  # small for testing: a few thousand parameters
LABELS = [0, 1, 1, 0, 1]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and then results do not depend on the thread count.

    Import it into a test module (``from gan_helpers import one_torch_thread``) to use it there.
    """
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_data(n: int, size: int = 16, channels: int = 1, seed: int = 0):
    """Random uint8 images (n, size, size, channels) and alternating labels 0, 1, 0, ..."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)
    return images, np.arange(n) % 2


def check_two_epoch_history(history, out_dir) -> None:
    """A 2-epoch training with a checkpoint every epoch: its history, history.csv and both checkpoint folders."""
    from covidgan_utils import gan_loop

    losses = ["d_loss", "g_loss", "d_real", "d_fake", "g_test_loss"]
    assert list(history["epoch"]) == [1, 2]
    assert list(history.columns) == ["epoch", *losses, "seconds"]
    assert np.isfinite(history[losses].to_numpy()).all()
    on_disk = pd.read_csv(out_dir / "history.csv")
    assert len(on_disk) == 2 and np.allclose(on_disk[losses].to_numpy(), history[losses].to_numpy())
    assert [p.name for p in gan_loop.checkpoint_folders(out_dir)] == ["epoch_0002", "epoch_0001"]


def check_loaded_generator_samples(gan, loaded, generator, epoch: int, shape: tuple) -> None:
    """A generator loaded from a checkpoint: its epoch and build, and the same images as the trained one."""
    assert loaded.epoch == epoch
    assert gan.build_kwargs(loaded) == gan.build_kwargs(generator)
    out = gan.sample(loaded, LABELS, seed=3, batch_size=2)
    assert out.shape == (len(LABELS), *shape) and out.dtype == np.uint8
    assert np.array_equal(out, gan.sample(generator, LABELS, seed=3))  # same weights, same images
    assert not np.array_equal(out, gan.sample(loaded, LABELS, seed=4))
    assert gan.sample(loaded, [], seed=0).shape == (0, *shape)


def check_labels_condition_the_output(gan, generator) -> None:
    """Same noise, different labels -> different images; the same seed -> the same images."""
    normal = gan.sample(generator, [0] * 4, seed=0)
    covid = gan.sample(generator, [1] * 4, seed=0)
    assert not np.array_equal(normal, covid)
    assert np.array_equal(normal, gan.sample(generator, [0] * 4, seed=0))


def check_generate_takes_noise_and_labels(gan, generator, shape: tuple) -> None:
    """generate(noise, labels) gives uint8 images; sample(seed) is generate with the shared fixed noise."""
    from covidgan_utils import gan_loop

    noise = np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32)
    images = gan.generate(generator, noise, [0, 1, 1])
    assert images.shape == (3, *shape) and images.dtype == np.uint8
    assert np.array_equal(
        gan.sample(generator, [0, 1, 1], seed=5), gan.generate(generator, gan_loop.fixed_noise(3, 100, 5), [0, 1, 1])
    )
