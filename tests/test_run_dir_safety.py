"""Run directories are the project's own: refused where they could touch data, the repository or a user's files.

The destructive cases run on temporary copies: a small dataset, a fake repository, a folder of someone's files.
"""

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from covidgan_utils import config, pipeline, publish, runs
from covidgan_utils.files import write_json


def _snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its content hash (to prove nothing was deleted or changed)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def dataset(tmp_path):
    """A tiny folder in the Kaggle layout (bytes only: nothing here is decoded)."""
    root = tmp_path / "dataset"
    for c in ("COVID", "Normal"):
        (root / c / "images").mkdir(parents=True)
        for i in range(3):
            (root / c / "images" / f"{c}-{i}.png").write_bytes(os.urandom(64))
    return root


@pytest.fixture
def users_folder(tmp_path):
    folder = tmp_path / "my-thesis"
    (folder / "chapters").mkdir(parents=True)
    (folder / "chapters" / "one.tex").write_text("\\chapter{One}")
    (folder / "notes.txt").write_text("keep me")
    (folder / "data").mkdir()  # a name the project also uses: still the user's
    (folder / "data" / "table.csv").write_text("a,b\n1,2\n")
    return folder


@pytest.mark.parametrize("where", ["same", "inside", "parent"])
def test_run_dir_at_the_data_folder_is_refused_and_nothing_is_written(dataset, where):
    run_dir = {"same": dataset, "inside": dataset / "COVID" / "runs", "parent": dataset.parent}[where]
    before = _snapshot(dataset.parent)
    with pytest.raises(runs.RunDirError, match="data folder") as err:
        config.resolve(profile="smoke", data_dir=str(dataset), run_dir=str(run_dir))
    assert "Fix:" in str(err.value)
    with pytest.raises(pipeline.PipelineError, match="data folder"):
        pipeline.run("smoke", data_dir=str(dataset), run_dir=str(run_dir), notebooks="01", overwrite=True)
    assert _snapshot(dataset.parent) == before
    assert not (run_dir / runs.MARKER).exists() and not (run_dir / pipeline.STATE).exists()


