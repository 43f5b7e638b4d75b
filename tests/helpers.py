"""Helpers shared by the test files (imported as ``from helpers import ...``; pytest puts tests/ on the path)."""

import numpy as np
import pandas as pd


def predictions_frame(conditions: dict, y, seeds=(0, 1), prefix="v"):
    """Prediction rows as notebook 05 writes them, for {condition: prob (n,) or (seeds, n)}: small for testing."""
    rows = []
    for name, prob in conditions.items():
        prob = np.broadcast_to(np.asarray(prob, dtype=float), (len(seeds), len(y)))
        for s, p in zip(seeds, prob):
            rows.append(
                pd.DataFrame(
                    {
                        "condition": name,
                        "seed": s,
                        "path": [f"{prefix}{i}" for i in range(len(y))],
                        "label": y,
                        "prob_covid": p,
                        "pred": (p >= 0.5).astype(int),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def run_notebook(number: str, out_dir, **parameters):
    """Execute notebook ``number`` with papermill as the pipeline does (parameters injected), into ``out_dir``."""
    from pathlib import Path

    import papermill as pm

    from covidgan_utils import NOTEBOOKS
    from covidgan_utils.pipeline import notebooks_dir

    book = Path(NOTEBOOKS[number]).name
    out = Path(out_dir) / book
    pm.execute_notebook(
        str(notebooks_dir() / book),
        str(out),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(notebooks_dir()),
        progress_bar=False,
        extra_arguments=["--log-level=ERROR"],
    )
    return out


def assert_same_json(a, b, path="", rel=1e-9, abs=1e-12):
    """Two JSON-like values are equal: same keys and order-sensitive lists, floats within a tolerance."""
    import pytest

    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(set(a) ^ set(b))} differ"
        for key in a:
            assert_same_json(a[key], b[key], f"{path}/{key}", rel, abs)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_json(x, y, f"{path}[{i}]", rel, abs)
    elif isinstance(a, float) or isinstance(b, float):
        assert b == pytest.approx(a, rel=rel, abs=abs), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
