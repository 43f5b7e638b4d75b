"""Package basics: cheap import, profiles and parameter resolution."""

import subprocess
import sys

import pytest

from covidgan_utils import CLASSES, COVID, config


def test_import_is_cheap():
    code = (
        "import sys, covidgan_utils, covidgan_utils.config, covidgan_utils.data, covidgan_utils.plotting;"
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'matplotlib') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_classes_contract():
    assert CLASSES == ("Normal", "COVID") and CLASSES[COVID] == "COVID"


def test_paper_profile_has_the_reports_settings():
    paper = config.PROFILES["paper"]
    assert paper["train_per_class"] == {"COVID": 331, "Normal": 601}
    assert paper["val_per_class"] == {"COVID": 72, "Normal": 120}
    assert paper["target_per_class"] == 1000 and paper["image_size"] == 128
    assert paper["torch_epochs"] == paper["tf_epochs"] == 1000
    assert (paper["torch_batch_size"], paper["tf_batch_size"]) == (64, 32)
    assert paper["vgg_epochs"] == 20 and paper["vgg_weights"] == "imagenet"
    assert set(config.PROFILES) == {"smoke", "demo", "paper", "paper-smoke"}


def test_resolve_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv(config.ENV_PROFILE, "smoke")
    monkeypatch.setenv(config.ENV_RUN_DIR, str(tmp_path / "from-env"))
    monkeypatch.delenv(config.ENV_DATA_DIR, raising=False)
    cfg = config.resolve(epochs=None)
    assert cfg.profile == "smoke" and cfg.run_dir == (tmp_path / "from-env").resolve()
    assert cfg.uses_phantoms and "epochs" not in cfg.settings  # None overrides are ignored
    cfg = config.resolve(profile="demo", run_dir=str(tmp_path / "explicit"), torch_epochs=3)
    assert cfg.profile == "demo" and cfg.torch_epochs == 3 and cfg.run_dir.name == "explicit"
    assert cfg.path("data", "manifest.csv") == cfg.run_dir / "data" / "manifest.csv"
    assert "phantoms" in cfg.describe()


def test_unknown_profile_and_setting(monkeypatch):
    with pytest.raises(ValueError, match="smoke, demo, paper"):
        config.resolve(profile="fast")
    cfg = config.resolve(profile="smoke")
    with pytest.raises(AttributeError, match="no setting 'nonsense'"):
        cfg.nonsense  # noqa: B018


def test_rel_never_shows_absolute_paths(tmp_path):
    assert not config.rel(tmp_path / "x").startswith("/")
    assert config.rel(config.repo_root() / "runs" / "demo") == "runs/demo"


def test_every_subpackage_is_packaged():
    """A non-editable install must hold every subpackage (the packaging rule is a pattern, not a list)."""
    from pathlib import Path

    import tomllib
    from setuptools import find_packages

    root = Path(__file__).resolve().parents[1]
    rule = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    on_disk = {p.parent.relative_to(root).as_posix().replace("/", ".") for p in (root / "covidgan_utils").rglob("__init__.py")}
    assert on_disk and set(find_packages(str(root), include=rule["include"])) == on_disk


def test_readme_layout_names_every_module():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    layout = (root / "README.md").read_text().split("## Repository layout", 1)[1]
    named = set(re.findall(r"[A-Za-z_]+/?", layout))
    package = root / "covidgan_utils"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    subpackages = {p.parent.name + "/" for p in package.glob("*/__init__.py")}
    assert modules | subpackages <= named, f"README layout misses {sorted((modules | subpackages) - named)}"
    assert "01..07" in layout