def test_overwrite_on_the_repository_root_is_refused_on_a_copy(tmp_path, monkeypatch):
    fake_repo = tmp_path / "checkout"
    (fake_repo / "covidgan_utils").mkdir(parents=True)
    (fake_repo / "pyproject.toml").write_text("[project]\nname='x'\n")
    (fake_repo / ".git").mkdir()
    (fake_repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    write_json(fake_repo / pipeline.STATE, {"profile": "smoke", "notebooks": {}})  # as the old bug left it
    real_notebooks = pipeline.notebooks_dir()
    monkeypatch.setattr(config, "repo_root", lambda: fake_repo)
    monkeypatch.setattr(pipeline, "notebooks_dir", lambda: real_notebooks)
    before = _snapshot(fake_repo)
    for run_dir in (fake_repo, tmp_path, fake_repo / ".git" / "runs"):
        with pytest.raises(pipeline.PipelineError, match="repository"):
            pipeline.run("smoke", run_dir=str(run_dir), notebooks="01", overwrite=True)
    assert _snapshot(fake_repo) == before


def test_home_and_root_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for folder in (tmp_path / "home", tmp_path, Path("/")):
        with pytest.raises(runs.RunDirError, match="home folder|root folder|repository"):
            runs.check_location(folder)
    runs.check_location(tmp_path / "home" / "runs" / "demo")  # inside home is fine


def test_a_folder_of_someone_elses_files_is_refused_and_overwrite_deletes_none_of_them(users_folder):
    before = _snapshot(users_folder)
    with pytest.raises(runs.RunDirError, match="not empty and is no run directory") as err:
        config.resolve(profile="smoke", run_dir=str(users_folder))
    assert "notes.txt" in str(err.value) and "Nothing was written or deleted" in str(err.value)
    for kwargs in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(pipeline.PipelineError, match="no run directory"):
            pipeline.run("smoke", run_dir=str(users_folder), notebooks="01", **kwargs)
    with pytest.raises(runs.RunDirError):
        runs.clear(users_folder)  # unmarked: clear refuses outright
    assert _snapshot(users_folder) == before
    assert not (users_folder / runs.MARKER).exists()


def test_overwrite_in_a_marked_run_dir_deletes_only_the_projects_artifacts(tmp_path, capsys):
    run_dir = tmp_path / "run"
    config.resolve(profile="smoke", run_dir=str(run_dir))  # creates and marks it
    assert runs.is_marked(run_dir)
    for name in ("data", "torch_gan", "executed"):
        (run_dir / name).mkdir()
        (run_dir / name / "x.bin").write_bytes(b"artifact")
    write_json(run_dir / pipeline.STATE, {"notebooks": {}})
    (run_dir / ".pipeline.json.abc.tmp").write_text("half")
    (run_dir / "my-notes.md").write_text("mine")  # the user's, dropped in later
    (run_dir / "plots").mkdir()
    (run_dir / "plots" / "a.png").write_bytes(b"png")
    left = runs.clear(run_dir)
    assert left == ["my-notes.md", "plots"]
    assert sorted(p.name for p in run_dir.iterdir()) == [runs.MARKER, "my-notes.md", "plots"]
    assert (run_dir / "plots" / "a.png").read_bytes() == b"png"
    assert "left in place" in capsys.readouterr().out


def test_an_old_run_dir_without_the_marker_is_accepted_and_marked(tmp_path):
    old = tmp_path / "old-run"
    (old / "data").mkdir(parents=True)
    (old / "executed").mkdir()
    write_json(old / pipeline.STATE, {"notebooks": {}})
    (old / ".lock.tmp").write_text("")  # a killed writer's temporary counts as the project's
    config.resolve(profile="smoke", run_dir=str(old))
    assert runs.is_marked(old)
    empty = tmp_path / "empty"
    empty.mkdir()
    config.resolve(profile="smoke", run_dir=str(empty))
    assert runs.is_marked(empty)
    # claim=False (read-only commands) checks but writes nothing
    fresh = tmp_path / "fresh"
    config.resolve(profile="smoke", run_dir=str(fresh), claim=False)
    assert not fresh.exists()


def test_run_dir_that_is_a_file_is_named_before_any_work(tmp_path):
    afile = tmp_path / "run.txt"
    afile.write_text("not a folder")
    result = subprocess.run(
        [sys.executable, "-m", "covidgan_utils", "run", "--profile", "smoke", "--run-dir", str(afile), "--notebooks", "01"],
        capture_output=True, text=True, cwd=config.repo_root(),
    )
    assert result.returncode == 1
    assert "is a file, not a folder" in result.stderr and "process None" not in result.stderr
    assert afile.read_text() == "not a folder"


def test_publish_refuses_a_run_on_real_data(tmp_path):
    run_dir = tmp_path / "real-run"
    config.resolve(profile="smoke", run_dir=str(run_dir))
    (run_dir / "executed").mkdir()
    (run_dir / "executed" / "01_data_exploration.ipynb").write_text(json.dumps({"cells": []}))
    write_json(run_dir / "data" / "info.json", {"phantoms": False})
    write_json(run_dir / pipeline.STATE, {"data_dir": "/somewhere/COVID-19_Radiography_Dataset"})
    dest = tmp_path / "notebooks"
    dest.mkdir()
    with pytest.raises(pipeline.PipelineError, match="real data"):
        publish.publish(run_dir, dest=dest)
    (run_dir / "data" / "info.json").unlink()
    write_json(run_dir / pipeline.STATE, {"data_dir": None})
    with pytest.raises(pipeline.PipelineError, match="unknown data"):
        publish.publish(run_dir, dest=dest)
    assert list(dest.iterdir()) == []


def test_artifacts_follow_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "a.json", {"x": 1})
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        path = write_json(tmp_path / "b.json", {"x": 1})
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_publish_only_the_named_notebooks(tmp_path):
    """make studies publishes notebook 07 alone: 01-06 stay as make notebooks published them."""
    run_dir = tmp_path / "run"
    config.resolve(profile="smoke", run_dir=str(run_dir))
    (run_dir / "executed").mkdir()
    book = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# t"]}], "metadata": {},
            "nbformat": 4, "nbformat_minor": 5}
    for name in ("01_data_exploration", "07_sweeps_and_gan_options"):
        (run_dir / "executed" / f"{name}.ipynb").write_text(json.dumps(book))
    write_json(run_dir / "data" / "info.json", {"phantoms": True})
    write_json(run_dir / pipeline.STATE, {"data_dir": None})
    dest = tmp_path / "notebooks"
    dest.mkdir()
    written = publish.publish(run_dir, dest=dest, only=["07"])
    assert [p.name for p in written] == ["07_sweeps_and_gan_options.ipynb"]
    assert sorted(p.name for p in dest.iterdir()) == ["07_sweeps_and_gan_options.ipynb"]


