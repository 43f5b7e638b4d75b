"""Interruption by kill -9 (subprocesses): training resumes to the same result, the pipeline resumes, nothing half-written.

A worker script trains a tiny cGAN (16 px, width 1/8, 40 images, a checkpoint every epoch: small for testing)
in a subprocess. It is killed with SIGKILL at a seeded random moment, or kills itself while writing a checkpoint;
rerunning it must end with the history and weights of an uninterrupted run (bitwise, CPU). The pipeline test
kills ``python -m covidgan_utils run`` (papermill running notebooks 02 and 03) and resumes it twice.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from covidgan_utils import config, data

ROOT = config.repo_root()
SEED = 20261126  # the "random" kill moments are drawn from this seed: the test is reproducible
EPOCHS = 8
NB_EPOCHS = 12  # notebooks 02/03 in the pipeline test: enough epochs that the kill lands inside training

WORKER = r'''
"""Train a tiny cGAN; optionally slow each step down, or SIGKILL itself half-way through writing checkpoint K's state."""
import os, signal, sys, time
import numpy as np

fw, out, epochs, mode, arg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (40, 16, 16, 1), dtype=np.uint8)
labels = np.arange(40) % 2


def die_half_written(raw: bytes, path) -> None:
    with open(path, "wb") as fh:
        fh.write(raw[: len(raw) // 2])
        fh.flush()
        os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


from covidgan_utils import gan_checkpoints

if fw == "torch":
    import torch
    from covidgan_utils import torch_gan as gan

    torch.manual_seed(0)
else:
    from covidgan_utils import tf_gan as gan

    gan.keras.utils.set_random_seed(0)
if mode == "slow":
    step = gan.Trainer.step
    gan.Trainer.step = lambda self, idx: (time.sleep(float(arg)), step(self, idx))[1]
if mode == "kill_in_save":
    write_json = gan_checkpoints.write_json

    def partial_json(path, obj):
        if os.path.basename(str(path)) == "state.json" and obj.get("epoch") == int(arg):
            import json
            die_half_written(json.dumps(obj, default=str).encode(), path)
        return write_json(path, obj)

    gan_checkpoints.write_json = partial_json
g, d = gan.build_generator(16, width=0.125), gan.build_discriminator(16, width=0.125)
history = gan.train(g, d, images, labels, epochs=epochs, batch_size=8, out_dir=out, checkpoint_every=1,
                    progress=True, seed=0)
if fw == "torch":
    weights = {f"g.{k}": v.numpy() for k, v in g.state_dict().items()}
    weights.update({f"d.{k}": v.numpy() for k, v in d.state_dict().items()})
else:
    weights = {f"g{i}": w for i, w in enumerate(g.get_weights())}
    weights.update({f"d{i}": w for i, w in enumerate(d.get_weights())})
np.savez(os.path.join(out, "final_weights.npz"), **weights)
print("finished", len(history), "epochs")
'''


def _env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(ROOT), COVIDGAN_PROGRESS="0", TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    return env


def _worker_cmd(script: Path, fw: str, out: Path, mode: str = "plain", arg: str = "0") -> list[str]:
    return [sys.executable, "-u", str(script), fw, str(out), str(EPOCHS), mode, arg]


def _checkpoints(out: Path) -> list[int]:
    folder = out / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("_")[1]) for p in folder.glob("epoch_*"))


def _wait_for(condition, proc: subprocess.Popen | None, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the process ended (rc {proc.returncode}) before {what}:\n{out[-3000:]}")
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _final(out: Path):
    history = pd.read_csv(out / "history.csv").drop(columns=["seconds"])
    with np.load(out / "final_weights.npz") as z:
        weights = {k: z[k] for k in z.files}
    return history, weights


def _assert_same_run(a: Path, b: Path) -> None:
    (ha, wa), (hb, wb) = _final(a), _final(b)
    assert len(ha) == EPOCHS
    pd.testing.assert_frame_equal(ha, hb, check_exact=True)
    assert sorted(wa) == sorted(wb)
    for key in wa:
        np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    path = tmp_path_factory.mktemp("worker") / "train_worker.py"
    path.write_text(WORKER)
    return path


@pytest.fixture(params=["torch", "tf"])
def reference(request, worker, tmp_path):
    """An uninterrupted run of EPOCHS epochs, started in the background so it overlaps the killed runs."""
    fw = request.param
    if fw == "tf" and importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed (tf_gan cannot run)")
    out = tmp_path / "straight"
    proc = subprocess.Popen(_worker_cmd(worker, fw, out), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    yield fw, out, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _finished(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out


@pytest.mark.slow
def test_sigkill_at_random_moment_and_inside_a_checkpoint_write_then_rerun_equals_uninterrupted(
    reference, worker, tmp_path
):
    """Killed at a seeded random moment, then killed half-way through writing a checkpoint, then run to the end."""
    fw, straight, straight_proc = reference
    out = tmp_path / "killed"
    rng = np.random.default_rng(SEED)
    # 1. SIGKILL from outside at a random moment; each step sleeps 20 ms (5 steps an epoch) so it lands in training
    proc = subprocess.Popen(_worker_cmd(worker, fw, out, "slow", "0.02"), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: _checkpoints(out), proc, 240, "the first checkpoint")
        time.sleep(float(rng.uniform(0.0, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = max(_checkpoints(out))
    assert done < EPOCHS - 2

    # 2. the rerun resumes, then dies half-way through writing checkpoint k (SIGKILL from inside the write)
    k = done + 2
    died = subprocess.run(_worker_cmd(worker, fw, out, "kill_in_save", str(k)), env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert died.returncode == -signal.SIGKILL, died.stdout + died.stderr
    assert f"Resuming from epoch_{done:04d}" in died.stdout
    folder = out / "checkpoints"
    assert max(_checkpoints(out)) == k - 1  # the half-written epoch k never got its final name
    leftovers = [p for p in folder.iterdir() if p.name.startswith(".")]
    assert leftovers, "the killed write should have left its temporary file behind"

    # 3. worse: give the torn folder the final name, as a non-atomic copy would; it must be skipped, never loaded
    torn = folder / f"epoch_{k:04d}"
    os.replace(leftovers[0], torn)

    # 4. run to the end: the same history and weights as the uninterrupted run, bitwise
    rerun = subprocess.run(_worker_cmd(worker, fw, out), env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"Skipping unreadable checkpoint {torn.name}" in rerun.stderr
    assert f"Resuming from epoch_{k - 1:04d}" in rerun.stdout
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # the killed writes' temporaries are gone
    _finished(straight_proc)
    _assert_same_run(straight, out)


# ----------------------------------------------------------------------------------- the pipeline


def _run_cmd(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-u", "-m", "covidgan_utils", "run", "--profile", "smoke", "--run-dir", str(run_dir),
            "-p", "epochs", str(NB_EPOCHS), "-p", "checkpoint_every", "1", *extra]


def _state(run_dir: Path) -> dict:
    path = run_dir / "pipeline.json"
    return json.loads(path.read_text())["notebooks"] if path.exists() else {}


def _descendants(pid: int) -> list[int]:
    """Every process below pid (from /proc): the papermill kernels run in sessions of their own."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _kill_group(proc: subprocess.Popen) -> str:
    """SIGKILL the pipeline's process group and its kernels at once, as a crash or an OOM kill would."""
    kernels = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in kernels:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, _ = proc.communicate(timeout=60)
    return out or ""


SYNTH_WORKER = r"""
import os, signal, sys
import numpy as np
from covidgan_utils import synthesis

run, seed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
calls = []


def sample(generator, labels, s):
    calls.append(s)
    if mode == "die_generating" and len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return np.random.default_rng(s).integers(0, 256, (len(labels), 32, 32, 1), dtype=np.uint8)


if mode == "die_swapping":  # killed between moving the old folder away and renaming the new one into place
    replace = os.replace

    def dying_replace(src, dst):
        replace(src, dst)
        if ".old-" in str(dst):
            os.kill(os.getpid(), signal.SIGKILL)

    synthesis.os.replace = dying_replace
synthesis.generate("torch", None, {"COVID": 10, "Normal": 10}, synthesis.framework_dir(run, "torch"), seed=seed,
                   batch_size=4, overwrite=True, progress=False, sample_fn=sample)
"""


def _visible_synthetic(run_dir: Path) -> dict:
    """RUN/synthetic/torch as {relative path: bytes}; asserts the manifest lists exactly the PNGs there."""
    folder = run_dir / "synthetic" / "torch"
    if not folder.exists():
        return {}
    manifest = pd.read_csv(folder / "manifest.csv")
    pngs = sorted(p.relative_to(run_dir).as_posix() for p in folder.rglob("*.png"))
    assert sorted(manifest["path"]) == pngs and len(pngs) == 20
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synthetic_images_are_never_half_written_when_killed(tmp_path):
    """kill -9 while generating, and between the two renames of the folder swap: never a half-written folder."""
    script = tmp_path / "synth_worker.py"
    script.write_text(SYNTH_WORKER)
    run_dir = tmp_path / "run"

    def go(seed: int, mode: str) -> int:
        cmd = [sys.executable, str(script), str(run_dir), str(seed), mode]
        return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120).returncode

    assert go(0, "plain") == 0
    complete = _visible_synthetic(run_dir)
    assert go(1, "die_generating") == -signal.SIGKILL
    assert _visible_synthetic(run_dir) == complete  # the previous complete folder, untouched
    assert [p for p in (run_dir / "synthetic").iterdir() if p.name.endswith(".tmp")]  # the killed run's work
    assert go(1, "die_swapping") == -signal.SIGKILL
    assert _visible_synthetic(run_dir) == {}  # old folder moved away, new one not yet in place: absent, not half
    assert go(1, "plain") == 0
    regenerated = _visible_synthetic(run_dir)
    assert regenerated and regenerated != complete
    assert [p.name for p in (run_dir / "synthetic").iterdir()] == ["torch"]  # temporary folders cleaned up


@pytest.mark.slow
def test_pipeline_killed_twice_resumes_to_the_uninterrupted_result(tmp_path):
    """kill -9 the pipeline's process group inside notebook 02, then inside notebook 03; --resume finishes the run.

    Notebooks 02 and 03 (run by papermill) resume from their last checkpoint and end with the history.csv of an
    uninterrupted run; 01 is never rerun once done; a fake Kaggle token in the environment appears nowhere.
    """
    fake_key = "kgl-FAKE-0123456789abcdef"
    kaggle_dir = tmp_path / "kaggle-config"  # ~/.kaggle/kaggle.json moved by KAGGLE_CONFIG_DIR, with a fake token
    kaggle_dir.mkdir()
    (kaggle_dir / "kaggle.json").write_text(json.dumps({"username": "nobody-test", "key": fake_key + "-file"}))
    env = {**_env(), "KAGGLE_KEY": fake_key, "KAGGLE_USERNAME": "nobody-test", "KAGGLE_CONFIG_DIR": str(kaggle_dir)}
    ref_dir, run_dir = tmp_path / "straight", tmp_path / "killed"
    rng = np.random.default_rng(SEED)  # seeded extra delay after the first checkpoint: a reproducible random moment
    # the uninterrupted reference runs beside the killed one (notebook 01's split made in-process, same settings)
    data.prepare(config.resolve(profile="smoke", run_dir=str(ref_dir)), progress=False)
    ref_log = open(tmp_path / "straight.log", "w+")  # a file, not a pipe: nobody reads it until the end
    ref = subprocess.Popen(_run_cmd(ref_dir, "--notebooks", "02,03"), env=_env(), cwd=ROOT, text=True,
                           stdout=ref_log, stderr=subprocess.STDOUT, start_new_session=True)
    books = ("--notebooks", "01,02,03")  # 04 is left out to save time: its kill test is below
    try:
        first = subprocess.Popen(_run_cmd(run_dir, *books), env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for(lambda: _checkpoints(run_dir / "torch_gan"), first, 300, "notebook 02's first checkpoint")
        time.sleep(float(rng.uniform(0.0, 0.1)))
        _kill_group(first)
        assert max(_checkpoints(run_dir / "torch_gan")) < NB_EPOCHS
        state = _state(run_dir)
        assert state["01_data_exploration"]["status"] == "done" and "02_pytorch_cgan" not in state
        assert not (run_dir / "executed" / "02_pytorch_cgan.ipynb").exists()

        second = subprocess.Popen(_run_cmd(run_dir, *books, "--resume"), env=env, cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for(lambda: _checkpoints(run_dir / "tf_gan"), second, 400, "notebook 03's first checkpoint")
        time.sleep(float(rng.uniform(0.0, 0.1)))
        out2 = _kill_group(second)
        assert "01_data_exploration: already done, skipped (resume)" in out2
        assert max(_checkpoints(run_dir / "tf_gan")) < NB_EPOCHS
        state = _state(run_dir)
        assert state["02_pytorch_cgan"]["status"] == "done" and "03_tensorflow_cgan" not in state

        third = subprocess.run(_run_cmd(run_dir, *books, "--resume"), env=env, cwd=ROOT, text=True,
                               capture_output=True, timeout=600)
        assert third.returncode == 0, third.stdout + third.stderr
        for name in ("01_data_exploration", "02_pytorch_cgan"):
            assert f"{name}: already done, skipped (resume)" in third.stdout
        assert "03_tensorflow_cgan ... done" in third.stdout
        assert "Resuming from epoch_" in (run_dir / "executed" / "03_tensorflow_cgan.ipynb").read_text()
        assert "Resuming from epoch_" in (run_dir / "executed" / "02_pytorch_cgan.ipynb").read_text()
        assert {v["status"] for v in _state(run_dir).values()} == {"done"}
        assert not list((run_dir / "executed").glob(".*partial*"))
        ref.wait(timeout=600)
    finally:
        if ref.poll() is None:
            _kill_group(ref)
        ref_log.seek(0)
        ref_out = ref_log.read()
        ref_log.close()
    assert ref.returncode == 0, ref_out
    for gan_dir in ("torch_gan", "tf_gan"):
        a = pd.read_csv(ref_dir / gan_dir / "history.csv").drop(columns=["seconds"])
        b = pd.read_csv(run_dir / gan_dir / "history.csv").drop(columns=["seconds"])
        assert len(a) == NB_EPOCHS
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    # no credential anywhere in what the run wrote (executed notebooks included)
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert fake_key.encode() not in path.read_bytes(), path
    shutil.rmtree(ref_dir, ignore_errors=True)
