"""Transfer learning: cached features == frozen forward every epoch, weights loading, the whole experiment."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from covidgan_utils import config, synthesis, transfer

SIZE = 32  # small for testing


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster, and immune to a busy shared CPU (spinning OpenMP threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyVGG(nn.Module):
    """A VGG-shaped network (features, avgpool, classifier[0..6] with Dropout at 2 and 5), small for testing."""

    def __init__(self, hidden=24):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(16, hidden),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(hidden, 2),
        )


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return TinyVGG().eval()


def use_tiny_vgg16(monkeypatch):
    """transfer.build_vgg16 replaced by the tiny network (random weights said), for whole-experiment tests."""
    info = {"used": "random", "description": "a tiny VGG-shaped network (small for testing)"}
    monkeypatch.setattr(
        transfer, "build_vgg16", lambda weights, verbose=True: (tiny_model(), {"requested": str(weights), **info})
    )


def toy_images(n, seed=0):
    """Gray uint8 images whose class (COVID = 1) is a bright square at a class-dependent place."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 100, (n, SIZE, SIZE, 1), dtype=np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 + 14 * k : 12 + 14 * k, 4:14] = 240
    return images, labels.astype(np.int64)


def test_cached_features_equal_frozen_forward_every_epoch():
    model = tiny_model()
    images, labels = toy_images(20)
    val, _ = toy_images(10, seed=1)
    feats = transfer.extract_features(model, images, SIZE, batch_size=6, progress=False)
    head_a, loss_a = transfer.train_head(feats, labels, epochs=4, batch_size=8, seed=5)
    head_b, loss_b = transfer.train_head_plain(model, images, labels, SIZE, epochs=4, batch_size=8, seed=5)
    assert len(loss_a) == 4 and loss_a == pytest.approx(loss_b, abs=1e-6)
    torch.testing.assert_close(head_a.weight, head_b.weight, atol=1e-6, rtol=1e-5)
    prob_a = transfer.predict_proba(head_a, transfer.extract_features(model, val, SIZE, progress=False))
    prob_b = transfer.predict_proba_plain(model, head_b, val, SIZE)
    np.testing.assert_allclose(prob_a, prob_b, atol=1e-6)
    assert ((prob_a >= 0.5) == (prob_b >= 0.5)).all()
    # a different seed changes the head: the comparison above is not trivially true
    head_c, _ = transfer.train_head(feats, labels, epochs=4, batch_size=8, seed=6)
    assert not torch.allclose(head_a.weight, head_c.weight)


def test_channels_last_features_equal_the_default_layouts_and_leave_the_model_as_it_was():
    """The fast memory order (the default) changes the features only by float rounding, and hands the model back in
    the order it came in, whichever that was."""
    model = tiny_model()
    images, _ = toy_images(12)
    plain = transfer.extract_features(model, images, SIZE, batch_size=5, progress=False, channels_last=False)
    fast = transfer.extract_features(model, images, SIZE, batch_size=5, progress=False)
    assert plain.shape == fast.shape == (12, model.classifier[6].in_features) and np.abs(plain).max() > 0
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5 * np.abs(plain).max())
    first = model.features[0].weight
    assert first.is_contiguous() and not first.is_contiguous(memory_format=torch.channels_last)
    model.features.to(memory_format=torch.channels_last)
    transfer.extract_features(model, images[:2], SIZE, progress=False, channels_last=False)
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_frozen_dropout_is_identity_in_eval_mode():
    model = tiny_model()
    x = transfer.preprocess(toy_images(4)[0], SIZE)
    with torch.no_grad():
        a, b = transfer.frozen_forward(model, x), transfer.frozen_forward(model, x)
        assert torch.equal(a, b)
        model.train()
        c = transfer.frozen_forward(model, x)
    model.eval()
    assert not torch.equal(a, c)  # dropout exists, and only eval mode switches it off


def test_preprocess_gray_to_normalised_rgb():
    images = np.zeros((2, 40, 40, 1), np.uint8)
    images[1] = 255
    x = transfer.preprocess(images, SIZE)
    assert x.shape == (2, 3, SIZE, SIZE)
    mean, std = np.array(transfer.IMAGENET_MEAN), np.array(transfer.IMAGENET_STD)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), -mean / std, rtol=1e-5)
    np.testing.assert_allclose(x[1, :, 5, 5].numpy(), (1 - mean) / std, rtol=1e-5)
    with pytest.raises(ValueError, match="at least 32"):
        transfer.preprocess(images, 16)


