"""The reading's words on hand-built results: Holm for primary comparisons, losses, the best control, other sets."""

from covidgan_utils import evaluation, verdicts
from covidgan_utils import statistics as st

PC = st.PRIOR_CORRECTED


def condition(acc=0.75, bal=0.74, auc=0.85, sens=0.75, spec=0.75):
    return {
        "accuracy": acc,
        "balanced_accuracy": bal,
        "roc_auc": auc,
        "sensitivity": sens,
        "specificity": spec,
        "n_val": 192,
        "seeds": [0, 1, 2],
    }


def pair(a, b, metric, estimate, interval, p, primary=False, holm_p=None):
    return {
        "a": a,
        "b": b,
        "metric": metric,
        "estimate": estimate,
        "interval": list(interval),
        "p": p,
        "primary": primary,
        "holm_p": holm_p,
    }


def equivalence(a, b, metric, interval_90, verdict):
    inside = -st.EQUIVALENCE_MARGIN < interval_90[0] and interval_90[1] < st.EQUIVALENCE_MARGIN
    return {
        "a": a,
        "b": b,
        "metric": metric,
        "margin": st.EQUIVALENCE_MARGIN,
        "interval_90": list(interval_90),
        "p": 0.5,
        "equivalent": inside,
        "verdict": verdict,
    }


NULL = ((-0.02, 0.02), 0.6)  # a difference the data cannot tell from 0


def results(conds: dict, paired: list, equivalences: list, control="real+copies") -> dict:
    """A results dict with every (a, b, metric) not given filled in as a null difference."""
    given = {(e["a"], e["b"], e["metric"]) for e in paired}
    for a, b in st.comparisons(conds):
        for m in st.BOOTSTRAP_METRICS:
            if (a, b, m) not in given:
                paired.append(
                    pair(
                        a,
                        b,
                        m,
                        0.0,
                        *NULL,
                        primary=(m == "roc_auc" and a == control and b in st.GAN_CONDITIONS),
                        holm_p=None,
                    )
                )
    for e in paired:
        if e["primary"] and e["holm_p"] is None:
            e["holm_p"] = e["p"]
    got = {(e["a"], e["b"], e["metric"]) for e in equivalences}
    for a, b in st.comparisons(conds):
        for m in ("roc_auc", "accuracy"):
            if (a, b, m) not in got:
                equivalences.append(equivalence(a, b, m, (-0.03, 0.03), "inconclusive"))
    return {
        "conditions": conds,
        "paired": paired,
        "equivalence": equivalences,
        "primary": {"control": control, "rule": st.PRIMARY_RULE, "comparisons": []},
    }


def all_conditions(**gan):
    conds = {
        "real": condition(acc=0.71, bal=0.63, auc=0.832, sens=0.29, spec=0.96),
        PC: condition(acc=0.75, bal=0.75, auc=0.832, sens=0.78, spec=0.73),
        "real+classweight": condition(acc=0.745, bal=0.74, auc=0.832),
        "real+copies": condition(acc=0.742, bal=0.74, auc=0.848),
    }
    conds.update(gan)
    return conds


# ----------------------------------------------------------------------------- 1. primary: judged by Holm p


def test_primary_comparison_is_judged_by_its_holm_p_not_its_raw_p():
    conds = all_conditions(**{"real+tf": condition(auc=0.825)})
    primary = pair("real+copies", "real+tf", "roc_auc", -0.023, (-0.045, -0.002), 0.036, primary=True, holm_p=0.072)
    # results.json written before the fix stored "different" from the raw p
    eq = equivalence("real+copies", "real+tf", "roc_auc", (-0.042, -0.005), "different")
    res = results(conds, [primary], [eq])
    assert st.judge(eq, primary) == "inconclusive"
    text = verdicts.verdict(res, "real+tf")["text"]
    assert "not shown to differ from real+copies's after Holm correction (p = 0.072" in text
    assert "different from" not in text.replace("not shown to differ from", "")
    table = evaluation.paired_table(res, primary_only=True)
    assert table.loc["real+tf - real+copies", "AUC (TOST ±1.6 points)"] == "inconclusive"


