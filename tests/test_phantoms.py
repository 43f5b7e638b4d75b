"""Tests for the built-in phantom dataset (synthetic chest-X-ray-like images, not medical data)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidgan_utils import CLASSES, config, phantoms

ROOT = Path(__file__).resolve().parents[1]
TINY = {"COVID": 3, "Normal": 4}  # small for testing


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _small_set(n: int, size: int = 32, seed: int = 0):
    """n phantoms per class drawn in memory, as (images, labels) with COVID = 1."""
    images, labels = [], []
    for k, name in enumerate(CLASSES):
        for i in range(n):
            rng = np.random.default_rng(phantoms._image_seed(seed, name, i))
            images.append(phantoms.make_phantom(rng, size, covid=name == "COVID"))
            labels.append(k)
    return np.stack(images), np.array(labels)


def test_make_phantom_shape_dtype_and_determinism():
    a = phantoms.make_phantom(np.random.default_rng(7), 48, covid=True)
    b = phantoms.make_phantom(np.random.default_rng(7), 48, covid=True)
    c = phantoms.make_phantom(np.random.default_rng(8), 48, covid=True)
    assert a.shape == (48, 48) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.std() > 20  # a picture with structure, not a flat field
    with pytest.raises(ValueError, match="at least 16"):
        phantoms.make_phantom(np.random.default_rng(0), 8, covid=False)


def test_same_person_with_and_without_opacities():
    """The same seed gives the same anatomy; COVID only brightens inside the lungs, more with severity."""
    normal = phantoms.make_phantom(np.random.default_rng(3), 64, covid=False).astype(int)
    mild = phantoms.make_phantom(np.random.default_rng(3), 64, covid=True, severity=0.2).astype(int)
    severe = phantoms.make_phantom(np.random.default_rng(3), 64, covid=True, severity=1.0).astype(int)
    assert (mild - normal).sum() > 0
    assert (severe - normal).sum() > 2 * (mild - normal).sum()
    assert np.array_equal(normal[:8], severe[:8])  # above the lungs nothing changes


def test_layout_written(tmp_path):
    out = phantoms.generate_dataset(tmp_path / "ph", TINY, size=40, seed=1, progress=False)
    assert out == tmp_path / "ph"
    for name, n in TINY.items():
        names = sorted(p.name for p in (out / name).iterdir())
        assert names == sorted(f"{name}-{i}.png" for i in range(1, n + 1))
        for p in (out / name).iterdir():
            with Image.open(p) as im:
                assert im.format == "PNG" and im.mode == "L" and im.size == (40, 40)
    record = json.loads((out / "PHANTOMS.json").read_text())
    assert record["per_class"] == TINY and record["size"] == 40 and record["seed"] == 1
    assert "not medical data" in record["what"].lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ph"]  # no temporary folder left behind


def test_deterministic_for_a_seed_and_independent_of_counts(tmp_path):
    a = phantoms.generate_dataset(tmp_path / "a", TINY, size=32, seed=5, progress=False)
    b = phantoms.generate_dataset(tmp_path / "b", TINY, size=32, seed=5, progress=False, workers=2)
    c = phantoms.generate_dataset(tmp_path / "c", TINY, size=32, seed=6, progress=False)
    d = phantoms.generate_dataset(tmp_path / "d", {"COVID": 1, "Normal": 6}, size=32, seed=5, progress=False)
    fa, fb, fc, fd = _files(a), _files(b), _files(c), _files(d)
    assert fa == fb  # same bytes, one process or two
    assert all(fa[k] != fc[k] for k in fa if k.endswith(".png"))  # another seed: every image differs
    assert fd["COVID/COVID-1.png"] == fa["COVID/COVID-1.png"]  # image i is the same whatever the counts
    assert fd["Normal/Normal-4.png"] == fa["Normal/Normal-4.png"]
    assert len({v for k, v in fa.items() if k.endswith(".png")}) == sum(TINY.values())  # no duplicates


def test_reuses_an_identical_dataset(tmp_path):
    out = phantoms.generate_dataset(tmp_path / "ph", TINY, size=32, seed=2, progress=False)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = phantoms.generate_dataset(tmp_path / "ph", dict(TINY), size=32, seed=2, progress=False)
    assert again == out and {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_refuses_to_overwrite_a_different_dataset(tmp_path):
    out = phantoms.generate_dataset(tmp_path / "ph", TINY, size=32, seed=2, progress=False)
    before = _files(out)
    for kwargs in ({"seed": 3}, {"size": 48}, {"per_class": 5}):
        args = {"per_class": TINY, "size": 32, "seed": 2, **kwargs}
        with pytest.raises(FileExistsError, match="Choose another folder"):
            phantoms.generate_dataset(out, progress=False, **args)
    assert _files(out) == before  # untouched
    (out / "COVID" / "COVID-2.png").unlink()  # incomplete: no longer "exactly the requested dataset"
    with pytest.raises(FileExistsError):
        phantoms.generate_dataset(out, TINY, size=32, seed=2, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a phantom dataset"):
        phantoms.generate_dataset(other, TINY, size=32, progress=False)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert phantoms.generate_dataset(empty, TINY, size=32, progress=False) == empty  # an empty folder is fine
    assert len(list(empty.rglob("*.png"))) == sum(TINY.values())


def test_replace_stale_only_replaces_another_generator_version(tmp_path):
    out = phantoms.generate_dataset(tmp_path / "ph", TINY, size=32, seed=2, progress=False)
    record = json.loads((out / "PHANTOMS.json").read_text())
    (out / "PHANTOMS.json").write_text(json.dumps({**record, "version": -1}))
    with pytest.raises(FileExistsError):
        phantoms.generate_dataset(out, TINY, size=32, seed=2, progress=False)
    phantoms.generate_dataset(out, TINY, size=32, seed=2, progress=False, replace_stale=True)
    assert json.loads((out / "PHANTOMS.json").read_text())["version"] == phantoms.PHANTOM_VERSION
    with pytest.raises(FileExistsError):  # different settings are never replaced, stale or not
        phantoms.generate_dataset(out, TINY, size=32, seed=9, progress=False, replace_stale=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ph"]


def test_bad_counts_rejected(tmp_path):
    with pytest.raises(ValueError, match="Unknown class"):
        phantoms.generate_dataset(tmp_path / "x", {"COVID": 1, "Pneumonia": 1}, progress=False)
    with pytest.raises(ValueError, match="at least one image"):
        phantoms.generate_dataset(tmp_path / "x", 0, progress=False)
    assert not (tmp_path / "x").exists()


def test_ensure_phantoms_uses_the_profile(tmp_path, monkeypatch):
    cfg = config.resolve(
        profile="smoke",
        run_dir=str(tmp_path / "run"),
        phantom_per_class={"COVID": 2, "Normal": 3},
        phantom_size=32,
        phantom_seed=4,
    )
    monkeypatch.setattr(config, "phantom_dir", lambda c: tmp_path / "data" / "ph")
    out = phantoms.ensure_phantoms(cfg)
    assert out == tmp_path / "data" / "ph"
    record = json.loads((out / "PHANTOMS.json").read_text())
    assert record["per_class"] == {"COVID": 2, "Normal": 3} and record["size"] == 32 and record["seed"] == 4
    assert phantoms.ensure_phantoms(cfg) == out  # reused


def test_the_data_layer_reads_phantoms(tmp_path):
    from covidgan_utils import data

    out = phantoms.generate_dataset(tmp_path / "ph", TINY, size=40, progress=False)
    table, report = data.scan(out, progress=False)
    assert report["found"] == {"Normal": 4, "COVID": 3} and len(table) == 7
    assert not report["duplicates_removed"]


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "covidgan_utils", "phantoms", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_command_line(tmp_path):
    res = _cli(str(tmp_path / "a"), "--per-class", "2", "--size", "32", "--seed", "3", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "not medical data" in res.stdout
    assert sorted(p.name for p in (tmp_path / "a" / "COVID").iterdir()) == ["COVID-1.png", "COVID-2.png"]
    assert len(list((tmp_path / "a" / "Normal").iterdir())) == 2
    assert json.loads((tmp_path / "a" / "PHANTOMS.json").read_text())["seed"] == 3
    res = _cli(str(tmp_path / "b"), "--covid", "1", "--normal", "3", "--size", "32", "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "b" / "PHANTOMS.json").read_text())["per_class"] == {"COVID": 1, "Normal": 3}
    res = _cli(str(tmp_path / "a"), "--per-class", "2", "--size", "32", "--seed", "4", "--quiet")
    assert res.returncode == 1 and "Choose another folder" in res.stderr


def test_classes_learnable_but_not_trivially():
    """A linear classifier on 32x32 pixels of 60+60 phantoms: clearly above chance, clearly below perfect."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    images, labels = _small_set(60, size=64)
    x = images.reshape(len(images), 32, 2, 32, 2).mean(axis=(2, 4)).reshape(len(images), -1) / 255
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    accuracy = cross_val_score(clf, x, labels, cv=5).mean()
    assert 0.6 < accuracy < 0.99, accuracy