@pytest.mark.parametrize("state", [None, "not json", {"profile": "smoke"}])
def test_a_folder_holding_only_names_the_project_uses_is_not_adopted(tmp_path, state):
    """The user's own data/ and figures/ (and a pipeline.json that is no run state) prove nothing: refused."""
    folder = tmp_path / "my-project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "scans.csv").write_text("id,label\n1,COVID\n")
    (folder / "figures").mkdir()
    (folder / "figures" / "plot.png").write_bytes(b"png")
    if state is not None:
        (folder / pipeline.STATE).write_text(state if isinstance(state, str) else json.dumps(state))
    before = _snapshot(folder)
    with pytest.raises(runs.RunDirError, match="not empty and is no run directory") as err:
        config.resolve(profile="smoke", run_dir=str(folder))
    message = str(err.value)
    assert "my-project" in message and "data, figures" in message
    assert "Nothing was written or deleted" in message and "Fix: choose a new or empty folder" in message
    for kwargs in ({"overwrite": True}, {"resume": True}, {}):
        with pytest.raises(pipeline.PipelineError, match="no run directory"):
            pipeline.run("smoke", run_dir=str(folder), notebooks="01", **kwargs)
    with pytest.raises(runs.RunDirError):
        runs.claim(folder)
    assert _snapshot(folder) == before
    assert not (folder / runs.MARKER).exists()


def test_external_images_in_the_run_dir_are_refused_and_survive_overwrite(tmp_path, dataset):
    run_dir = tmp_path / "run"
    config.resolve(profile="smoke", run_dir=str(run_dir))
    hospital = run_dir / "external" / "COVID"
    hospital.mkdir(parents=True)
    (hospital / "scan-1.png").write_bytes(b"someone's x-ray")
    write_json(run_dir / pipeline.STATE, {"profile": "smoke", "notebooks": {}})
    before = _snapshot(run_dir / "external")
    for where in (run_dir / "external", run_dir, tmp_path):
        with pytest.raises(config.SettingError, match="external_dir") as err:
            config.resolve(profile="smoke", run_dir=str(run_dir), external_dir=str(where))
        assert "run directory" in str(err.value) and "Fix: keep the external images" in str(err.value)
        with pytest.raises(pipeline.PipelineError, match="run directory"):
            pipeline.run("smoke", run_dir=str(run_dir), notebooks="05", params={"external_dir": str(where)},
                         overwrite=True)
    with pytest.raises(config.SettingError, match="is the data folder"):
        config.resolve(profile="smoke", data_dir=str(dataset), run_dir=str(tmp_path / "run2"), external_dir=str(dataset))
    assert not (tmp_path / "run2").exists()
    assert "external" not in runs.ARTIFACTS
    assert runs.clear(run_dir) == ["external"]  # never the project's: --overwrite leaves it
    assert _snapshot(run_dir / "external") == before
    config.resolve(profile="smoke", run_dir=str(run_dir), external_dir=str(tmp_path / "hospital-b"))  # outside: fine


