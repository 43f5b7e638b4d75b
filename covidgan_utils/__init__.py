"""covidgan_utils: the thin shared package behind the CovidGAN teaching notebooks.

Importing it is cheap: no torch, no tensorflow, no file or network I/O.
Framework code lives in ``covidgan_utils.torch_gan`` and ``covidgan_utils.tf_gan``.
"""

__version__ = "0.1.0"

CLASSES = ("Normal", "COVID")
"""Class names by index; COVID = 1 is the positive class everywhere."""

COVID = 1
NORMAL = 0

__all__ = ["CLASSES", "COVID", "NORMAL", "__version__"]