def test_covid_brighter_in_lower_lung_periphery():
    images, labels = _small_set(40, size=32, seed=1)
    mean = {k: images[labels == k].astype(float).mean(axis=0) for k in (0, 1)}
    diff = mean[1] - mean[0]  # COVID minus Normal, gray levels
    lower_periphery = np.r_[diff[16:24, 4:10].ravel(), diff[16:24, 22:28].ravel()].mean()
    upper_middle = diff[4:10, 12:20].mean()
    assert lower_periphery > 15 and lower_periphery > upper_middle + 10, (lower_periphery, upper_middle)


def test_an_acquisition_shift_draws_the_same_people_as_another_scanner(tmp_path):
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    home = phantoms.make_phantom(rng(), 64, covid=True)
    assert np.array_equal(home, phantoms.make_phantom(rng(), 64, covid=True, shift=None))
    away = phantoms.make_phantom(rng(), 64, covid=True, shift={"brightness": 0.1})
    assert away.astype(float).mean() > home.astype(float).mean() + 10  # same person, brighter
    assert abs(np.corrcoef(home.ravel(), away.ravel())[0, 1]) > 0.9
    with pytest.raises(ValueError, match="Unknown acquisition shift"):
        phantoms.make_phantom(rng(), 64, covid=False, shift={"gamma": 2})
    out = phantoms.generate_dataset(tmp_path / "ext", {"COVID": 2, "Normal": 2}, 32, seed=1, progress=False,
                                    shift=phantoms.EXTERNAL_SHIFT)
    assert json.loads((out / phantoms.MANIFEST).read_text())["shift"] == phantoms.EXTERNAL_SHIFT
    with pytest.raises(FileExistsError):  # the unshifted set is another dataset
        phantoms.generate_dataset(out, {"COVID": 2, "Normal": 2}, 32, seed=1, progress=False)


