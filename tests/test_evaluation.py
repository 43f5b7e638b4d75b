"""Evaluation: metrics, Wilson/bootstrap intervals, exact McNemar, the results.json summary (known small arrays)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers import predictions_frame

from covidgan_utils import evaluation

Z = 1.959963984540054  # 97.5% normal quantile


def wilson_by_hand(k, n):
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return centre - half, centre + half


def test_perfect_predictions():
    y = np.array([0, 0, 0, 1, 1])
    m = evaluation.metrics(y, [0.1, 0.2, 0.3, 0.9, 0.8])
    assert [m[k] for k in ("accuracy", "sensitivity", "specificity", "roc_auc")] == pytest.approx([1, 1, 1, 1])
    assert m["confusion_matrix"] == [[3, 0], [0, 2]]
    assert m["accuracy_ci"][1] == pytest.approx(1.0)
    assert m["accuracy_ci"][0] == pytest.approx(5 / (5 + Z**2))  # Wilson lower bound when all are right


def test_metrics_on_known_arrays():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    prob = np.array([0.9, 0.6, 0.4, 0.7, 0.2, 0.1, 0.3, 0.45])
    m = evaluation.metrics(y, prob)
    # preds 1 1 0 1 0 0 0 0: TP 2, FN 1, FP 1, TN 4
    assert m["confusion_matrix"] == [[4, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(4 / 5)
    # AUC: of the 15 (COVID, Normal) pairs, COVID scores higher in 5 + 4 + 3 = 12
    assert m["roc_auc"] == pytest.approx(12 / 15)
    assert m["accuracy_ci"] == pytest.approx(list(wilson_by_hand(6, 8)))


def test_wilson_interval_for_the_report_numbers():
    low, high = evaluation.wilson_ci(184, 192)  # the report's 0.958 baseline
    assert (low, high) == pytest.approx(wilson_by_hand(184, 192))
    assert 0.91 < low < 0.93 and 0.97 < high < 0.985


def test_bootstrap_interval():
    assert evaluation.bootstrap_ci(np.ones(50)) == [1.0, 1.0]
    correct = np.r_[np.ones(100), np.zeros(100)]
    low, high = evaluation.bootstrap_ci(correct, seed=0)
    assert low < 0.5 < high and high - low < 0.2
    assert evaluation.bootstrap_ci(correct, seed=0) == [low, high]


def test_mcnemar_known_tables():
    y = np.zeros(10, int)
    a = np.array([0, 0, 0, 0, 0, 1, 1, 1, 0, 0])  # a wrong on 5,6,7
    b = np.zeros(10, int)  # b right everywhere
    t = evaluation.mcnemar_test(y, a, b)
    assert t["table"] == [[7, 0], [3, 0]]
    assert t["pvalue"] == pytest.approx(0.25)  # 3 vs 0 discordant: 2 * 0.5**3
    b2 = a.copy()
    b2[[5, 6, 7]] = 0
    b2[[0, 1]] = 1  # a right / b wrong on 0, 1 ; a wrong / b right on 5, 6, 7
    t2 = evaluation.mcnemar_test(y, a, b2)
    assert t2["a_only"] == 2 and t2["b_only"] == 3
    assert t2["pvalue"] == pytest.approx(1.0)
    best = evaluation.report_mcnemar_best_case(192)
    assert best["real+torch"]["images_gained"] == 3 and best["real+tf"]["images_gained"] == 4
    assert best["real+torch"]["best_case_pvalue"] == pytest.approx(0.25)
    assert best["real+tf"]["best_case_pvalue"] == pytest.approx(0.125)


def fake_predictions(n=40, seeds=(0, 1, 2), conditions=("real", "real+torch"), seed=0):
    """Predictions with known structure: 'real+torch' fixes exactly 4 images that 'real' gets wrong."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)]
    probs = {}
    for cond in conditions:
        probs[cond] = []
        for _ in seeds:
            prob = np.where(y == 1, 0.8, 0.2) + rng.normal(0, 0.01, n)
            if cond == "real":
                prob[:4] = 0.3  # four COVID images missed by every seed
            probs[cond].append(prob)
    return predictions_frame(probs, y, seeds)


