"""TensorFlow first, then PyTorch training, in one process (as notebook 04 and the test session do)."""

import subprocess
import sys


def test_tf_then_torch_optimizer_does_not_crash():
    code = (
        "from covidgan_utils import tf_gan\n"
        "import torch\n"
        "opt = torch.optim.Adam(torch.nn.Linear(2, 2).parameters())\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