def test_the_default_drawing_is_bitwise_unchanged():
    """The sites (a study) sit on top of the drawing: the default phantoms keep every bit (digest of version 3)."""
    import hashlib

    h = hashlib.sha256()
    for name in ("COVID", "Normal"):
        for i in range(6):
            for size in (32, 64, 128):
                rng = np.random.default_rng(phantoms._image_seed(0, name, i))
                h.update(phantoms.make_phantom(rng, size, covid=name == "COVID").tobytes())
    rng = np.random.default_rng(phantoms._image_seed(1000, "COVID", 3))
    h.update(phantoms.make_phantom(rng, 64, True, shift=phantoms.EXTERNAL_SHIFT).tobytes())
    assert h.hexdigest() == "7923eafd26f9572dd3be728b4e77d0a4322bc17004c57f86646cefdeeafe059e"


def test_a_site_draws_the_same_people_with_its_marker_at_its_rates():
    plain = phantoms.draw_set({"COVID": 60, "Normal": 60}, 32, 0)
    home = phantoms.draw_set({"COVID": 60, "Normal": 60}, 32, 0, site="shortcut")
    assert np.array_equal(home["unmarked"], plain["images"])  # the same people, the letter on top
    assert np.array_equal(home["images"][~home["marker"]], plain["images"][~home["marker"]])
    rate = {k: home["marker"][home["labels"] == k].mean() for k in (0, 1)}
    assert rate[1] > 0.6 and rate[0] < 0.3  # COVID 0.8, Normal 0.1 (60 images each)
    bright = phantoms.draw_set({"COVID": 4, "Normal": 4}, 32, 0, site="shortcut-bright")
    covid = bright["labels"] == 1
    first = {k: plain["images"][plain["labels"] == k][:4] for k in (0, 1)}  # the first 4 of each class
    assert (bright["unmarked"][covid].astype(int) - first[1].astype(int)).mean() > 5
    assert np.array_equal(bright["unmarked"][~covid], first[0])  # normal images: no offset


