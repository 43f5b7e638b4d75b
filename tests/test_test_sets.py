"""Test sets beyond validation: the external set, the large independent set (the truth), the report's procedure
simulated against it, and the pixel baseline; statistics checked against scikit-learn / statsmodels or by hand."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from helpers import predictions_frame as frame
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint
from test_transfer import one_thread  # noqa: F401 (autouse: one thread for tiny tensors)

from covidgan_utils import CLASSES, config, data, evaluation, transfer
from covidgan_utils import statistics as st


def heads(y, separation, n_seeds, noise, seed):
    """(n_seeds, n) probabilities: a shared score plus per-head noise (small for testing)."""
    rng = np.random.default_rng(seed)
    base = separation * (2 * y - 1) + rng.normal(0, 1, len(y))
    return np.vstack([expit(base + rng.normal(0, noise, len(y))) for _ in range(n_seeds)])


# ----------------------------------------------------------------------------- statistics


def test_weighted_auc_equals_every_pair_compared_and_sklearn():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(30, int), np.zeros(45, int)]
    p = np.round(rng.random(len(y)), 1)  # many ties
    W = st.stratified_counts(y, 50, seed=1)
    pos, neg = y == 1, y == 0
    wins = (p[pos][:, None] > p[neg][None, :]) + 0.5 * (p[pos][:, None] == p[neg][None, :])
    pairwise = ((W[:, pos] @ wins) * W[:, neg]).sum(1) / (W[:, pos].sum(1) * W[:, neg].sum(1))
    fast = st.weighted_metrics(y, p, W)["roc_auc"]
    np.testing.assert_allclose(fast, pairwise, rtol=1e-12)
    ones = st.weighted_metrics(y, p, np.ones((1, len(y))))["roc_auc"][0]
    assert ones == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_paired_and_independent_differences():
    y = np.r_[np.ones(40, int), np.zeros(60, int)]
    a, b = heads(y, 0.5, 2, 0.5, 1), heads(y, 1.5, 2, 0.5, 2)
    d = st.paired_differences(y, a, b, n_resamples=500)
    expected = np.mean([roc_auc_score(y, q) for q in b]) - np.mean([roc_auc_score(y, q) for q in a])
    assert d["roc_auc"]["estimate"] == pytest.approx(expected, abs=1e-12)
    low, high = d["roc_auc"]["interval"]
    assert 0 < low < expected < high and d["roc_auc"]["p"] < 0.01
    assert d["roc_auc"]["interval_90"][0] > low  # the 90% interval is the narrower one
    same = st.independent_differences(y, a, y, a, n_resamples=500)
    assert same["accuracy"]["estimate"] == pytest.approx(0)
    assert same["accuracy"]["interval"][0] < 0 < same["accuracy"]["interval"][1]  # two independent resamplings


def test_declared_gains_follow_exact_mcnemar():
    rng = np.random.default_rng(4)
    a, b = rng.random((200, 40)) < 0.8, rng.random((200, 40)) < 0.85
    raw, sig, n = st._declared_gains(a, b, 0.05)
    for k in range(200):
        table = [[int((a[k] & b[k]).sum()), int((a[k] & ~b[k]).sum())], [int((~a[k] & b[k]).sum()), 0]]
        p = mcnemar(table, exact=True).pvalue if table[0][1] + table[1][0] else 1.0
        assert raw[k] == (b[k].sum() > a[k].sum())
        assert sig[k] == (raw[k] and p < 0.05)
        assert n[k] == table[0][1] + table[1][0]


def test_validation_sets_are_drawn_within_class_without_replacement():
    y = np.r_[np.ones(100, int), np.zeros(150, int)]
    idx, replaced = st._draw_validation_sets(y, {"COVID": 72, "Normal": 120}, 30, np.random.default_rng(0))
    assert idx.shape == (30, 192) and not replaced
    assert all(len(set(row)) == 192 and y[row].sum() == 72 for row in idx)
    _, replaced = st._draw_validation_sets(y[:110], {"COVID": 72, "Normal": 20}, 3, np.random.default_rng(0))
    assert replaced  # only 10 Normal images: drawn with replacement, and said so


def test_procedure_against_the_truth_of_a_large_set():
    y = np.r_[np.ones(1000, int), np.zeros(1000, int)]
    six = heads(y, 1.0, 6, 0.6, 10)  # six heads of one classifier: the same true performance
    real, same = six[:3], six[3:]
    better = heads(y, 2.5, 3, 0.6, 11)
    preds = frame({"real": real, "real+torch": same, "real+tf": better}, y, seeds=(0, 1, 2))
    out = st.procedure_on_test_set(preds, {"COVID": 72, "Normal": 120}, n_sim=1000, n_resamples=500)
    assert "the same condition" in out["same_classifier"]["compares"]
    assert len(out["same_classifier"]["head_accuracy_at_mix"]) == 3
    assert 0.3 < out["same_classifier"]["raw_gain"] < 0.55 and out["same_classifier"]["mcnemar_gain"] <= 0.06
    torch_ = out["conditions"]["real+torch"]
    assert torch_["truth"]["accuracy_kind"] in ("no difference", "inconclusive", "loss")
    assert (
        torch_["rate_is"] == st.rate_is(torch_["truth"]["accuracy_kind"]) != "power"
        and 0.25 < torch_["raw_gain"] < 0.6
        and torch_["mcnemar_gain"] < 0.1
    )
    tf = out["conditions"]["real+tf"]
    assert tf["truth"]["accuracy_kind"] == "gain" and tf["truth"]["roc_auc_kind"] == "gain"
    assert tf["rate_is"] == "power" and tf["raw_gain"] > 0.95
    # the truth is measured on the whole large set: accuracy at the 72/120 mix from each class's recall
    sens = np.mean([((p >= 0.5) == y)[y == 1].mean() for p in real])
    spec = np.mean([((p >= 0.5) == y)[y == 0].mean() for p in real])
    assert tf["truth"]["accuracy_at_mix"][0] == pytest.approx((72 * sens + 120 * spec) / 192, abs=1e-12)
    one = st.procedure_on_test_set(
        frame({"real": real[0], "real+tf": better[0]}, y, seeds=(0,)),
        {"COVID": 5, "Normal": 5},
        n_sim=50,
        n_resamples=50,
    )
    assert one["same_classifier"]["raw_gain"] is None and "two head seeds" in one["same_classifier"]["reason"]


# ----------------------------------------------------------------------------- evaluation


def test_a_one_class_external_set_gives_sensitivity_and_na_for_the_rest():
    y_home = np.r_[np.ones(20, int), np.zeros(30, int)]
    home = frame({"real": heads(y_home, 1.0, 2, 0.3, 1), "real+tf": heads(y_home, 1.2, 2, 0.3, 2)}, y_home)
    y_ext = np.ones(25, int)
    ext = frame({"real": heads(y_ext, 1.0, 2, 0.3, 3), "real+tf": heads(y_ext, 1.2, 2, 0.3, 4)}, y_ext, prefix="e")
    blocks = evaluation.evaluate_test_set(ext, home=home, control="real", n_resamples=300)
    real = blocks["real"]
    assert real["n_per_class"] == {"Normal": 0, "COVID": 25}
    assert real["accuracy"] == pytest.approx(real["sensitivity"]) and math.isnan(real["specificity"])
    assert math.isnan(real["roc_auc"]) and all(math.isnan(v) for v in real["roc_auc_ci"])
    low, high = proportion_confint(real["accuracy"] * 25, 25, method="wilson")
    assert real["accuracy_ci"] == pytest.approx([low, high])
    assert real["sensitivity_ci"][0] <= real["sensitivity"] <= real["sensitivity_ci"][1]
    assert real["change_from_home"]["sensitivity"]["interval"][0] is not None
    assert math.isnan(real["change_from_home"]["specificity"]["estimate"])
    assert blocks["real+tf"]["vs_control"]["control"] == "real"
    assert blocks["real+tf"]["vs_real"]["accuracy"]["estimate"] == pytest.approx(
        blocks["real+tf"]["accuracy"] - real["accuracy"]
    )


def test_summarize_adds_test_sets_and_keeps_the_existing_keys():
    y = np.r_[np.ones(24, int), np.zeros(40, int)]
    y_large = np.r_[np.ones(300, int), np.zeros(300, int)]
    conds = {"real": (1.0, 1), "real+copies": (1.0, 2), "real+tf": (1.1, 3)}
    home = frame({c: heads(y, s, 3, 0.4, k) for c, (s, k) in conds.items()}, y, seeds=(0, 1, 2))
    ext = frame({c: heads(y, s - 0.4, 3, 0.4, k + 10) for c, (s, k) in conds.items()}, y, seeds=(0, 1, 2), prefix="e")
    large = frame({c: heads(y_large, s, 3, 0.4, k + 20) for c, (s, k) in conds.items()}, y_large, (0, 1, 2), "l")
    info = {c: {"n_train": 100, "n_train_per_class": {"Normal": 60, "COVID": 40}} for c in conds}
    pixels = frame({transfer.PIXEL_BASELINE: heads(y, 0.5, 1, 0.1, 5)}, y, seeds=(0,))
    source = {"kind": "phantoms", "description": "shifted", "n": len(y), "counts": {"Normal": 40, "COVID": 24}}
    results = evaluation.summarize(
        home,
        train_info=info,
        n_resamples=300,
        external={"predictions": ext, "source": {**source, "overlap_excluded": [{"path": "x.png", "also_in": "val"}]}},
        large_test={"predictions": large, "source": {"kind": "phantoms", "description": "large", "n": 600}},
        baseline={"predictions": {"validation": pixels}, "info": {"model": "pixels", "n_train": 100}},
    )
    for key in ("paired", "power", "equivalence", "gan_seeds", "mcnemar", "n_val_per_class"):
        assert key in results
    proc = results["procedure_error_rate"]
    assert proc["raw_gain"] is not None and "simulates" in proc  # the head-seed simulation stays as it was
    assert set(proc["large_test"]["conditions"]) == {"real:prior-corrected", "real+copies", "real+tf"}
    assert proc["large_test"]["draw_per_class"] == {"Normal": 40, "COVID": 24}
    for cond in results["conditions"]:
        assert results["conditions"][cond]["external"]["n"] == len(y)
        assert results["conditions"][cond]["large_test"]["validation_mix"] == {"Normal": 40, "COVID": 24}
    assert results["external_set"]["evaluated"] and "evaluation" in results["external_set"]["seconds"]
    assert results["conditions"]["real+tf"]["external"]["vs_control"]["control"] == results["primary"]["control"]
    assert results["baseline"]["validation"]["n"] == len(y) and "real_minus_baseline" in results["baseline"]
    json.dumps(results, allow_nan=False)  # JSON-safe: n/a as null
    text = "\n".join(evaluation.reading(results))
    assert "External test set (shifted)" in text and "1 image(s) also in this run's split were left out" in text
    assert "real+tf, home -> external: accuracy" in text and "Large independent test set (large" in text
    assert "The report's procedure against the truth: 300 validation sets of 40 Normal + 24 COVID" in text
    table = evaluation.test_set_table(results)
    assert ("accuracy", "external") in table.columns and ("ROC AUC", "large test") in table.columns
    assert len(evaluation.procedure_frame(results)) == 2 + 3
    absent = evaluation.summarize(
        home, train_info=info, n_resamples=100, external={"predictions": None, "source": {"reason": "none here"}}
    )
    assert absent["external_set"] == {"reason": "none here", "evaluated": False}
    assert "No external test set: none here." in evaluation.reading(absent)


def test_random_weights_are_said_and_the_baseline_shown():
    y = np.r_[np.ones(24, int), np.zeros(40, int)]
    home = frame({"real": heads(y, 1.0, 2, 0.4, 1)}, y)
    pixels = frame({transfer.PIXEL_BASELINE: heads(y, 0.5, 1, 0.1, 5)}, y, seeds=(0,))
    baseline = {"predictions": {"validation": pixels}, "info": {"model": "logistic regression on pixels", "n_train": 9}}
    for used, phrase in (("random", "Nothing was transferred"), ("imagenet", "What was transferred")):
        results = evaluation.summarize(
            home, n_resamples=100, settings={"vgg_weights": used, "vgg_weights_description": "d"}, baseline=baseline
        )
        text = "\n".join(evaluation.reading(results))
        assert phrase in text and "Beside it, logistic regression on pixels, trained on the same 9 real images" in text
        assert ("random-features model, not transfer learning" in text) == (used == "random")


# ----------------------------------------------------------------------------- transfer


def test_pixel_baseline_learns_a_visible_class():
    rng = np.random.default_rng(0)
    y = np.arange(80) % 2
    images = rng.integers(0, 100, (80, 64, 64, 1), dtype=np.uint8)
    images[y == 1, 10:30, 10:30] = 230  # COVID: a bright square (small for testing)
    out, info = transfer.pixel_baseline((images[:60], y[:60]), {"validation": (images[60:], y[60:], None)})
    val = out["validation"]
    assert list(val.columns) == transfer.PREDICTION_COLUMNS and (val["condition"] == transfer.PIXEL_BASELINE).all()
    assert (val["pred"] == y[60:]).mean() == 1.0 and info["n_train_per_class"] == {"Normal": 30, "COVID": 30}
    assert "32x32" in info["model"]


def test_predict_conditions_scores_every_head_on_any_set():
    rng = np.random.default_rng(1)
    y = np.arange(40) % 2
    x = rng.normal(0, 1, (40, 16)).astype(np.float32)
    x[:, 0] += 2 * (2 * y - 1)
    feats = {"real": (x[:30], y[:30]), "val": (x[30:], y[30:])}
    heads_, info, skipped = transfer.train_conditions(
        feats, conditions=["real", "real+classweight"], seeds=[0, 1], epochs=3, progress=False
    )
    assert set(heads_) == {("real", 0), ("real", 1), ("real+classweight", 0), ("real+classweight", 1)}
    preds, _, _ = transfer.run_conditions(
        feats, conditions=["real", "real+classweight"], seeds=[0, 1], epochs=3, progress=False
    )
    again = transfer.predict_conditions(heads_, x[30:], y[30:])
    pd.testing.assert_frame_equal(preds, again)  # train + predict == run_conditions
    other = transfer.predict_conditions(heads_, x[:5], y[:5], paths=[f"e{i}" for i in range(5)])
    assert len(other) == 4 * 5 and other["path"].str.startswith("e").all()


@pytest.fixture
def smoke_run(tmp_path, monkeypatch):
    """A smoke run on phantoms, prepared by notebook 01's function, with a tiny VGG-shaped network."""
    from test_transfer import use_tiny_vgg16

    cfg = config.resolve(profile="smoke", run_dir=str(tmp_path / "run"), seeds=[0, 1])
    data.prepare(cfg, progress=False)
    use_tiny_vgg16(monkeypatch)
    return cfg