def test_summarize_contract_and_values(tmp_path):
    preds = fake_predictions()
    results = evaluation.summarize(
        preds, train_info={"real": {"n_train": 100}, "real+torch": {"n_train": 200}}, settings={"vgg_weights": "random"}
    )
    assert set(results["conditions"]) == {"real", "real+torch"}
    for c in results["conditions"].values():
        for key in (
            "accuracy",
            "accuracy_ci",
            "sensitivity",
            "specificity",
            "roc_auc",
            "n_train",
            "n_val",
            "seeds",
            "per_seed",
        ):
            assert key in c
        assert c["seeds"] == [0, 1, 2] and len(c["per_seed"]) == 3 and c["n_val"] == 40
        low, high = c["accuracy_ci"]
        assert low <= c["accuracy"] <= high
    real = results["conditions"]["real"]
    assert real["accuracy"] == pytest.approx(36 / 40) and real["sensitivity"] == pytest.approx(16 / 20)
    assert real["confusion_matrix_all_seeds"] == [[60, 0], [12, 48]]
    assert results["conditions"]["real+torch"]["accuracy"] == pytest.approx(1)
    assert results["mcnemar"]["real+torch"] == pytest.approx(2 * 0.5**4)
    assert results["mcnemar_detail"]["real+torch"]["per_seed_pvalues"] == pytest.approx([0.125] * 3)
    assert results["vgg_weights"] == "random"
    paths = evaluation.write_results(tmp_path, results, preds)
    loaded = json.loads(paths["results"].read_text())
    assert loaded["conditions"]["real"]["n_train"] == 100
    csv = pd.read_csv(paths["predictions"])
    assert list(csv.columns) == ["condition", "seed", "path", "label", "prob_covid", "pred"] and len(csv) == 240
    table = evaluation.results_table(results)
    assert list(table.index) == ["real", "real+torch"]
    boot = evaluation.summarize(preds, ci="bootstrap")
    assert boot["conditions"]["real+torch"]["accuracy_ci"] == [1.0, 1.0]


def test_majority_vote_and_nan_safe_json():
    preds = fake_predictions(n=6, seeds=(0, 1), conditions=("real",))
    preds.loc[(preds["seed"] == 1) & (preds["path"] == "v0"), ["prob_covid", "pred"]] = [0.9, 1]
    _, y, vote, prob = evaluation.majority_vote(preds, "real")
    assert vote[0] == 1 and prob[0] == pytest.approx(0.6)  # a 1-1 tie broken by the mean probability
    one_class = preds[preds["label"] == 1]
    results = evaluation.summarize(one_class)
    assert results["conditions"]["real"]["roc_auc"] is None and results["conditions"]["real"]["specificity"] is None
    json.dumps(results, allow_nan=False)


def test_reading_is_computed_from_the_numbers():
    results = evaluation.summarize(fake_predictions(n=192))
    text = "\n".join(evaluation.reading(results))
    assert "one image = 0.52 accuracy points" in text
    assert "+4.0 images" in text and "real+torch" in text


# ----------------------------------------------------------------------------- reading: classifier or threshold?

TRAIN_COUNTS = {"real": {"n_train": 932, "n_train_per_class": {"Normal": 601, "COVID": 331}}}


def scored_predictions(conditions: dict, n_covid=72, n_normal=120, seeds=(0, 1, 2), seed=0):
    """Predictions from known scores, small for testing: {condition: f(labels, score) -> P(COVID)}, tiny per-seed noise."""
    from scipy.special import expit

    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_covid, int), np.zeros(n_normal, int)]
    score = (2 * y - 1) + rng.normal(0, 1, len(y))
    probs, k = {}, 0
    for name, f in conditions.items():
        probs[name] = []
        for s in seeds:
            noise = np.random.default_rng([seed, s, k]).normal(0, 0.01, len(y))
            probs[name].append(expit(f(y, score) + noise))
            k += 1
    return predictions_frame(probs, y, seeds)


