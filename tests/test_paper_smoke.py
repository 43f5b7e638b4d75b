"""The instructor's path on a CPU: the paper's settings end to end for two epochs (pytest -m paper_smoke)."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from covidgan_utils import config, pipeline

pytestmark = pytest.mark.paper_smoke


def test_paper_settings_run_end_to_end_on_128px_phantoms(tmp_path):
    weights = subprocess.run(
        [sys.executable, "-m", "covidgan_utils", "vgg16-file", str(tmp_path / "vgg16-random-init.pth")],
        capture_output=True, text=True, check=True, cwd=config.repo_root(),
    ).stdout.strip()
    run_dir = tmp_path / "run"
    state = pipeline.run("paper-smoke", run_dir=str(run_dir), notebooks="01,02,03,04,05", params={"vgg_weights": weights})
    assert all(v["status"] == "done" for v in state["notebooks"].values())
    for gan in ("torch_gan", "tf_gan"):
        history = pd.read_csv(run_dir / gan / "history.csv")
        assert history["epoch"].max() == 2, gan
    results = json.loads((run_dir / "transfer" / "results.json").read_text())
    assert results["vgg_weights"]["used"] == "file"
    assert results["conditions"]["real"]["n_val"] == 192
    seconds = {k: v["seconds"] for k, v in state["notebooks"].items()}
    print("paper-smoke seconds per notebook:", seconds)
