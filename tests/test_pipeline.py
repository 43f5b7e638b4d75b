"""The headless runner: papermill execution, state file, resume, refusing to clobber a run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from covidgan_utils import config, pipeline


def test_select_notebooks_by_number_and_errors():
    books = pipeline.available_notebooks()
    assert books and books[0].name.startswith("01_")
    assert [b.name for b in pipeline.select("01")] == [books[0].name]
    with pytest.raises(pipeline.PipelineError, match="No notebook matches '99'"):
        pipeline.select("01,99")


def test_every_notebook_declares_the_contract_parameters():
    for book in pipeline.available_notebooks():
        declared = pipeline.declared_parameters(book)
        assert {"profile", "data_dir", "run_dir"} <= declared, book.name
        if book.name.startswith(("02_", "03_")):
            assert {"epochs", "checkpoint_every"} <= declared, book.name
        if book.name.startswith("05_"):
            assert "vgg_weights" in declared, book.name


@pytest.mark.slow
def test_run_refuses_to_clobber_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "covidgan_utils", "run", "--profile", "smoke", "--run-dir", str(run_dir), "--notebooks", "01"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=config.repo_root())
    assert first.returncode == 0, first.stderr
    assert "[1/1] 01_data_exploration ... done in" in first.stdout
    assert (run_dir / "executed" / "01_data_exploration.ipynb").exists()
    assert (run_dir / "data" / "manifest.csv").exists()
    state = json.loads((run_dir / "pipeline.json").read_text())
    done = state["notebooks"]["01_data_exploration"]
    assert done["status"] == "done" and done["seconds"] > 0 and done["finished"].endswith("UTC")
    assert len(done["load_average"]) == 3 and done["cpus"] >= 1  # a time is quoted with the machine's load

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=config.repo_root())
    assert again.returncode == 1 and "--resume" in again.stderr and "--overwrite" in again.stderr

    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, cwd=config.repo_root())
    assert resumed.returncode == 0 and "already done, skipped" in resumed.stdout

    bad = subprocess.run(cmd + ["--overwrite", "-p", "nonsense", "1"], capture_output=True, text=True, cwd=config.repo_root())
    assert bad.returncode == 1 and "nonsense" in bad.stderr


def test_failing_notebook_is_named_with_its_cell(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(pipeline.PipelineError) as err:
        # a data_dir that does not exist makes notebook 01 stop in its data cell
        pipeline.run("smoke", data_dir=str(tmp_path / "no-such-folder"), run_dir=str(run_dir), notebooks="01")
    message = str(err.value)
    assert "01_data_exploration.ipynb failed in cell" in message and "DataError" in message
    assert (run_dir / "executed" / "01_data_exploration.failed.ipynb").exists()
    state = json.loads((run_dir / "pipeline.json").read_text())
    assert state["notebooks"]["01_data_exploration"]["status"] == "failed"


def test_second_run_on_the_same_directory_refuses_and_stale_lock_is_taken_over(tmp_path):
    import os

    from covidgan_utils.files import RunLock, RunLockError

    run_dir = tmp_path / "run"
    with RunLock(run_dir, what="first"):
        with pytest.raises(RunLockError, match="in use by first"):
            with RunLock(run_dir, what="second"):
                pass
        with pytest.raises(pipeline.PipelineError, match="in use by first"):
            pipeline.run("smoke", run_dir=str(run_dir), notebooks="01")
    assert not (run_dir / ".lock").exists()
    # a crashed run's lock (a pid that does not exist) does not block forever
    import socket

    dead = 2**22 + 12345
    while True:
        try:
            os.kill(dead, 0)
            dead += 1
        except ProcessLookupError:
            break
    (run_dir / ".lock").write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "what": "crashed"}))
    with RunLock(run_dir, what="third"):
        assert json.loads((run_dir / ".lock").read_text())["what"] == "third"


@pytest.mark.slow
def test_each_gan_seed_is_its_own_sub_run(tmp_path):
    import pandas as pd

    run_dir = tmp_path / "run"
    config.resolve(profile="smoke", run_dir=str(run_dir))
    (run_dir / config.OVERRIDES_FILE).write_text('{"gan_seeds": [0, 1]}')
    pipeline.run("smoke", run_dir=str(run_dir), notebooks="01,02")
    sub = run_dir / "gan_seeds" / "seed-1"
    assert json.loads((sub / config.OVERRIDES_FILE).read_text()) == {"gan_seeds": [1]}
    state = json.loads((sub / "pipeline.json").read_text())
    assert set(state["notebooks"]) == {"01_data_exploration", "02_pytorch_cgan"}
    main = pd.read_csv(run_dir / "torch_gan" / "history.csv")
    other = pd.read_csv(sub / "torch_gan" / "history.csv")
    assert len(main) == len(other) and not main["d_loss"].equals(other["d_loss"])  # another generator
    assert not (sub / "gan_seeds").exists()  # a sub-run has one GAN seed: no sub-runs of its own


def test_resume_accepts_other_notebook_only_parameters_but_not_other_run_settings(tmp_path):
    """Notebook 07's study options may change between sessions of one run; a run setting may not."""
    from covidgan_utils import runs, settings

    assert not settings.is_run_setting("trainable_blocks") and not settings.is_run_setting("run_sweeps")
    assert settings.is_run_setting("epochs") and settings.is_run_setting("lr") and settings.is_run_setting("split_seed")
    run_dir = tmp_path / "run"
    runs.claim(run_dir)
    done = {"status": "done", "seconds": 1.0}
    (run_dir / "pipeline.json").write_text(json.dumps(
        {"profile": "smoke", "data_dir": None, "params": {}, "notebooks": {"01_data_exploration": done}}))
    state = pipeline._run_unlocked("smoke", None, str(run_dir), "01", {"trainable_blocks": 1}, resume=True)
    assert state["params"] == {} and state["notebooks"]["01_data_exploration"] == done
    with pytest.raises(pipeline.PipelineError, match="other settings"):
        pipeline._run_unlocked("smoke", None, str(run_dir), "01", {"split_seed": 3}, resume=True)


