"""Checkpoint rotation deletes only complete checkpoints; damaged, foreign and older-layout ones stay where they are.

Tiny models (16 px, width 1/8), 40 images and 2-3 epochs: small for testing. Each framework's folder gets
a garbage folder numbered far ahead (epoch 9999), a foreign one numbered behind the run (epoch 0), a
damaged one where the run's first checkpoint goes (epoch 1) and a note; the run keeps one checkpoint.
"""

import datetime
import io
import json

import numpy as np
import pytest

from covidgan_utils import gan_loop

GARBAGE = b"not a checkpoint: some bytes a user or another tool left here"


def _data(n=40, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8), np.arange(n) % 2


def _snapshot(paths) -> dict:
    """Every planted file's bytes, by path, so that 'untouched' can be checked byte for byte."""
    return {p: p.read_bytes() for p in paths}


def _assert_safe_message(err: str) -> None:
    assert "not a checkpoint this project wrote, or it is damaged" in err
    assert "left in place; move it away or delete it yourself" in err
    assert "weights_only" not in err and "weights only" not in err.lower()  # never advise an unsafe load


@pytest.fixture(params=["torch", "tf"])
def fw(request):
    """The framework module, and a function that builds tiny models from a seed."""
    if request.param == "torch":
        torch = pytest.importorskip("torch")
        from covidgan_utils import torch_gan as gan

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        seed_all = torch.manual_seed
    else:
        pytest.importorskip("tensorflow")
        from covidgan_utils import tf_gan as gan

        seed_all = gan.keras.utils.set_random_seed

    def models(seed=0):
        seed_all(seed)
        return gan.build_generator(16, width=0.125), gan.build_discriminator(16, width=0.125)

    yield gan, models
    if request.param == "torch":
        torch.set_num_threads(threads)


def _weights(gan, models) -> list:
    g, d = models
    if gan.NAME == "torch":
        return [v.clone() for m in (g, d) for v in m.state_dict().values()]
    return [w for m in (g, d) for w in m.get_weights()]


def test_rotation_keeps_foreign_and_damaged_folders_and_resume_works(fw, tmp_path, capsys):
    gan, models = fw
    images, labels = _data()
    kwargs = dict(batch_size=8, checkpoint_every=1, keep_last=1, progress=False, samples_per_class=2)
    weight_file = "weights.pt" if gan.NAME == "torch" else "weights.index"
    out = tmp_path / "run"
    folder = out / "checkpoints"
    ahead, behind, in_the_way = folder / "epoch_9999", folder / "epoch_0000", folder / "epoch_0001"
    for path in (ahead, behind, in_the_way):
        path.mkdir(parents=True)
        (path / "state.json").write_bytes(GARBAGE)
        (path / weight_file).write_bytes(GARBAGE[::-1])
    (behind / "state.json").write_text(
        json.dumps({"layout": 2, "framework": gan.NAME, "epoch": 0})
    )  # reads; weights do not
    (folder / "notes.txt").write_text("keep me")
    planted = _snapshot([p for d in (ahead, behind) for p in d.iterdir()] + [folder / "notes.txt"])
    in_the_way_files = {p.name: p.read_bytes() for p in in_the_way.iterdir()}

    g, d = models()
    gan.train(g, d, images, labels, epochs=2, out_dir=out, **kwargs)
    err = capsys.readouterr().err
    _assert_safe_message(err)
    assert "epoch_9999" in err and "epoch_0000" in err and "renamed epoch_0001.unreadable" in err

    assert _snapshot(planted) == planted  # the planted files are there, byte for byte
    assert {p.name: p.read_bytes() for p in (folder / "epoch_0001.unreadable").iterdir()} == in_the_way_files
    assert [p.name for p in gan_loop.checkpoint_folders(out)] == ["epoch_9999", "epoch_0002", "epoch_0000"]
    assert gan.load_generator(out).epoch == 2  # the run's own checkpoint survived

    # a file of the user's inside the run's own checkpoint folder: that folder is no longer deleted either
    (folder / "epoch_0002" / "why.txt").write_text("the good one")
    g3, d3 = models(seed=123)  # other weights: everything must come from the checkpoint
    gan.train(g3, d3, images, labels, epochs=3, out_dir=out, **kwargs)
    err = capsys.readouterr().err
    _assert_safe_message(err)
    assert "Not deleting old checkpoint epoch_0002" in err and "why.txt" in err
    assert _snapshot(planted) == planted
    assert (folder / "epoch_0002" / "why.txt").read_text() == "the good one"
    names = [p.name for p in gan_loop.checkpoint_folders(out)]
    assert names == ["epoch_9999", "epoch_0003", "epoch_0002", "epoch_0000"]
    assert gan.load_generator(out).epoch == 3

    g1, d1 = models()
    gan.train(g1, d1, images, labels, epochs=3, out_dir=tmp_path / "straight", **kwargs)
    for a, b in zip(_weights(gan, (g1, d1)), _weights(gan, (g3, d3))):  # resumed == uninterrupted, bitwise on CPU
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert [p.name for p in gan_loop.checkpoint_folders(tmp_path / "straight")] == ["epoch_0003"]


