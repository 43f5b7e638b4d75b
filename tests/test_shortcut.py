"""Study 1 (a planted shortcut across hospitals): its pieces on tiny sets (small for testing)."""

import json

import numpy as np
import pytest

from covidgan_utils import phantoms, shortcut, transfer

pytestmark = pytest.mark.filterwarnings("ignore:VGG16 has RANDOM weights")


def _rates(covid, normal):
    return {"rate": {"COVID": covid, "Normal": normal}}


def test_the_gan_reading_compares_the_class_gap_of_the_letter():
    real = _rates(0.8, 0.1)
    assert shortcut.gan_reading(real, _rates(0.8, 0.1)).startswith("copied")
    assert shortcut.gan_reading(real, _rates(1.0, 0.0)).startswith("exaggerated")
    assert shortcut.gan_reading(real, _rates(0.4, 0.1)).startswith("weakened")
    assert shortcut.gan_reading(real, _rates(0.1, 0.1)).startswith("dropped")
    assert shortcut.gan_reading(real, _rates(0.0, 0.0)).startswith("dropped (no generated")
    assert shortcut.gan_reading(_rates(0.1, 0.1), _rates(0.12, 0.1)) == "no class link to copy"


def test_settings_and_arms():
    s = shortcut.settings("smoke", gan_epochs=2)
    assert s["gan_epochs"] == 2 and s["scale"] == "smoke"
    with pytest.raises(ValueError, match="Unknown study settings"):
        shortcut.settings("smoke", epochs=3)
    with pytest.raises(ValueError, match="Unknown scale"):
        shortcut.settings("huge")
    sets = shortcut.draw_arm("shortcut", s)
    assert len(sets["train"]["labels"]) == sum(s["train"].values())
    # validation holds other people than training (later images of the same seed), external another seed
    assert not any((v == t).all() for v in sets["val"]["unmarked"][:3] for t in sets["train"]["unmarked"])
    ext = sets["external"]["marker"]
    assert ext.mean() < 0.5  # the external letter is rare in both classes
    clean = shortcut.draw_arm("clean", s)
    assert np.array_equal(clean["train"]["unmarked"], sets["train"]["unmarked"])  # the same people in both arms


def test_evaluate_arm_scores_home_external_and_the_flip_test():
    s = shortcut.settings("smoke", frameworks=(), seeds=[0], vgg_epochs=1)
    model, _ = transfer.build_vgg16(None, verbose=False)
    sets = shortcut.draw_arm("shortcut", s)
    out = shortcut.evaluate_arm(sets, {}, s, model)
    assert set(out) == {"real", "real+copies", "real+classweight"}
    for c in out.values():
        assert c["home"]["n"] == sum(s["val"].values()) and c["external"]["n"] == sum(s["external"].values())
        assert 0 <= c["flip"]["changed"] <= 1 and c["flip"]["n"] == sum(s["flip"].values())
        assert c["flip"]["mean_shift"] == pytest.approx(c["flip"]["mean_prob_on"] - c["flip"]["mean_prob_off"], abs=1e-6)
        low, high = c["home"]["accuracy_ci"]
        assert low <= c["home"]["accuracy"] <= high


def _fake_results(changed_shortcut, changed_clean, drop_shortcut):
    def cond(home, ext, changed):
        return {"home": {"accuracy": home, "n": 192}, "external": {"accuracy": ext, "n": 400},
                "flip": {"n": 200, "mean_shift": changed / 2, "changed": changed}}

    return {
        "settings": {"frameworks": [], "seeds": [0], "gan_epochs": 1},
        "vgg16": "random",
        "arms": {"shortcut": {"conditions": {"real": cond(0.9, 0.9 - drop_shortcut, changed_shortcut)}},
                 "clean": {"conditions": {"real": cond(0.85, 0.8, changed_clean)}}},
    }


def test_the_reading_follows_the_numbers():
    caught = shortcut.reading(_fake_results(0.4, 0.02, 0.3))
    assert "costs external accuracy beyond the scanner shift" in caught[0]
    assert "follows the letter" in caught[1] and "hardly" not in caught[1]
    assert any("random weights" in line for line in caught)
    clean = shortcut.reading(_fake_results(0.02, 0.02, 0.05))
    assert "cannot be told from zero with 192 home and 400 external images" in clean[0] and "hardly follows" in clean[1]
    # a drop difference within the noise of 192 + 400 images is not called a cost, however it points
    small = shortcut.reading(_fake_results(0.4, 0.02, 0.1))
    assert "cannot be told from zero" in small[0] and "follows the letter" in small[1]
    # a flip rate inside the control's interval is not called following the letter
    assert "hardly follows" in shortcut.reading(_fake_results(0.08, 0.06, 0.3))[1]


def test_what_the_gan_does_to_the_shortcut_is_read_against_the_control():
    """Adding GAN images raises external accuracy in both arms alike: not read as the shortcut weakened."""
    res = _fake_results(0.4, 0.02, 0.3)
    res["settings"]["frameworks"] = ["torch"]
    rates = {"rate": {"COVID": 0.03, "Normal": 0.01}, "reading": "dropped"}
    res["arms"]["shortcut"]["marker_rates"] = {"real": {"rate": {"COVID": 0.8, "Normal": 0.1}}, "torch": rates}
    for arm, base in (("shortcut", res["arms"]["shortcut"]["conditions"]["real"]),
                      ("clean", res["arms"]["clean"]["conditions"]["real"])):
        aug = json.loads(json.dumps(base))
        aug["external"]["accuracy"] += 0.07
        res["arms"][arm]["conditions"]["real+torch"] = aug
    line = next(x for x in shortcut.reading(res) if x.startswith("Adding its images"))
    assert "+0.070" in line and "not told from zero here." in line and "weaken" not in line
    res["arms"]["shortcut"]["conditions"]["real+torch"]["external"]["accuracy"] += 0.2
    line = next(x for x in shortcut.reading(res) if x.startswith("Adding its images"))
    assert line.endswith("they weaken it.")


def test_the_drop_difference_interval_is_the_sum_of_binomial_variances():
    """Checked against the closed form: var = sum p(1 - p) / n over the four accuracies."""
    import math

    parts = [{"accuracy": a, "n": n} for a, n in ((0.66, 192), (0.5, 400), (0.625, 192), (0.505, 400))]
    diff, low, high = shortcut.accuracy_difference([parts[0], parts[3]], [parts[1], parts[2]])
    assert diff == pytest.approx(0.66 + 0.505 - 0.5 - 0.625)
    half = 1.96 * math.sqrt(sum(p["accuracy"] * (1 - p["accuracy"]) / p["n"] for p in parts))
    assert (low, high) == pytest.approx((diff - half, diff + half)) and half == pytest.approx(0.118, abs=1e-3)


def test_a_marker_on_generated_images_is_counted():
    s = phantoms.draw_set({"COVID": 10, "Normal": 10}, 32, 0)
    fake = s["images"].copy()
    fake[s["labels"] == 1] = phantoms.stamp_marker(fake[s["labels"] == 1])
    rates = phantoms.marker_rates(fake, s["labels"])
    assert rates["rate"] == {"Normal": 0.0, "COVID": 1.0}
    assert shortcut.gan_reading(_rates(0.8, 0.1), rates).startswith("exaggerated")
