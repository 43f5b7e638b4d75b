"""One settings object: every setting with its default, type and range; bad values named before anything is written."""

import subprocess
import sys

import pytest

from covidgan_utils import config, pipeline, settings, sweeps


def test_profiles_are_the_defaults_with_their_changes():
    paper = config.PROFILES["paper"]
    assert paper["train_per_class"] == {"COVID": 331, "Normal": 601}
    assert paper["val_per_class"] == {"COVID": 72, "Normal": 120}
    assert (paper["torch_epochs"], paper["tf_epochs"], paper["torch_batch_size"], paper["tf_batch_size"]) == (1000, 1000, 64, 32)
    assert paper["gan_seeds"] == [0, 1, 2] and config.PROFILES["demo"]["gan_seeds"] == [0]
    for name, values in config.PROFILES.items():
        assert set(values) == settings.run_setting_names(), name
        for key, value in values.items():  # every profile value passes its own check
            assert settings.check(key, value) == value, (name, key)


def test_learning_rates_are_the_reports_except_the_demos(tmp_path):
    """The paper profile keeps the report's Adam rate; the demo's cGANs take a larger step (fewer updates)."""
    assert {p: (v["torch_lr"], v["tf_lr"]) for p, v in config.PROFILES.items()} == {
        "smoke": (2e-4, 2e-4), "demo": (5e-4, 5e-4), "paper": (2e-4, 2e-4), "paper-smoke": (2e-4, 2e-4)}
    cfg = config.resolve(profile="demo", run_dir=str(tmp_path / "r"), torch_lr=settings.check("lr", "1e-3"))
    assert cfg.torch_lr == 1e-3 and cfg.is_set("torch_lr") and cfg.tf_lr == 5e-4


def test_the_generator_average_is_off_in_the_reports_profiles_and_one_parameter_sets_both(tmp_path):
    """The paper profiles sample the trained weights, as the report did; ``ema`` sets both frameworks, 0 is off."""
    assert config.PROFILES["paper"]["torch_ema"] == config.PROFILES["paper"]["tf_ema"] == 0.0
    assert config.PROFILES["paper-smoke"]["torch_ema"] == config.PROFILES["paper-smoke"]["tf_ema"] == 0.0
    demo = config.PROFILES["demo"]
    assert 0.9 <= demo["torch_ema"] < 1 and 0.9 <= demo["tf_ema"] < 1
    assert settings.PARAMETER_ALIASES["ema"] == ("torch_ema", "tf_ema")
    cfg = config.resolve(profile="paper", run_dir=str(tmp_path / "r"), tf_ema=settings.check("ema", "0.995"))
    assert cfg.tf_ema == 0.995 and cfg.torch_ema == 0.0
    for bad in (1.0, -0.1, "slow"):
        with pytest.raises(settings.SettingError, match="'torch_ema' \\(notebook parameter 'ema'\\)"):
            settings.check("ema", bad)


def test_resolve_fills_every_setting_and_remembers_what_was_given(tmp_path):
    cfg = config.resolve(profile="smoke", run_dir=str(tmp_path / "r"), split_seed=3)
    assert cfg.phantom_seed == 0 and cfg.split_seed == 3
    assert cfg.is_set("split_seed") and not cfg.is_set("phantom_seed")


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("epochs", -3, "integer from 1"),
        ("epochs", "abc", "integer from 1"),
        ("epochs", 0, "integer from 1"),
        ("epochs", True, "integer"),
        ("checkpoint_every", 0, "integer from 1"),
        ("split_seed", "abc", "integer >= 0"),
        ("skip_unreadable", "maybe", "True or False"),
        ("image_size", 7, "power of two"),
        ("image_size", 48, "power of two"),
        ("seeds", "[]", "non-empty list"),
        ("seeds", [0, 0], "distinct"),
        ("train_per_class", {"COVID": 3}, "per-class dict"),
        ("variant", "wgan", "'cgan', 'acgan'"),
        ("diffaugment", "blur", "color, translation, cutout"),
        ("torch_width", 0.0, "number from"),
        ("lr", 0.5, "number from"),
        ("tf_lr", "fast", "number from"),
    ],
)
def test_bad_values_name_the_parameter_the_value_and_what_is_allowed(name, value, words):
    with pytest.raises(settings.SettingError) as err:
        settings.check(name, value)
    message = str(err.value)
    assert repr(name) in message and repr(value) in message and words in message