def test_a_phantom_run_is_evaluated_on_the_shifted_external_set_and_the_large_set(smoke_run):
    cfg = smoke_run
    results = transfer.run_experiment(cfg, progress=False)
    ext, large = results["external_set"], results["large_test_set"]
    assert ext["evaluated"] and ext["kind"] == "phantoms" and ext["shift"]
    assert ext["counts"] == {"Normal": cfg.val_per_class["Normal"], "COVID": cfg.val_per_class["COVID"]}
    assert large["evaluated"] and large["counts"] == {"Normal": 50, "COVID": 50}
    assert set(ext["seconds"]) == {"load", "features", "predictions", "evaluation"}
    for cond, c in results["conditions"].items():
        assert c["external"]["n"] == ext["n"] and c["large_test"]["n"] == 100, cond
        assert [s["seed"] for s in c["external"]["per_seed"]] == [0, 1]
    assert results["procedure_error_rate"]["large_test"]["test_set_per_class"] == {"Normal": 50, "COVID": 50}
    assert results["baseline"]["name"] == transfer.PIXEL_BASELINE and results["baseline"]["large_test"]["n"] == 100
    trained = [c for c in results["conditions"] if c != "real:prior-corrected"]
    for name, n in (("external", ext["n"]), ("large_test", 100)):
        written = pd.read_csv(cfg.path("transfer", f"predictions_{name}.csv"))
        assert len(written) == len(trained) * 2 * n


