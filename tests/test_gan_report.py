"""gan_report's artefact measures: transposed-convolution overlap, grid strength, the artefact table and its reading."""

import numpy as np
import pytest

from covidgan_utils import gan_report


def test_overlap_pattern_counts_taps_per_output_phase():
    assert (gan_report.overlap_pattern(4, 2) == 4).all()  # kernel divisible by stride: even tiling
    assert gan_report.overlap_pattern(5, 2).tolist() == [[9, 6], [6, 4]]  # the report's TF kernels: a checkerboard
    assert gan_report.overlap_pattern(4, 3).tolist() == [[4, 2, 2], [2, 1, 1], [2, 1, 1]]


def test_tile_pattern_finds_a_grid_that_random_images_lack():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (50, 32, 32, 1), dtype=np.uint8)
    grid = noise.copy()
    grid[:, ::8, :, :] = 255  # a bright line every 8 rows, at the same place in every image
    assert gan_report.tile_pattern(grid, 8) > 10 * gan_report.tile_pattern(noise, 8)
    flat = np.full((4, 32, 32, 1), 128, dtype=np.uint8)
    assert gan_report.tile_pattern(flat, 4) == pytest.approx(0.0, abs=1e-9)
    assert gan_report.fine_detail(flat) == pytest.approx(0.0, abs=1e-9)


def test_artefacts_table_and_reading():
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (20, 32, 32, 1), dtype=np.uint8)
    samples = {
        0: {"images": np.full((8, 32, 32, 3), 127, dtype=np.uint8), "labels": np.repeat([0, 1], 4)},
        5: {"images": real[:8].repeat(3, axis=-1), "labels": np.repeat([0, 1], 4)},
    }
    table = gan_report.artefacts(real, samples)
    assert list(table.index) == ["epoch 0", "epoch 5", "real training images"]
    assert {"grid every 2 px", "fine detail", "contrast", "brightness"} <= set(table.columns)
    assert table.loc["epoch 0", "contrast"] == pytest.approx(0.0, abs=1e-6)
    lines = gan_report.artefact_reading(table)
    assert len(lines) == 3 and "epoch 5" in lines[0] and "real images" in lines[1]


def test_fidelity_reading_names_caricatures_gaps_and_chance():
    from covidgan_utils import gan_report

    base = {"real_cv_accuracy": 0.821, "chance": 0.5}
    honest = gan_report.fidelity_reading({**base, "per_class_recall": {"Normal": 0.91, "COVID": 0.625}, "accuracy": 0.768})
    assert "differ by 0.29: unbalanced" in honest[2] and "below the real images' level" in honest[3]
    assert honest[0].startswith("Normal: 0.91 [0.86, 0.94]")  # Wilson on 200 images
    caricature = gan_report.fidelity_reading({**base, "per_class_recall": {"Normal": 0.95, "COVID": 0.93}, "accuracy": 0.94})
    assert "balanced" in caricature[2] and "ABOVE the real images' level" in caricature[3]
    ignored = gan_report.fidelity_reading({**base, "per_class_recall": {"Normal": 0.55, "COVID": 0.49}, "accuracy": 0.52})
    assert "not shown above chance" in ignored[3]


def test_fidelity_reading_compares_each_class_with_its_own_real_level():
    from covidgan_utils import gan_report

    # The probe favours the larger class on real images too (Normal 0.885 of 601, COVID 0.704 of 331).
    real = {"real_cv_per_class_recall": {"Normal": 0.885, "COVID": 0.704}, "real_n_per_class": {"Normal": 601, "COVID": 331},
            "real_cv_balanced_accuracy": 0.795, "real_cv_accuracy": 0.821, "chance": 0.5}
    like_real = gan_report.fidelity_reading({**real, "per_class_recall": {"Normal": 0.90, "COVID": 0.72},
                                             "balanced_accuracy": 0.81, "accuracy": 0.81})
    # A gap of 0.18 between the classes is the real images' own gap: no fault, each class at its real level.
    assert all("as recognisable as real ones" in line for line in like_real[:2])
    assert "+0.18 in the generated images, +0.18 in the real ones" in like_real[2] and "no fault" in like_real[2]
    assert like_real[3].endswith("at the real images' level")
    assert "one GAN training run" in like_real[4]
    caricature = gan_report.fidelity_reading({**real, "per_class_recall": {"Normal": 0.94, "COVID": 0.87},
                                              "balanced_accuracy": 0.905, "accuracy": 0.905})
    assert "Normal images 0.89" in caricature[0] and "COVID" in caricature[1]
    assert "a caricature of the class (difference +0.17" in caricature[1]
    assert "ABOVE the real images' level" in caricature[3]
    faint = gan_report.fidelity_reading({**real, "per_class_recall": {"Normal": 0.70, "COVID": 0.50},
                                         "balanced_accuracy": 0.60, "accuracy": 0.60})
    assert "less recognisable than real ones" in faint[0] and "below the real images' level" in faint[3]
    ignored = gan_report.fidelity_reading({**real, "per_class_recall": {"Normal": 0.0, "COVID": 1.0},
                                           "balanced_accuracy": 0.5, "accuracy": 0.5})
    # Everything drawn as COVID: no caricature of COVID, a generator that ignores its label.
    assert "caricature" not in ignored[1] and "whatever was asked" in ignored[1]
    assert "drawn more unevenly than real ones" in ignored[2] and "not shown above chance" in ignored[3]


def test_fidelity_reading_without_an_independent_set_reads_against_the_training_images_too():
    from covidgan_utils import gan_report

    # Real data keeps no unused images: above the cross-validated level is read against the probe's own training images.
    real = {"real_cv_per_class_recall": {"Normal": 0.885, "COVID": 0.704}, "real_n_per_class": {"Normal": 601, "COVID": 331},
            "real_train_per_class_recall": {"Normal": 0.982, "COVID": 0.861}, "real_cv_balanced_accuracy": 0.795,
            "real_cv_accuracy": 0.821, "chance": 0.5, "n_per_class": {"Normal": 399, "COVID": 669}}
    within = gan_report.fidelity_reading({**real, "per_class_recall": {"Normal": 0.92, "COVID": 0.82},
                                          "balanced_accuracy": 0.87, "accuracy": 0.86})
    assert "not more than the training images it learned from (0.86)" in within[1] and "independent" not in within[1]
    assert "a caricature or a likeness of the training images" in within[3]
    beyond = gan_report.fidelity_reading({**real, "per_class_recall": {"Normal": 0.92, "COVID": 0.97},
                                          "balanced_accuracy": 0.945, "accuracy": 0.95})
    assert "even than the 0.86 of the training images the classifier learned from: a caricature" in beyond[1]
