"""Synthesis: the generation plan, checked images, atomic PNG + manifest writing (stand-in generators)."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from covidgan_utils import CLASSES, synthesis
from covidgan_utils.config import PAPER_TRAIN

SIZE = 32  # small for testing


def fake_sample(generator, labels, seed):
    """A stand-in generator: seeded noise plus a class-dependent bright square (uint8, 3 equal channels like torch)."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 120, (len(labels), SIZE, SIZE, 1), dtype=np.uint8)
    for i, k in enumerate(labels):
        imgs[i, 4 + 8 * k : 12 + 8 * k, 4:12] = 250
    return np.repeat(imgs, 3, axis=-1)


def test_plan_paper_numbers():
    plan = synthesis.plan(PAPER_TRAIN, 1000)
    assert plan == {"Normal": 399, "COVID": 669}
    assert sum(plan.values()) == 1068


def test_plan_edge_cases():
    assert synthesis.plan({"covid": 10, "NORMAL": 50}, 30) == {"Normal": 0, "COVID": 20}
    assert synthesis.plan({"COVID": 10, "Normal": 5}, {"COVID": 12, "Normal": 9}) == {"Normal": 4, "COVID": 2}
    with pytest.raises(ValueError, match="Unknown class"):
        synthesis.plan({"Pneumonia": 3}, 10)


def test_generate_writes_pngs_and_manifest(tmp_path):
    out = synthesis.framework_dir(tmp_path, "torch")
    plan = {"COVID": 7, "Normal": 5}
    manifest = synthesis.generate(
        "torch", None, plan, out, seed=3, progress=False, image_size=SIZE, batch_size=4, sample_fn=fake_sample
    )
    assert list(manifest.columns) == ["path", "label", "seed"]
    assert manifest["label"].value_counts().to_dict() == {"COVID": 7, "Normal": 5}
    on_disk = pd.read_csv(out / "manifest.csv")
    pd.testing.assert_frame_equal(on_disk, manifest)
    for p in manifest["path"]:
        assert p.startswith("synthetic/torch/")
        with Image.open(tmp_path / p) as img:
            assert img.size == (SIZE, SIZE) and img.mode == "L"
    assert sorted(q.name for q in out.iterdir()) == ["COVID", "Normal", "manifest.csv", "settings.json"]
    assert not [q for q in tmp_path.joinpath("synthetic").iterdir() if q.name.startswith(".")]
    images, labels = synthesis.load_synthetic(tmp_path, "torch", image_size=SIZE, channels=1)
    assert images.shape == (12, SIZE, SIZE, 1) and images.dtype == np.uint8
    assert labels.tolist() == [0] * 5 + [1] * 7  # plan order follows CLASSES: Normal then COVID
    # regenerating from the recorded seed gives the same pixels (PNG is lossless)
    first_covid = manifest.index[manifest["label"] == "COVID"][0]
    again = fake_sample(None, np.full(4, CLASSES.index("COVID")), int(manifest.loc[first_covid, "seed"]))
    np.testing.assert_array_equal(images[first_covid, ..., 0], again[0, ..., 0])
    rgb, _ = synthesis.load_synthetic(tmp_path, "torch", image_size=64, channels=3)
    assert rgb.shape == (12, 64, 64, 3)


def test_generate_is_seeded_and_reuses_or_refuses(tmp_path):
    out = synthesis.framework_dir(tmp_path, "tf")
    stale = out.parent / ".tf.abc123.tmp"  # what a run killed mid-way leaves
    (stale / "COVID").mkdir(parents=True)
    plan = {"COVID": 3, "Normal": 2}
    first = synthesis.generate("tf", None, plan, out, seed=0, progress=False, sample_fn=fake_sample)
    assert not stale.exists()
    again = synthesis.generate(
        "tf", None, plan, out, seed=0, progress=False, sample_fn=lambda *a: pytest.fail("should reuse")
    )
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        synthesis.generate("tf", None, plan, out, seed=1, progress=False, sample_fn=fake_sample)
    new = synthesis.generate("tf", None, plan, out, seed=1, progress=False, overwrite=True, sample_fn=fake_sample)
    assert (new["seed"] != first["seed"]).all()
    assert synthesis.available(tmp_path) == ["tf"]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("nan", "NaN"),
        ("constant", "blank/constant"),
        ("size", "expected 32x32"),
    ],
)
def test_bad_images_are_rejected_and_nothing_is_written(tmp_path, bad, message):
    calls = []

    def broken(generator, labels, seed):
        calls.append(seed)
        imgs = fake_sample(generator, labels, seed).astype(np.float32) / 255
        if len(calls) < 2:  # the first batch is fine: a half-written folder must not survive
            return imgs
        if bad == "nan":
            imgs[1, 3, 3] = np.nan
        elif bad == "constant":
            imgs[0] = 0.5
        else:
            imgs = imgs[:, :16, :16]
        return imgs

    out = synthesis.framework_dir(tmp_path, "torch")
    with pytest.raises(synthesis.SyntheticImageError, match=message) as err:
        synthesis.generate(
            "torch", None, {"COVID": 6}, out, progress=False, image_size=SIZE, batch_size=3, sample_fn=broken
        )
    assert len(calls) == 2
    if bad != "size":
        assert "nothing was written" in str(err.value)
    assert not out.exists()
    assert list((tmp_path / "synthetic").iterdir()) == []  # no temporary folder left behind