CONSERVATIVE_REAL = lambda y, s: s - 1.5  # noqa: E731  trained at 331/601: few COVID calls
SAME_RANKING = lambda y, s: s  # noqa: E731  the same scores with the threshold moved: AUC cannot change
THRESHOLD_ONLY = {
    "real": CONSERVATIVE_REAL,
    "real+classweight": SAME_RANKING,
    "real+copies": SAME_RANKING,
    "real+tf": SAME_RANKING,
}  # every control present; real+tf only moves the threshold


def test_threshold_shift_only_is_not_a_better_classifier():
    preds = scored_predictions(THRESHOLD_ONLY)
    results = evaluation.summarize(preds, train_info=TRAIN_COUNTS, settings={"gan_seeds": [0]})
    conds = results["conditions"]
    assert conds["real+tf"]["roc_auc"] == pytest.approx(conds["real"]["roc_auc"], abs=1e-3)  # AUC flat
    assert conds["real+tf"]["accuracy"] > conds["real"]["accuracy"] + 0.05
    assert conds["real+tf"]["balanced_accuracy"] > conds["real"]["balanced_accuracy"] + 0.1
    gain = next(e for e in results["paired"] if (e["a"], e["b"], e["metric"]) == ("real", "real+tf", "accuracy"))
    assert gain["p"] < 0.05  # a real, paired accuracy gain...
    v = evaluation.verdict(results, "real+tf")
    assert v["kind"] == "threshold moved" and v["control"] == "real+classweight"  # ...that the control explains
    line = next(s for s in evaluation.reading(results) if s.startswith("real+tf:"))
    assert "not a better classifier" in line and "a better classifier" not in line.replace(
        "not a better classifier", ""
    )
    assert "threshold" in line and "real+classweight" in line and "equivalent" in line
    assert "One GAN seed (0)" in "\n".join(evaluation.reading(results))


def test_threshold_shift_without_the_class_weight_control_claims_nothing():
    preds = scored_predictions({"real": CONSERVATIVE_REAL, "real+tf": SAME_RANKING})
    results = evaluation.summarize(preds, train_info=TRAIN_COUNTS)
    v = evaluation.verdict(results, "real+tf")
    assert v["kind"] == "threshold moved" and "real+classweight did not run" in v["text"]
    assert "real:prior-corrected" in v["text"]  # the prior-corrected threshold still names what it matches


def test_real_auc_gain_is_a_better_classifier():
    preds = scored_predictions(
        {
            "real": CONSERVATIVE_REAL,
            "real+classweight": SAME_RANKING,
            "real+copies": SAME_RANKING,
            "real+torch": lambda y, s: s + 1.5 * (2 * y - 1),  # more separation: a better ranking
        }
    )
    results = evaluation.summarize(preds, train_info=TRAIN_COUNTS)
    primary = [e for e in results["paired"] if e["primary"]]
    assert len(primary) == 1 and primary[0]["b"] == "real+torch" and primary[0]["holm_p"] < 0.05
    v = evaluation.verdict(results, "real+torch")
    assert v["kind"] == "better classifier"
    line = next(s for s in evaluation.reading(results) if s.startswith("real+torch:"))
    assert "a better classifier" in line and "not a better classifier" not in line


def test_better_operating_point_needs_both_controls_beaten():
    preds = scored_predictions(
        {
            "real": lambda y, s: s - 3.0,
            "real+classweight": lambda y, s: s - 2.5,  # class weights that undercorrect
            "real+tf": SAME_RANKING,
        }
    )
    results = evaluation.summarize(preds, train_info=TRAIN_COUNTS)
    v = evaluation.verdict(results, "real+tf")
    assert v["kind"] == "better operating point" and "not a better classifier" in v["text"]


