"""Image files a data folder should not hold, and how reading them stays safe and clear.

Tried here: decompression-bomb PNGs, a file over the size cap, links to a device, to a folder and to
nothing, a named pipe, a GIF / multi-frame TIFF / APNG named .png, an EXIF-rotated JPEG, file names that
are not UTF-8 (and names with %, comma, quote, newline), the same picture re-encoded (in one class, in
both classes), a near duplicate, a run directory inside the data folder, a data stage interrupted half
way, and caches made by another decoder version.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidgan_utils import config, data


# ----------------------------------------------------------------------------------------- helpers
def _noise(seed: int, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kwargs)
    return path


def _dataset(root: Path, n_covid: int = 10, n_normal: int = 12) -> Path:
    """Distinct random pictures in COVID/ and Normal/ (seeds 0.. and 100..)."""
    for name, n, first in (("COVID", n_covid, 0), ("Normal", n_normal, 100)):
        for i in range(n):
            _save(root / name / f"{name}-{i}.png", _noise(first + i), format="PNG")
    return root


def _cfg(tmp_path: Path, root: Path, covid: tuple[int, int], normal: tuple[int, int], name: str = "run", **settings):
    """A smoke config whose split takes (train, val) images per class."""
    return config.resolve(
        profile="smoke", data_dir=str(root), run_dir=str(tmp_path / name),
        train_per_class={"COVID": covid[0], "Normal": normal[0]},
        val_per_class={"COVID": covid[1], "Normal": normal[1]}, **settings,
    )


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG of a few hundred bytes whose header claims width x height gray pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096, 9)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _problems(err) -> dict:
    return dict(err.value.problems)


# ----------------------------------------------------------------------------------------- bombs, size
def test_decompression_bombs_are_reasons_naming_the_file_and_can_be_skipped(tmp_path):
    root = _dataset(tmp_path / "d")
    bombs = {
        "COVID/bomb-error.png": (40_000, 40_000),  # past twice Pillow's limit: DecompressionBombError
        "COVID/bomb-warning.png": (10_000, 10_000),  # past Pillow's limit: its warning is an error here
        "Normal/too-many.png": (8_500, 8_500),  # under Pillow's limit, over MAX_PIXELS
    }
    for name, (w, h) in bombs.items():
        _png_claiming(root / name, w, h)
        assert (root / name).stat().st_size < 2000
    filters_before = list(__import__("warnings").filters)
    with pytest.raises(data.DataError) as err:
        data.scan(root, progress=False)
    problems = _problems(err)
    assert set(problems) == set(bombs)
    for name in bombs:
        assert "too many pixels" in problems[name] and "decompression bomb" in problems[name]
        assert f"  - {name}: has too many pixels" in str(err.value)
    assert "skip_unreadable" in str(err.value)
    assert list(__import__("warnings").filters) == filters_before  # the error filter stays local

    table, report = data.scan(root, skip_unreadable=True, progress=False)
    assert {s["path"] for s in report["skipped_unreadable"]} == set(bombs)
    assert not set(table["path"]) & set(bombs) and len(table) == 22

    with pytest.raises(data.DataError, match="bomb-error.png has too many pixels"):
        data.load_image(root / "COVID" / "bomb-error.png", 32)

    cfg = _cfg(tmp_path, root, (7, 3), (8, 4), skip_unreadable=True)
    info = data.prepare(cfg, progress=False)
    assert len(info["report"]["skipped_unreadable"]) == 3


def test_a_file_over_the_size_cap_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "COVID" / "huge.png"
    big.parent.mkdir(parents=True)
    with open(big, "wb") as fh:  # sparse: takes no disk space
        fh.truncate(data.MAX_FILE_BYTES + 1)
    facts, reason = data.inspect_image(big)
    assert facts is None and "larger than 64 MB" in reason


# ----------------------------------------------------------------------------------------- special files
@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="needs POSIX FIFOs and /dev/zero")
def test_devices_pipes_folders_and_broken_links_are_refused_without_hanging(tmp_path):
    root = _dataset(tmp_path / "d")
    outside = _save(tmp_path / "elsewhere" / "real.png", _noise(999), format="PNG")
    os.symlink("/dev/zero", root / "COVID" / "zero.png")
    os.mkfifo(root / "Normal" / "pipe.png")
    (tmp_path / "a-folder").mkdir()
    os.symlink(tmp_path / "a-folder", root / "COVID" / "folder.png")
    os.symlink(tmp_path / "missing.png", root / "Normal" / "gone.png")
    os.symlink(outside, root / "Normal" / "linked.png")  # a link to a regular file is fine

    outcome = {}

    def work():
        try:
            outcome["result"] = data.scan(root, progress=False)
        except Exception as exc:  # handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():  # release a reader blocked on the pipe, then fail
        fd = os.open(root / "Normal" / "pipe.png", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("scan blocked on a named pipe")
    err = outcome.get("error")
    assert isinstance(err, data.DataError), outcome
    problems = dict(err.problems)
    assert "character device" in problems["COVID/zero.png"] and "not a regular file" in problems["COVID/zero.png"]
    assert "named pipe" in problems["Normal/pipe.png"]
    assert "a folder" in problems["COVID/folder.png"]
    assert "does not exist" in problems["Normal/gone.png"]
    assert "Normal/linked.png" not in problems and len(problems) == 4

    table, report = data.scan(root, skip_unreadable=True, progress=False)
    assert "Normal/linked.png" in set(table["path"]) and len(report["skipped_unreadable"]) == 4


# ----------------------------------------------------------------------------------------- formats, frames
def test_format_is_read_from_the_content_and_only_single_pictures_are_used(tmp_path):
    root = _dataset(tmp_path / "d")
    frames = [Image.fromarray(_noise(500 + k)) for k in range(3)]
    frames[0].save(root / "COVID" / "animated.png", format="GIF", save_all=True, append_images=frames[1:2])
    frames[0].save(root / "COVID" / "still-gif.png", format="GIF")
    frames[0].save(root / "Normal" / "pages.png", format="TIFF", save_all=True, append_images=frames[1:])
    frames[1].save(root / "Normal" / "apng.png", format="PNG", save_all=True, append_images=frames[2:], duration=100)
    frames[2].save(root / "Normal" / "jpeg-inside.png", format="JPEG", quality=95)  # a JPEG is fine by any name
    with pytest.raises(data.DataError) as err:
        data.scan(root, progress=False)
    problems = _problems(err)
    assert set(problems) == {"COVID/animated.png", "COVID/still-gif.png", "Normal/pages.png", "Normal/apng.png"}
    assert "GIF image with 2 frames, not PNG or JPEG" in problems["COVID/animated.png"]
    assert "GIF image, not PNG or JPEG" in problems["COVID/still-gif.png"]
    assert "TIFF image with 3 frames" in problems["Normal/pages.png"]
    assert "holds 2 frames" in problems["Normal/apng.png"]
    table, _ = data.scan(root, skip_unreadable=True, progress=False)
    row = table.set_index("path").loc["Normal/jpeg-inside.png"]
    assert row["format"] == "JPEG"


# ----------------------------------------------------------------------------------------- EXIF orientation
def test_exif_orientation_is_applied_when_inspecting_and_caching(tmp_path):
    root = _dataset(tmp_path / "d")
    raw = np.tile((np.arange(64) * 4).astype(np.uint8), (40, 1))  # 64 wide, 40 high, dark left to bright right
    raw[:8] = 255  # and a bright top band
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(root / "COVID" / "sideways.jpg", raw, format="JPEG", quality=95, exif=exif.tobytes())

    facts, reason = data.inspect_image(path)
    assert reason is None
    assert (facts["width"], facts["height"], facts["orientation"]) == (40, 64, 6)

    with Image.open(path) as img:  # the stored pixels, without the orientation
        stored = np.asarray(img.convert("L"))
    assert stored.shape == (40, 64)
    upright = np.rot90(stored, k=-1)  # clockwise
    size = 32

    def resized(a):
        return np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((size, size), Image.Resampling.BILINEAR)).astype(float)

    loaded = data.load_image(path, size).astype(float)
    assert np.abs(loaded - resized(upright)).mean() < 2.0
    assert np.abs(loaded - resized(stored)).mean() > 30.0  # used sideways it would look very different

    cfg = _cfg(tmp_path, root, (8, 3), (8, 4))
    data.prepare(cfg, progress=False)
    manifest = data.read_manifest(cfg)
    x, _ = data.load_split(cfg, "all", image_size=size)
    row = int(np.flatnonzero(manifest["path"].to_numpy() == "COVID/sideways.jpg")[0])
    assert np.abs(x[row, ..., 0].astype(float) - loaded).max() <= 1.0


# ----------------------------------------------------------------------------------------- file names
@pytest.mark.skipif(sys.platform == "win32", reason="file names as bytes are POSIX")
def test_any_file_name_survives_the_manifest_round_trip(tmp_path):
    root = _dataset(tmp_path / "d", n_covid=6, n_normal=8)
    covid = os.fsencode(str(root / "COVID"))
    odd = {
        b"\xff\xfe-latin1-\xe9.png": "COVID/%FF%FE-latin1-%E9.png",
        "café 100%.png".encode(): "COVID/café 100%25.png",
        b'comma, "quote".png': 'COVID/comma, "quote".png',
        b"new\nline.png": "COVID/new%0Aline.png",
    }
    for k, name in enumerate(odd):
        try:
            with open(os.path.join(covid, name), "wb") as fh:
                Image.fromarray(_noise(700 + k)).save(fh, format="PNG")
        except (OSError, UnicodeError):
            pytest.skip("this file system does not accept such names")
    cfg = _cfg(tmp_path, root, (7, 3), (6, 2))  # every image is used
    info = data.prepare(cfg, progress=False)
    manifest = data.read_manifest(cfg)
    assert set(odd.values()) <= set(manifest["path"])
    assert "COVID/COVID-1.png" in set(manifest["path"])  # ordinary names stay as they are
    for name, shown in odd.items():
        path = data.path_of(info["root"], shown)
        assert path.is_file() and os.fsencode(path.name) == name
        assert data.relative_name(path, info["root"]) == shown
    with open(cfg.path("data", "manifest.csv"), encoding="utf-8", newline="") as fh:  # strict UTF-8 text
        assert fh.read().count("\n") == len(manifest) + 1  # a name's newline does not break a row
    json.loads(cfg.path("data", "info.json").read_text(encoding="utf-8"))
    x, y = data.load_split(cfg, "all")
    assert x.shape[0] == len(manifest) == 18


# ----------------------------------------------------------------------------------------- duplicates
def test_the_same_picture_encoded_twice_is_one_picture(tmp_path):
    root = _dataset(tmp_path / "d")
    same = _noise(300)
    a = _save(root / "COVID" / "same-a.png", same, format="PNG", compress_level=0)
    b = _save(root / "COVID" / "same-b.png", same, format="PNG", compress_level=9)
    _save(root / "COVID" / "same-16bit.png", same.astype(np.uint16) * 257, format="PNG")
    both = _noise(301)
    _save(root / "Normal" / "both-normal.png", both, format="PNG", compress_level=1)
    _save(root / "COVID" / "both-covid.png", np.stack([both] * 3, axis=-1), format="PNG")  # as RGB
    assert a.read_bytes() != b.read_bytes()

    table, report = data.scan(root, progress=False)
    kept = "COVID/same-16bit.png"  # the first of the copies in path order
    assert report["duplicates_removed"] == ["COVID/same-a.png", "COVID/same-b.png"]
    assert report["duplicate_of"] == {"COVID/same-a.png": kept, "COVID/same-b.png": kept}
    assert sorted(report["conflicting_labels_removed"]) == ["COVID/both-covid.png", "Normal/both-normal.png"]
    assert table["pixel_sha256"].is_unique and table["sha256"].is_unique
    assert len(table) == 23  # 22 distinct pictures + one copy of the same picture

    cfg = _cfg(tmp_path, root, (8, 3), (8, 4))  # all 11 COVID and 12 Normal pictures
    data.prepare(cfg, progress=False)
    manifest = data.read_manifest(cfg)
    assert list(manifest.columns) == data.MANIFEST_COLUMNS
    train, val = (set(manifest.loc[manifest.split == s, "pixel_sha256"]) for s in ("train", "val"))
    assert not train & val and len(train | val) == len(manifest) == 23
    assert manifest["sha256"].is_unique


def test_a_near_duplicate_is_reported_not_removed(tmp_path):
    root = _dataset(tmp_path / "d")
    edited = _noise(5)  # COVID-5.png with one pixel changed
    edited[20, 20] = (int(edited[20, 20]) + 40) % 256
    _save(root / "Normal" / "edited.png", edited, format="PNG")
    table, report = data.scan(root, progress=False)
    assert {"COVID/COVID-5.png", "Normal/edited.png"} <= set(table["path"])
    assert len(report["near_duplicates"]) == 1
    first, second, bits = report["near_duplicates"][0]
    assert {first, second} == {"COVID/COVID-5.png", "Normal/edited.png"}
    assert 0 <= bits <= report["near_duplicate_bits"] == data.NEAR_DUPLICATE_BITS

    cfg = _cfg(tmp_path, root, (7, 3), (9, 4))
    info = data.prepare(cfg, progress=False)
    manifest = data.read_manifest(cfg).set_index("path")["split"]
    across = info["report"]["near_duplicates_across_split"]
    assert across == ([[first, second, bits]] if manifest[first] != manifest[second] else [])


def test_near_duplicate_pairs_match_a_plain_count_of_differing_bits():
    rng = np.random.default_rng(3)
    hashes = [rng.bytes(32) for _ in range(300)]
    hashes[200] = bytes([hashes[7][0] ^ 0b1011]) + hashes[7][1:]  # 3 bits from 7
    hashes[250] = hashes[9]  # 0 bits from 9
    found = data.near_duplicate_pairs([h.hex() for h in hashes], max_bits=20)
    bits = np.unpackbits(np.frombuffer(b"".join(hashes), np.uint8)).reshape(300, -1)
    expected = [
        (i, j, int((bits[i] != bits[j]).sum())) for i in range(300) for j in range(i + 1, 300) if (bits[i] != bits[j]).sum() <= 20
    ]
    assert sorted(found) == expected == [(7, 200, 3), (9, 250, 0)]


# ----------------------------------------------------------------------------------------- run dirs in data
def test_a_run_directory_inside_the_data_folder_is_never_scanned(tmp_path):
    root = _dataset(tmp_path / "d" / "archive")
    inner = root / "COVID" / "runs" / "demo"
    _save(inner / "synthetic" / "torch" / "COVID" / "0.png", _noise(900), format="PNG")
    (inner / data.RUN_MARKER).write_text("{}")
    beside = tmp_path / "d" / "my-run"  # beside the wrapping folder: the root is still found
    _save(beside / "COVID" / "0.png", _noise(901), format="PNG")
    (beside / data.RUN_MARKER).write_text("{}")
    inv = data.find_images(tmp_path / "d")
    assert inv.root == root
    assert "COVID/runs/demo" in inv.ignored_folders
    assert not any("runs" in p.parts for p, _ in inv.files) and len(inv.files) == 22


# ----------------------------------------------------------------------------------------- stage, cache
def test_a_failure_half_way_leaves_no_data_stage_and_a_leftover_is_rebuilt(tmp_path, monkeypatch):
    root = _dataset(tmp_path / "d")
    cfg = _cfg(tmp_path, root, (7, 3), (8, 4))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(data.stage, "write_json", disk_full)  # prepare writes through it
        with pytest.raises(OSError):
            data.prepare(cfg, progress=False)
    left = sorted(p.name for p in cfg.path("data").iterdir()) if cfg.path("data").exists() else []
    assert left == []  # no cache, details, info or manifest

    cfg.path("data").mkdir(parents=True, exist_ok=True)  # what a killed run could leave: info without manifest
    cfg.path("data", "info.json").write_text(json.dumps({"settings": {"profile": "other"}}))
    np.savez(cfg.path("data", f"arrays_{cfg.image_size}.npz"), images=np.zeros((1, 2, 2, 1), np.uint8))
    info = data.prepare(cfg, progress=False)
    assert info["decoder_version"] == data.DECODER_VERSION
    x, _ = data.load_split(cfg, "all")
    assert x.shape[0] == 22 and x.std() > 10


def test_a_cache_from_another_decoder_version_is_rebuilt_never_reused(tmp_path):
    root = _dataset(tmp_path / "d")
    cfg = _cfg(tmp_path, root, (7, 3), (8, 4))
    info = data.prepare(cfg, progress=False)
    assert info["decoder_version"] == data.DECODER_VERSION
    cache = cfg.path("data", f"arrays_{cfg.image_size}.npz")
    with np.load(cache) as z:
        good = z["images"].copy()
        assert int(z["decoder_version"]) == data.DECODER_VERSION
        sha = z["sha256"].copy()
    for extra in ({}, {"decoder_version": np.int64(data.DECODER_VERSION - 1)}):  # unmarked, or another version
        np.savez(cache, images=np.zeros_like(good), sha256=sha, **extra)
        x, _ = data.load_split(cfg, "all")
        np.testing.assert_array_equal(x, good)  # uint8 pixels, decoded again
        with np.load(cache) as z:
            assert int(z["decoder_version"]) == data.DECODER_VERSION

    # a data stage recorded with an older decoder: read again; the same split is kept and marked
    stage = json.loads(cfg.path("data", "info.json").read_text())
    stage["decoder_version"] = 1
    cfg.path("data", "info.json").write_text(json.dumps(stage))
    before = data.read_manifest(cfg)
    again = data.prepare(cfg, progress=False)
    assert again["decoder_version"] == data.DECODER_VERSION
    assert data.read_manifest(cfg).equals(before)

    # ... but when the new reading gives another split, it stops with a fix
    stage["decoder_version"] = 1
    cfg.path("data", "info.json").write_text(json.dumps(stage))
    before.iloc[1:].to_csv(cfg.path("data", "manifest.csv"), index=False)
    with pytest.raises(data.DataError, match="another version of the image reader.*Fix: choose a new run_dir"):
        data.prepare(cfg, progress=False)


def test_a_stale_cache_without_its_source_stops_with_a_fix(tmp_path):
    import pandas as pd

    cfg = config.resolve(profile="smoke", run_dir=str(tmp_path / "hand"))
    cfg.path("data").mkdir(parents=True)
    pd.DataFrame({"path": ["COVID/a.png"], "label": ["COVID"], "split": ["train"], "sha256": ["x"]}).to_csv(
        cfg.path("data", "manifest.csv"), index=False
    )
    cfg.path("data", "info.json").write_text(json.dumps({"phantoms": True}))
    np.savez(cfg.path("data", f"arrays_{cfg.image_size}.npz"), images=np.zeros((1, cfg.image_size, cfg.image_size, 1), np.uint8), sha256=np.array(["x"]))
    with pytest.raises(data.DataError, match="Fix: rerun notebooks/01_data_exploration.ipynb"):
        data.load_split(cfg, "train")

