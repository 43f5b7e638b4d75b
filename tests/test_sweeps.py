"""Sweeps: grid expansion, overrides, a real two-point smoke sweep through papermill, collection and the figure."""

from __future__ import annotations

import json

import pytest

from covidgan_utils import config, sweeps


def test_expand_point_names_and_overrides():
    points = sweeps.expand({"train_fraction": [0.5, 1], "seed": [3]})
    assert points == [{"train_fraction": 0.5, "seed": 3}, {"train_fraction": 1, "seed": 3}]
    assert sweeps.point_name({"train_fraction": 0.25, "diffaugment": "color,cutout"}) == (
        "train_fraction-0.25_diffaugment-color+cutout"
    )
    demo = config.PROFILES["demo"]
    over = sweeps.overrides_for({"train_fraction": 0.5, "seed": 3, "image_size": 32}, "demo")
    assert over["train_per_class"] == {"Normal": 300, "COVID": 166}  # round(0.5 * 601), round(0.5 * 331)
    assert over["seeds"] == [3 + s for s in demo["seeds"]] and over["image_size"] == 32
    assert "val_per_class" not in over  # the validation set never changes across a sweep


@pytest.mark.parametrize(
    "grid, message",
    [  # bad inputs tried: empty grid, a scalar instead of a list, an unknown name, a fraction out of range
        ({}, "empty"),
        ({"seed": 3}, "list"),
        ({"epochz": [1]}, "Cannot sweep"),
        ({"train_fraction": [1.5]}, "train_fraction"),
    ],
)
def test_bad_grids_are_refused_with_a_clear_message(grid, message):
    with pytest.raises(sweeps.SweepError, match=message):
        for point in sweeps.expand(grid):
            sweeps.overrides_for(point, "smoke")


def test_parse_grid_and_bad_names():
    assert sweeps.parse_grid(["train_fraction=0.25,0.5,1", "gan_variant=cgan,acgan"]) == {
        "train_fraction": [0.25, 0.5, 1],
        "gan_variant": ["cgan", "acgan"],
    }
    with pytest.raises(sweeps.SweepError, match="NAME=V1,V2"):
        sweeps.parse_grid(["train_fraction"])
    with pytest.raises(sweeps.SweepError, match="Sweep name"):
        sweeps.sweep_dir("../escape")


def test_smoke_sweep_runs_each_point_collects_and_plots(tmp_path, monkeypatch):
    """Two training-set sizes, notebooks 01 and 05 only (real and real+copies): about a minute on 2 cores."""
    monkeypatch.delenv(config.ENV_RUN_DIR, raising=False)
    grid = {"train_fraction": [0.5, 1.0]}
    table = sweeps.run("tiny", grid, profile="smoke", root=tmp_path, notebooks="01,05")
    folder = tmp_path / "tiny"
    assert sorted(set(table["point"])) == ["train_fraction-0.5", "train_fraction-1"]
    smoke = config.PROFILES["smoke"]
    n_full = sum(smoke["train_per_class"].values())
    n_half = sum(max(2, round(0.5 * n)) for n in smoke["train_per_class"].values())
    real = table[table["condition"] == "real"].set_index("train_fraction")
    assert real.loc[1.0, "n_train_real"] == n_full and real.loc[0.5, "n_train_real"] == n_half
    assert set(table["condition"]) >= {"real", "real+copies"}
    assert table["accuracy"].between(0, 1).all() and (table["ci_low"] <= table["accuracy"]).all()
    # every point kept its settings and its own split; the validation set is the same for both
    for point in ("train_fraction-0.5", "train_fraction-1"):
        assert json.loads((folder / point / "overrides.json").read_text())["train_per_class"]
    import pandas as pd

    val = [
        set(pd.read_csv(folder / p / "data" / "manifest.csv").query("split == 'val'")["sha256"])
        for p in ("train_fraction-0.5", "train_fraction-1")
    ]
    assert val[0] == val[1]
    assert (folder / "results.csv").exists()
    fig = sweeps.plot_accuracy_vs_n(table)
    assert fig.axes[0].get_xlabel() == "real training images"
    # rerunning skips finished points; a different grid under the same name is refused
    again = sweeps.run("tiny", grid, profile="smoke", root=tmp_path, notebooks="01,05")
    assert again[["point", "condition", "accuracy"]].equals(table[["point", "condition", "accuracy"]])
    with pytest.raises(sweeps.SweepError, match="other settings"):
        sweeps.run("tiny", {"train_fraction": [0.25]}, profile="smoke", root=tmp_path, notebooks="01,05")


def test_the_default_pipeline_leaves_the_sweep_notebook_out():
    from covidgan_utils import pipeline

    default = [b.name[:2] for b in pipeline.select(None)]
    assert default == ["01", "02", "03", "04", "05", "06"]
    assert [b.name[:2] for b in pipeline.select("07")] == ["07"]


def test_figures_command_redraws_the_study_figures_from_the_summary(tmp_path):
    """RUN/studies/summary.json (notebook 07) is enough to redraw both study figures; the rest is skipped with a reason."""
    from covidgan_utils import figures
    from covidgan_utils.files import write_json

    run = tmp_path / "run"
    comparison = [
        {
            "option": opt,
            "GAN": fw,
            "KID": kid,
            "TSTR": tstr,
            "accuracy real": 0.71,
            "accuracy real+GAN": acc,
            "95% CI": f"[{acc - 0.06:.3f}, {acc + 0.06:.3f}]",
        }
        for opt, fw, kid, tstr, acc in [("plain cGAN", "torch", 2.6, 0.69, 0.75), ("ACGAN", "tf", 1.2, 0.70, 0.76)]
    ]
    sweep = [
        {
            "point": f"train_fraction-{f}",
            "condition": c,
            "n_train_real": n,
            "accuracy": a,
            "ci_low": a - 0.06,
            "ci_high": a + 0.06,
        }
        for f, n in ((0.5, 466), (1.0, 932))
        for c, a in (("real", 0.70), ("real+tf", 0.74))
    ]
    write_json(
        run / "studies" / "summary.json",
        {"profile": "demo", "majority": 0.625, "comparison": comparison, "sweep": {"accuracy": sweep}},
    )
    done = figures.make_all(run, out_dir=tmp_path / "out")
    assert (tmp_path / "out" / "gan_options.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "accuracy_vs_n.png").stat().st_size > 10_000
    assert done["torch_gan_losses"].startswith("skipped")
    assert set(done) == set(figures.CATALOGUE)
