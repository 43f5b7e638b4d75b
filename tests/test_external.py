"""An external test set: one class or both, pictures already in the run's split reported and left out."""

import shutil

import numpy as np
import pytest
from PIL import Image

from covidgan_utils import config, data, phantoms


@pytest.fixture
def prepared(tmp_path):
    """A smoke run directory prepared by notebook 01's function (phantoms)."""
    cfg = config.resolve(profile="smoke", run_dir=str(tmp_path / "run"))
    data.prepare(cfg, progress=False)
    return cfg


def test_an_external_folder_with_one_class_loads_and_overlaps_are_left_out(prepared, tmp_path):
    ext = tmp_path / "hospital-b"
    (ext / "covid").mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(4):  # new people, another scanner
        img = phantoms.make_phantom(rng, 64, covid=True, shift=phantoms.EXTERNAL_SHIFT)
        Image.fromarray(img).save(ext / "covid" / f"new-{i}.png")
    manifest = data.read_manifest(prepared)
    root = data.source_dir(prepared)
    train = manifest[(manifest.split == "train") & (manifest.label == "COVID")].iloc[0]
    val = manifest[(manifest.split == "val") & (manifest.label == "COVID")].iloc[0]
    shutil.copy(data.path_of(root, train["path"]), ext / "covid" / "copy-of-train.png")
    with Image.open(data.path_of(root, val["path"])) as im:  # the same picture, encoded another way
        im.save(ext / "covid" / "reencoded-val.png", compress_level=1)
    out = data.load_external(prepared, ext, progress=False)
    assert out["images"].shape == (4, prepared.image_size, prepared.image_size, 1)
    assert out["report"]["counts"] == {"Normal": 0, "COVID": 4} and set(out["labels"]) == {1}
    excluded = {e["path"]: e["also_in"] for e in out["report"]["overlap_excluded"]}
    assert excluded == {"covid/copy-of-train.png": "train", "covid/reencoded-val.png": "val"}


def test_an_external_folder_without_class_folders_is_named(prepared, tmp_path):
    (tmp_path / "empty" / "pneumonia").mkdir(parents=True)
    with pytest.raises(data.DataError, match="no class folder"):
        data.load_external(prepared, tmp_path / "empty", progress=False)


def test_the_demo_external_set_is_shifted_phantoms_with_both_classes(prepared):
    folder = phantoms.ensure_external_phantoms(prepared, {"COVID": 3, "Normal": 3})
    out = data.load_external(prepared, folder, progress=False)
    assert out["report"]["counts"] == {"Normal": 3, "COVID": 3} and not out["report"]["overlap_excluded"]
