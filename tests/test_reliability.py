"""Reliability: bad input through notebook 01, unusual valid images, stale inputs, disk full / read-only, security.

Everything is small for testing: 48 px images, the smoke profile, one papermill run of notebook 01.
The kill -9 cases are in tests/test_interrupt.py.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from covidgan_utils import config, data, files, pipeline, provenance, synthesis

ROOT = config.repo_root()
SMOKE_SPLIT = {"COVID": 26, "Normal": 36}  # smoke: 18 + 8 COVID, 26 + 10 Normal


def _image(path: Path, seed: int, size: int = 48, mode: str = "L", fmt: str = "PNG") -> Path:
    """A small random image, different for every seed (small for testing)."""
    arr = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr.astype(np.uint16) * 257) if mode == "I;16" else Image.fromarray(arr)
    if mode not in ("L", "I;16"):
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def _dataset(root: Path, counts=SMOKE_SPLIT) -> Path:
    seed = 0
    for name, n in counts.items():
        for i in range(n):
            _image(root / name / f"{name}-{i + 1}.png", seed)
            seed += 1
    return root


def _tree_hash(folder: Path) -> dict:
    """Relative path -> (sha256, mode) of every file and folder: proves a tree was not touched."""
    out = {}
    for p in sorted(folder.rglob("*")):
        key = p.relative_to(folder).as_posix()
        out[key] = (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir", p.stat().st_mode)
    return out


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), COVIDGAN_PROGRESS="0", MPLBACKEND="Agg", **extra)
    return env


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.slow
def test_notebook_01_lists_every_bad_file_and_leaves_everything_untouched(tmp_path):
    data_dir = _dataset(tmp_path / "download")
    good = (data_dir / "COVID" / "COVID-1.png").read_bytes()
    (data_dir / "COVID" / "COVID-empty.png").write_bytes(b"")
    (data_dir / "COVID" / "COVID-cut.png").write_bytes(good[: len(good) // 2])
    (data_dir / "Normal" / "Normal-text.PNG").write_text("this is not a picture")
    _image(data_dir / "Normal" / "Normal-tiny.jpg", 99, size=8, fmt="JPEG")
    (data_dir / "Normal" / "Normal-html.jpeg").write_text("<html>404 Not Found</html>")
    before = _tree_hash(data_dir)
    run_dir = tmp_path / "run"
    out_nb = tmp_path / "01.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "01_data_exploration.ipynb"), str(out_nb),
           "-k", "python3", "--no-progress-bar", "-p", "profile", "smoke", "-p", "data_dir", str(data_dir),
           "-p", "run_dir", str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT / "notebooks", env=_env(), timeout=300)
    assert done.returncode != 0
    text = done.stdout + done.stderr + out_nb.read_text()
    assert "DataError" in text and "5 unusable file(s)" in text
    for name, why in [("COVID/COVID-empty.png", "0 bytes"), ("COVID/COVID-cut.png", "truncated"),
                      ("Normal/Normal-text.PNG", "not an image"), ("Normal/Normal-tiny.jpg", "too small"),
                      ("Normal/Normal-html.jpeg", "not an image")]:
        assert re.search(re.escape(name) + r": [^\n]*" + why, text), name
    assert "Fix: delete or replace these files" in text and "skip_unreadable=True" in text
    assert _tree_hash(data_dir) == before  # byte for byte and mode for mode
    leftovers = [p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()] if run_dir.exists() else []
    assert not [p for p in leftovers if p.startswith("data/")], leftovers  # no partial manifest, info or cache
    assert not [p for p in leftovers if p.endswith(".tmp")], leftovers


def test_unusual_valid_images_are_accepted_and_converted_the_same_every_time(tmp_path):
    """What tests/test_data.py does not try: .JPG, palette with transparency, LA, big-endian 16-bit, 3000 x 3000."""
    root = _dataset(tmp_path / "d")
    extra = {
        "COVID/upper.JPG": dict(mode="RGB", fmt="JPEG"),
        "COVID/palette-alpha.png": dict(mode="P", fmt="PNG", transparency=0),
        "Normal/gray-alpha.png": dict(mode="LA", fmt="PNG"),
        "Normal/cmyk.JPEG": dict(mode="CMYK", fmt="JPEG"),
    }
    for i, (name, spec) in enumerate(extra.items()):
        path = _image(root / name, 500 + i, mode=spec["mode"], fmt=spec["fmt"])
        if "transparency" in spec:
            with Image.open(path) as img:
                img.save(path, transparency=spec["transparency"])
    big = np.add.outer(np.arange(3000), np.arange(3000)) % 251  # a very large image (compresses well)
    Image.fromarray(big.astype(np.uint16) * 257).save(root / "COVID" / "huge-16bit.png")
    be = Image.frombytes("I;16B", (48, 48), (np.arange(48 * 48, dtype=">u2") * 28).tobytes())
    be.save(root / "Normal" / "big-endian.png")
    table, report = data.scan(root, progress=False)
    assert report["skipped_unreadable"] == []
    names = set(table["path"])
    for name in [*extra, "COVID/huge-16bit.png", "Normal/big-endian.png"]:
        assert name in names
    modes = set(table["mode"])
    assert {"P", "LA", "CMYK", "RGB"} <= modes and any(m.startswith("I;16") or m == "I" for m in modes)
    huge = data.load_image(root / "COVID" / "huge-16bit.png", 32)
    assert huge.shape == (32, 32) and huge.dtype == np.uint8
    expected = np.asarray(Image.fromarray((big / 1.0).round().astype(np.uint8)).resize((32, 32), Image.Resampling.BILINEAR))
    assert np.abs(huge.astype(int) - expected.astype(int)).max() <= 1
    # the same conversion every time: two independent runs give identical caches
    arrays = []
    for k in range(2):
        cfg = config.resolve(profile="smoke", data_dir=str(root), run_dir=str(tmp_path / f"run{k}"))
        data.prepare(cfg, progress=False)
        with np.load(cfg.path("data", "arrays_32.npz")) as z:
            arrays.append((z["images"].copy(), z["sha256"].copy()))
    np.testing.assert_array_equal(arrays[0][0], arrays[1][0])
    np.testing.assert_array_equal(arrays[0][1], arrays[1][1])
    for path in (root / "Normal" / "cmyk.JPEG", root / "COVID" / "palette-alpha.png"):
        np.testing.assert_array_equal(data.load_image(path, 32), data.load_image(path, 32))


# ----------------------------------------------------------------------------------- stale inputs


@pytest.fixture
def prepared(tmp_path):
    """A smoke run directory prepared by notebook 01's function (phantoms)."""
    cfg = config.resolve(profile="smoke", run_dir=str(tmp_path / "run"))
    data.prepare(cfg, progress=False)
    return cfg