def test_an_external_folder_with_one_class_and_an_overlap(smoke_run, tmp_path):
    import shutil

    from PIL import Image

    from covidgan_utils import phantoms

    cfg = smoke_run
    folder = tmp_path / "hospital-b" / "covid"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(5):
        Image.fromarray(phantoms.make_phantom(rng, 64, covid=True, shift=phantoms.EXTERNAL_SHIFT)).save(
            folder / f"n{i}.png"
        )
    manifest = data.read_manifest(cfg)
    train = manifest[(manifest.split == "train") & (manifest.label == "COVID")].iloc[0]
    shutil.copy(data.path_of(data.source_dir(cfg), train["path"]), folder / "copy.png")
    cfg = config.resolve(profile="smoke", run_dir=str(cfg.run_dir), seeds=[0, 1], external_dir=str(folder.parent))
    loaded = transfer.load_external_set(cfg, progress=False)
    assert loaded["source"]["kind"] == "folder" and loaded["source"]["counts"] == {"Normal": 0, "COVID": 5}
    assert loaded["source"]["overlap_excluded"] == [{"path": "covid/copy.png", "also_in": "train"}]
    assert loaded["images"].shape == (5, cfg.vgg_image_size, cfg.vgg_image_size, 1)
    results = transfer.run_experiment(cfg, progress=False)
    block = results["conditions"]["real"]["external"]
    assert block["specificity"] is None and block["roc_auc"] is None and block["sensitivity"] is not None
    assert "n/a" in evaluation.test_set_table(results).loc["real", ("specificity", "external")]


