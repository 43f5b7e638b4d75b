"""covidgan_utils: the thin shared package behind the CovidGAN teaching notebooks.

Importing it is cheap: no torch, no tensorflow, no file or network I/O.
Framework code lives in ``covidgan_utils.torch_gan`` and ``covidgan_utils.tf_gan``.
"""

__version__ = "0.1.0"

CLASSES = ("Normal", "COVID")
"""Class names by index; COVID = 1 is the positive class everywhere."""

COVID = 1
NORMAL = 0

NOTEBOOKS = {
    "01": "notebooks/01_data_exploration.ipynb",
    "02": "notebooks/02_pytorch_cgan.ipynb",
    "03": "notebooks/03_tensorflow_cgan.ipynb",
    "04": "notebooks/04_synthetic_data.ipynb",
    "05": "notebooks/05_vgg16_transfer_learning.ipynb",
    "06": "notebooks/06_evaluating_synthetic_data.ipynb",
    "07": "notebooks/07_sweeps_and_gan_options.ipynb",
}
"""The numbered notebooks, by number: the one place their file names are written."""

__all__ = ["CLASSES", "COVID", "NORMAL", "NOTEBOOKS", "__version__"]