def _fake_gan_folder(folder: Path) -> Path:
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "ckpt_0001.pt").write_bytes(b"complete checkpoint stand-in")
    return folder


def _fake_sample(generator, labels, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (len(labels), 32, 32, 1), dtype=np.uint8)


def test_stamp_and_check_name_the_notebook_to_rerun(prepared, tmp_path, capsys):
    cfg = prepared
    out = cfg.path("torch_gan")
    with pytest.raises(provenance.StaleInputError, match="run notebooks/02_pytorch_cgan.ipynb first"):
        provenance.check(out, cfg, "02_pytorch_cgan")
    _fake_gan_folder(out)
    assert provenance.check(out, cfg, "02_pytorch_cgan") is None  # an older run: accepted, with a warning
    assert "has no provenance.json" in capsys.readouterr().out
    provenance.stamp(out, cfg, "02_pytorch_cgan")
    stamp = json.loads((out / "provenance.json").read_text())
    assert stamp["made_by"] == "02_pytorch_cgan"
    assert stamp["fingerprint"]["profile"] == "smoke" and stamp["fingerprint"]["n_train"] == 44
    assert provenance.check(out, cfg, "02_pytorch_cgan") == stamp
    assert provenance.check(out, cfg.run_dir, "02_pytorch_cgan") == stamp  # a run dir compares split and profile
    bigger = config.resolve(profile="smoke", run_dir=str(cfg.run_dir), image_size=64)
    with pytest.raises(provenance.StaleInputError, match=r"image_size \(px\): made with 32, now 64"):
        provenance.check(out, bigger, "02_pytorch_cgan")
    # notebook 01 rerun with another split seed into this run dir (after deleting data/): the GAN folder is stale
    shutil.rmtree(cfg.path("data"))
    data.prepare(config.resolve(profile="smoke", run_dir=str(cfg.run_dir), split_seed=7), progress=False)
    with pytest.raises(provenance.StaleInputError) as err:
        provenance.check(out, cfg, "02_pytorch_cgan")
    text = str(err.value)
    assert "split (train/val images)" in text and "rerun notebooks/02_pytorch_cgan.ipynb" in text
    # notebook 02 stamps OUT before training: checkpoints from the old split are refused, not resumed
    with pytest.raises(provenance.StaleInputError, match=r"Fix: delete torch_gan \(or choose another run_dir\)"):
        provenance.stamp(out, cfg, "02_pytorch_cgan")
    provenance.stamp(out, cfg, "02_pytorch_cgan", replace=True)
    assert provenance.check(out, cfg, "02_pytorch_cgan")["fingerprint"] == provenance.fingerprint(cfg)