def test_primary_comparison_inside_the_margin_stays_equivalent():
    conds = all_conditions(**{"real+tf": condition(auc=0.845)})
    primary = pair("real+copies", "real+tf", "roc_auc", -0.003, (-0.017, 0.011), 0.64, primary=True, holm_p=0.64)
    eq = equivalence("real+copies", "real+tf", "roc_auc", (-0.015, 0.009), "equivalent")
    text = verdicts.verdict(results(conds, [primary], [eq]), "real+tf")["text"]
    assert "ROC AUC equivalent to real+copies's" in text and "Holm" not in text


def test_judge_uses_raw_p_for_descriptive_and_holm_p_for_primary():
    eq = {"equivalent": False}
    assert st.judge(eq, {"primary": False, "p": 0.01, "holm_p": None}) == "different"
    assert st.judge(eq, {"primary": True, "p": 0.01, "holm_p": 0.06}) == "inconclusive"
    assert st.judge(eq, {"primary": True, "p": 0.01, "holm_p": 0.02}) == "different"
    assert st.judge({"equivalent": True}, {"primary": True, "p": 0.01, "holm_p": 0.02}) == "equivalent"


# ----------------------------------------------------------------------------- 2. a significant loss is a loss


def test_significant_accuracy_loss_is_not_no_difference():
    conds = all_conditions(**{"real+tf": condition(acc=0.65, auc=0.848)})
    paired = [
        pair("real+copies", "real+tf", "roc_auc", 0.0, (-0.012, 0.012), 0.9, primary=True, holm_p=0.9),
        pair("real", "real+tf", "accuracy", -0.06, (-0.11, -0.01), 0.02),
    ]
    eq = [equivalence("real+copies", "real+tf", "roc_auc", (-0.010, 0.010), "equivalent")]
    v = verdicts.verdict(results(conds, paired, eq), "real+tf")
    assert v["kind"] == "worse operating point"
    assert "no difference" not in v["text"] and "loss" in v["text"]
    assert "accuracy below real's (-0.060, 95% [-0.110, -0.010], p = 0.02)" in v["text"]


def test_loss_beside_a_gain_is_named():
    conds = all_conditions(**{"real+tf": condition(acc=0.63, bal=0.69, auc=0.848)})
    paired = [
        pair("real", "real+tf", "balanced_accuracy", 0.064, (0.007, 0.12), 0.024),
        pair("real", "real+tf", "accuracy", -0.079, (-0.128, -0.033), 0.002),
    ]
    v = verdicts.verdict(results(conds, paired, []), "real+tf")
    assert v["kind"] == "threshold moved" and "it also loses: accuracy below real's (-0.079" in v["text"]


# ----------------------------------------------------------------------------- 3. below the best control


def test_auc_below_the_best_control_is_never_a_better_operating_point():
    conds = all_conditions(**{"real+tf": condition(acc=0.80, bal=0.80, auc=0.82)})
    paired = [
        pair("real+copies", "real+tf", "roc_auc", -0.028, (-0.045, -0.011), 0.004, primary=True, holm_p=0.008),
        pair("real", "real+tf", "accuracy", 0.09, (0.04, 0.14), 0.001),
        pair(PC, "real+tf", "accuracy", 0.05, (0.01, 0.09), 0.01),
        pair("real+classweight", "real+tf", "accuracy", 0.055, (0.01, 0.10), 0.01),
    ]
    v = verdicts.verdict(results(conds, paired, []), "real+tf")
    assert v["kind"] == "worse classifier" and v["control"] == "real+copies"
    assert "better operating point" not in v["text"].replace("can make it a better operating point", "")
    assert v["text"].startswith("a worse classifier than the best no-GAN control real+copies")
    assert "Holm p = 0.008" in v["text"]


