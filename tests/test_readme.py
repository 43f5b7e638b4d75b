"""The README's results section is written from a run's files, replaces only the text between its markers."""

import json

import pytest
from test_glance import predictions

from covidgan_utils import evaluation, readme
from covidgan_utils.formatting import clean


def metrics_block(recall, kid, fidelity=(0.9, 0.8), tstr=(0.72, 0.8)):
    return {"gan_test": {"per_class_recall": {"Normal": fidelity[0], "COVID": fidelity[1]},
                         "real_cv_per_class_recall": {"Normal": 0.885, "COVID": 0.704}},
            "tstr": {"accuracy": tstr[0], "trtr_accuracy": tstr[1]},
            "fixed": {"recall": recall, "kid": kid, "recall_name": "PRDC recall, k=5, fixed-v1 features, class mean"}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    preds = predictions({"real": -1.0, "real+copies": 0.0, "real+classweight": 0.0, "real+torch": 0.0, "real+tf": -1.0})
    results = evaluation.summarize(preds, train_info={"real": {"COVID": 331, "Normal": 601}}, settings={"gan_seeds": [0]})
    results.update({"data": "phantoms", "vgg_weights": "random", "epochs": 20, "seeds": [0, 1], "image_size": 64})
    (run / "transfer").mkdir()
    (run / "transfer" / "results.json").write_text(json.dumps(clean(results)))
    (run / "evaluation").mkdir()
    metrics = {"torch": metrics_block(0.41, 0.25), "tf": metrics_block(0.62, 0.12),
               "fixed": {"real_vs_real": {"recall": 0.97, "kid": 0.004}}}
    (run / "evaluation" / "metrics.json").write_text(json.dumps(metrics))
    pipeline = {"profile": "demo", "params": {"epochs": 12},
                "notebooks": {"01_data_exploration": {"status": "done", "seconds": 20.4},
                              "02_pytorch_cgan": {"status": "done", "seconds": 100.0}}}
    (run / "pipeline.json").write_text(json.dumps(pipeline))
    return run


def test_render_reads_the_run(run_dir):
    text = readme.render(run_dir)
    assert text.startswith(readme.START) and text.endswith(readme.END)
    assert "PyTorch GAN 12 epochs" in text and "TensorFlow GAN 12 epochs" in text  # the run's -p epochs, both GANs
    results = json.loads((run_dir / "transfer" / "results.json").read_text())
    real = results["conditions"]["real"]
    assert f"| real | {real['accuracy']:.3f} [{real['accuracy_ci'][0]:.3f}, " in text
    verdict = evaluation.verdict(results, "real+torch")
    assert "| real + PyTorch GAN |" in text and verdict["text"] in text
    assert "| PyTorch | 0.90 / 0.80 | 0.720 / 0.800 = 0.90 | 0.41 | 0.250 |" in text
    assert "| two real halves (reference) | | | 0.97 | 0.004 |" in text
    assert "| real images, cross-validated (reference) | 0.89 / 0.70 | | | |" in text  # the classifier's own per-class level
    assert "| total | 120 (2.0 min) | | | |" in text
    assert "random weights" in text and "phantoms" in text


def test_update_replaces_only_the_section(run_dir, tmp_path):
    path = tmp_path / "README.md"
    path.write_text(f"# Title\n\nbefore\n{readme.START}\nold numbers 0.123\n{readme.END}\n\nafter\n")
    assert readme.update(path, run_dir) is True
    text = path.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith("\n\nafter\n") and "0.123" not in text
    assert readme.update(path, run_dir) is False  # the same run writes the same text
    assert path.read_text() == text


def test_clear_errors(run_dir, tmp_path):
    path = tmp_path / "README.md"
    path.write_text("no markers\n")
    with pytest.raises(readme.ReadmeError, match="no results markers"):
        readme.update(path, run_dir)
    assert path.read_text() == "no markers\n"
    with pytest.raises(readme.ReadmeError, match="results.json is missing"):
        readme.render(tmp_path)


def test_the_readme_has_the_markers():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert text.count(readme.START) == 1 and text.count(readme.END) == 1
    assert text.count(readme.REAL_START) == 1 and text.count(readme.REAL_END) == 1
    assert text.count(readme.STUDIES_START) == 1 and text.count(readme.STUDIES_END) == 1


def test_studies_section_is_written_from_notebook_07s_summary(run_dir, tmp_path):
    """make studies: the studies section comes from RUN/studies/summary.json; notebook 07's time is not in the
    demo's time table (it is make studies', given in its own section)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    path = tmp_path / "README.md"
    body = f"{readme.START}\nx\n{readme.END}\n\n{readme.STUDIES_START}\nold study 0.456\n{readme.STUDIES_END}\n"
    path.write_text(body)
    readme.update(path, run)
    text = path.read_text()  # no notebook 07 in this run: the last run's studies are not this run's
    assert "old study 0.456" not in text and "Not run yet on this demo run: `make studies`" in text
    pipeline = json.loads((run / "pipeline.json").read_text())
    pipeline["notebooks"]["07_sweeps_and_gan_options"] = {"status": "done", "seconds": 3000.0,
                                                          "finished": "2026-12-01 06:00 UTC",
                                                          "load_average": [1.5, 1.6, 1.7], "cpus": 2}
    (run / "pipeline.json").write_text(json.dumps(pipeline))
    (run / "studies").mkdir()
    summary = {
        "comparison": [{"option": "plain cGAN"}, {"option": "plain cGAN"}], "missing_comparison_runs": {"ACGAN": "x"},
        "sweep": {"accuracy": None},
        "shortcut": {"scale": "cpu", "vgg16": "random", "reading": ["the prediction follows the letter."],
                     "settings": {"image_size": 32, "frameworks": ["torch"], "gan_epochs": 6, "seeds": [0, 1, 2]},
                     "seconds": {"shortcut": 600.0, "clean": 300.0, "total": 900.0},
                     "measured": {"finished": "2026-12-01 05:27 UTC", "load_average": [3.14, 2.0, 1.5]},
                     "table": [{"arm": "shortcut", "condition": "real", "home accuracy": 0.661,
                                "external accuracy": 0.505, "drop": 0.156, "flip: class changed": 0.07}]},
        "finetune": {"vgg16": "random", "reading": ["trainable_blocks = 1 (last 1 block(s) trained too): gain."],
                     "settings": {"blocks": [0, 1], "seeds": [0], "epochs": 3, "run_dir": "runs/demo"},
                     "seconds": {"0": 60.0, "1": 120.0},
                     "table": [{"trainable_blocks": 1, "condition": "real+tf", "accuracy": 0.75,
                                "balanced_accuracy": 0.7, "roc_auc": 0.8123, "train_seconds": 40.0}]},
    }
    (run / "studies" / "summary.json").write_text(json.dumps(summary))
    assert readme.update(path, run) is True
    text = path.read_text()
    studies = text.split(readme.STUDIES_START)[1].split(readme.STUDIES_END)[0]
    assert "old study 0.456" not in text
    assert "| shortcut | real | 0.661 | 0.505 | 0.156 | 0.070 |" in studies
    assert "| 1 | real+tf | 0.750 | 0.700 | 0.812 | 40 |" in studies
    assert "- the prediction follows the letter." in studies and "15.0 min" in studies
    assert "clean arm 5.0, finished 2026-12-01 05:27 UTC at load 3.1)" in studies  # each study's time with its load
    assert "runs/demo; 3.0 min):" in studies  # study 2 recorded no load (an older result): none is made up
    assert "finished 2026-12-01 06:00 UTC, load average 1.5 / 1.6 / 1.7" in studies
    assert "not run: ACGAN (`make sweeps`)" in studies and "sweep: not run" in studies
    times = text.split(readme.START)[1]
    assert "07_sweeps" not in times and "| total | 120 (2.0 min) | | | |" in times


def test_the_conditions_table_shows_the_pixel_baseline_beside_vgg16(run_dir):
    results = json.loads((run_dir / "transfer" / "results.json").read_text())
    results["baseline"] = {"name": "pixels:logistic", "validation": {"accuracy": 0.745, "accuracy_ci": [0.679, 0.801],
                           "balanced_accuracy": 0.724, "balanced_accuracy_ci": [0.658, 0.792], "roc_auc": 0.832,
                           "roc_auc_ci": [0.774, 0.886]}, "external": {"accuracy": 0.786}, "large_test": {"roc_auc": 0.857}}
    table = readme._conditions_table(results)
    assert table.splitlines()[-1] == ("| pixel baseline: logistic regression on the pixels, trained on real (no VGG16) | "
                                      "0.745 [0.679, 0.801] | 0.724 [0.658, 0.792] | 0.832 [0.774, 0.886] | 0.786 | 0.857 | "
                                      "the reference without transfer learning |")
    assert "pixel baseline" not in readme._conditions_table({**results, "baseline": None})
    assert "cover the sampling of the validation images only" in readme.render(run_dir)


def test_the_real_data_section_names_the_folder_never_its_path(run_dir, tmp_path):
    import shutil

    real = tmp_path / "real-run"
    shutil.copytree(run_dir, real)
    (real / "data").mkdir()
    info = {"source": "/home/someone/datasets/covid19-radiography-sample", "phantoms": False,
            "counts": {"COVID": {"train": 331, "val": 72}, "Normal": {"train": 601, "val": 120}}}
    (real / "data" / "info.json").write_text(json.dumps(info))
    text = readme.render(real, section="real")
    assert text.startswith(readme.REAL_START) and text.endswith(readme.REAL_END)
    assert "One run on 1,124 real X-rays from the folder `covid19-radiography-sample`" in text
    assert "403 COVID + 721 Normal; COVID / Normal train 331 / 601, validation 72 / 120" in text
    assert "/home/someone" not in text and "\"External\" is n/a" in text
    path = tmp_path / "README.md"
    path.write_text(f"intro\n{readme.START}\nold demo\n{readme.END}\n{readme.REAL_START}\nold real\n{readme.REAL_END}\nend\n")
    assert readme.update(path, real, section="real")
    written = path.read_text()
    assert "old demo" in written and "old real" not in written and written.endswith(f"{readme.REAL_END}\nend\n")
    with pytest.raises(readme.ReadmeError, match="section must be one of"):
        readme.render(real, section="paper")