def test_require_prepared_refuses_another_profiles_split(prepared):
    demo = config.resolve(profile="demo", run_dir=str(prepared.run_dir))
    with pytest.raises(data.DataError) as err:
        data.load_split(demo, "train")
    text = str(err.value)
    assert "profile: prepared with 'smoke', asked for 'demo'" in text
    assert "rerun notebooks/01_data_exploration.ipynb" in text and "run_dir of profile 'smoke'" in text
    seeded = config.resolve(profile="smoke", run_dir=str(prepared.run_dir), split_seed=3)
    with pytest.raises(data.DataError, match="split_seed: prepared with 0, asked for 3"):
        data.require_prepared(seeded)
    assert data.require_prepared(prepared)["settings"]["profile"] == "smoke"  # notebooks 02-06 set no split_seed


def test_synthesis_refuses_a_stale_gan_and_stamps_its_output(prepared):
    cfg = prepared
    run = cfg.run_dir
    gan_dir = _fake_gan_folder(run / "torch_gan")
    provenance.stamp(gan_dir, cfg, "02_pytorch_cgan")
    out = synthesis.framework_dir(run, "torch")
    synthesis.generate("torch", None, {"COVID": 3, "Normal": 2}, out, progress=False, image_size=32, sample_fn=_fake_sample)
    assert provenance.read(out)["made_by"] == "04_synthetic_data"
    images, _ = synthesis.load_synthetic(run, "torch", image_size=32)
    assert images.shape == (5, 32, 32, 1)
    # the split changes under them: the GAN and the synthetic images are both stale now
    shutil.rmtree(cfg.path("data"))
    data.prepare(config.resolve(profile="smoke", run_dir=str(run), split_seed=5), progress=False)
    with pytest.raises(provenance.StaleInputError, match="02_pytorch_cgan"):
        synthesis.generate("torch", None, {"COVID": 3}, out, seed=1, overwrite=True, progress=False, sample_fn=_fake_sample)
    with pytest.raises(provenance.StaleInputError, match="rerun notebooks/04_synthetic_data.ipynb"):
        synthesis.load_synthetic(run, "torch", image_size=32)
    assert len(pd.read_csv(out / "manifest.csv")) == 5  # nothing was touched


def test_transfer_results_record_the_split(prepared):
    pytest.importorskip("torch")
    from covidgan_utils import transfer

    settings = transfer.experiment_settings(prepared, {"used": "random"})
    assert settings["inputs"] == provenance.fingerprint(prepared)


# ------------------------------------------------------------------------------ disk full, read-only


def test_disk_full_during_replace_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "run" / "data" / "info.json"
    files.write_json(path, {"complete": True})

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full)
    with pytest.raises(files.StorageError) as err:
        files.write_json(path, {"complete": False, "big": list(range(1000))})
    text = str(err.value)
    assert "info.json" in text and "free disk space" in text and err.value.errno == errno.ENOSPC
    assert isinstance(err.value, OSError)
    assert json.loads(path.read_text()) == {"complete": True}
    assert sorted(p.name for p in path.parent.iterdir()) == ["info.json"]  # no temporary file left


@pytest.mark.parametrize("code, fix", [(errno.EROFS, "choose a writable run_dir"), (errno.EACCES, "choose a writable run_dir")])
def test_read_only_run_dir_says_choose_a_writable_run_dir(tmp_path, monkeypatch, code, fix):
    path = tmp_path / "run" / "history.csv"
    files.write_text(path, "epoch\n1\n")

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    with pytest.raises(files.StorageError, match=fix) as err:
        files.write_text(path, "epoch\n1\n2\n")
    assert "history.csv" in str(err.value)
    assert path.read_text() == "epoch\n1\n"


def test_really_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    files.write_text(folder / "a.txt", "old")
    folder.chmod(0o500)
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
            probe.unlink()
            pytest.skip("this user can write into a chmod 0500 folder (root ignores permissions); "
                        "the monkeypatched EROFS/EACCES tests cover the message")
        except PermissionError:
            pass
        with pytest.raises(files.StorageError, match="choose a writable run_dir"):
            files.write_text(folder / "a.txt", "new")
        assert (folder / "a.txt").read_text() == "old"
    finally:
        folder.chmod(0o700)