def test_external_dir_is_a_parameter_of_notebook_05_and_a_run_setting(tmp_path):
    from covidgan_utils import pipeline

    checked = pipeline.check_parameters({"external_dir": "elsewhere/hospital-b"}, pipeline.select("05"))
    assert checked == {"external_dir": "elsewhere/hospital-b"}
    assert "external_dir" in pipeline.declared_parameters(pipeline.select("05")[0])
    cfg = config.resolve(profile="smoke", run_dir=str(tmp_path / "run"), external_dir="elsewhere/hospital-b")
    assert cfg.external_dir == "elsewhere/hospital-b"


def test_an_inconclusive_truth_is_not_called_a_false_gain_rate():
    from covidgan_utils import evaluation, verdicts

    assert st.rate_is("gain") == "power"
    assert st.rate_is("no difference") == st.rate_is("loss") == "false-gain rate"
    assert st.rate_is("inconclusive") == "rate of declared gains; the truth is not known to be zero"
    truth = {
        "accuracy_difference": 0.010,
        "accuracy_interval": [-0.004, 0.024],
        "accuracy_kind": "inconclusive",
        "roc_auc_difference": 0.01,
        "roc_auc_interval": [0.004, 0.017],
        "roc_auc_kind": "gain",
    }
    sim = {
        "n_sim": 100,
        "draw_per_class": {"Normal": 120, "COVID": 72},
        "base": "real",
        "conditions": {
            "real+tf": {"truth": truth, "raw_gain": 0.5, "mcnemar_gain": 0.06, "rate_is": "false-gain rate"}
        },
    }  # as stored before: the wrong label
    line = next(s for s in verdicts.large_procedure_lines(sim) if s.startswith("real+tf vs real"))
    assert "+0.010 [-0.004, +0.024] (inconclusive)" in line
    assert "false-gain rate" not in line.replace("neither a false-gain rate", "")
    assert "truth is not known to be zero" in line
    table = evaluation.procedure_frame({"procedure_error_rate": {"large_test": sim}})
    assert list(table["the rate is"]) == ["rate of declared gains; the truth is not known to be zero"]


