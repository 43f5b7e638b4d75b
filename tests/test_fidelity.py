"""Synthetic-image metrics on small arrays with known answers (small for testing: tens of points/images)."""

import json
import math

import numpy as np
import pytest

from covidgan_utils import fidelity


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    return rng.normal(size=(120, 8))


def test_identical_sets_score_as_identical(feats):
    assert fidelity.frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    m = fidelity.prdc(feats, feats.copy(), k=5)
    assert (m["precision"], m["recall"], m["coverage"]) == pytest.approx((1.0, 1.0, 1.0), abs=1e-9)
    assert m["density"] >= 1.0  # every point lies in its own ball, plus neighbours'
    k = fidelity.kid(feats, feats.copy(), subset_size=50, n_subsets=50)
    far = fidelity.kid(feats, feats + 10.0, subset_size=50, n_subsets=50)
    assert abs(k["kid"]) < 0.05 * far["kid"]
    assert k["subset_size"] == 50 and k["kid_std"] >= 0


def test_disjoint_sets_score_as_disjoint(feats):
    shifted = feats + 10.0
    assert fidelity.frechet_distance(feats, shifted) == pytest.approx(8 * 100.0, rel=0.05)  # |mu diff|^2 = 8 * 10^2
    assert fidelity.kid(feats, shifted, subset_size=50, n_subsets=20)["kid"] > 1.0
    m = fidelity.prdc(feats, shifted, k=5)
    assert (m["precision"], m["recall"], m["coverage"], m["density"]) == pytest.approx((0.0, 0.0, 0.0, 0.0), abs=1e-9)


def test_frechet_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 2))
    y = rng.normal(size=(4000, 2)) * 2.0 + np.array([1.0, 0.0])
    # N(0, I) vs N((1,0), 4I): 1 + tr(I + 4I - 2*2I) = 1 + 2 = 3
    assert fidelity.frechet_distance(x, y) == pytest.approx(3.0, rel=0.08)


def test_frechet_survives_fewer_points_than_dimensions():
    rng = np.random.default_rng(2)
    value = fidelity.frechet_distance(rng.normal(size=(5, 20)), rng.normal(size=(6, 20)))
    assert math.isfinite(value) and value > 0


def test_precision_without_recall_for_a_collapsed_generator(feats):
    collapsed = np.repeat(feats[:3], 40, axis=0) + 1e-3  # realistic but only three distinct images
    m = fidelity.prdc(feats, collapsed, k=5)
    assert m["precision"] == pytest.approx(1.0, abs=1e-9)
    assert m["recall"] < 0.1 and m["coverage"] < 0.5


def _images(n, value, rng, size=16, noise=10):
    img = np.full((n, size, size, 1), value, float) + rng.normal(0, noise, (n, size, size, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_copied_training_image_is_flagged_as_memorized():
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (40, 16, 16, 1), dtype=np.uint8)
    heldout = rng.integers(0, 256, (30, 16, 16, 1), dtype=np.uint8)
    generated = rng.integers(0, 256, (20, 16, 16, 1), dtype=np.uint8)
    generated[7] = train[12]
    mem = fidelity.memorization(generated, train, heldout)
    assert mem["n_copies"] == 1
    assert mem["nearest_train_distance"][7] == pytest.approx(0.0, abs=1e-6) and mem["nearest_train_index"][7] == 12
    assert mem["pixel"]["fraction_below_heldout_p1"] == pytest.approx(1 / 20)
    assert "MEMORIZED" in mem["verdict"] and "Mann-Whitney" in mem["verdict"]
    pairs = fidelity.closest_pairs(mem, n=3)
    assert (pairs[0]["generated"], pairs[0]["train"]) == (7, 12) and set(pairs[0]) == {"generated", "train", "distance"}
    assert pairs[0]["distance"] == pytest.approx(0.0, abs=1e-6)
    assert pairs[1]["distance"] > 0


def test_fresh_images_are_not_flagged():
    rng = np.random.default_rng(4)
    train, heldout, generated = (rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8) for n in (40, 30, 30))
    f = {k: rng.normal(size=(n, 4)) for k, n in (("train", 40), ("heldout", 30), ("generated", 30))}
    mem = fidelity.memorization(generated, train, heldout, f["generated"], f["train"], f["heldout"])
    assert mem["n_copies"] == 0
    assert mem["pixel"]["mannwhitney_p"] > 0.05 and "feature" in mem
    assert mem["verdict"].startswith("No sign of memorization")