def test_random_init_is_loud_and_local_weights_load(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "imagenet_cache_file", lambda: tmp_path / "no-such-cache" / "vgg16-397923af.pth")
    with pytest.warns(UserWarning, match="RANDOM weights"):
        model, info = transfer.build_vgg16("auto", verbose=False)
    assert info["used"] == "random" and "not in the torch hub cache" in info["note"]
    assert model.classifier[6].out_features == 2
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.6.weight", "classifier.6.bias"]
    path = tmp_path / "vgg16_random.pth"
    state = model.state_dict()
    torch.save(state, path)
    loaded, info2 = transfer.build_vgg16(str(path), verbose=False)
    assert info2["used"] == "file" and info2["file"] == "vgg16_random.pth"
    for key in ("features.0.weight", "features.28.bias", "classifier.0.weight", "classifier.3.weight"):
        assert torch.equal(loaded.state_dict()[key], state[key])
    assert not loaded.training and loaded.classifier[6].weight.requires_grad
    assert not loaded.features[0].weight.requires_grad
    path.unlink()  # 528 MB: do not leave it in pytest's kept temporary folders
    bad = tmp_path / "not_vgg.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="not a VGG16 state_dict"):
        transfer.build_vgg16(str(bad), verbose=False)


def test_missing_weights_say_how_to_supply_them(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        transfer.build_vgg16(str(tmp_path / "missing.pth"), verbose=False)
    from covidgan_utils.download import DownloadError

    def offline(*args, **kwargs):
        raise DownloadError("no network (simulated)")

    monkeypatch.setattr(transfer, "download", offline)
    with pytest.raises(RuntimeError) as err:
        transfer.build_vgg16("imagenet", verbose=False)
    text = str(err.value)
    assert transfer.VGG16_URL in text and "vgg_weights=" in text and "simulated" in text


def fake_features(n, shift, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(0, 1, (n, 16)).astype(np.float32)
    x[:, 0] += shift * (2 * y - 1)
    return x, y.astype(np.int64)


def test_run_conditions_skips_missing_and_writes_contract(tmp_path):
    feats = {"real": fake_features(30, 3.0, 0), "val": fake_features(20, 3.0, 1), "torch": fake_features(24, 3.0, 2)}
    preds, info, skipped = transfer.run_conditions(feats, seeds=[0, 1], epochs=10, progress=False)
    assert set(preds["condition"]) == {"real", "real+torch", "real+classweight", "synthetic-only:torch"}
    assert set(skipped) == {"real+tf", "real+copies", "synthetic-only:tf"} and "04_synthetic_data" in skipped["real+tf"]
    assert info["real+torch"]["n_train"] == 54
    assert info["synthetic-only:torch"]["n_train_per_class"] == {"Normal": 12, "COVID": 12}
    assert len(preds) == 4 * 2 * 20 and preds["pred"].isin([0, 1]).all()
    from covidgan_utils import evaluation

    results = evaluation.summarize(preds, train_info=info, skipped=skipped)
    assert results["conditions"]["real"]["n_train"] == 30
    balanced = {"real+torch", "real+classweight", "synthetic-only:torch"}  # 15/15 training images: no prior shift
    assert set(results["mcnemar"]) == balanced
    assert results["conditions"]["real"]["accuracy"] > 0.8  # the features carry the class: the head learns it


def test_class_weighted_control_weights_the_loss():
    labels = np.array([1] * 3 + [0] * 9)
    np.testing.assert_allclose(transfer.balanced_class_weight(labels), [12 / (2 * 9), 12 / (2 * 3)])
    with pytest.raises(ValueError, match="COVID"):
        transfer.balanced_class_weight(np.zeros(5, int))
    rng = np.random.default_rng(0)
    y = (np.arange(60) % 4 == 0).astype(np.int64)  # 15 COVID, 45 Normal: small for testing
    x = rng.normal(0, 1, (60, 16)).astype(np.float32)
    x[:, 0] += 0.8 * (2 * y - 1)
    plain, loss_plain = transfer.train_head(x, y, epochs=3, batch_size=8, seed=0)
    ones, loss_ones = transfer.train_head(x, y, epochs=3, batch_size=8, seed=0, class_weight=[1.0, 1.0])
    assert loss_ones == pytest.approx(loss_plain, abs=1e-6)  # equal weights: the paper's loss
    weighted, _ = transfer.train_head(
        x, y, epochs=30, batch_size=8, seed=0, class_weight=transfer.balanced_class_weight(y)
    )
    unweighted, _ = transfer.train_head(x, y, epochs=30, batch_size=8, seed=0)
    # the minority class gets a larger weight: more images are called COVID
    assert (transfer.predict_proba(weighted, x) >= 0.5).sum() > (transfer.predict_proba(unweighted, x) >= 0.5).sum()
    with pytest.raises(ValueError, match="class_weight"):
        transfer.train_head(x, y, epochs=1, class_weight=[1.0])


def test_copies_control_tops_up_with_real_images():
    labels = np.array([1] * 3 + [0] * 6)
    idx = transfer.topup_indices(labels, 8, seed=0)
    assert np.bincount(labels[idx], minlength=2).tolist() == [2, 5]  # 6 -> 8 Normal, 3 -> 8 COVID
    assert len(set(idx[labels[idx] == 0])) == 2  # enough Normal images: drawn without replacement
    assert not np.array_equal(idx, transfer.topup_indices(labels, 8, seed=1))
    feats = {"real": fake_features(30, 3.0, 0), "val": fake_features(20, 3.0, 1)}
    preds, info, skipped = transfer.run_conditions(
        feats, conditions=["real", "real+copies"], seeds=[0, 1], epochs=3, target_per_class=25, progress=False
    )
    assert info["real+copies"]["n_train_per_class"] == {"Normal": 25, "COVID": 25} and not skipped
    from covidgan_utils import evaluation

    results = evaluation.summarize(preds, train_info=info)
    assert set(results["mcnemar"]) == {"real+copies"} and results["mcnemar_vs_copies"] == {}


def test_run_experiment_end_to_end(tmp_path, monkeypatch):
    """Notebook 05 in one call on a tiny prepared run: data (data.py), synthetic PNGs, tiny VGG, results.json."""
    from PIL import Image

    data_mod = pytest.importorskip("covidgan_utils.data")
    data_dir = tmp_path / "xrays"
    for cls, n, k in (("COVID", 14, 1), ("Normal", 16, 0)):
        (data_dir / cls).mkdir(parents=True)
        images, _ = toy_images(2 * n, seed=k + 10)
        for i in range(n):
            Image.fromarray(images[2 * i + k, ..., 0]).save(data_dir / cls / f"{cls}-{i}.png")
    cfg = config.resolve(
        profile="smoke",
        data_dir=str(data_dir),
        run_dir=str(tmp_path / "run"),
        train_per_class={"COVID": 8, "Normal": 10},
        val_per_class={"COVID": 6, "Normal": 6},
        target_per_class=12,
        seeds=[0, 1],
    )
    data_mod.prepare(cfg, progress=False)

    def sample_fn(generator, labels, seed):
        return np.stack([toy_images(2, seed=seed)[0][k] for k in labels])

    plan = synthesis.plan({"COVID": 8, "Normal": 10}, cfg.target_per_class)
    synthesis.generate(
        "torch", None, plan, synthesis.framework_dir(cfg.run_dir, "torch"), progress=False, sample_fn=sample_fn
    )
    use_tiny_vgg16(monkeypatch)
    results = transfer.run_experiment(cfg, progress=False)
    saved = json.loads((cfg.run_dir / "transfer" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert set(saved["conditions"]) == {
        "real",
        "real:prior-corrected",
        "real+torch",
        "real+copies",
        "real+classweight",
        "synthetic-only:torch",
    }
    assert saved["conditions"]["real+copies"]["n_train_per_class"] == {"Normal": 12, "COVID": 12}
    assert set(saved["mcnemar_vs_copies"]) == {"real+torch"}
    assert saved["conditions"]["real+torch"]["n_train"] == 18 + 6
    assert saved["conditions"]["real"]["n_val"] == 12 and saved["conditions"]["real"]["seeds"] == [0, 1]
    assert saved["vgg_weights"] == "random" and "real+tf" in saved["skipped_conditions"]
    preds = pd.read_csv(cfg.run_dir / "transfer" / "predictions.csv")
    assert len(preds) == 5 * 2 * 12  # the prior-corrected condition is derived, not stored
    assert saved["gan_seeds"] == [0] and saved["conditions"]["real+classweight"]["class_weight"] == pytest.approx(
        {"Normal": 18 / 20, "COVID": 18 / 16}
    )
    assert [e for e in saved["paired"] if e["primary"]] == [
        e
        for e in saved["paired"]
        if e["metric"] == "roc_auc" and e["b"] == "real+torch" and e["a"] == saved["primary"]["control"]
    ]
    val_paths = data_mod.read_manifest(cfg).query("split == 'val'")["path"].tolist()
    assert preds.loc[preds["condition"] == "real", "path"].tolist()[:12] == val_paths
    # real data and no external_dir: no external evaluation, and no large independent set; both said
    assert not saved["external_set"]["evaluated"] and "no external evaluation" in saved["external_set"]["reason"]
    assert not saved["large_test_set"]["evaluated"] and "real data" in saved["large_test_set"]["reason"]
    assert "external" not in saved["conditions"]["real"] and "large_test" not in saved["procedure_error_rate"]
    assert saved["baseline"]["validation"]["n"] == 12  # the pixel baseline runs on any data


def test_feature_cache_skips_the_network_and_tracks_inputs(tmp_path, monkeypatch):
    model = tiny_model()
    images, labels = toy_images(6)
    datasets = {"real": (images, labels), "val": (images[:2], labels[:2])}
    first = transfer.extract_all(model, datasets, SIZE, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    from covidgan_utils.transfer import features as features_module

    monkeypatch.setattr(features_module, "extract_features", lambda *a, **k: pytest.fail("cache not used"))
    again = transfer.extract_all(model, datasets, SIZE, progress=False, cache_dir=tmp_path)
    np.testing.assert_array_equal(first["real"][0], again["real"][0])
    monkeypatch.undo()
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    transfer.extract_all(
        model, {"real": (changed, labels), "val": datasets["val"]}, SIZE, progress=False, cache_dir=tmp_path
    )
    assert len(list(tmp_path.glob("real_*.npz"))) == 2  # one changed pixel: a new key, a new file
    transfer.extract_all(tiny_model(seed=1), datasets, SIZE, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("real_*.npz"))) == 3  # other weights: a new key too