@pytest.mark.parametrize("name", ["data", "figures", "synthetic"])
def test_a_run_dir_whose_artifact_is_a_symlink_is_refused_and_the_target_survives(tmp_path, name):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "arrays_smoke_old.npz").write_bytes(b"someone's arrays")
    (target / "fig.png").write_bytes(b"someone's figure")
    before = _snapshot(target)
    run_dir = tmp_path / "run"
    config.resolve(profile="smoke", run_dir=str(run_dir))  # marked
    write_json(run_dir / pipeline.STATE, {"profile": "smoke", "data_dir": None, "params": {}, "notebooks": {}})
    (run_dir / name).symlink_to(target, target_is_directory=True)
    with pytest.raises(runs.RunDirError, match="symbolic link") as err:
        config.resolve(profile="smoke", run_dir=str(run_dir))
    message = str(err.value)
    assert f"{name} -> {target}" in message and "Fix: remove the link" in message and "run" in message
    for kwargs in ({"overwrite": True}, {"resume": True}):
        with pytest.raises(pipeline.PipelineError, match="symbolic link"):
            pipeline.run("smoke", run_dir=str(run_dir), notebooks="01", **kwargs)
    with pytest.raises(runs.RunDirError, match="symbolic link"):
        runs.claim(run_dir)
    unmarked = tmp_path / "old-run"  # an old, unmarked run: refused the same way, and not marked
    unmarked.mkdir()
    write_json(unmarked / pipeline.STATE, {"notebooks": {}})
    (unmarked / name).symlink_to(target, target_is_directory=True)
    with pytest.raises(runs.RunDirError, match="symbolic link"):
        config.resolve(profile="smoke", run_dir=str(unmarked))
    assert not runs.is_marked(unmarked)
    assert _snapshot(target) == before
    runs.clear(run_dir)  # clear unlinks a link, never follows it
    assert not (run_dir / name).exists() and _snapshot(target) == before
    config.resolve(profile="smoke", run_dir=str(run_dir))  # the link removed: accepted again


def test_a_new_folder_holding_only_the_pipelines_lock_is_claimed(tmp_path):
    from covidgan_utils import runs

    run = tmp_path / "run"
    run.mkdir()
    (run / runs.LOCK).write_text("")  # the pipeline takes its lock before it claims the folder
    runs.claim(run)
    assert runs.is_marked(run)


def test_a_folder_holding_only_its_settings_is_a_new_run_and_overwrite_keeps_them(tmp_path):
    from covidgan_utils import runs

    run = tmp_path / "run"
    run.mkdir()
    settings = '{"train_per_class": {"COVID": 0.7, "Normal": 0.7}}'
    (run / runs.SETTINGS_FILE).write_text(settings)  # the README's way to set a split before the first run
    runs.claim(run)
    (run / "transfer").mkdir()
    (run / "transfer" / "results.json").write_text("{}")
    runs.clear(run)
    assert not (run / "transfer").exists()
    assert (run / runs.SETTINGS_FILE).read_text() == settings  # starting over keeps the run's settings


def test_links_deeper_inside_a_run_are_replaced_or_unlinked_never_followed(tmp_path):
    from covidgan_utils import data

    mine = tmp_path / "mine"
    (mine / "notes").mkdir(parents=True)
    (mine / "manifest.csv").write_text("my own table\n")
    (mine / "notes" / "chapter.txt").write_text("my chapter\n")
    before = _snapshot(mine)
    run_dir = tmp_path / "run"
    cfg = config.resolve(profile="smoke", run_dir=str(run_dir))
    data.prepare(cfg, progress=False)
    manifest = run_dir / "data" / "manifest.csv"
    manifest.unlink()
    manifest.symlink_to(mine / "manifest.csv")  # a file of the run replaced by a link to someone's file
    (run_dir / "data" / "notes").symlink_to(mine / "notes", target_is_directory=True)  # a linked folder inside
    write_json(run_dir / pipeline.STATE, {"profile": "smoke", "data_dir": None, "params": {}, "notebooks": {}})
    with pytest.raises(data.DataError, match="manifest.csv is a symbolic link") as err:  # never read as the split
        data.prepare(cfg, progress=False)
    assert "Nothing was read or changed" in str(err.value) and _snapshot(mine) == before
    with pytest.raises(data.DataError, match="symbolic link"):
        data.load_split(cfg, "train")
    runs.clear(run_dir)  # --overwrite: links inside the run's folders are unlinked with them, their targets kept
    assert not (run_dir / "data").exists() and _snapshot(mine) == before


def test_a_manifest_without_its_columns_is_named_not_a_key_error(tmp_path):
    from covidgan_utils import data

    cfg = config.resolve(profile="smoke", run_dir=str(tmp_path / "run"))
    data.prepare(cfg, progress=False)
    (tmp_path / "run" / "data" / "manifest.csv").write_text("file,class\na.png,COVID\n")
    with pytest.raises(data.DataError, match=r"manifest.csv lacks the columns \['path', 'label', 'split', 'sha256'\]"):
        data.read_manifest(cfg)