def test_checkpoints_of_the_earlier_layout_are_refused_and_kept(fw, tmp_path, capsys):
    gan, models = fw
    images, labels = _data(n=8)
    out = tmp_path / "run"
    folder = out / "checkpoints"
    folder.mkdir(parents=True)
    if gan.NAME == "torch":
        old = [folder / "ckpt_0003.pt"]
        old[0].write_bytes(GARBAGE)
    else:
        (folder / "epoch_0003").mkdir()
        old = [folder / "epoch_0003" / name for name in ("ckpt.index", "state.json", "generator.json")]
        for path in old:
            path.write_bytes(GARBAGE)
    planted = _snapshot(old)
    g, d = models()
    for resume in (True, False):
        with pytest.raises(gan_loop.OldLayoutError) as err:
            gan.train(g, d, images, labels, epochs=1, batch_size=4, out_dir=out, resume=resume, progress=False)
        text = str(err.value)
        assert (
            "earlier version" in text and "delete" in text and "new run_dir" in text and "nothing was deleted" in text
        )
    with pytest.raises(FileNotFoundError, match="earlier version"):
        gan.load_generator(out)
    assert _snapshot(planted) == planted
    assert sorted(p.name for p in folder.iterdir()) == sorted({p.relative_to(folder).parts[0] for p in old})


def test_torch_load_message_strips_the_unsafe_advice(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from covidgan_utils import torch_gan as gan

    folder = tmp_path / "checkpoints"
    for epoch in (2, 3, 4):
        (folder / f"epoch_{epoch:04d}").mkdir(parents=True)
        kwargs = {"image_size": 16, "width": 0.125}
        state = {
            "layout": 2,
            "framework": "torch",
            "epoch": epoch,
            "history": [],
            "generator_kwargs": kwargs,
            "discriminator_kwargs": kwargs,
            "options": {},
        }
        (folder / f"epoch_{epoch:04d}" / "state.json").write_text(json.dumps(state))
    buf = io.BytesIO()
    torch.save({"made": datetime.date(2020, 1, 1)}, buf)  # a pickle weights_only=True refuses
    (folder / "epoch_0004" / "weights.pt").write_bytes(buf.getvalue())
    (folder / "epoch_0003" / "weights.pt").write_bytes(GARBAGE)
    torch.save({"epoch": 2}, folder / "epoch_0002" / "weights.pt")  # loads, but holds no model
    with pytest.raises(FileNotFoundError, match="02_pytorch_cgan"):
        gan.load_generator(tmp_path)
    err = capsys.readouterr().err
    _assert_safe_message(err)
    assert err.count("Skipping unreadable checkpoint") == 3 and "does not hold the state of generator" in err
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_0002", "epoch_0003", "epoch_0004"]


def test_rotation_never_follows_a_symlinked_checkpoint(tmp_path, capsys):
    """epoch_0001 is a link to another run's checkpoint: rotation skips it and the target keeps every file."""
    torch = pytest.importorskip("torch")
    import shutil

    from covidgan_utils import torch_gan as gan

    images, labels = _data()
    kwargs = dict(batch_size=8, checkpoint_every=1, progress=False, samples_per_class=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        other = tmp_path / "other-run"
        gan.train(gan.build_generator(16, width=0.125), gan.build_discriminator(16, width=0.125), images, labels,
                  epochs=2, out_dir=other, keep_last=2, **kwargs)
        target = other / "checkpoints" / "epoch_0001"
        planted = _snapshot(sorted(target.iterdir()))
        out = tmp_path / "run"
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / "epoch_0001").symlink_to(target, target_is_directory=True)
        shutil.copytree(other / "checkpoints" / "epoch_0002", out / "checkpoints" / "epoch_0002")  # a real one
        shutil.copy(other / "history.csv", out / "history.csv")
        gan.train(gan.build_generator(16, width=0.125), gan.build_discriminator(16, width=0.125), images, labels,
                  epochs=3, out_dir=out, keep_last=1, **kwargs)
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert "Not deleting old checkpoint epoch_0001: it is a symbolic link" in err and "remove the link" in err
    assert _snapshot(planted) == planted and sorted(p.name for p in target.iterdir()) == sorted(p.name for p in planted)
    assert (out / "checkpoints" / "epoch_0001").is_symlink()
    assert not (out / "checkpoints" / "epoch_0002").exists()  # a real, verified old checkpoint is still rotated
    assert gan.load_generator(out).epoch == 3