@pytest.mark.parametrize("size", [32, 64])
def test_the_marker_detector_finds_every_drawn_marker_and_nothing_else(size):
    for site, seed in (("shortcut", 0), ("clean", 3), ("external", 1000)):
        s = phantoms.draw_set({"COVID": 40, "Normal": 40}, size, seed, site=site)
        assert np.array_equal(phantoms.detect_marker(s["images"]), s["marker"]), site
        assert not phantoms.detect_marker(s["unmarked"]).any()
        assert phantoms.detect_marker(phantoms.stamp_marker(s["unmarked"][..., None])).all()  # (N, H, W, 1) too
    rates = phantoms.marker_rates(s["images"], s["labels"])
    assert rates["n"] == {"Normal": 40, "COVID": 40}
    assert rates["rate"]["COVID"] == pytest.approx(s["marker"][s["labels"] == 1].mean())


def test_a_site_dataset_on_disk_is_the_drawing_in_memory(tmp_path):
    out = phantoms.generate_dataset(tmp_path / "home", TINY, size=32, seed=2, progress=False, site="shortcut")
    record = json.loads((out / phantoms.MANIFEST).read_text())
    assert record["site"]["name"] == "shortcut" and record["site"]["marker"]["COVID"] == 0.8
    drawn = phantoms.draw_set(TINY, 32, 2, site="shortcut")
    k = 0
    for c in CLASSES:
        for i in range(TINY[c]):
            with Image.open(out / c / f"{c}-{i + 1}.png") as im:
                assert np.array_equal(np.asarray(im), drawn["images"][k])
            k += 1
    with pytest.raises(FileExistsError):  # the site-less dataset is another dataset
        phantoms.generate_dataset(out, TINY, size=32, seed=2, progress=False)
    ext = phantoms.generate_dataset(tmp_path / "ext", TINY, size=32, seed=2, progress=False, site="external")
    assert json.loads((ext / phantoms.MANIFEST).read_text())["shift"] == phantoms.EXTERNAL_SHIFT
    with pytest.raises(ValueError, match="once"):
        phantoms.generate_dataset(tmp_path / "x", TINY, 32, progress=False, site="external", shift={"blur": 2.0})
    with pytest.raises(ValueError, match="Unknown site"):
        phantoms.generate_dataset(tmp_path / "x", TINY, 32, progress=False, site="hospital")
    with pytest.raises(ValueError, match="marker"):
        phantoms.check_site({"marker": {"COVID": 1.5}})
    assert not (tmp_path / "x").exists()


def test_a_dataset_drawn_meanwhile_by_a_run_beside_this_one_is_kept(tmp_path, monkeypatch):
    """Two runs on a fresh clone draw the same phantom set at once: the later one finds it done, not an error."""
    import shutil

    from covidgan_utils import phantoms

    counts = {"COVID": 3, "Normal": 2}
    ref = phantoms.generate_dataset(tmp_path / "ref", counts, 32, seed=4, progress=False)
    out = tmp_path / "shared"
    real_write, done = phantoms._write_images, []

    def write_and_let_the_other_run_finish(job):
        if not done:
            shutil.copytree(ref, out)  # the other run's rename lands while this one draws
            done.append(True)
        return real_write(job)

    monkeypatch.setattr(phantoms, "_write_images", write_and_let_the_other_run_finish)
    assert phantoms.generate_dataset(out, counts, 32, seed=4, progress=False) == out
    assert done and phantoms._holds(out, phantoms._record(counts, 32, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref", "shared"]  # no temporary folder left
    for a in sorted(ref.rglob("*.png")):
        assert (out / a.relative_to(ref)).read_bytes() == a.read_bytes()