def test_near_copies_are_possible_memorization():
    rng = np.random.default_rng(5)
    train = rng.integers(0, 256, (40, 16, 16, 1), dtype=np.uint8)
    heldout = rng.integers(0, 256, (30, 16, 16, 1), dtype=np.uint8)
    near = np.clip(train[:25].astype(int) + rng.integers(-6, 7, train[:25].shape), 0, 255).astype(np.uint8)
    mem = fidelity.memorization(near, train, heldout)
    assert mem["n_copies"] == 0 and mem["pixel"]["mannwhitney_p"] < 0.001
    assert mem["verdict"].startswith("POSSIBLE MEMORIZATION")


def test_brightness_gap_sign_and_values():
    rng = np.random.default_rng(6)
    real = np.concatenate([_images(30, 100, rng), _images(30, 100, rng)])
    real_y = np.r_[np.zeros(30, int), np.ones(30, int)]
    fake = np.concatenate([_images(20, 100, rng), _images(20, 140, rng)])  # generated COVID 40 levels brighter
    fake_y = np.r_[np.zeros(20, int), np.ones(20, int)]
    gap = fidelity.brightness_gap(real, real_y, fake, fake_y)
    assert gap["COVID"]["difference"] == pytest.approx(40, abs=1.5)
    assert gap["COVID"]["p_value"] < 1e-6
    assert abs(gap["Normal"]["difference"]) < 1.5 and gap["Normal"]["p_value"] > 1e-3
    assert gap["between_classes"]["generated"] == pytest.approx(40, abs=2)
    assert abs(gap["between_classes"]["real"]) < 1.5
    assert gap["COVID"]["real_contrast"] == pytest.approx(10, abs=1)


def test_tstr_on_separable_data_beats_majority_rate():
    rng = np.random.default_rng(7)

    def make(n_normal, n_covid):
        x = np.concatenate([_images(n_normal, 80, rng, 8, 20), _images(n_covid, 160, rng, 8, 20)])
        return x, np.r_[np.zeros(n_normal, int), np.ones(n_covid, int)]

    fake_x, fake_y = make(15, 25)
    val_x, val_y = make(30, 10)
    out = fidelity.tstr(fake_x, fake_y, val_x, val_y, *make(20, 12), size=8)
    assert out["majority_rate"] == pytest.approx(30 / 40)
    assert out["accuracy"] > out["majority_rate"] and out["beats_majority"]
    assert out["trtr_accuracy"] > out["majority_rate"]
    # a generator that ignores the label: synthetic-only training is no better than guessing
    shuffled = rng.permutation(fake_y)
    assert fidelity.tstr(fake_x, shuffled, val_x, val_y, size=8)["accuracy"] < 0.95


def test_lowres_probe_sees_a_brightness_fingerprint():
    rng = np.random.default_rng(8)
    real = _images(30, 100, rng, 8)
    real_y = np.r_[np.zeros(15, int), np.ones(15, int)]
    fake = _images(30, 150, rng, 8)
    out = fidelity.lowres_probe(real, real_y, fake, real_y, real, real_y, size=4)
    assert out["real_vs_generated_auc"] > 0.95
    same = fidelity.lowres_probe(real, real_y, _images(30, 100, rng, 8), real_y, real, real_y, size=4)
    assert same["real_vs_generated_auc"] < 0.85


def test_inception_without_weights_says_how_to_supply_them(monkeypatch):
    monkeypatch.delenv(fidelity.ENV_INCEPTION, raising=False)
    assert fidelity.choose_extractor(None) == "domain"
    assert fidelity.choose_extractor(None, "weights.pth") == "inception"
    with pytest.raises(FileNotFoundError, match="feature_weights") as err:
        fidelity.inception_extractor("no/such/file.pth")
    assert fidelity.INCEPTION_URL in str(err.value) and "domain" in str(err.value)
    with pytest.raises(ValueError, match="feature_extractor"):
        fidelity.choose_extractor("clip")


