"""Fast checks of the benchmark scripts (small for testing): the harness's JSON rows, the profiler, the GPU dry run.

The harness runs as users run it from the repository root (``python benchmarks/run.py`` or
``python -m benchmarks.run``); the investigations are imported as ``benchmarks.investigations.*`` (pytest puts
the repository root on the path: conftest.py).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"

ROW_KEYS = {"name", "value", "unit", "baseline", "ratio", "target"}


def _harness(*args, as_module: bool = False):
    command = ["-m", "benchmarks.run"] if as_module else ["benchmarks/run.py"]
    return subprocess.run([sys.executable, *command, *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("as_module", [False, True], ids=["file", "module"])
def test_run_writes_contract_rows(tmp_path, as_module):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    proc = _harness("--quick", "--only", "gemm_peak", "--out", str(out), as_module=as_module)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and ROW_KEYS <= set(rows[0])
    assert rows[0]["name"] == "gemm_peak" and rows[0]["unit"] == "GFLOP/s" and rows[0]["value"] > 0
    assert "gemm_peak" in proc.stdout


def test_run_reports_a_broken_benchmark(tmp_path):
    out = tmp_path / "bench.json"
    assert _harness("--only", "no_such_benchmark", "--out", str(out)).returncode == 1
    (row,) = json.loads(out.read_text())
    assert ROW_KEYS <= set(row) and row["value"] is None and "no_such_benchmark" in row["error"]


def test_benchmarks_share_one_peak_and_leave_the_import_path_alone():
    files = sorted(BENCH.rglob("*.py"))
    assert {p.name for p in (BENCH / "investigations").glob("*.py")} >= {"profile_torch_step.py", "gpu_switches.py"}
    for path in files:
        text = path.read_text()
        assert not re.search(r"sys\.path\.(insert|append)|PYTHONPATH", text), path.name
        if path.name != "_timing.py":
            assert not re.search(r"def \w*peak\w*\(", text), f"{path.name}: use _timing.fp32_peak_gflops"


def test_profile_step_variants_tiny():
    torch = pytest.importorskip("torch")
    from benchmarks.investigations import profile_torch_step as prof

    before = torch.get_num_threads()
    out = prof.run(batch=4, repeats=1, size=16, width=0.125, variants=["adam_fused", "channels_last", "malloc_keep"])
    assert torch.get_num_threads() == before  # the thread variants put the count back
    names = [r["variant"] for r in out["variants"]]
    assert names == ["plain", "adam_fused", "channels_last", "malloc_keep"]
    for r in out["variants"]:
        assert r["step_s_median"] > 0 and len(r["first_step_losses"]) == 4
    # the same weights, data and random stream: fp32 variants give the plain step's losses up to rounding
    assert all(r["max_loss_diff_vs_plain"] < 1e-3 for r in out["variants"][1:])
    shares = out["profile"]["group_shares"]
    assert abs(sum(shares.values()) - 1) < 0.01 and "convolution backward" in shares
    # 16 px: one hidden and one output transposed convolution in G, four convolutions in D
    assert [r["type"] for r in out["layers"]] == ["ConvTranspose2d"] * 2 + ["Conv2d"] * 4
    assert all(r["forward_s"] > 0 and r["backward_s"] > 0 for r in out["layers"])


def test_gpu_switches_without_gpu_measures_nothing():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the no-GPU message does not apply")
    cmd = [sys.executable, "-m", "benchmarks.investigations.gpu_switches"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "no GPU: nothing measured" in proc.stdout


@pytest.mark.slow  # two child processes, seven tiny trainings: ~50 s of CPU time
def test_gpu_switches_cpu_dry_run(tmp_path):
    """Every switch trains 2 steps at 32 px through the project's loops, with finite losses."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from benchmarks.investigations import gpu_switches

    out = tmp_path / "gpu.json"
    # every PyTorch switch; TensorFlow's mixed precision (XLA is tf_gan.train(jit_compile=True), tested in test_tf_gan)
    switches = ",".join([*gpu_switches.TORCH_SWITCHES, "mixed_bf16"])
    cmd = [sys.executable, "-m", "benchmarks.investigations.gpu_switches", "--cpu-dry-run", "--switches", switches]
    cmd += ["--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True
    for fw, names in (("torch", set(gpu_switches.TORCH_SWITCHES)), ("tf", {"plain", "mixed_bf16"})):
        res = report["frameworks"][fw]["switches"]
        assert set(res) == names
        for r in res.values():
            assert r["finite"] and len(r["epoch_s"]) == 1 and r["paper_1000_epochs_s"] > 0
    assert report["frameworks"]["tf"]["switches"]["mixed_bf16"]["compute_dtype"] == "bfloat16"
    assert report["frameworks"]["tf"]["switches"]["plain"]["compute_dtype"] == "float32"
    assert "paper_two_trainings" in report


def test_paper_time_extrapolates_from_a_short_run(tmp_path):
    import json

    from benchmarks.investigations import paper_time

    for fw, seconds in (("torch", [9.0, 2.0, 2.2, 1.8]), ("tf", [20.0, 5.0])):
        (tmp_path / f"{fw}_gan").mkdir()
        rows = "\n".join(f"{i + 1},0.6,0.7,0.5,0.5,0.7,{s}" for i, s in enumerate(seconds))
        (tmp_path / f"{fw}_gan" / "history.csv").write_text("epoch,d_loss,g_loss,d_real,d_fake,g_test_loss,seconds\n" + rows)
    books = {"01_data_exploration": 30, "02_pytorch_cgan": 20, "03_tensorflow_cgan": 30, "05_vgg16_transfer_learning": 100}
    (tmp_path / "pipeline.json").write_text(json.dumps({"notebooks": {k: {"status": "done", "seconds": v}
                                                                      for k, v in books.items()}}))
    est = paper_time.estimate(tmp_path, epochs=1000, n_gan_seeds=3)
    assert est["gans"]["torch"]["estimate_s"] == pytest.approx(9.0 + 999 * 2.0)  # first + 999 x median(2.0, 2.2, 1.8)
    assert est["gans"]["tf"]["estimate_s"] == pytest.approx(20.0 + 999 * 5.0)
    expected = 3 * (9.0 + 999 * 2.0 + 20.0 + 999 * 5.0) + 30 + 3 * 100  # 05 repeats per GAN seed, 01 does not
    assert est["paper_total_h"] == pytest.approx(expected / 3600, abs=0.01)
    with pytest.raises(FileNotFoundError, match="paper-smoke"):
        paper_time.epoch_seconds(tmp_path / "missing", "torch")


@pytest.mark.parametrize("tag", ["..", ".", "../victim", "/abs/victim", "a/b", "a\\b"])
def test_demo_gan_quality_takes_only_a_plain_tag_and_deletes_nothing(tmp_path, tag, capsys):
    from benchmarks.investigations import demo_gan_quality

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("keep me")
    if tag.startswith("/abs"):
        tag = str(victim)
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as err:
        demo_gan_quality.main(["torch", "--tag", tag, "--run-dir", str(run_dir), "--out", str(tmp_path / "o.jsonl")])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "--tag" in message and "plain folder name" in message and "Fix:" in message
    assert (victim / "thesis.tex").read_text() == "keep me" and not run_dir.exists()
    with pytest.raises(SystemExit):
        demo_gan_quality.main(["torch", "--diffaugment", "../../victim", "--run-dir", str(run_dir)])
    assert "--diffaugment" in capsys.readouterr().err and not run_dir.exists()
    assert demo_gan_quality.plain_name("lr5e-4_s0") and demo_gan_quality.plain_name("w1.0_lr0.0002")
