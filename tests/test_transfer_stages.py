"""One path for notebook 05: the notebook and transfer.run_experiment call the same stages in the same order, write
the same results.json, and both stamp RUN/transfer's provenance."""

import json
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from test_transfer import one_thread, use_tiny_vgg16  # noqa: F401 (one_thread: autouse)

from covidgan_utils import config, data, provenance, synthesis, transfer

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_vgg16_transfer_learning.ipynb"
TIMINGS = {"seconds", "feature_seconds"}  # wall-clock times: the only fields that differ between two runs


def code_cells():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code"]


def test_notebook_05_calls_every_stage_once_in_order():
    source = "\n".join(c.source for c in code_cells())
    assert re.findall(r"\bexp\.(\w+)\(", source) == list(transfer.STAGES)
    # what ends up in results.json comes from the stages, never from the notebook's own calls
    for name in ("train_conditions", "predict_conditions", "extract_all", "pixel_baseline", "experiment_settings"):
        assert f"transfer.{name}(" not in source, name
    assert (
        "evaluation.summarize(" not in source and "write_results(" not in source and "provenance.stamp(" not in source
    )


def test_a_stage_needs_the_stages_before_it():
    exp = transfer.Experiment(None, device="cpu", progress=False)
    with pytest.raises(RuntimeError, match="needs 'load_data' first"):
        exp.summarize()
    assert exp.done == []


def same(a, b, where="results"):
    """a == b, floats within a tolerance, timing fields skipped."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) - TIMINGS == set(b) - TIMINGS, where
        for key in set(a) - TIMINGS:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6, abs=1e-9), where
    else:
        assert a == b, where


@pytest.fixture
def smoke_run(tmp_path, monkeypatch):
    """A smoke run on phantoms (notebook 01's function), synthetic images from a stand-in generator (notebook 04's
    function) and a tiny VGG-shaped network instead of VGG16; small for testing."""
    for name in ("COVIDGAN_PROFILE", "COVIDGAN_DATA_DIR", "COVIDGAN_RUN_DIR"):
        monkeypatch.delenv(name, raising=False)
    cfg = config.resolve(profile="smoke", run_dir=str(tmp_path / "run"), seeds=[0, 1])
    data.prepare(cfg, progress=False)
    real_x, real_y = data.load_split(cfg, "train", channels=1)

    def sample_fn(generator, labels, seed):  # noisy copies of real images of the asked class
        rng = np.random.default_rng(seed)
        picks = [rng.choice(np.flatnonzero(real_y == k)) for k in labels]
        noise = rng.integers(-20, 21, (len(labels), *real_x.shape[1:]))
        return np.clip(real_x[picks].astype(int) + noise, 0, 255).astype(np.uint8)

    plan = synthesis.plan(cfg.train_per_class, cfg.target_per_class)
    synthesis.generate(
        "torch", None, plan, synthesis.framework_dir(cfg.run_dir, "torch"), progress=False, sample_fn=sample_fn
    )
    use_tiny_vgg16(monkeypatch)
    return cfg


def run_notebook_05(cfg):
    """Notebook 05's code cells in order, with the run's parameters injected after the parameters cell (as papermill
    does); pictures drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace = {"display": lambda *args, **kwargs: None}
    for cell in code_cells():
        exec(compile(cell.source, f"notebook 05 cell {cell.id}", "exec"), namespace)
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update(profile="smoke", run_dir=str(cfg.run_dir), seeds=list(cfg.seeds))
        plt.close("all")
    return namespace


@pytest.mark.slow
def test_notebook_05_and_run_experiment_write_the_same_results_and_stamp(smoke_run):
    cfg = smoke_run
    out = cfg.path("transfer")
    ns = run_notebook_05(cfg)
    assert ns["exp"].done == list(transfer.STAGES)
    written = {name: json.loads((out / name).read_text()) for name in ("results.json", "summary.json")}
    predictions = pd.read_csv(out / "predictions.csv")
    assert {"real+torch", "real+copies", "synthetic-only:torch"} <= set(written["results.json"]["conditions"])
    stamp = provenance.check(out, cfg, "05_vgg16_transfer_learning")  # what notebook 06 does: no warning, no error
    assert stamp is not None and stamp["made_by"] == transfer.MADE_BY

    for name in ("results.json", "summary.json", "predictions.csv", "provenance.json"):
        (out / name).unlink()
    results = transfer.run_experiment(cfg, progress=False)
    same(written["results.json"], json.loads((out / "results.json").read_text()))
    same(written["results.json"], json.loads(json.dumps(results)))
    same(written["summary.json"], json.loads((out / "summary.json").read_text()))
    pd.testing.assert_frame_equal(predictions, pd.read_csv(out / "predictions.csv"), check_exact=False, rtol=1e-6)
    assert provenance.check(out, cfg, "05_vgg16_transfer_learning")["made_by"] == transfer.MADE_BY

    exp = ns["exp"]  # rerunning a stage drops what the later stages made: nothing stale is written
    exp.train_heads()
    assert exp.done == list(transfer.STAGES[: transfer.STAGES.index("train_heads") + 1])
    with pytest.raises(RuntimeError, match="needs 'predict' first"):
        exp.write()