def test_check_images_lists_every_bad_image():
    imgs = np.random.default_rng(0).random((5, SIZE, SIZE, 1))
    imgs[1] = np.nan
    imgs[3] = 0.0
    with pytest.raises(synthesis.SyntheticImageError) as err:
        synthesis.check_images(imgs)
    text = str(err.value)
    assert "image 1: contains NaN" in text and "image 3: is blank/constant" in text and "2 of 5" in text
    ok = synthesis.check_images(np.random.default_rng(1).random((2, SIZE, SIZE, 3)))
    assert ok.dtype == np.uint8 and ok.shape == (2, SIZE, SIZE, 3)


def test_load_synthetic_missing_names_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="04_synthetic_data"):
        synthesis.load_synthetic(tmp_path, "torch", SIZE)
    with pytest.raises(ValueError, match="framework"):
        synthesis.framework_dir(tmp_path, "jax")


def test_nearly_flat_images_are_written_but_announced(tmp_path):
    def flat_gray(generator, labels, seed):  # an untrained sigmoid generator: 127/128 everywhere
        imgs = np.full((len(labels), SIZE, SIZE, 3), 127, np.uint8)
        imgs[:, 0, 0] = 128
        return imgs

    with pytest.warns(UserWarning, match="nearly flat"):
        m = synthesis.generate(
            "torch", None, {"COVID": 2}, synthesis.framework_dir(tmp_path, "torch"), progress=False, sample_fn=flat_gray
        )
    assert len(m) == 2
    assert synthesis._read_settings(synthesis.framework_dir(tmp_path, "torch"))["nearly_flat_images"] == 2
    with pytest.raises(synthesis.SyntheticImageError, match="blank/constant"):
        synthesis.check_images(flat_gray(None, [0], 0), min_range=2)


