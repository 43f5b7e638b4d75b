"""Find chest X-rays in the COVID-19 Radiography Database layout, split them, cache them as uint8.

Data flow (notebook 01 writes, every later notebook reads):
    data dir (read only)  ->  RUN/data/manifest.csv      path,label,split,sha256 (fixed, first), pixel_sha256
                              RUN/data/details.csv       the manifest plus what was seen in each file
                              RUN/data/info.json         where the data came from, split settings, report
                              RUN/data/arrays_<size>.npz images uint8 (N, size, size, 1) in manifest order

One module per job, every name importable from here (``data.prepare``, ``from covidgan_utils.data import scan``):
- ``find``: the class folders and image files of a data folder; file names as manifest text (%XX escapes);
- ``decode``: reading one file defensively (regular files only, size and pixel caps, PNG/JPEG by content, one
  frame, EXIF orientation) and converting it to gray uint8;
- ``dedupe``: checking and hashing every image (file bytes, decoded pixels, a perceptual hash): copies kept once,
  near duplicates reported;
- ``splitting``: the seeded stratified split and its counts;
- ``stage``: notebook 01's stage (manifest, info, cache) and loading it in the later notebooks.
"""

from .decode import (
    DECODER_VERSION,
    IMAGE_FORMATS,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    load_image,
    to_gray_uint8,
)
from .dedupe import (
    DETAIL_COLUMNS,
    MIN_SIZE,
    NEAR_DUPLICATE_BITS,
    inspect_image,
    near_duplicate_pairs,
    perceptual_hash,
    pixel_sha256,
    scan,
)
from .errors import DataError
from .find import IGNORED_FOLDERS, IMAGE_SUFFIXES, RUN_MARKER, Inventory, find_images, path_of, relative_name
from .splitting import MANIFEST_COLUMNS, class_counts, split, split_counts
from .stage import (
    NOTEBOOK_01,
    build_cache,
    ensure_cache,
    load_external,
    load_independent,
    load_split,
    prepare,
    read_manifest,
    require_prepared,
    source_dir,
)

__all__ = [
    "DECODER_VERSION", "DETAIL_COLUMNS", "IGNORED_FOLDERS", "IMAGE_FORMATS", "IMAGE_SUFFIXES", "MANIFEST_COLUMNS",
    "MAX_FILE_BYTES", "MAX_PIXELS", "MIN_SIZE", "NEAR_DUPLICATE_BITS", "NOTEBOOK_01", "RUN_MARKER",
    "DataError", "Inventory", "build_cache", "class_counts", "ensure_cache", "find_images", "inspect_image",
    "load_external", "load_image", "load_independent", "load_split", "near_duplicate_pairs", "path_of", "perceptual_hash",
    "pixel_sha256", "prepare", "read_manifest", "relative_name", "require_prepared", "scan", "source_dir", "split",
    "split_counts", "to_gray_uint8",
]  # fmt: skip
