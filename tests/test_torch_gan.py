"""Unit tests of covidgan_utils.torch_gan on tiny configs (small for testing: 16-32 px, width 1/8)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gan_helpers import (  # noqa: E402
    TINY,
    check_generate_takes_noise_and_labels,
    check_labels_condition_the_output,
    check_loaded_generator_samples,
    check_two_epoch_history,
    one_torch_thread,  # noqa: F401 - autouse: tiny models on one thread
)
from gan_helpers import random_data as _data  # noqa: E402

from covidgan_utils import files, torch_models  # noqa: E402
from covidgan_utils import torch_gan as gan  # noqa: E402


def _models(seed=0, **kwargs):
    torch.manual_seed(seed)
    spec = {**TINY, **kwargs}
    return gan.build_generator(**spec), gan.build_discriminator(**spec)


def test_report_parameter_counts():
    """At the defaults the models are the report's Figure 4 models, parameter for parameter."""
    generator, discriminator = gan.build_generator(), gan.build_discriminator()
    assert gan.count_parameters(generator) == 7_789_208
    assert gan.count_parameters(discriminator) == 7_729_609
    assert discriminator.features == 4608  # the report's Linear(4608, 1)
    bns = [m for m in generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 4 and all(m.momentum == 0.1 and m.eps == 0.8 for m in bns)
    summary = gan.model_summary(generator)
    assert summary["parameters"].sum() == 7_789_208
    assert summary["output shape"].iloc[-1] == "3x128x128"


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_at_sizes_and_width(size):
    generator = gan.build_generator(image_size=size, width=0.25)
    discriminator = gan.build_discriminator(image_size=size, width=0.25)
    z, y = torch.randn(3, 100), torch.tensor([0, 1, 1])
    with torch.no_grad():
        images = generator(z, y)
        p = discriminator(images, y)
    assert images.shape == (3, 3, size, size)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0  # Sigmoid output
    assert p.shape == (3, 1) and ((p > 0) & (p < 1)).all()
    # width 0.25: a quarter of the report's 64 channels in the last hidden generator layer
    assert generator.body[-2].in_channels == 16


def test_bad_size_rejected():
    with pytest.raises(ValueError, match="power of two"):
        gan.build_generator(image_size=48)


def test_weight_init():
    torch.manual_seed(0)
    generator = gan.build_generator(image_size=64, width=0.5)
    conv = generator.body[0].weight.detach()
    assert abs(float(conv.mean())) < 2e-3 and abs(float(conv.std()) - 0.02) < 2e-3
    bn = generator.body[1].requires_grad_(False)
    assert abs(float(bn.weight.mean()) - 1.0) < 0.01 and float(bn.bias.abs().max()) == 0.0


def test_train_writes_artifacts(tmp_path):
    generator, discriminator = _models()
    images, labels = _data(20)
    history = gan.train(
        generator,
        discriminator,
        images,
        labels,
        epochs=2,
        batch_size=8,
        out_dir=tmp_path,
        checkpoint_every=1,
        progress=False,
        samples_per_class=3,
    )
    check_two_epoch_history(history, tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "epoch_0002").iterdir()) == ["state.json", "weights.pt"]
    samples = files.load_samples(tmp_path)
    assert sorted(samples) == [0, 1, 2]  # epoch 0 = before training
    grid = samples[2]
    assert grid["images"].shape == (6, 16, 16, 3) and grid["images"].dtype == np.uint8
    assert list(grid["labels"]) == [0, 0, 0, 1, 1, 1]
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_resume_is_bitwise_equal(tmp_path):
    """2 epochs straight == 1 epoch, stop, resume for 1 more (CPU, bitwise)."""
    images, labels = _data(n=21)  # 21 = 2 full batches of 8; the last 5 images are left out each epoch
    kwargs = dict(batch_size=8, checkpoint_every=1, progress=False, samples_per_class=2, device="cpu")
    g1, d1 = _models()
    h1 = gan.train(g1, d1, images, labels, epochs=2, out_dir=tmp_path / "straight", **kwargs)
    g2, d2 = _models()
    gan.train(g2, d2, images, labels, epochs=1, out_dir=tmp_path / "resumed", **kwargs)
    g3, d3 = _models(seed=123)  # fresh weights: everything must come from the checkpoint
    h3 = gan.train(g3, d3, images, labels, epochs=2, out_dir=tmp_path / "resumed", **kwargs)
    for a, b in ((g1, g3), (d1, d3)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
    cols = ["d_loss", "g_loss", "d_real", "d_fake"]
    assert np.array_equal(h1[cols].to_numpy(), h3[cols].to_numpy())
    # asking for fewer epochs than trained changes nothing
    again = gan.train(g3, d3, images, labels, epochs=2, out_dir=tmp_path / "resumed", **kwargs)
    assert len(again) == 2


def test_resume_false_refuses_to_overwrite(tmp_path):
    generator, discriminator = _models()
    images, labels = _data(n=8)
    gan.train(generator, discriminator, images, labels, epochs=1, batch_size=8, out_dir=tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="resume=True"):
        gan.train(
            generator,
            discriminator,
            images,
            labels,
            epochs=1,
            batch_size=8,
            out_dir=tmp_path,
            resume=False,
            progress=False,
        )


def test_resume_rejects_other_architecture(tmp_path):
    generator, discriminator = _models()
    images, labels = _data(n=8)
    gan.train(generator, discriminator, images, labels, epochs=1, batch_size=8, out_dir=tmp_path, progress=False)
    g_wide, d_wide = _models(width=0.25)
    with pytest.raises(ValueError, match="new out_dir"):
        gan.train(g_wide, d_wide, images, labels, epochs=2, batch_size=8, out_dir=tmp_path, progress=False)


def test_load_generator_and_sample_round_trip(tmp_path):
    generator, discriminator = _models(image_size=32)
    images, labels = _data(n=10, size=32, channels=3)
    gan.train(generator, discriminator, images, labels, epochs=1, batch_size=5, out_dir=tmp_path, progress=False)
    loaded = gan.load_generator(tmp_path).cpu()
    assert not loaded.training
    check_loaded_generator_samples(gan, loaded, generator, epoch=1, shape=(32, 32, 3))


def test_load_generator_without_checkpoint_names_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="02_pytorch_cgan"):
        gan.load_generator(tmp_path)


