"""Output folders given on the command line (figures --out, shortcut/finetune --out, sweep --root) are refused
where writing would replace or follow someone else's files; a user's file always survives."""

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
    (run / "pipeline.json").write_text('{"data_dir": "%s", "notebooks": {}}' % dataset)
    for where in (dataset, dataset / "COVID" / "figs", tmp_path):
        with pytest.raises(figures.FiguresOutError, match="data folder"):
            figures.make_all(run, out_dir=where)
    assert sorted(os.listdir(dataset)) == ["COVID"] and os.listdir(dataset / "COVID") == []
    # RUN/figures itself as --out: nothing to copy, and no error
    done = figures.make_all(run, out_dir=run / "figures")
    assert done["torch_gan_losses"] == run / "figures" / "torch_gan_losses.png"