def test_pipeline_on_a_read_only_run_dir_is_a_clear_error(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", read_only)
    with pytest.raises(pipeline.PipelineError, match=r"Cannot write .*\.lock.*choose a writable run_dir"):
        pipeline.run("smoke", run_dir=str(tmp_path / "run"), notebooks="01")


def test_disk_full_while_writing_synthetic_images_keeps_the_previous_folder(tmp_path, monkeypatch):
    out = synthesis.framework_dir(tmp_path, "tf")
    first = synthesis.generate("tf", None, {"COVID": 4}, out, progress=False, sample_fn=_fake_sample)
    calls = []

    def full_after_two(path, img, Image):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        Image.fromarray(img[..., 0]).save(path)

    monkeypatch.setattr(synthesis, "_write_png", full_after_two)
    with pytest.raises(files.StorageError, match="free disk space"):
        synthesis.generate("tf", None, {"COVID": 4}, out, seed=9, overwrite=True, progress=False, sample_fn=_fake_sample)
    pd.testing.assert_frame_equal(pd.read_csv(out / "manifest.csv"), first)
    assert [p.name for p in out.parent.iterdir()] == ["tf"]  # no temporary folder left behind


def test_leftovers_of_a_killed_writer_are_recognised_and_removed(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    keep = ["ckpt_0001.pt", "epoch_0002", "latest", ".lock"]
    gone = [".ckpt_0002.pt.k3j2.tmp", ".tmp-epoch_0003-4242", ".old-epoch_0001-4242", ".torch.old-99"]
    for name in keep + gone:
        (folder / name).mkdir() if name.startswith(("epoch_", ".tmp-", ".old-")) else (folder / name).write_text("x")
    assert files.remove_leftovers(folder) == sorted(gone)
    assert sorted(p.name for p in folder.iterdir()) == sorted(keep)
    assert files.remove_leftovers(tmp_path / "absent") == []


# ------------------------------------------------------------------------------------------- security


def test_every_torch_load_uses_weights_only_and_nothing_unpickles():
    sources = sorted((ROOT / "covidgan_utils").rglob("*.py"))
    calls = 0
    for path in sources:
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            depth, i = 1, m.end()
            while depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            call = text[m.start() : i]
            calls += 1
            assert "weights_only=True" in call, f"{path.name}: {call}"
        assert not re.search(r"\bpickle\.loads?\(|allow_pickle\s*=\s*True|\bdill\b|joblib\.load", text), path.name
        assert "weights_only=False" not in text, path.name
    assert calls >= 3  # torch_gan checkpoints, transfer VGG16 file, fidelity Inception file


def test_vgg16_weights_are_checked_against_the_published_checksum(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")

    from covidgan_utils import download, transfer

    cached = tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    cached.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(1)}, cached)  # the right name, the wrong content
    monkeypatch.setattr(transfer, "imagenet_cache_file", lambda: cached)
    seen = {}

    def no_download(url, dest, **kwargs):
        seen.update(kwargs, url=url, dest=dest)
        raise download.DownloadError("no network (simulated)")

    monkeypatch.setattr(transfer, "download", no_download)
    for weights in ("imagenet", "auto"):
        with pytest.raises(ValueError, match="does not match its published checksum") as err:
            transfer.build_vgg16(weights, verbose=False)
        assert "delete it and download" in str(err.value) and "397923af" in str(err.value)
    assert not seen  # the damaged file was never loaded, and nothing else was tried
    cached.unlink()
    with pytest.raises(RuntimeError, match="simulated"):
        transfer.build_vgg16("imagenet", verbose=False)
    assert seen["url"] == transfer.VGG16_URL and seen["sha256"] == "397923af" and seen["dest"] == cached
    ok = tmp_path / "ok.bin"
    ok.write_bytes(b"published bytes")
    transfer.verify_checksum(ok, hashlib.sha256(b"published bytes").hexdigest()[:8])


def test_local_weights_named_the_torch_hub_way_are_checked_against_their_name(tmp_path):
    """A local file called name-<sha256 prefix>.pth (as torchvision publishes them) must match that prefix."""
    torch = pytest.importorskip("torch")
    from covidgan_utils import fidelity, transfer

    for name in ("vgg16-397923af.pth", "inception_v3_google-0cc3c7bd.pth"):  # the right names, the wrong content
        fake = tmp_path / name
        torch.save({"w": torch.zeros(1)}, fake)
        with pytest.raises(ValueError, match="published checksum"):
            if name.startswith("vgg16"):
                transfer.build_vgg16(str(fake), verbose=False)
            else:
                fidelity.inception_extractor(str(fake))
    plain = tmp_path / "my_weights.pth"
    torch.save({"w": torch.zeros(1)}, plain)
    assert transfer.verify_published_name(plain) is False  # no published checksum in the name: nothing to check
    good = tmp_path / f"thing-{hashlib.sha256(plain.read_bytes()).hexdigest()[:8]}.pth"
    good.write_bytes(plain.read_bytes())
    assert transfer.verify_published_name(good) is True
