"""Output folders given on the command line (figures --out, shortcut/finetune --out, sweep --root) are refused
where writing would replace or follow someone else's files; a user's file always survives."""

import json
import os

import pytest

from covidgan_utils import figures


def _run_with_losses(tmp_path):
    run = tmp_path / "run"
    (run / "torch_gan").mkdir(parents=True)
    rows = "\n".join(f"{e},{1.0 / e:.3f},{0.5 + e / 10:.3f},{0.6:.2f},{0.4:.2f},{0.1}" for e in range(1, 6))
    (run / "torch_gan" / "history.csv").write_text("epoch,d_loss,g_loss,d_real,d_fake,seconds\n" + rows + "\n")
    return run


def test_figures_out_replaces_a_link_of_a_figure_name_never_its_target(tmp_path):
    run = _run_with_losses(tmp_path)
    out = tmp_path / "figs"
    out.mkdir()
    target = tmp_path / "thesis-figure.png"
    target.write_bytes(b"the user's own figure")
    (out / "torch_gan_losses.png").symlink_to(target)
    done = figures.make_all(run, out_dir=out)
    assert done["torch_gan_losses"] == out.resolve() / "torch_gan_losses.png"
    assert target.read_bytes() == b"the user's own figure"
    link = out / "torch_gan_losses.png"
    assert not link.is_symlink() and link.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == ["torch_gan_losses.png"]  # no temporary left


def test_figures_out_with_other_files_or_in_the_data_is_refused_before_drawing(tmp_path, capsys):
    run = _run_with_losses(tmp_path)
    out = tmp_path / "paper"
    out.mkdir()
    (out / "fig1.png").write_bytes(b"mine")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(figures.FiguresOutError, match="no figures of this project") as err:
        figures.make_all(run, out_dir=out)
    assert "paper" in str(err.value) and "fig1.png, notes.txt" in str(err.value) and "Fix:" in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == ["fig1.png", "notes.txt"]
    assert not (run / "figures").exists()  # refused before anything was drawn
    assert figures.main(["--run-dir", str(run), "--out", str(out)]) == 1
    assert "no figures of this project" in capsys.readouterr().out
    dataset = tmp_path / "dataset"
    (dataset / "COVID").mkdir(parents=True)
    (run / "pipeline.json").write_text(json.dumps({"data_dir": str(dataset), "notebooks": {}}))
    for where in (dataset, dataset / "COVID" / "figs", tmp_path):
        with pytest.raises(figures.FiguresOutError, match="data folder"):
            figures.make_all(run, out_dir=where)
    assert sorted(os.listdir(dataset)) == ["COVID"] and os.listdir(dataset / "COVID") == []
    # RUN/figures itself as --out: nothing to copy, and no error
    done = figures.make_all(run, out_dir=run / "figures")
    assert done["torch_gan_losses"] == run / "figures" / "torch_gan_losses.png"


@pytest.fixture
def users_folder(tmp_path):
    folder = tmp_path / "my-results"
    folder.mkdir()
    (folder / "results.json").write_text('{"mine": true}')  # a name the studies also write: still the user's
    (folder / "results.csv").write_text("a,b\n1,2\n")
    (folder / "notes.txt").write_text("keep me")
    return folder


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_shortcut_and_finetune_out_refuse_a_folder_of_someone_elses_files(tmp_path, users_folder, capsys):
    from covidgan_utils import config, runs, shortcut

    before = _snapshot(users_folder)
    assert shortcut.main(["--out", str(users_folder)]) == 1
    err = capsys.readouterr().err
    assert "my-results is not empty and is no output folder of this project" in err
    assert "notes.txt" in err and "Nothing was written or deleted" in err and "Fix: choose a new or empty folder with --out" in err
    finetune = pytest.importorskip("covidgan_utils.finetune")
    run_dir = tmp_path / "run"
    config.resolve(profile="smoke", run_dir=str(run_dir))
    with pytest.raises(runs.RunDirError, match="no output folder of this project"):
        finetune.run(run_dir, users_folder, profile="smoke", progress=False)
    assert finetune.main([str(run_dir), "--profile", "smoke", "--out", str(users_folder)]) == 1
    assert "--out" in capsys.readouterr().err
    assert _snapshot(users_folder) == before and not runs.is_marked(users_folder)


def test_an_earlier_study_folder_is_adopted_and_a_new_one_marked(tmp_path):
    from covidgan_utils import runs, shortcut

    old = tmp_path / "shortcut-cpu"
    (old / "shortcut" / "torch_gan").mkdir(parents=True)
    (old / "results.json").write_text('{"settings": {}, "arms": {}}')
    assert shortcut.claim_out_dir(old) == old and runs.is_marked(old)
    new = tmp_path / "studies" / "new"
    shortcut.claim_out_dir(new)
    assert runs.is_marked(new)
    odd = tmp_path / "odd"  # the study's file names, but other content: refused
    odd.mkdir()
    (odd / "results.json").write_text('{"settings": {}, "arms": {}}')
    (odd / "thesis.tex").write_text("mine")
    with pytest.raises(runs.RunDirError, match="thesis.tex"):
        shortcut.claim_out_dir(odd)


def test_sweep_root_refuses_a_folder_of_someone_elses_files(tmp_path, users_folder):
    from covidgan_utils import runs, sweeps

    before = _snapshot(users_folder)
    with pytest.raises(sweeps.SweepError, match="Sweep folder .*my-results is not empty") as err:
        sweeps.run("my-results", {"train_fraction": [0.5]}, profile="smoke", root=str(tmp_path), notebooks="01")
    assert "Fix: choose a new or empty folder with --root" in str(err.value)
    assert sweeps.main(["my-results", "--grid", "train_fraction=0.5", "--profile", "smoke", "--root", str(tmp_path),
                        "--notebooks", "01"]) == 1
    assert _snapshot(users_folder) == before and not runs.is_marked(users_folder)
    # an earlier sweep's folder (sweep.json, results.csv, its points' run directories) is adopted
    old = tmp_path / "old-sweep"
    (old / "train_fraction-0.5").mkdir(parents=True)
    (old / "train_fraction-0.5" / runs.MARKER).write_text("{}")
    (old / "sweep.json").write_text('{"name": "old-sweep", "grid": {"train_fraction": [0.5]}}')
    (old / "results.csv").write_text("point\n")
    assert sweeps._old_sweep(old)
    (old / "mine.txt").write_text("x")
    assert not sweeps._old_sweep(old)