def test_the_independent_set_is_new_to_the_run_and_absent_on_real_data(smoke_run, tmp_path):
    from covidgan_utils.phantoms import INDEPENDENT_FACTOR

    cfg = smoke_run
    images, labels = data.load_independent(cfg)
    counts = {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}
    assert counts == {c: INDEPENDENT_FACTOR * n for c, n in cfg.train_per_class.items()}
    assert images.shape[1:] == (cfg.image_size, cfg.image_size, 1) and images.dtype == np.uint8
    seen = data.load_split(cfg, "all")[0].reshape(-1, cfg.image_size**2)
    assert not {row.tobytes() for row in seen} & {row.tobytes() for row in images.reshape(len(images), -1)}
    again_images, again_labels = data.load_independent(cfg)  # drawn once, read back the same
    assert np.array_equal(again_images, images) and np.array_equal(again_labels, labels)
    (tmp_path / "xrays").mkdir()
    real = config.resolve(profile="smoke", run_dir=str(tmp_path / "real"), data_dir=str(tmp_path / "xrays"))
    assert not real.uses_phantoms and data.load_independent(real) is None


def test_the_independent_images_are_decoded_once_per_run_and_made_again_when_their_source_changes(smoke_run, tmp_path):
    import shutil

    from covidgan_utils.data import stage
    from covidgan_utils.phantoms import ensure_independent_phantoms

    cfg = smoke_run
    images, labels = data.load_independent(cfg)
    cache = cfg.path("data", f"independent_{cfg.image_size}.npz")
    assert cache.is_file()
    with np.load(cache) as npz:  # what the later notebooks read: the same arrays
        assert np.array_equal(npz["images"], images) and np.array_equal(npz["labels"], labels)

    # the key follows the folder's files: a redrawn or edited picture makes the cache stale
    folder = tmp_path / "copy"
    shutil.copytree(ensure_independent_phantoms(cfg), folder)
    manifest = stage.read_manifest(cfg)
    before = stage._folder_key(folder, cfg.image_size, manifest)
    assert stage._folder_key(folder, cfg.image_size, manifest) == before
    assert stage._folder_key(folder, cfg.image_size * 2, manifest) != before
    picture = next((folder / "COVID").glob("*.png"))
    os.utime(picture, ns=(picture.stat().st_atime_ns, picture.stat().st_mtime_ns + 10**9))
    assert stage._folder_key(folder, cfg.image_size, manifest) != before

    # a cache from another source, or a broken one, is made again with the same images
    np.savez(cache, images=images[:1], labels=labels[:1], key=np.str_("another source"))
    again = data.load_independent(cfg)
    assert np.array_equal(again[0], images) and np.array_equal(again[1], labels)
    cache.write_bytes(b"not an npz")
    again = data.load_independent(cfg)
    assert np.array_equal(again[0], images) and np.array_equal(again[1], labels)

    # a link in its place is not read through, and what it points at is left as it was
    target = tmp_path / "elsewhere.npz"
    np.savez(target, images=images[:1], labels=labels[:1], key=np.str_("x"))
    kept = target.read_bytes()
    cache.unlink()
    cache.symlink_to(target)
    again = data.load_independent(cfg)
    assert np.array_equal(again[0], images) and target.read_bytes() == kept and not cache.is_symlink()