def test_when_measured_gives_the_time_and_the_load():
    m = pipeline.when_measured()
    assert m["finished"].endswith("UTC") and (m["load_average"] is None or len(m["load_average"]) == 3)


def test_a_phantom_run_draws_every_set_its_notebooks_read_before_them(tmp_path, monkeypatch):
    """The sets are drawn once by the run itself (in two processes for the large ones), so no kernel forks."""
    from covidgan_utils import phantoms

    calls = []
    real = phantoms.generate_dataset
    monkeypatch.setattr(phantoms, "generate_dataset",
                        lambda out, *a, **k: calls.append((Path(out).name, k.get("workers"))) or real(out, *a, **k))
    monkeypatch.setattr(phantoms, "PARALLEL_FROM", 150)  # the smoke profile's independent set is the only large one
    run_dir = tmp_path / "run"
    state = pipeline.run("smoke", run_dir=str(run_dir), notebooks="01")
    cfg = config.resolve(profile="smoke", run_dir=str(run_dir), claim=False)
    independent = phantoms.ensure_independent_phantoms(cfg).name
    names = dict(calls[:4])
    assert set(names) == {config.phantom_dir(cfg).name, phantoms.ensure_external_phantoms(cfg).name,
                          phantoms.ensure_large_test_phantoms(cfg, progress=False).name, independent}
    assert names[independent] == min(2, os.cpu_count()) and names[config.phantom_dir(cfg).name] == 1
    assert state["phantoms"]["seconds"] >= 0 and len(state["phantoms"]["load_average"]) == 3

    calls.clear()  # a resumed run with nothing left to do draws nothing
    pipeline.run("smoke", run_dir=str(run_dir), notebooks="01", resume=True)
    assert calls == []
    assert pipeline.PHANTOM_READERS == tuple(f"{i:02d}" for i in range(1, 7))