def test_no_difference_and_inconclusive_are_verdicts():
    same = evaluation.summarize(
        scored_predictions({"real": SAME_RANKING, "real+tf": SAME_RANKING}), train_info=TRAIN_COUNTS
    )
    assert evaluation.verdict(same, "real+tf")["kind"] == "no difference"
    j1, j2 = np.random.default_rng(3).normal(0, 0.7, (2, 192))  # two equally noisy classifiers: same true AUC
    noisy = evaluation.summarize(
        scored_predictions({"real": lambda y, s: s + j1, "real+tf": lambda y, s: s + j2}), train_info=TRAIN_COUNTS
    )
    v = evaluation.verdict(noisy, "real+tf")
    assert v["kind"] == "inconclusive" and "not inside" in v["text"]


def test_results_contract_for_the_paired_statistics(tmp_path):
    preds = scored_predictions(THRESHOLD_ONLY)
    results = evaluation.summarize(preds, train_info=TRAIN_COUNTS, settings={"gan_seeds": [3]})
    json.dumps(results, allow_nan=False)
    for c in results["conditions"].values():
        for key in ("balanced_accuracy", "balanced_accuracy_ci", "roc_auc_ci", "brier", "accuracy", "accuracy_ci"):
            assert key in c
        low, high = c["roc_auc_ci"]
        assert low <= c["roc_auc"] <= high
    for key in ("paired", "power", "equivalence", "gan_seeds", "procedure_error_rate", "mcnemar"):
        assert key in results
    assert results["gan_seeds"] == [3] and results["n_val_per_class"] == {"Normal": 120, "COVID": 72}
    real = results["conditions"]["real"]
    n_right = round(real["accuracy"] * 192)
    assert real["accuracy_ci"] == pytest.approx(list(wilson_by_hand(n_right, 192)))  # unchanged: Wilson
    assert real["accuracy_ci_bootstrap"][0] <= real["accuracy"] <= real["accuracy_ci_bootstrap"][1]
    entry = results["paired"][0]
    assert set(entry) >= {"a", "b", "metric", "method", "estimate", "interval", "p", "primary", "holm_p"}
    assert results["procedure_error_rate"]["raw_gain"] is not None
    assert results["power"]["report_gains"] == {"real+torch": pytest.approx(0.016), "real+tf": pytest.approx(0.022)}
    text = "\n".join(evaluation.reading(results))
    assert "assumed independent" in text and "+1.6 and +2.2 points" in text and "6 images" in text
    assert "seed-matched" not in text  # no counting of significant seeds
    table = evaluation.paired_table(results, primary_only=True)
    assert list(table.index) == [f"real+tf - {results['primary']['control']}"] and table["primary"].all()
    assert table.iloc[0]["roc_auc"][1:].startswith("0.000 [") and "p=" in table.iloc[0]["accuracy"]
    assert len(evaluation.power_frame(results)) == 3


def test_accuracy_figure_shows_balanced_accuracy_and_the_majority_rate(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from covidgan_utils import figures

    preds = scored_predictions({"real": CONSERVATIVE_REAL, "real+tf": SAME_RANKING}, seeds=(0, 1))
    results = evaluation.summarize(preds, train_info=TRAIN_COUNTS, n_resamples=200)
    evaluation.write_results(tmp_path, results, preds)
    fig = figures.transfer_accuracy(tmp_path)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "majority-class rate 0.625 (always 'Normal')" in labels
    assert any(label.startswith("balanced accuracy") for label in labels)
    assert len(ax.patches) == 2 * len(results["conditions"])  # accuracy and balanced accuracy per condition
    bottom = ax.get_ylim()[0]
    assert f"axis starts at {bottom:.2f}" in ax.get_ylabel() and bottom <= 0.625
    plt.close(fig)
