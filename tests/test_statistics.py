"""Paired bootstrap, prior correction, Holm, TOST, McNemar power: each against scikit-learn / scipy / statsmodels
or a closed form, on small known arrays."""

import math

import numpy as np
import pytest
from helpers import predictions_frame
from scipy import stats as sps
from scipy.special import expit, logit
from sklearn import metrics as skm

from covidgan_utils import statistics as st


def scores(n_covid=72, n_normal=120, separation=1.0, seed=0):
    """Labels (COVID first) and scores with a known separation between the classes."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_covid, int), np.zeros(n_normal, int)]
    return y, separation * (2 * y - 1) + rng.normal(0, 1, len(y))


frame = predictions_frame


# ----------------------------------------------------------------------------- the class prior


def test_prior_correction_is_a_logit_offset_from_training_counts():
    assert st.prior_offset(331, 601) == pytest.approx(math.log(601 / 331)) == pytest.approx(0.5965, abs=1e-4)
    p = np.array([0.0, 1e-6, 0.2, 0.5, 0.9, 1.0])
    shifted = st.prior_corrected(p, 331, 601)
    np.testing.assert_allclose(shifted[1:-1], expit(logit(p[1:-1]) + math.log(601 / 331)), rtol=1e-12)
    assert (shifted[0], shifted[-1]) == pytest.approx((0, 1))
    assert st.prior_corrected(0.5, 331, 601) == pytest.approx(601 / 932)  # even odds become the prior ratio
    with pytest.raises(ValueError, match="n_covid"):
        st.prior_offset(0, 601)


def test_prior_corrected_condition_is_derived_only_when_the_classes_differ():
    y, s = scores(8, 10)
    preds = frame({"real": expit(s)}, y)
    added = st.add_prior_corrected(preds, {"real": {"n_train_per_class": {"COVID": 331, "Normal": 601}}})
    pc = added[added["condition"] == st.PRIOR_CORRECTED]
    assert len(pc) == len(preds) and (pc["prob_covid"].to_numpy() >= preds["prob_covid"].to_numpy()).all()
    assert len(st.add_prior_corrected(preds, {"real": {"n_train_per_class": {"COVID": 5, "Normal": 5}}})) == len(preds)
    assert len(st.add_prior_corrected(preds, None)) == len(preds)


# ----------------------------------------------------------------------------- the bootstrap


def test_weighted_metrics_equal_scikit_learn_on_the_images_and_on_a_resample():
    y, s = scores(13, 21, seed=1)
    prob = np.round(expit(s), 1)  # ties, to check that AUC counts them one half
    counts = st.stratified_counts(y, 3, seed=4)
    got = st.weighted_metrics(y, prob, np.vstack([np.ones(len(y)), counts]))
    for row in range(4):
        take = np.arange(len(y)) if row == 0 else np.repeat(np.arange(len(y)), counts[row - 1].astype(int))
        yy, pp = y[take], prob[take]
        pred = (pp >= 0.5).astype(int)
        expected = {
            "accuracy": skm.accuracy_score(yy, pred),
            "balanced_accuracy": skm.balanced_accuracy_score(yy, pred),
            "sensitivity": skm.recall_score(yy, pred, pos_label=1),
            "specificity": skm.recall_score(yy, pred, pos_label=0),
            "roc_auc": skm.roc_auc_score(yy, pp),
            "brier": skm.brier_score_loss(yy, pp),
        }
        for metric, value in expected.items():
            assert got[metric][row] == pytest.approx(value, abs=1e-12), (metric, row)


def test_weighted_metrics_average_over_seeds():
    y, s = scores(10, 12, seed=2)
    P = np.vstack([expit(s), expit(s - 1)])
    both = st.weighted_metrics(y, P, np.ones((1, len(y))))
    each = [st.weighted_metrics(y, p, np.ones((1, len(y)))) for p in P]
    for metric in st.BOOTSTRAP_METRICS:
        assert both[metric][0] == pytest.approx((each[0][metric][0] + each[1][metric][0]) / 2)


def test_stratified_counts_keep_the_class_sizes_and_are_seeded():
    y = np.r_[np.ones(7, int), np.zeros(11, int)]
    c = st.stratified_counts(y, 500, seed=3)
    assert c.shape == (500, 18)
    assert (c[:, y == 1].sum(1) == 7).all() and (c[:, y == 0].sum(1) == 11).all()
    np.testing.assert_array_equal(c, st.stratified_counts(y, 500, seed=3))
    assert not np.array_equal(c, st.stratified_counts(y, 500, seed=4))
    assert c.mean() == pytest.approx(1.0) and c.var() == pytest.approx(1 - 1 / 9, rel=0.1)  # multinomial counts
    with pytest.raises(ValueError, match="n_resamples"):
        st.stratified_counts(y, 0)


def test_bootstrap_spread_of_accuracy_matches_the_stratified_closed_form():
    y, s = scores(72, 120, seed=5)
    prob = expit(s)
    correct = (prob >= 0.5) == y
    boot = st.weighted_metrics(y, prob, st.stratified_counts(y, 4000, seed=0))["accuracy"]
    p1, p0 = correct[y == 1].mean(), correct[y == 0].mean()
    se = math.sqrt(72 * p1 * (1 - p1) + 120 * p0 * (1 - p0)) / 192  # classes sampled separately
    assert boot.std() == pytest.approx(se, rel=0.08)


def delong_variance(y, prob):
    """DeLong et al. (1988) variance of one AUC from its structural components (reference for the bootstrap)."""
    pos, neg = prob[y == 1], prob[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)
    return v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)


def test_bootstrap_spread_of_auc_matches_delong():
    y, s = scores(72, 120, separation=0.8, seed=6)
    prob = expit(s)
    boot = st.weighted_metrics(y, prob, st.stratified_counts(y, 4000, seed=1))["roc_auc"]
    assert boot.std() == pytest.approx(math.sqrt(delong_variance(y, prob)), rel=0.1)
    assert st.weighted_metrics(y, prob, np.ones((1, 192)))["roc_auc"][0] == pytest.approx(skm.roc_auc_score(y, prob))


def test_percentile_interval_agrees_with_scipy_bootstrap_when_there_is_one_class():
    rng = np.random.default_rng(7)
    y = np.ones(60, int)  # one class: stratified resampling is plain resampling
    prob = rng.uniform(0.2, 0.9, 60)
    boot = st.weighted_metrics(y, prob, st.stratified_counts(y, 4000, seed=2))["accuracy"]
    ours = st.percentile_interval(boot)
    ref = sps.bootstrap(
        ((prob >= 0.5).astype(float),), np.mean, n_resamples=4000, method="percentile", random_state=rng
    )
    assert ours == pytest.approx([ref.confidence_interval.low, ref.confidence_interval.high], abs=0.02)


def test_bootstrap_pvalue_known_answers():
    assert st.bootstrap_pvalue(np.full(1999, 0.1)) == pytest.approx(2 / 2000)
    assert st.bootstrap_pvalue(np.zeros(100)) == pytest.approx(1)
    d = np.r_[np.full(950, 0.1), np.full(50, -0.1)]
    assert st.bootstrap_pvalue(d) == pytest.approx(2 * 51 / 1001)
    assert math.isnan(st.bootstrap_pvalue([]))


def test_paired_bootstrap_on_accuracy_agrees_with_exact_mcnemar():
    y = np.r_[np.ones(72, int), np.zeros(120, int)]
    a = np.where(y == 1, 0.9, 0.1)
    b = a.copy()
    a[[0, 1, 2, 3, 4, 5, 6, 80, 81, 82, 83, 84]] = 1 - a[[0, 1, 2, 3, 4, 5, 6, 80, 81, 82, 83, 84]]  # a wrong on 12
    b[[10, 100]] = 1 - b[[10, 100]]  # b wrong on 2 others
    counts = st.stratified_counts(y, 4000, seed=0)
    d = st.weighted_metrics(y, b, counts)["accuracy"] - st.weighted_metrics(y, a, counts)["accuracy"]
    exact = st.exact_mcnemar(a.round() == y, b.round() == y)
    assert exact == pytest.approx(sps.binomtest(2, 14, 0.5).pvalue)
    assert st.bootstrap_pvalue(d) == pytest.approx(exact, abs=0.012)


def test_tost_and_holm_known_answers():
    rng = np.random.default_rng(8)
    narrow = st.tost(rng.normal(0.002, 0.004, 4000))
    assert narrow["equivalent"] and narrow["p"] < 0.05
    assert -0.016 < narrow["interval_90"][0] < narrow["interval_90"][1] < 0.016
    wide = st.tost(rng.normal(0.0, 0.02, 4000))
    assert not wide["equivalent"] and wide["p"] > 0.05
    with pytest.raises(ValueError, match="margin"):
        st.tost([0.0], margin=0)
    assert st.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert st.holm([0.2]) == [0.2] and st.holm([]) == []


def test_exact_mcnemar_known_tables():
    right = np.ones(10, bool)
    wrong3 = right.copy()
    wrong3[:3] = False
    assert st.exact_mcnemar(wrong3, right) == pytest.approx(0.25)  # 3 vs 0 discordant: 2 * 0.5**3
    assert st.exact_mcnemar(right, right) == pytest.approx(1)


# ----------------------------------------------------------------------------- the analysis


def test_analyse_marks_only_the_gan_against_the_best_control_as_primary():
    y, s = scores(30, 40, seed=9)
    preds = frame(
        {
            "real": expit(s - 1),
            "real+copies": expit(s + 0.7 * (2 * y - 1)),  # more separation, higher AUC: the best control
            "real+classweight": expit(s),
            "real+torch": expit(s),
            "real+tf": expit(2 * s + np.random.default_rng(1).normal(0, 1, len(y))),
        },
        y,
    )
    preds = st.add_prior_corrected(preds, {"real": {"n_train_per_class": {"COVID": 331, "Normal": 601}}})
    first = preds[preds["seed"] == 0]
    conds = {
        c: {"roc_auc": skm.roc_auc_score(y, first.loc[first["condition"] == c, "prob_covid"])}
        for c in dict.fromkeys(preds["condition"])
    }
    out = st.analyse(preds, conds, n_resamples=300)
    assert out["primary"]["control"] == st.best_control(conds) == "real+copies"
    primary = [e for e in out["paired"] if e["primary"]]
    assert {(e["a"], e["b"], e["metric"]) for e in primary} == {
        ("real+copies", "real+torch", "roc_auc"),
        ("real+copies", "real+tf", "roc_auc"),
    }
    assert st.holm([e["p"] for e in primary]) == pytest.approx([e["holm_p"] for e in primary])
    assert all(e["holm_p"] is None for e in out["paired"] if not e["primary"])
    sens = st.find(out["paired"], "real", "real+torch", "sensitivity")
    assert sens["mcnemar_on"] == "COVID images" and 0 <= sens["mcnemar_p"] <= 1
    prior = st.find(out["paired"], "real", st.PRIOR_CORRECTED, "roc_auc")
    assert prior["estimate"] == pytest.approx(0.0) and prior["p"] == 1.0  # a monotone shift keeps the ranking
    eq = st.find(out["equivalence"], "real", st.PRIOR_CORRECTED, "roc_auc")
    assert eq["verdict"] == "equivalent"
    for c in conds:
        low, high = out["intervals"][c]["roc_auc_ci"]
        assert low <= conds[c]["roc_auc"] <= high


# ----------------------------------------------------------------------------- power


def test_minimum_significant_gain_is_six_images():
    assert st.min_significant_images(0.05) == 6
    assert 2 * 0.5**6 < 0.05 <= 2 * 0.5**5
    assert st.exact_mcnemar(np.r_[np.zeros(6, bool), np.ones(186, bool)], np.ones(192, bool)) < 0.05
    assert st.exact_mcnemar(np.r_[np.zeros(5, bool), np.ones(187, bool)], np.ones(192, bool)) > 0.05


@pytest.mark.parametrize("discordance, expected", [(0.05, 0.046), (0.10, 0.066), (0.20, 0.094)])
def test_minimum_detectable_effect_for_192_paired_images(discordance, expected):
    mde = st.mcnemar_mde(192, discordance)
    assert mde == pytest.approx(expected, abs=0.0015)  # the values quoted for n = 192, 80% power
    assert st.mcnemar_power(192, discordance, mde) == pytest.approx(0.80, abs=1e-6)
    assert st.mcnemar_power(192, discordance, mde - 0.003) < 0.80
    assert st.mcnemar_mde(192, discordance, method="normal") == pytest.approx(mde, abs=0.005)


def test_exact_power_against_simulated_mcnemar_tests():
    from statsmodels.stats.contingency_tables import mcnemar

    rng = np.random.default_rng(11)
    n, psi, delta = 192, 0.10, 0.06
    expected = st.mcnemar_power(n, psi, delta)
    cells = rng.multinomial(n, [psi / 2 + delta / 2, psi / 2 - delta / 2, 1 - psi], size=3000)
    cache = {}
    rejected = 0
    for b, c, _ in cells:
        if (b, c) not in cache:
            cache[b, c] = mcnemar([[0, b], [c, 0]], exact=True).pvalue < 0.05
        rejected += cache[b, c]
    assert rejected / len(cells) == pytest.approx(expected, abs=0.025)
    assert st.mcnemar_power(n, psi, 0.0) <= 0.05  # the exact test keeps its level
    with pytest.raises(ValueError, match="discordance"):
        st.mcnemar_power(n, 0.05, 0.06)


def test_power_table_for_results():
    table = st.power_table(192, report_gains={"real+torch": 0.016, "real+tf": 0.022})
    assert [r["discordance"] for r in table["mde"]] == [0.05, 0.10, 0.20]
    assert table["min_significant_images"] == 6 and table["min_significant_gain"] == pytest.approx(6 / 192)
    assert all(r["mde"] > 0.022 for r in table["mde"])  # the report's gains are below every detectable effect
    assert st.mcnemar_mde(18, 0.05) is None  # out of reach: too few discordant images


# ----------------------------------------------------------------------------- the report's procedure


def test_procedure_error_rate_from_seed_pairs():
    y, s = scores(72, 120, separation=0.6, seed=12)
    rng = np.random.default_rng(13)
    heads = np.vstack([expit(s + rng.normal(0, 0.8, len(y))) for _ in range(4)])  # same true performance
    preds = frame({"real": heads}, y, seeds=(0, 1, 2, 3))
    out = st.procedure_error_rate(preds, n_sim=1000)
    assert 0.3 < out["raw_gain"] < 0.5  # a raw gain about half the time (ties make it less)
    assert out["mcnemar_gain"] <= 0.05 and out["head_seeds"] == 4 and out["mean_discordant_images"] > 10
    assert "no true difference" in out["simulates"]
    same = st.procedure_error_rate(frame({"real": expit(s)}, y, seeds=(0, 1)), n_sim=200)
    assert (same["raw_gain"], same["mcnemar_gain"]) == pytest.approx((0, 0))
    one = st.procedure_error_rate(frame({"real": expit(s)}, y, seeds=(0,)))
    assert one["raw_gain"] is None and "two head seeds" in one["reason"]
