"""Study 2 (trainable_blocks): training on the cache is the plain computation; fc6 folds exactly (small for testing)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from covidgan_utils import finetune, transfer

SIZE = 32  # the smallest input VGG16 takes: small for testing
pytestmark = pytest.mark.filterwarnings("ignore:VGG16 has RANDOM weights")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return transfer.build_vgg16(None, seed=0, verbose=False)[0]


def _images(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, SIZE, SIZE, 1), dtype=np.uint8)
    y = np.arange(n) % 2
    x[y == 1, 20:28, 20:28] = 250  # something to learn
    return x, y


def test_fc6_folds_exactly_through_the_adaptive_pool(model):
    for h in (1, 2, 3):
        x = torch.randn(4, 512, h, h)
        plain = model.classifier[0](torch.flatten(model.avgpool(x), 1))
        folded = finetune.fold_fc6(model.classifier[0], 512, h, h)(torch.flatten(x, 1))
        assert torch.allclose(plain, folded, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("blocks", [0, 1, 2])
def test_cached_training_is_the_plain_computation(model, blocks):
    x, y = _images()
    kwargs = dict(epochs=2, batch_size=4, seed=3)
    cached = finetune.block_input(model, x, SIZE, blocks)
    tail, losses = finetune.train_blocks(model, cached, y, blocks, **kwargs)
    plain, plain_losses = finetune.train_blocks_plain(model, x, y, SIZE, blocks, fold=False, **kwargs)
    assert np.allclose(losses, plain_losses, rtol=1e-3, atol=1e-5)
    p_cached = finetune.predict(tail, cached)
    p_plain = finetune.predict_plain(model, plain, x, SIZE, blocks)
    assert p_cached.shape == (len(x),)
    # Float rounding (the fold, the batch) grows through the Adam steps of two unfrozen blocks: 1e-3 on an AVX-512
    # CPU, under 5e-4 on AVX2; a wrong cached input would move the predictions by their own spread.
    assert np.allclose(p_cached, p_plain, atol=2e-3)
    if blocks:  # the unfrozen block moved; the frozen network did not
        before = model.features[finetune.cut_index(blocks)].weight
        assert not torch.allclose(tail.blocks[0].weight, before)
        assert not model.features[0].weight.requires_grad


def test_zero_blocks_is_notebook_05s_last_layer(model):
    x, y = _images()
    feats = transfer.extract_features(model, x, SIZE, progress=False)
    head, losses = transfer.train_head(feats, y, epochs=2, batch_size=4, seed=1)
    tail, tail_losses = finetune.train_blocks(model, finetune.block_input(model, x, SIZE, 0), y, 0,
                                              epochs=2, batch_size=4, seed=1)
    assert np.allclose(losses, tail_losses, rtol=1e-4)
    assert np.allclose(transfer.predict_proba(head, feats), finetune.predict(tail, feats), atol=1e-5)


def test_block_counts_checked():
    for bad in (-1, 3, 1.5, True):
        with pytest.raises(ValueError, match="trainable_blocks"):
            finetune.check_blocks(bad)
    assert finetune.cut_index(1) == 24 and finetune.cut_index(2) == 17


def test_the_comparison_notebook_05_shows_when_the_run_holds_it(tmp_path):
    from covidgan_utils.files import write_json

    assert finetune.comparison(tmp_path) is None
    rows = [{"trainable_blocks": k, "condition": c, "seed": 0, "accuracy": acc, "balanced_accuracy": acc,
             "roc_auc": auc, "train_seconds": 1.0}
            for k in (0, 1)
            for c, acc, auc in (("real", 0.8, 0.85), ("real+torch", 0.82, 0.86 + 0.05 * k),
                                ("real+copies", 0.81, 0.85), ("real+classweight", 0.8, 0.84))]
    results = {"settings": {"seeds": [0], "epochs": 2}, "rows": rows, "seconds": {"0": 60.0, "1": 600.0},
               "n_val": 192, "torch_threads": 2, "vgg16": "random"}
    results["reading"] = finetune.reading(results)
    write_json(tmp_path / "studies" / "finetune" / "results.json", results)
    table, gains, reading = finetune.comparison(tmp_path)
    assert len(table) == 8 and set(gains["condition"]) == {"real+torch"}
    by = gains.set_index("trainable_blocks")
    assert by.loc[1, "AUC gain vs best control"] == pytest.approx(0.06)  # 0.91 vs real+copies' 0.85
    assert by.loc[0, "best control"] == "real+copies"
    assert any("random weights" in line for line in reading) and any("10.0 min" in line for line in reading)
    assert "too few" in reading[2]  # one seed: no verdict


def test_the_reading_flags_one_class_heads_and_states_the_epochs():
    rows = [{"trainable_blocks": k, "condition": c, "seed": 0, "accuracy": 0.625, "balanced_accuracy": bal,
             "roc_auc": 0.8, "train_seconds": 1.0}
            for k in (0, 1) for c, bal in (("real", 0.5 if k == 1 else 0.7), ("real+torch", 0.72))]
    results = {"settings": {"seeds": [0], "epochs": 3, "head_epochs": 20}, "rows": rows, "seconds": {"0": 6.0, "1": 60.0},
               "n_val": 192, "torch_threads": 2, "vgg16": "random"}
    lines = finetune.reading(results)
    flagged = next(line for line in lines if line.startswith("Heads that call nearly every image one class"))
    assert "real at trainable_blocks = 1" in flagged and "trainable_blocks = 0" not in flagged
    assert "Epochs: 20 at trainable_blocks = 0 (notebook 05's head), 3 with blocks unfrozen." in lines


def test_pipeline_again_needs_resume(tmp_path):
    from covidgan_utils import pipeline

    with pytest.raises(pipeline.PipelineError, match="--again .* --resume"):
        pipeline.run("smoke", run_dir=str(tmp_path / "r"), notebooks="01", again=True)


def test_the_reading_judges_the_gain_over_the_best_control_by_notebook_05s_paired_test():
    from covidgan_utils.statistics.bootstrap import holm, paired_differences, stratified_counts

    rng = np.random.default_rng(7)
    y = np.repeat([0, 1], [120, 72])
    signal = {"real": 0.8, "real+copies": 0.9, "real+classweight": 0.7, "real+torch": 2.5, "real+tf": 0.9}
    noise = rng.normal(0, 1, (2, len(y)))  # one draw per head seed, shared: the conditions see the same images
    rows = [{"trainable_blocks": 0, "condition": c, "seed": s, "accuracy": 0.8, "balanced_accuracy": 0.8,
             "roc_auc": float(roc_auc_score(y, sig * y + noise[s])), "train_seconds": 1.0,
             "prob": (1 / (1 + np.exp(-(sig * y + noise[s] - sig / 2)))).tolist()}
            for c, sig in signal.items() for s in (0, 1)]
    results = {"settings": {"seeds": [0, 1], "epochs": 3, "head_epochs": 20}, "rows": rows, "seconds": {"0": 6.0},
               "n_val": len(y), "val_labels": y.tolist(), "torch_threads": 2, "vgg16": "random"}
    g = finetune.gains(results).set_index("condition")
    assert g.loc["real+torch", "best control"] == "real+copies"
    W = stratified_counts(y, 2000, 0)
    probs = {c: np.array([r["prob"] for r in rows if r["condition"] == c]) for c in signal}
    expected = [paired_differences(y, probs["real+copies"], probs[c], counts=W)["roc_auc"] for c in ("real+torch", "real+tf")]
    assert g.loc["real+torch", "p"] == pytest.approx(expected[0]["p"])
    assert g.loc["real+tf", "AUC vs best control, 95% low"] == pytest.approx(expected[1]["interval"][0])
    assert list(g["Holm p"]) == pytest.approx(holm([e["p"] for e in expected]))
    lines = finetune.reading(results)
    assert "real+torch" in lines[0] and "a better classifier than real+copies" in lines[0]
    assert "real+tf" in lines[0] and "not shown to differ from real+copies" in lines[0]
    assert lines[1].startswith("Judged by notebook 05's test") and "2 head seed(s) averaged" in lines[1]
