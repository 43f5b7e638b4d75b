"""Test-session settings shared by unit tests and the nbval notebook tests.

Notebooks run under nbval read their parameters from COVIDGAN_* environment variables: the smoke
profile, a fresh temporary run directory shared by notebooks 01..NN in order, and no progress bars.
"""

import os
import tempfile


def pytest_configure(config):
    os.environ.setdefault("COVIDGAN_PROFILE", "smoke")
    if not os.environ.get("COVIDGAN_RUN_DIR"):
        os.environ["COVIDGAN_RUN_DIR"] = tempfile.mkdtemp(prefix="covidgan-nbval-")
    os.environ.setdefault("COVIDGAN_PROGRESS", "0")
    os.environ.setdefault("COVIDGAN_INTERACTIVE", "0")  # nbval: the explorer draws its static figure
    os.environ.setdefault("COVIDGAN_OFFLINE", "1")  # tests never reach the internet (downloads are tested on 127.0.0.1)
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # One process runs TensorFlow and then PyTorch tests: with a CUDA build of torch, triton's LLVM
    # library must be loaded before TensorFlow's (see covidgan_utils/tf_gan.py), whatever imports first.
    try:
        import triton._C.libtriton  # noqa: F401
    except Exception:
        pass