def test_domain_extractor_features():
    rng = np.random.default_rng(9)
    x = np.concatenate([_images(20, 90, rng, 32, 30), _images(20, 150, rng, 32, 30)])
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    ex = fidelity.domain_extractor(x, y, hidden=(16, 8))
    f = ex(x)
    assert f.shape == (40, ex.info["dim"]) and 0 < ex.info["dim"] <= 8
    assert np.allclose(f.mean(0), 0, atol=1e-6)  # standardised on the real training images
    assert ex.info["train_accuracy"] == pytest.approx(1.0, abs=1e-9)
    assert (fidelity.domain_predict(ex, x) == y).all()


def _hand_made_run(root):
    """A whole run made by hand: data cache + manifest, one framework's synthetic PNGs, sample grids."""
    import pandas as pd
    from PIL import Image

    from covidgan_utils import config, data
    from covidgan_utils.files import write_json, write_npz

    rng = np.random.default_rng(10)
    cfg = config.resolve(profile="smoke", run_dir=str(root / "run"))
    size = cfg.image_size
    rows, images = [], []
    for split, n in (("train", 12), ("val", 8)):
        for label, value in (("Normal", 90), ("COVID", 150)):
            for i in range(n):
                rows.append(
                    {"path": f"{label}/{split}{i}.png", "label": label, "split": split, "sha256": f"{split}{label}{i}"}
                )
                images.append(_images(1, value, rng, size, 30)[0])
    manifest = pd.DataFrame(rows)
    (cfg.run_dir / "data").mkdir(parents=True)
    manifest.to_csv(cfg.path("data", "manifest.csv"), index=False)
    write_json(cfg.path("data", "info.json"), {"phantoms": True})
    write_npz(
        cfg.path("data", f"arrays_{size}.npz"),
        images=np.stack(images),
        sha256=manifest["sha256"].to_numpy(str),
        decoder_version=data.DECODER_VERSION,
    )
    with pytest.raises(FileNotFoundError, match="04_synthetic_data"):
        fidelity.prepare(cfg)
    syn = cfg.path("synthetic", "torch")
    syn_rows = []
    for label, value, n in (("Normal", 95, 6), ("COVID", 170, 10)):  # generated COVID brighter than real
        (syn / label).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_images(1, value, rng, size, 30)[0, ..., 0]).save(syn / label / f"{i}.png")
            syn_rows.append({"path": f"synthetic/torch/{label}/{i}.png", "label": label, "seed": 0})
    pd.DataFrame(syn_rows).to_csv(syn / "manifest.csv", index=False)
    for epoch in (0, 1):
        write_npz(
            cfg.path("torch_gan", "samples", f"epoch_{epoch:04d}.npz"),
            images=_images(8, 120, rng, size, 5 + 20 * epoch),
            labels=np.repeat([0, 1], 4),
            epoch=epoch,
        )
    return cfg


def test_evaluate_run_writes_the_contract(tmp_path):
    cfg = _hand_made_run(tmp_path)
    out = fidelity.evaluate_run(cfg, progress=False)
    saved = json.loads(cfg.path("evaluation", "metrics.json").read_text())
    assert saved == out
    assert saved["feature_extractor"] == "domain"
    assert "tf" not in saved and "tf" in saved["notes"]
    m = saved["torch"]
    for key in ("kid", "fd", "precision", "recall", "density", "coverage", "gan_test_accuracy", "tstr_accuracy"):
        assert isinstance(m[key], float), key
    assert m["memorization"]["n_generated"] == 16 and "verdict" in m["memorization"]
    assert m["brightness_gap"]["COVID"]["difference"] > 10
    assert m["diversity_over_epochs"]["epoch"] == [0, 1]
    assert m["diversity_over_epochs"]["all"][1] > m["diversity_over_epochs"]["all"][0]
    assert saved["reference"]["majority_rate"] == pytest.approx(0.5, abs=1e-9)
    assert len(saved["reading"]) == 2 and saved["reading"][0].startswith("torch:")
    # the fixed feature space: its version, the real-vs-real reference, and each framework's numbers beside it
    assert saved["fixed"]["features"]["name"] == "fixed-v1"
    ref = saved["fixed"]["real_vs_real"]
    assert ref["n_real"] == ref["n_fake"] == {"Normal": 6, "COVID": 6}
    fixed = m["fixed"]
    assert fixed["n_real"] == {"Normal": 6, "COVID": 6} and fixed["n_fake"] == {"Normal": 6, "COVID": 6}
    assert fixed["real_vs_real"]["recall"] == ref["recall"] and isinstance(fixed["recall"], float)
    assert fixed["recall_name"].startswith("PRDC recall, k=5, n_real=6+6, n_fake=6+6")
    assert fixed["recall_name"] in saved["reading"][0]
    table = fidelity.summary_table(saved)
    assert list(table.columns) == ["held-out real", "torch"]
    assert table.loc["recall (fixed-v1)", "held-out real"] == pytest.approx(ref["recall"])
    assert table.loc["KID (fixed-v1)", "torch"] == pytest.approx(fixed["kid"])
    from covidgan_utils import provenance

    assert provenance.read(cfg.path("evaluation"))["made_by"] == "06_evaluating_synthetic_data"
    provenance.check(cfg.path("evaluation"), cfg, "06_evaluating_synthetic_data")


