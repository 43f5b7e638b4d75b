"""Quick checks of generated images for notebooks 02-04: class fidelity and diversity.

The names notebooks 02, 03 and 04 use; the code is in ``covidgan_utils.fidelity``, where notebook 06
goes much further (KID, precision/recall, memorization, shortcut probes).
"""

from __future__ import annotations

from .fidelity.distances import diversity
from .fidelity.probes import gan_test as class_fidelity
from .fidelity.probes import real_level

__all__ = ["class_fidelity", "diversity", "real_level"]