def test_corrupt_checkpoint_is_skipped(tmp_path, capsys):
    generator, discriminator = _models()
    images, labels = _data(n=8)
    gan.train(generator, discriminator, images, labels, epochs=1, batch_size=8, out_dir=tmp_path, progress=False)
    broken = tmp_path / "checkpoints" / "epoch_0005"
    broken.mkdir()
    (broken / "state.json").write_text(
        (tmp_path / "checkpoints" / "epoch_0001" / "state.json").read_text().replace('"epoch": 1', '"epoch": 5')
    )
    (broken / "weights.pt").write_bytes(b"not a checkpoint, cut short")
    loaded = gan.load_generator(tmp_path)
    assert loaded.epoch == 1
    assert "Skipping unreadable checkpoint epoch_0005" in capsys.readouterr().err
    # training resumes from epoch 1 too, not from the broken epoch 5
    history = gan.train(
        generator, discriminator, images, labels, epochs=2, batch_size=8, out_dir=tmp_path, progress=False
    )
    assert list(history["epoch"]) == [1, 2]


def test_labels_condition_the_output():
    check_labels_condition_the_output(gan, _models(image_size=32)[0])


def test_flop_count():
    """MACs of the report generator by hand: five transposed convolutions + two linear layers."""
    generator = gan.build_generator()
    convs = 4 * 4 * 16 * 513 * 512 + 3 * (8 * 8 * 16 * 512 * 256) + 64 * 64 * 16 * 64 * 3
    assert torch_models.forward_macs(generator) == convs + 100 * 16 + 100 * 8192


def test_generate_takes_noise_and_labels():
    generator, _ = _models()
    check_generate_takes_noise_and_labels(gan, generator, shape=(16, 16, 3))
    assert generator.training  # the mode is restored


PLAIN = {"channels_last": False, "fused_adam": False}  # the CPU speed switches off


@pytest.mark.parametrize(
    "switch", [{"channels_last": True}, {"fused_adam": True}, {}], ids=["nhwc", "fused", "defaults"]
)
def test_cpu_speed_switch_trains_and_resumes(tmp_path, switch):
    """channels_last / fused_adam, each alone and both (the defaults): finite losses, the numbers of the plain loop
    up to rounding; resume stays bitwise."""
    assert gan.Options().channels_last and gan.Options().fused_adam  # on by default (docs/performance.md)
    images, labels = _data(n=21)
    kwargs = dict(batch_size=8, checkpoint_every=1, progress=False, samples_per_class=2, device="cpu")
    g0, d0 = _models()
    h0 = gan.train(g0, d0, images, labels, epochs=2, out_dir=tmp_path / "plain", **kwargs, **PLAIN)
    kwargs.update({**PLAIN, **switch} if switch else {})
    g1, d1 = _models()
    h1 = gan.train(g1, d1, images, labels, epochs=2, out_dir=tmp_path / "straight", **kwargs)
    cols = ["d_loss", "g_loss", "d_real", "d_fake"]
    assert np.isfinite(h1[cols].to_numpy()).all()
    nhwc = g1.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc == kwargs.get("channels_last", True)
    assert np.allclose(h0[cols].to_numpy(), h1[cols].to_numpy(), atol=1e-4)  # the same arithmetic, other order
    g2, d2 = _models()
    gan.train(g2, d2, images, labels, epochs=1, out_dir=tmp_path / "resumed", **kwargs)
    g3, d3 = _models(seed=123)
    h3 = gan.train(g3, d3, images, labels, epochs=2, out_dir=tmp_path / "resumed", **kwargs)
    assert np.array_equal(h1[cols].to_numpy(), h3[cols].to_numpy())
    for a, b in ((g1, g3), (d1, d3)):
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


RERUN = """
import hashlib, sys
import numpy as np, torch
from covidgan_utils import torch_gan as gan
torch.set_num_threads(2)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (96, 32, 32, 1)).astype(np.uint8)
labels = np.r_[np.zeros(48, int), np.ones(48, int)]
gan.set_seed(0)
g, d = gan.build_generator(image_size=32, width=0.125), gan.build_discriminator(image_size=32, width=0.125)
gan.train(g, d, images, labels, epochs=2, batch_size=16, out_dir=sys.argv[1], progress=False, seed=0, checkpoint_every=100)
print(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in [*g.parameters(), *d.parameters()])).hexdigest())
"""


@pytest.mark.slow
def test_a_rerun_in_a_new_process_is_bitwise_the_same(tmp_path):
    """Two trainings with 2 threads in two processes: deterministic kernels make the weights identical (on purpose
    bitwise: `make notebooks` must regenerate the committed notebooks exactly)."""
    import subprocess
    import sys

    digests = [subprocess.run([sys.executable, "-c", RERUN, str(tmp_path / f"run{i}")], capture_output=True, text=True,
                              check=True).stdout.split()[-1] for i in range(2)]
    assert digests[0] == digests[1]