def test_stages_run_once_and_evaluate_run_reuses_them(tmp_path):
    """Notebook 06's step-by-step path: each stage computed once, and metrics.json built from those results."""
    cfg = _hand_made_run(tmp_path)
    p = fidelity.prepare(cfg, progress=False)
    shown = {
        "sets": fidelity.set_distances(p),
        "class": fidelity.class_probes(p),
        "memorization": fidelity.memorization_checks(p),
        "shortcuts": fidelity.shortcut_probes(p),
    }
    assert fidelity.set_distances(p) is shown["sets"]  # kept, not recomputed
    out = fidelity.evaluate_run(cfg, prepared=p, write=False)
    assert out["torch"]["kid"] == pytest.approx(shown["sets"]["torch"]["kid"])
    assert out["reference"]["kid"] == pytest.approx(shown["sets"]["reference"]["kid"])
    assert out["torch"]["tstr_accuracy"] == pytest.approx(shown["class"]["torch"]["tstr"]["accuracy"])
    assert out["reference"]["trtr_accuracy"] == pytest.approx(shown["class"]["reference"]["tstr"]["accuracy"])
    assert out["torch"]["memorization"]["verdict"] == shown["memorization"]["torch"]["verdict"]
    assert out["torch"]["shortcuts"]["real_vs_generated_auc"] == pytest.approx(
        shown["shortcuts"]["torch"]["lowres"]["real_vs_generated_auc"]
    )


@pytest.mark.slow
def test_notebook_06_writes_what_evaluate_run_writes(tmp_path):
    """Notebook 06 executed (papermill) and the one-call wrapper on the same run: the same metrics.json, stamped."""
    from helpers import assert_same_json, run_notebook

    from covidgan_utils import provenance

    cfg = _hand_made_run(tmp_path)
    run_notebook("06", tmp_path, profile="smoke", run_dir=str(cfg.run_dir))
    by_notebook = json.loads(cfg.path("evaluation", "metrics.json").read_text())
    assert provenance.read(cfg.path("evaluation"))["made_by"] == "06_evaluating_synthetic_data"
    by_wrapper = fidelity.evaluate_run(cfg, progress=False, write=False)
    assert_same_json(by_wrapper, by_notebook)


def test_frechet_with_more_dimensions_than_images_matches_sqrtm():
    from scipy import linalg

    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(30, 100)), rng.normal(size=(40, 100)) * 1.5 + 0.3
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    by_sqrtm = (
        ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s_x + s_y) - 2 * np.real(np.trace(linalg.sqrtm(s_x @ s_y)))
    )
    assert fidelity.frechet_distance(x, y) == pytest.approx(by_sqrtm, rel=1e-6)


# ----------------------------------------------------------------------------- against the field's libraries


class _PassThrough:
    """A torch module that hands torchmetrics the feature vectors it is given (the features are computed here)."""

    def __new__(cls, dim):
        import torch

        module = torch.nn.Identity()
        module.num_features = dim
        return module


