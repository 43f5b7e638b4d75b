"""Checkpoint rotation deletes only complete checkpoints; damaged or foreign files stay where they are.

Tiny models (16 px, width 1/8), 40 images and 2-3 epochs: small for testing. Each framework's folder gets
a garbage file numbered far ahead (epoch 9999), a foreign file numbered behind the run (epoch 0), a
damaged file where the run's first checkpoint goes (epoch 1) and a note; the run keeps one checkpoint.
"""

import datetime
import io

import numpy as np
import pytest

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


# --------------------------------------------------------------------------------------------- PyTorch


def test_torch_rotation_keeps_foreign_and_damaged_files_and_resume_works(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from covidgan_utils import torch_gan as gan

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images, labels = _data()
        kwargs = dict(batch_size=8, checkpoint_every=1, keep_last=1, progress=False, samples_per_class=2, device="cpu")

        def models(seed=0):
            torch.manual_seed(seed)
            return gan.build_generator(16, width=0.125), gan.build_discriminator(16, width=0.125)

        out = tmp_path / "run"
        folder = out / "checkpoints"
        folder.mkdir(parents=True)
        ahead, behind, in_the_way, note = (
            folder / "ckpt_9999.pt",
            folder / "ckpt_0000.pt",
            folder / "ckpt_0001.pt",
            folder / "notes.txt",
        )
        ahead.write_bytes(GARBAGE)
        buf = io.BytesIO()
        torch.save({"made": datetime.date(2020, 1, 1)}, buf)  # a pickle weights_only=True refuses
        behind.write_bytes(buf.getvalue())
        in_the_way.write_bytes(GARBAGE[::-1])
        note.write_text("keep me")
        planted = _snapshot([ahead, behind, note])
        in_the_way_bytes = in_the_way.read_bytes()

        g, d = models()
        gan.train(g, d, images, labels, epochs=2, out_dir=out, **kwargs)
        err = capsys.readouterr().err
        _assert_safe_message(err)
        assert "ckpt_9999.pt" in err and "ckpt_0000.pt" in err and "renamed ckpt_0001.pt.unreadable" in err

        assert _snapshot(planted) == planted  # the planted files are there, byte for byte
        assert (folder / "ckpt_0001.pt.unreadable").read_bytes() == in_the_way_bytes  # set aside, not deleted
        assert [p.name for p in gan.checkpoint_files(out)] == ["ckpt_9999.pt", "ckpt_0002.pt", "ckpt_0000.pt"]
        assert gan.load_checkpoint(out, verbose=False)["epoch"] == 2  # the run's own checkpoint survived

        g3, d3 = models(seed=123)  # fresh weights: everything must come from the checkpoint
        gan.train(g3, d3, images, labels, epochs=3, out_dir=out, **kwargs)
        assert _snapshot(planted) == planted
        assert [p.name for p in gan.checkpoint_files(out)] == ["ckpt_9999.pt", "ckpt_0003.pt", "ckpt_0000.pt"]
        assert gan.load_generator(out).epoch == 3
        _assert_safe_message(capsys.readouterr().err)

        g1, d1 = models()
        gan.train(g1, d1, images, labels, epochs=3, out_dir=tmp_path / "straight", **kwargs)
        for a, b in ((g1, g3), (d1, d3)):  # resumed == uninterrupted, bitwise on CPU
            assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    finally:
        torch.set_num_threads(threads)


def test_torch_load_message_strips_the_unsafe_advice(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from covidgan_utils import torch_gan as gan

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"made": datetime.date(2020, 1, 1)}, folder / "ckpt_0004.pt")
    (folder / "ckpt_0003.pt").write_bytes(GARBAGE)
    torch.save({"epoch": 2}, folder / "ckpt_0002.pt")  # loads, but is not a whole checkpoint
    assert gan.load_checkpoint(tmp_path) is None
    err = capsys.readouterr().err
    _assert_safe_message(err)
    assert err.count("Skipping unreadable checkpoint") == 3 and "missing [" in err
    with pytest.raises(FileNotFoundError, match="02_pytorch_cgan"):
        gan.load_generator(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt_0002.pt", "ckpt_0003.pt", "ckpt_0004.pt"]


# ------------------------------------------------------------------------------------------ TensorFlow


def test_tf_rotation_keeps_foreign_and_damaged_folders_and_resume_works(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    from covidgan_utils import tf_gan as gan

    images, labels = _data()
    kwargs = dict(batch_size=8, checkpoint_every=1, keep_last=1, progress=False, samples_per_class=2)

    def models(seed=0):
        gan.keras.utils.set_random_seed(seed)
        return gan.build_generator(16, width=0.125), gan.build_discriminator(16, width=0.125)

    out = tmp_path / "run"
    folder = out / "checkpoints"
    ahead, behind, in_the_way = folder / "epoch_9999", folder / "epoch_0000", folder / "epoch_0001"
    for path in (ahead, behind, in_the_way):
        path.mkdir(parents=True)
        (path / "state.json").write_bytes(GARBAGE)
        (path / "ckpt.index").write_bytes(GARBAGE)
    (folder / "notes.txt").write_text("keep me")
    planted = _snapshot([p for d in (ahead, behind) for p in d.iterdir()] + [folder / "notes.txt"])
    in_the_way_files = {p.name: p.read_bytes() for p in in_the_way.iterdir()}

    g, d = models()
    gan.train(g, d, images, labels, epochs=2, out_dir=out, **kwargs)
    err = capsys.readouterr().err
    _assert_safe_message(err)
    assert "epoch_9999" in err and "epoch_0000" in err and "renamed epoch_0001.unreadable" in err

    assert _snapshot(planted) == planted
    assert {p.name: p.read_bytes() for p in (folder / "epoch_0001.unreadable").iterdir()} == in_the_way_files
    assert sorted(p.name for p in gan.checkpoint_dirs(out)) == ["epoch_0000", "epoch_0002", "epoch_9999"]
    assert gan.load_checkpoint_state(out, verbose=False)["epoch"] == 2  # the run's own checkpoint survived

    # a file of the user's inside the run's own checkpoint folder: that folder is no longer deleted either
    (folder / "epoch_0002" / "why.txt").write_text("the good one")
    g3, d3 = models(seed=123)  # different weights: everything must come from the checkpoint
    gan.train(g3, d3, images, labels, epochs=3, out_dir=out, **kwargs)
    err = capsys.readouterr().err
    _assert_safe_message(err)
    assert "Not deleting old checkpoint epoch_0002" in err and "why.txt" in err
    assert _snapshot(planted) == planted
    assert (folder / "epoch_0002" / "why.txt").read_text() == "the good one"
    assert sorted(p.name for p in gan.checkpoint_dirs(out)) == ["epoch_0000", "epoch_0002", "epoch_0003", "epoch_9999"]
    assert gan.load_generator(out).epoch == 3

    g1, d1 = models()
    gan.train(g1, d1, images, labels, epochs=3, out_dir=tmp_path / "straight", **kwargs)
    for a, b in ((g1, g3), (d1, d3)):  # resumed == uninterrupted, bitwise on CPU
        assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert sorted(p.name for p in gan.checkpoint_dirs(tmp_path / "straight")) == ["epoch_0003"]