# ----------------------------------------------------------------------------- 4. another set's moved threshold


def set_block(bal, at_mix, vs_real_bal=None, auc=(-0.002, (-0.008, 0.004))):
    diff = lambda est, iv: {"estimate": est, "interval": list(iv), "interval_90": list(iv), "p": 0.001}  # noqa: E731
    block = {
        "n_per_class": {"Normal": 1000, "COVID": 1000},
        "accuracy": bal,
        "balanced_accuracy": bal,
        "accuracy_at_validation_mix": at_mix,
    }
    if vs_real_bal is not None:
        block["vs_real"] = {
            "accuracy": diff(*vs_real_bal),
            "balanced_accuracy": diff(*vs_real_bal),
            "roc_auc": diff(*auc),
        }
        block["vs_control"] = {"control": "real+copies", "roc_auc": diff(*auc)}
    return block


def test_large_set_threshold_line_names_balanced_accuracy_and_the_explaining_control():
    block = set_block(0.735, 0.720, vs_real_bal=(0.094, (0.076, 0.110)))
    controls = {PC: set_block(0.723, 0.731), "real+classweight": set_block(0.727, 0.725)}
    v = verdicts.set_verdict(block, "real+torch", real=set_block(0.641, 0.722), controls=controls)
    assert v["kind"] == "threshold moved" and v["control"] == "real+classweight"
    assert "the balanced accuracy (= accuracy on this set's 1000/1000 class mix) gain over real (+0.094" in v["text"]
    assert "the accuracy gain" not in v["text"]
    assert (
        "real+classweight (real images, class-weighted loss, no GAN images) reaches balanced accuracy 0.727"
        in v["text"]
    )
    assert "accuracy at the validation class mix -0.002 against real" in v["text"]


def test_external_set_at_the_validation_mix_keeps_the_word_accuracy():
    block = set_block(0.70, 0.70, vs_real_bal=(0.05, (0.01, 0.09)))
    block["n_per_class"] = {"Normal": 120, "COVID": 72}
    v = verdicts.set_verdict(block, "real+tf")
    assert "the accuracy gain over real (+0.050" in v["text"] and "balanced" not in v["text"]
    assert "real:prior-corrected and real+classweight not evaluated on this set" in v["text"]


# ----------------------------------------------------------------------------- 6. descriptive verdicts say so


def test_a_control_s_better_classifier_is_marked_descriptive():
    conds = all_conditions(**{"real+tf": condition(auc=0.85)})
    paired = [pair("real", "real+copies", "roc_auc", 0.016, (0.001, 0.032), 0.043)]
    res = results(conds, paired, [])
    v = verdicts.verdict(res, "real+copies")
    assert v["kind"] == "better classifier" and v["descriptive"]
    assert f"(this verdict: descriptive, uncorrected p, one of {len(res['paired'])} paired comparisons" in v["text"]
    assert "not a primary comparison" in v["text"]


def test_a_primary_verdict_is_not_marked_descriptive():
    conds = all_conditions(**{"real+tf": condition(auc=0.88)})
    paired = [pair("real+copies", "real+tf", "roc_auc", 0.03, (0.012, 0.05), 0.002, primary=True, holm_p=0.004)]
    v = verdicts.verdict(results(conds, paired, []), "real+tf")
    assert v["kind"] == "better classifier" and not v["descriptive"] and "descriptive" not in v["text"]


def test_a_gan_condition_s_threshold_verdict_is_marked_descriptive():
    conds = all_conditions(**{"real+tf": condition(acc=0.74, bal=0.74, auc=0.848)})
    paired = [pair("real", "real+tf", "balanced_accuracy", 0.11, (0.06, 0.16), 0.001)]
    v = verdicts.verdict(results(conds, paired, []), "real+tf")
    assert v["kind"] == "threshold moved" and v["descriptive"] and "uncorrected p" in v["text"]
    assert "(the operating-point comparisons: descriptive" in v["text"]  # the primary AUC part is not