def test_kid_matches_torchmetrics():
    torch = pytest.importorskip("torch")
    kid_module = pytest.importorskip("torchmetrics.image.kid")
    rng = np.random.default_rng(20)
    x, y = rng.normal(size=(60, 16)), rng.normal(size=(60, 16)) * 1.3 + 0.4
    # subsets as large as the sets: every subset is the whole set, so both sample the same MMD^2
    metric = kid_module.KernelInceptionDistance(feature=_PassThrough(16), subsets=3, subset_size=60)
    metric.update(torch.as_tensor(x), real=True)
    metric.update(torch.as_tensor(y), real=False)
    theirs, theirs_sd = (float(v) for v in metric.compute())
    ours = fidelity.kid(x, y, subset_size=60, n_subsets=3)
    assert ours["kid"] == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    assert ours["kid_std"] == pytest.approx(theirs_sd, abs=1e-9)
    # random subsets of unequal sets: the same estimator, so the means agree within the subset spread
    y_big = rng.normal(size=(90, 16)) * 1.3 + 0.4
    metric = kid_module.KernelInceptionDistance(feature=_PassThrough(16), subsets=200, subset_size=40)
    metric.update(torch.as_tensor(x), real=True)
    metric.update(torch.as_tensor(y_big), real=False)
    theirs, theirs_sd = (float(v) for v in metric.compute())
    ours = fidelity.kid(x, y_big, subset_size=40, n_subsets=200)
    assert ours["kid"] == pytest.approx(theirs, abs=0.5 * theirs_sd)
    assert ours["kid_std"] == pytest.approx(theirs_sd, rel=0.3)
    a, b = x[:40], y[:40]
    assert fidelity.mmd2(a, b) == pytest.approx(
        float(kid_module.poly_mmd(torch.as_tensor(a), torch.as_tensor(b))), rel=1e-9
    )


@pytest.mark.parametrize("n_x, n_y, dim", [(200, 150, 8), (30, 40, 100)])
def test_frechet_matches_torchmetrics(n_x, n_y, dim):
    torch = pytest.importorskip("torch")
    fid_module = pytest.importorskip("torchmetrics.image.fid")
    rng = np.random.default_rng(21)
    x = rng.normal(size=(n_x, dim))
    y = rng.normal(size=(n_y, dim)) @ np.diag(np.linspace(0.5, 2.0, dim)) + 0.3
    metric = fid_module.FrechetInceptionDistance(feature=_PassThrough(dim))
    metric.update(torch.as_tensor(x), real=True)
    metric.update(torch.as_tensor(y), real=False)
    assert fidelity.frechet_distance(x, y) == pytest.approx(float(metric.compute()), rel=1e-6)


def test_prdc_matches_the_reference_package(capsys):
    reference = pytest.importorskip("prdc")
    rng = np.random.default_rng(22)
    real = rng.normal(size=(80, 10))
    fake = np.concatenate([rng.normal(size=(40, 10)) * 0.5, rng.normal(size=(30, 10)) + 1.5])
    for k in (3, 5):
        theirs = reference.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
        ours = fidelity.prdc(real, fake, k=k)
        for key in ("precision", "recall", "density", "coverage"):
            assert ours[key] == pytest.approx(float(theirs[key]), abs=1e-12), (k, key)
    capsys.readouterr()  # the reference package prints its sample sizes


# ----------------------------------------------------------------------------- the fixed feature space


