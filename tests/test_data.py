"""Data layer: discovery in the real layouts, conversions, split, cache, and every bad input.

Bad inputs tried here: zero-byte file, truncated PNG, text file named .png, image smaller than the
minimum, missing class folder, class folder without images, empty directory, nonexistent
directory, a file given as directory, too few images for the split, a run dir holding another split.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidgan_utils import config, data

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "covid19-radiography-sample"


def _write(path: Path, seed: int, size: int = 48, mode: str = "L", fmt: str = "PNG") -> Path:
    """A small random image (different for every seed), small for testing."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size, size), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 257)
    elif mode != "L":
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def make_dataset(root: Path, n_covid: int = 12, n_normal: int = 16, layout: str = "flat", names=("COVID", "Normal")) -> Path:
    """A tiny dataset in one of the real layouts: flat class folders or class/images/."""
    seed = 0
    for name, n in zip(names, (n_covid, n_normal)):
        folder = root / name / "images" if layout == "images" else root / name
        for i in range(n):
            _write(folder / f"{name}-{i + 1}.png", seed)
            seed += 1
    return root


def snapshot(folder: Path) -> dict:
    """Path -> sha256 of every file, to prove a folder was not modified."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def tiny_cfg(tmp_path: Path, data_dir: Path, **overrides):
    settings = {"train_per_class": {"COVID": 8, "Normal": 10}, "val_per_class": {"COVID": 3, "Normal": 4}, **overrides}
    return config.resolve(profile="smoke", data_dir=str(data_dir), run_dir=str(tmp_path / "run"), **settings)


def test_finds_both_layouts_any_case_and_reports_ignored(tmp_path):
    root = make_dataset(tmp_path / "kaggle", layout="images", names=("covid", "NORMAL"))
    _write(root / "covid" / "masks" / "COVID-1.png", 999)
    _write(root / "Lung_Opacity" / "images" / "Lung_Opacity-1.png", 998)
    (root / "covid" / "images" / "notes.txt").write_text("not an image")
    inv = data.find_images(root)
    labels = [k for _, k in inv.files]
    assert labels.count(1) == 12 and labels.count(0) == 16
    assert "Lung_Opacity" in inv.ignored_folders
    assert "covid/masks" in inv.ignored_folders
    assert not any("masks" in str(p) for p, _ in inv.files)
    assert any(f.endswith("notes.txt") for f in inv.ignored_files)


def test_descends_into_single_wrapping_folder(tmp_path):
    make_dataset(tmp_path / "archive" / "COVID-19_Radiography_Dataset", layout="images")
    inv = data.find_images(tmp_path / "archive")
    assert inv.root.name == "COVID-19_Radiography_Dataset"
    assert len(inv.files) == 28


@pytest.mark.parametrize(
    "mode,fmt,suffix",
    [("L", "PNG", ".png"), ("RGB", "PNG", ".PNG"), ("RGBA", "PNG", ".png"), ("P", "PNG", ".png"),
     ("CMYK", "JPEG", ".jpg"), ("I;16", "PNG", ".png"), ("RGB", "JPEG", ".JPEG")],
)
def test_unusual_but_valid_modes_become_the_same_gray(tmp_path, mode, fmt, suffix):
    gray = _write(tmp_path / "ref.png", 5, mode="L")
    other = _write(tmp_path / f"img{suffix}", 5, mode=mode, fmt=fmt)
    a = data.load_image(gray, 32).astype(int)
    b = data.load_image(other, 32).astype(int)
    assert b.shape == (32, 32) and b.dtype == np.dtype(int)
    tolerance = 40 if fmt == "JPEG" or mode == "P" else 1  # lossy JPEG / 256-colour palette
    assert np.abs(a - b).mean() < tolerance
    facts, reason = data.inspect_image(other)
    assert reason is None and facts["sha256"]


def test_every_bad_file_listed_at_once_and_data_untouched(tmp_path):
    root = make_dataset(tmp_path / "d")
    (root / "COVID" / "COVID-empty.png").write_bytes(b"")
    good = (root / "COVID" / "COVID-1.png").read_bytes()
    (root / "COVID" / "COVID-trunc.png").write_bytes(good[: len(good) // 2])
    (root / "Normal" / "Normal-text.png").write_text("hello, I am not a picture")
    _write(root / "Normal" / "Normal-tiny.png", 77, size=8)
    before = snapshot(root)
    cfg = tiny_cfg(tmp_path, root)
    with pytest.raises(data.DataError) as err:
        data.prepare(cfg, progress=False)
    message = str(err.value)
    for name, why in [("COVID-empty.png", "0 bytes"), ("COVID-trunc.png", "truncated"), ("Normal-text.png", "not an image"), ("Normal-tiny.png", "too small")]:
        assert name in message and why in message
    assert "skip_unreadable" in message
    assert len(err.value.problems) == 4
    assert snapshot(root) == before
    assert not (cfg.run_dir / "data" / "manifest.csv").exists()
    assert not list((cfg.run_dir).rglob("*.tmp")) if cfg.run_dir.exists() else True

    cfg = tiny_cfg(tmp_path, root, skip_unreadable=True)
    info = data.prepare(cfg, progress=False)
    assert len(info["report"]["skipped_unreadable"]) == 4
    assert snapshot(root) == before


@pytest.mark.parametrize("case", ["missing", "empty_dir", "no_class_folder", "class_without_images", "file"])
def test_bad_directories_say_what_to_do(tmp_path, case):
    target = tmp_path / "d"
    if case == "empty_dir":
        target.mkdir()
    elif case == "no_class_folder":
        make_dataset(target)
        for p in (target / "Normal").iterdir():
            p.unlink()
        (target / "Normal").rmdir()
    elif case == "class_without_images":
        make_dataset(target)
        for p in (target / "COVID").iterdir():
            p.unlink()
    elif case == "file":
        target.write_text("x")
    with pytest.raises(data.DataError) as err:
        data.find_images(target)
    assert "Fix:" in str(err.value)
    assert str(target) in str(err.value)


def test_too_few_images_says_needed_and_found(tmp_path):
    root = make_dataset(tmp_path / "d", n_covid=5, n_normal=30)
    with pytest.raises(data.DataError) as err:
        data.prepare(tiny_cfg(tmp_path, root), progress=False)
    assert "COVID: 8 train + 3 val = 11 needed, 5 found" in str(err.value)


def test_split_is_seeded_stratified_and_duplicates_removed(tmp_path):
    root = make_dataset(tmp_path / "d", n_covid=14, n_normal=16)
    dup = (root / "Normal" / "Normal-1.png").read_bytes()
    (root / "Normal" / "Normal-copy.png").write_bytes(dup)  # exact duplicate
    (root / "COVID" / "COVID-same-as-normal2.png").write_bytes((root / "Normal" / "Normal-2.png").read_bytes())
    table, report = data.scan(root, progress=False)
    assert report["duplicates_removed"] == ["Normal/Normal-copy.png"]
    assert len(report["conflicting_labels_removed"]) == 2
    assert table["sha256"].is_unique
    a = data.split(table, {"COVID": 8, "Normal": 10}, {"COVID": 3, "Normal": 4}, seed=1)
    b = data.split(table, {"COVID": 8, "Normal": 10}, {"COVID": 3, "Normal": 4}, seed=1)
    c = data.split(table, {"COVID": 8, "Normal": 10}, {"COVID": 3, "Normal": 4}, seed=2)
    assert a.equals(b) and not a.equals(c)
    counts = data.split_counts(a)
    assert counts.loc["train"].to_dict() == {"Normal": 10, "COVID": 8}
    assert counts.loc["val"].to_dict() == {"Normal": 4, "COVID": 3}
    assert not set(a[a.split == "train"].sha256) & set(a[a.split == "val"].sha256)
    frac = data.split(table, {"COVID": 0.5, "Normal": 0.5}, {"COVID": 0.25, "Normal": 0.25})
    assert data.split_counts(frac).loc["val"].to_dict() == {"Normal": 4, "COVID": 4}  # 15 and 14 left after dedupe


def test_prepare_writes_contract_manifest_and_cache(tmp_path):
    root = make_dataset(tmp_path / "d")
    cfg = tiny_cfg(tmp_path, root)
    data.prepare(cfg, progress=False)
    manifest = data.read_manifest(cfg)
    assert list(manifest.columns)[:4] == ["path", "label", "split", "sha256"]  # the contract columns first
    assert list(manifest.columns) == data.MANIFEST_COLUMNS and manifest.pixel_sha256.is_unique
    assert set(manifest.label) == {"COVID", "Normal"} and set(manifest.split) == {"train", "val"}
    assert manifest.sha256.is_unique
    assert not any(Path(p).is_absolute() for p in manifest.path)
    x, y = data.load_split(cfg, "train")
    assert x.shape == (18, cfg.image_size, cfg.image_size, 1) and x.dtype == np.uint8
    assert y.dtype == np.int64 and y.sum() == 8  # COVID = 1
    x3, _ = data.load_split(cfg, "val", channels=3, image_size=16)
    assert x3.shape == (7, 16, 16, 3) and (x3[..., 0] == x3[..., 2]).all()
    assert (cfg.run_dir / "data" / "arrays_16.npz").exists()
    # rerun with the same settings reuses; other settings refuse with a fix
    data.prepare(cfg, progress=False)
    other = tiny_cfg(tmp_path, root, split_seed=3)
    with pytest.raises(data.DataError, match="Fix: choose a new run_dir"):
        data.prepare(other, progress=False)


def test_later_notebooks_get_a_clear_message_without_notebook_01(tmp_path):
    cfg = config.resolve(profile="smoke", run_dir=str(tmp_path / "fresh"))
    with pytest.raises(FileNotFoundError, match="01_data_exploration"):
        data.load_split(cfg, "train")


@pytest.mark.realdata
@pytest.mark.skipif(not SAMPLE.is_dir(), reason="the shared real sample (../shared/data/covid19-radiography-sample) is not present in this checkout")
def test_real_sample_gives_the_paper_split_without_touching_it(tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in SAMPLE.rglob("*")}
    cfg = config.resolve(profile="paper", data_dir=str(SAMPLE), run_dir=str(tmp_path / "real"))
    info = data.prepare(cfg, progress=False)
    assert info["counts"] == {"COVID": {"train": 331, "val": 72}, "Normal": {"train": 601, "val": 120}}
    x, y = data.load_split(cfg, "val")
    assert x.shape == (192, 128, 128, 1) and int(y.sum()) == 72
    assert {p.name: p.stat().st_mtime_ns for p in SAMPLE.rglob("*")} == before
