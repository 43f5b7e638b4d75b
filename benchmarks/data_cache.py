"""One epoch's data access: the project's uint8 cache vs decoding and resizing the image files.

Baseline: what a plain loop does every epoch (open each PNG, convert to gray, resize to 128,
scale to float). Project: load RUN/data/arrays_128.npz once per epoch and scale to float.
Uses the shared real sample when present, else phantoms written at 256 px.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._timing import median_time, result

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "covid19-radiography-sample"


def run(quick: bool = False) -> dict:
    from covidgan_utils import config, data

    with tempfile.TemporaryDirectory() as tmp:
        per_class = {"COVID": 60, "Normal": 60} if quick else {"COVID": 331, "Normal": 601}
        if SAMPLE.is_dir():
            source, label = SAMPLE, "shared real sample (224 px PNG)"
        else:
            from covidgan_utils.phantoms import generate_dataset

            source = generate_dataset(Path(tmp) / "phantoms", per_class=per_class, size=256, seed=0, progress=False)
            label = "phantoms (256 px PNG)"
        cfg = config.resolve(
            profile="paper",
            data_dir=str(source),
            run_dir=str(Path(tmp) / "run"),
            train_per_class=per_class,
            val_per_class={"COVID": 0, "Normal": 0},
        )
        data.prepare(cfg, progress=False)
        manifest = data.read_manifest(cfg)
        root = Path(data.require_prepared(cfg)["root"])
        paths = [root / p for p in manifest["path"]]

        def decode_epoch():
            return np.stack([data.load_image(p, 128) for p in paths]).astype(np.float32) / 255.0

        def cached_epoch():
            images, _ = data.load_split(cfg, "train", image_size=128)
            return images.astype(np.float32) / 255.0

        assert np.array_equal(decode_epoch()[..., None], cached_epoch())  # same pixels either way
        repeats = 3 if quick else 5
        base = median_time(decode_epoch, repeats=repeats)
        ours = median_time(cached_epoch, repeats=repeats)
    return result(
        "data_cache",
        round(len(paths) / ours, 1),
        "images/s",
        baseline=round(len(paths) / base, 1),
        ratio=round(base / ours, 1),
        target=5.0,
        images=len(paths),
        data=label,
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