def test_values_from_the_command_line_are_converted():
    assert settings.check("skip_unreadable", "True") is True
    assert settings.check("skip_unreadable", "false") is False
    assert settings.check("seeds", "0,1,2") == [0, 1, 2]
    assert settings.check("seeds", "[3, 4]") == [3, 4]
    assert settings.check("epochs", 5.0) == 5
    assert settings.check("train_per_class", '{"COVID": 0.5, "Normal": 10}') == {"COVID": 0.5, "Normal": 10}
    assert settings.check("diffaugment", "color,cutout") == "color,cutout"
    assert settings.check("epochs", None) is None
    with pytest.raises(settings.SettingError, match="Unknown parameter 'nonsense'"):
        settings.check("nonsense", 1)


def test_notebook_parameters_are_checked_in_resolve_before_the_run_dir_is_made(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(settings.SettingError, match="'torch_epochs' \\(notebook parameter 'epochs'\\) = 'abc'"):
        config.resolve(profile="smoke", run_dir=str(run_dir), torch_epochs="abc")
    with pytest.raises(settings.SettingError, match="Unknown setting"):
        config.resolve(profile="smoke", run_dir=str(run_dir), torch_epoch=3)
    with pytest.raises(settings.SettingError, match="'profile' = 'fast'"):
        config.resolve(profile="fast", run_dir=str(run_dir))
    assert not run_dir.exists()


def test_overrides_json_with_a_bad_value_names_the_file(tmp_path):
    run_dir = tmp_path / "run"
    config.resolve(profile="smoke", run_dir=str(run_dir))
    (run_dir / config.OVERRIDES_FILE).write_text('{"tf_epochs": -1}')
    with pytest.raises(settings.SettingError, match="overrides.json.*'tf_epochs'"):
        config.resolve(profile="smoke", run_dir=str(run_dir))


@pytest.mark.parametrize(
    "params, words",
    [
        ({"epochs": -3}, "'epochs'"),
        ({"epochs": "abc"}, "'abc'"),
        ({"checkpoint_every": 0}, "'checkpoint_every'"),
        ({"split_seed": "abc"}, "'split_seed'"),
        ({"skip_unreadable": "maybe"}, "'maybe'"),
        ({"epochs": 0, "split_seed": -1}, "Parameters not allowed"),
    ],
)
def test_pipeline_refuses_bad_parameters_before_writing_anything(tmp_path, params, words):
    run_dir = tmp_path / "run"
    with pytest.raises(pipeline.PipelineError, match=words) as err:
        pipeline.run("smoke", run_dir=str(run_dir), notebooks="01,02", params=params)
    assert "Nothing was written" in str(err.value)
    assert not run_dir.exists()


def test_cli_and_sweep_name_the_bad_value(tmp_path):
    run_dir = tmp_path / "run"
    cli = subprocess.run(
        [sys.executable, "-m", "covidgan_utils", "run", "--profile", "smoke", "--run-dir", str(run_dir),
         "--notebooks", "02", "-p", "epochs", "abc"],
        capture_output=True, text=True, cwd=config.repo_root(),
    )
    assert cli.returncode == 1 and "'epochs'" in cli.stderr and "Traceback" not in cli.stderr
    assert not run_dir.exists()
    with pytest.raises(sweeps.SweepError, match="'image_size' = 7"):
        sweeps.run("bad-size", {"image_size": [32, 7]}, profile="smoke", root=tmp_path / "sweeps", notebooks="01")
    assert not (tmp_path / "sweeps").exists()