def _pattern(size=64):
    yy, xx = np.mgrid[0:size, 0:size]
    return ((xx * 3 + yy * yy // 16) % 256).astype(np.uint8)[None, ..., None]


def test_fixed_features_are_pinned():
    """The fixed map's values are part of its version: if this fails, raise FEATURES_VERSION and re-record references."""
    f = fidelity.fixed_features(_pattern())
    assert fidelity.FEATURES_VERSION == 1 and fidelity.FEATURES_NAME == "fixed-v1"
    assert f.shape == (1, fidelity.FEATURES_DIM) == (1, 64)
    assert f[0, :4] == pytest.approx([-1.86356614, 0.47163302, 0.00538605, 0.6036567], abs=1e-6)
    assert np.linalg.norm(f) == pytest.approx(8.6239349472452, rel=1e-6)


def test_fixed_features_learn_nothing_from_the_batch():
    rng = np.random.default_rng(23)
    images = rng.integers(0, 256, (6, 64, 64, 1), dtype=np.uint8)
    batch = fidelity.fixed_features(images)
    one_by_one = np.concatenate([fidelity.fixed_features(images[i : i + 1]) for i in range(6)])
    assert np.allclose(batch, one_by_one, atol=1e-12)
    assert np.allclose(fidelity.fixed_features(images[..., 0]), batch, atol=1e-12)  # (N, H, W) reads the same
    assert np.allclose(fidelity.fixed_features(images.astype(np.float32) / 255), batch, atol=1e-5)
    # other image sizes land in the same space: 128 px block-averages to the same 32 x 32 as 64 px
    big = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
    assert np.allclose(fidelity.fixed_features(big), batch, atol=1e-5)  # float32 block means: rounding only
    assert fidelity.fixed_features(images[:0]).shape == (0, 64)


def _two_class_images(n_per_class, rng, brightness=(90, 150), noise=30, size=32):
    x = np.concatenate([_images(n_per_class, v, rng, size, noise) for v in brightness])
    return x, np.repeat([0, 1], n_per_class)


def test_real_vs_real_reference_and_a_generated_set_beside_it():
    rng = np.random.default_rng(24)
    real_x, real_y = _two_class_images(41, rng)
    a, b = fidelity.real_halves(real_y)
    assert not set(a) & set(b) and len(a) == len(b) == 40  # 20 + 20 each: the odd image of a class is left out
    assert (np.bincount(real_y[a]) == [20, 20]).all() and (np.bincount(real_y[b]) == [20, 20]).all()
    like_x, like_y = _two_class_images(50, rng)
    dark_x, dark_y = _two_class_images(50, rng, brightness=(40, 60))
    out = fidelity.fixed_space(real_x, real_y, {"like": (like_x, like_y), "dark": (dark_x, dark_y)}, subset_size=20)
    ref, like, dark = out["real_vs_real"], out["like"], out["dark"]
    assert out["features"]["name"] == "fixed-v1" and out["features"]["dim"] == 64
    assert like["n_fake"] == ref["n_fake"] == {"Normal": 20, "COVID": 20}  # compared at the same size
    assert (
        ref["recall_name"]
        == "PRDC recall, k=5, n_real=20+20, n_fake=20+20 (Normal+COVID), fixed-v1 features, class mean"
    )
    assert abs(ref["kid"]) < 0.1 * dark["kid"] and abs(like["kid"]) < 0.1 * dark["kid"]
    assert dark["recall"] < 0.1 < ref["recall"] and like["recall"] > 0.5
    assert dark["fd"] > 2 * max(ref["fd"], like["fd"])  # 20 images in 64 dimensions: FD is mostly bias here


# ----------------------------------------------------------------------------- one pixel path, one probe


def test_one_pixel_path_block_mean_and_box_resize_agree():
    rng = np.random.default_rng(25)
    images = rng.integers(0, 256, (3, 64, 64, 1), dtype=np.uint8)
    by_blocks = fidelity.pixels(images, 32)
    from PIL import Image

    by_box = np.stack(
        [np.asarray(Image.fromarray(a).resize((32, 32), Image.Resampling.BOX)).ravel() for a in fidelity.gray01(images)]
    )
    assert np.allclose(by_blocks, by_box, atol=1e-5)
    assert fidelity.pixels(rng.integers(0, 256, (2, 48, 48), dtype=np.uint8), 32).shape == (2, 1024)


def test_gan_test_is_quality_class_fidelity():
    from covidgan_utils import quality

    assert quality.class_fidelity is fidelity.gan_test and quality.diversity is fidelity.diversity
    rng = np.random.default_rng(26)
    real_x, real_y = _two_class_images(20, rng, noise=20)
    fake_x, fake_y = _two_class_images(15, rng, noise=20)
    out = quality.class_fidelity(real_x, real_y, fake_x, fake_y, seed=0)
    assert out["accuracy"] == pytest.approx(1.0) and out["real_cv_accuracy"] == pytest.approx(1.0)
    assert out["chance"] == pytest.approx(0.5) and set(out["per_class_recall"]) == {"Normal", "COVID"}
    assert out["real_cv_per_class_recall"] == {"Normal": pytest.approx(1.0), "COVID": pytest.approx(1.0)}
    assert out["real_cv_balanced_accuracy"] == pytest.approx(1.0) and out["real_n_per_class"] == {"Normal": 20, "COVID": 20}
    swapped = fidelity.gan_test(real_x, real_y, fake_x, 1 - fake_y)  # a generator that draws the other class
    assert swapped["accuracy"] == pytest.approx(0.0) and swapped["balanced_accuracy"] == pytest.approx(0.0)
    one_class = fidelity.gan_test(real_x[real_y == 0], real_y[real_y == 0], fake_x, fake_y)
    assert math.isnan(one_class["real_cv_accuracy"]) and one_class["accuracy"] == pytest.approx(0.5)


def test_gan_test_independent_check_tells_a_caricature_from_copies_of_the_training_images():
    from covidgan_utils import gan_report

    # Faint classes (brightness 118 vs 122 under noise 40): the probe learns its training images far better than new ones.
    rng = np.random.default_rng(31)
    real_x, real_y = _two_class_images(120, rng, brightness=(118, 122), noise=40)
    fresh = _two_class_images(480, rng, brightness=(118, 122), noise=40)  # seen by neither the GAN nor the first probe
    copies = np.clip(real_x.astype(int) + rng.integers(-2, 3, real_x.shape), 0, 255).astype(np.uint8)
    caricature = _two_class_images(120, rng, brightness=(112, 128), noise=40)  # the class difference exaggerated
    like = _two_class_images(120, rng, brightness=(118, 122), noise=40)  # new draws of the real population

    copied = fidelity.gan_test(real_x, real_y, copies, real_y, independent=fresh)
    for name in ("Normal", "COVID"):  # copies beat the cross-validated level but reach only the training images' own
        assert copied["per_class_recall"][name] > copied["real_cv_per_class_recall"][name] + 0.1
        assert copied["per_class_recall"][name] <= copied["real_train_per_class_recall"][name]
        ind = copied["independent"]  # to a classifier that saw neither, copies are as recognisable as the originals
        assert abs(ind["per_class_recall"][name] - ind["real_per_class_recall"][name]) < 0.05
    assert copied["independent"]["n_fresh_per_class"] == {"Normal": 480, "COVID": 480}
    lines = gan_report.fidelity_reading(copied)
    assert "cannot tell a caricature from a likeness" in lines[0] and "no caricature shown" in lines[2]
    assert "a likeness of the training images, not a caricature" in lines[5]

    exaggerated = fidelity.gan_test(real_x, real_y, *caricature, independent=fresh)
    ind = exaggerated["independent"]
    assert all(ind["per_class_recall"][c] > ind["real_per_class_recall"][c] + 0.05 for c in ("Normal", "COVID"))
    lines = gan_report.fidelity_reading(exaggerated)
    assert "MORE recognisable than real ones: a caricature" in lines[2] and "confirms a caricature" in lines[5]

    new = fidelity.gan_test(real_x, real_y, *like, independent=fresh)
    lines = gan_report.fidelity_reading(new)
    assert "caricature" not in " ".join(lines[:2]) and lines[5].endswith("at the real images' level")
    with pytest.raises(ValueError, match="both classes"):
        fidelity.gan_test(real_x, real_y, *like, independent=(fresh[0][:10], fresh[1][:10]))


def test_fidelity_loads_weights_only():
    from pathlib import Path

    import covidgan_utils.fidelity as package

    text = "".join(p.read_text() for p in Path(package.__file__).parent.glob("*.py"))
    calls = text.count("torch.load(")
    assert calls >= 1 and text.count("weights_only=True") >= calls and "weights_only=False" not in text


def test_set_distances_compare_every_set_at_the_held_out_size():
    from covidgan_utils.fidelity import evaluate

    rng = np.random.default_rng(41)
    y_tr, y_val, y_g = np.repeat([0, 1], [60, 33]), np.repeat([0, 1], [12, 7]), np.repeat([0, 1], [40, 67])
    feats = {name: rng.normal(0, 1, (len(y), 8)) for name, y in (("train", y_tr), ("val", y_val), ("torch", y_g))}
    images = {name: (np.zeros((len(y), 4, 4, 1), np.uint8), y) for name, y in (("train", y_tr), ("val", y_val), ("torch", y_g))}
    p = evaluate.Prepared(cfg=None, extractor=None, images=images, features=feats, notes={}, frameworks=["torch"])
    sets = evaluate.set_distances(p, k=3, subset_size=5, n_subsets=5)
    assert sets["reference"]["n_per_class"] == sets["torch"]["n_per_class"] == {"Normal": 12, "COVID": 7}
    assert {c: m["n_generated"] for c, m in sets["torch"]["per_class"].items()} == {"Normal": 12, "COVID": 7}
