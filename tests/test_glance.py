"""Results at a glance: the report's facts beside a run's numbers, read from a results.json made by summarize()."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from covidgan_utils import evaluation, glance


def predictions(conditions: dict, n_covid=72, n_normal=120, seeds=(0, 1)):
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(n_covid, int), np.zeros(n_normal, int)]
    base = 1.2 * (2 * y - 1) + rng.normal(0, 1, len(y))
    rows = []
    for name, shift in conditions.items():
        p = expit(base + shift)
        for s in seeds:
            rows.append(pd.DataFrame({"condition": name, "seed": s, "path": [f"v{i}" for i in range(len(y))],
                                      "label": y, "prob_covid": p, "pred": (p >= 0.5).astype(int)}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def results():
    # the same ranking everywhere; real+torch only moves the threshold towards COVID
    preds = predictions({"real": -1.0, "real+classweight": 0.0, "real+copies": 0.0, "real+torch": 0.0, "real+tf": -1.0})
    out = evaluation.summarize(preds, train_info={"real": {"COVID": 331, "Normal": 601}}, settings={"gan_seeds": [0]})
    out.update({"data": "phantoms", "vgg_weights": "random", "epochs": 20, "seeds": [0, 1], "image_size": 64})
    return out


def test_rows_hold_the_report_and_the_run(results):
    table = glance.table(results, epochs={"torch": 40, "tf": 20})
    assert list(table.columns) == ["the report", "this run"]
    assert table.loc["accuracy, real [95% interval]", "the report"] == "0.958"
    assert table.loc["accuracy, real+tf [95% interval]", "the report"] == "0.980"
    real = results["conditions"]["real"]
    assert table.loc["accuracy, real [95% interval]", "this run"].startswith(f"{real['accuracy']:.3f} [")
    assert table.loc["ROC AUC, real+torch [95% interval]", "the report"] == glance.NOT_REPORTED
    assert table.loc["GAN epochs (PyTorch / TensorFlow)", "this run"] == "40 / 20"
    assert table.loc["VGG16 weights", "this run"] == "random (nothing transferred)"
    assert table.loc["validation images", "this run"] == "192 (72 COVID / 120 Normal)"


def test_reading_row_is_the_verdict_not_the_accuracy_gain(results):
    conds = results["conditions"]
    assert conds["real+torch"]["accuracy"] != pytest.approx(conds["real"]["accuracy"], abs=1e-3)
    table = glance.table(results)
    assert table.loc["reading, real+torch", "this run"] == evaluation.verdict(results, "real+torch")["kind"]
    assert table.loc["reading, real+torch", "this run"] != "better classifier"  # same ranking: AUC did not move
    assert "no test" in table.loc["reading, real+torch", "the report"]


def test_comparable_says_why_not(results):
    reasons = glance.comparable(results)
    assert any("phantoms" in r for r in reasons) and any("random weights" in r for r in reasons)
    real_run = dict(results, data="data/covid19", vgg_weights="imagenet")
    assert glance.comparable(real_run) == [
        "Same data kind, weights and validation design as the report: the numbers are comparable."]
    small = dict(real_run, n_val_per_class={"COVID": 8, "Normal": 10})
    assert glance.comparable(small) == ["The validation set is 18 (8 COVID / 10 Normal), not the report's 72 + 120."]