def _run_with_a_trained_generator(root):
    """A smoke run: a split of small toy X-rays and a PyTorch generator trained for one epoch (small for testing)."""
    torch = pytest.importorskip("torch")
    from covidgan_utils import config, data, provenance
    from covidgan_utils import torch_gan as gan

    data_dir = root / "data"
    rng = np.random.default_rng(0)
    for name, n in (("COVID", 26), ("Normal", 36)):  # the smoke profile's split: 18 + 8 COVID, 26 + 10 Normal
        (data_dir / name).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 120, (SIZE, SIZE), dtype=np.uint8)
            img[4 + 8 * (name == "COVID") : 12 + 8 * (name == "COVID"), 4:12] = 250
            Image.fromarray(img).save(data_dir / name / f"{name}-{i}.png")
    cfg = config.resolve(
        profile="smoke",
        data_dir=str(data_dir),
        run_dir=str(root / "run"),
    )
    data.prepare(cfg, progress=False)
    images, labels = data.load_split(cfg, "train")
    torch.manual_seed(0)
    generator = gan.build_generator(image_size=cfg.image_size, width=cfg.torch_width)
    discriminator = gan.build_discriminator(image_size=cfg.image_size, width=cfg.torch_width)
    provenance.stamp(cfg.path("torch_gan"), cfg, "02_pytorch_cgan")
    gan.train(
        generator, discriminator, images, labels, epochs=1, batch_size=11, out_dir=cfg.path("torch_gan"), progress=False
    )
    return cfg


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*nearly flat")  # one epoch of training: flat images, the same in both paths
def test_notebook_04_writes_what_synthesize_writes(tmp_path):
    """Notebook 04 executed (papermill) and the one-call wrapper on copies of one run: the same images and manifest,
    each folder stamped with its split."""
    import shutil

    from helpers import run_notebook

    from covidgan_utils import config, provenance

    cfg = _run_with_a_trained_generator(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(cfg.run_dir, copy)
    run_notebook("04", tmp_path, profile="smoke", data_dir=str(cfg.data_dir), run_dir=str(cfg.run_dir))
    other = config.resolve(profile="smoke", data_dir=str(cfg.data_dir), run_dir=str(copy))
    made = synthesis.synthesize(other, progress=False)
    assert set(made) == {"torch"}
    by_notebook, by_wrapper = synthesis.framework_dir(cfg.run_dir, "torch"), synthesis.framework_dir(copy, "torch")
    manifest = pd.read_csv(by_notebook / "manifest.csv")
    pd.testing.assert_frame_equal(manifest, pd.read_csv(by_wrapper / "manifest.csv"))
    assert manifest["label"].value_counts().to_dict() == synthesis.train_plan(cfg)[1]
    assert synthesis._read_settings(by_notebook) == synthesis._read_settings(by_wrapper)
    for folder, run in ((by_notebook, cfg), (by_wrapper, other)):
        assert provenance.read(folder)["made_by"] == "04_synthetic_data"
        provenance.check(folder, run, "04_synthetic_data")
    a, _ = synthesis.load_synthetic(cfg.run_dir, "torch")
    b, _ = synthesis.load_synthetic(copy, "torch")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # the same images (a rounding step apart at most)


def test_no_trained_generator_stops_naming_the_notebooks(tmp_path, capsys):
    from covidgan_utils import config

    cfg = config.resolve(profile="smoke", run_dir=str(tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match="02_pytorch_cgan"):
        synthesis.load_generators(cfg, frameworks=("torch",))
    assert "torch: MISSING, no trained generator: run notebooks/02_pytorch_cgan.ipynb first" in capsys.readouterr().out
    assert synthesis.gan_module("torch").__name__ == "covidgan_utils.torch_gan"
    with pytest.raises(ValueError, match="framework"):
        synthesis.gan_module("jax")


@pytest.mark.parametrize("overwrite", [False, True])
def test_generate_refuses_a_folder_it_did_not_write_and_deletes_nothing(tmp_path, overwrite):
    out = synthesis.framework_dir(tmp_path, "torch")
    out.mkdir(parents=True)
    (out / "my-scans.png").write_bytes(b"someone's image")
    (out / "manifest.csv").write_text("patient,diagnosis\n1,COVID\n")  # a manifest, but not the project's
    before = sorted(p.name for p in out.parent.iterdir())
    with pytest.raises(FileExistsError, match="no folder of synthetic images this project wrote") as err:
        synthesis.generate("torch", None, {"COVID": 2}, out, seed=1, progress=False, image_size=SIZE,
                           overwrite=overwrite, sample_fn=fake_sample)
    message = str(err.value)
    assert "synthetic/torch" in message and "my-scans.png" in message and "Nothing was written or deleted" in message
    assert "Fix:" in message
    assert (out / "my-scans.png").read_bytes() == b"someone's image"
    assert sorted(p.name for p in out.parent.iterdir()) == before  # no temporary folder either
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    link = synthesis.framework_dir(tmp_path, "tf")
    link.symlink_to(target, target_is_directory=True)
    with pytest.raises(FileExistsError, match="symbolic link"):
        synthesis.generate("tf", None, {"COVID": 2}, link, seed=1, progress=False, image_size=SIZE,
                           overwrite=overwrite, sample_fn=fake_sample)
    assert [p.name for p in target.iterdir()] == ["keep.txt"] and link.is_symlink()
    # the project's own folder is still replaced with overwrite, and an empty folder is used
    (out / "my-scans.png").unlink()
    (out / "manifest.csv").unlink()
    synthesis.generate("torch", None, {"COVID": 2}, out, seed=1, progress=False, image_size=SIZE, sample_fn=fake_sample)
    synthesis.generate("torch", None, {"COVID": 3}, out, seed=2, progress=False, image_size=SIZE, overwrite=True,
                       sample_fn=fake_sample)
    assert len(pd.read_csv(out / "manifest.csv")) == 3
