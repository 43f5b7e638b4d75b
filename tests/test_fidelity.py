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


def test_evaluate_run_writes_the_contract(tmp_path):
    """A whole run made by hand: data cache + manifest, one framework's synthetic PNGs, sample grids."""
    import pandas as pd
    from PIL import Image

    from covidgan_utils import config, data
    from covidgan_utils.files import write_json, write_npz

    rng = np.random.default_rng(10)
    cfg = config.resolve(profile="smoke", run_dir=str(tmp_path / "run"))
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
    write_npz(cfg.path("data", f"arrays_{size}.npz"), images=np.stack(images), sha256=manifest["sha256"].to_numpy(str),
              decoder_version=data.DECODER_VERSION)
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
    table = fidelity.summary_table(saved)
    assert list(table.columns) == ["held-out real", "torch"]


def test_frechet_with_more_dimensions_than_images_matches_sqrtm():
    from scipy import linalg

    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(30, 100)), rng.normal(size=(40, 100)) * 1.5 + 0.3
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    by_sqrtm = (
        ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s_x + s_y) - 2 * np.real(np.trace(linalg.sqrtm(s_x @ s_y)))
    )
    assert fidelity.frechet_distance(x, y) == pytest.approx(by_sqrtm, rel=1e-6)
