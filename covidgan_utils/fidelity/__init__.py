"""How good are the synthetic X-rays? Everything notebook 06 reports, in numpy / scipy / scikit-learn.

One module per job:
- ``features``: the one pixel path (``pixels``) and the learned feature extractors;
- ``fixed``: a fixed, versioned feature map for gates and comparisons across runs, with real-vs-real references;
- ``distances``: Fréchet distance, KID, precision/recall/density/coverage, diversity;
- ``probes``: GAN-test, train-on-synthetic-test-on-real, brightness and thumbnail shortcut probes;
- ``memorization``: nearest-training-image distances against held-out real ones;
- ``evaluate`` and ``report``: a whole run -> RUN/evaluation/metrics.json, its reading and summary table;
  the stages (``set_distances``, ``fixed_comparison``, ``class_probes``, ``memorization_checks``,
  ``shortcut_probes``, ``diversity_curves``) are what notebook 06 calls one by one and ``evaluate_run`` in one go.

Learned feature spaces (``feature_extractor``):
- ``"domain"`` (the default when no weights file is given; works offline): a small classifier (an MLP
  on 32x32 pixels) trained on the real TRAINING X-rays to tell Normal from COVID; the activations of its
  last hidden layer are the features. It knows X-rays, but only what separates the two classes, and it is
  trained anew in every run: its numbers compare images within a run, not runs with each other.
- ``"vgg16"``: the 4096 features of notebook 05's frozen VGG16 (same ``vgg_weights`` option).
- ``"inception"``: torchvision's Inception-v3 pool features (2048), from a LOCAL weights file only.
ImageNet features (VGG16, Inception) were learned on colour photographs of objects: they respond to
textures and object parts that gray chest X-rays do not have, and can miss what matters in an X-ray
(lung texture, opacities); published FID values use Inception and are not comparable across domains.
For comparisons across runs and versions use the fixed space (``fixed.FEATURES_NAME``).

Metric conventions: real reference = the real training images (what the GAN saw); held-out real
validation images against the same reference give the "real vs real" floor each number should be
read against. Top-level numbers of a framework are means of the per-class values, because the
generated set's class mix (e.g. 669 COVID / 399 Normal) differs from the real one by design.
"""

from .distances import (
    SET_KEYS,
    diversity,
    frechet_distance,
    kid,
    mmd2,
    per_class_metrics,
    prdc,
    set_metrics,
    size_dependence,
)
from .evaluate import (
    NOTEBOOK_04,
    NOTEBOOK_06,
    Prepared,
    class_probes,
    diversity_curves,
    diversity_over_epochs,
    evaluate_framework,
    evaluate_run,
    fixed_comparison,
    memorization_checks,
    prepare,
    reference_metrics,
    set_distances,
    shortcut_probes,
)
from .features import (
    DOMAIN_SIZE,
    ENV_INCEPTION,
    EXTRACTORS,
    INCEPTION_URL,
    FeatureExtractor,
    build_extractor,
    choose_extractor,
    domain_extractor,
    domain_predict,
    gray01,
    inception_extractor,
    one_thread,
    pixels,
    vgg16_extractor,
)
from .fixed import (
    FEATURES_DIM,
    FEATURES_NAME,
    FEATURES_VERSION,
    fixed_features,
    fixed_space,
    real_halves,
    real_vs_generated,
    real_vs_real,
)
from .memorization import (
    COPY_DISTANCE,
    MANN_WHITNEY,
    closest_pairs,
    memorization,
    memorization_verdict,
    nearest,
    pairs_figure,
    pixel_distances,
)
from .probes import (
    WELCH,
    brightness_gap,
    fit_predict,
    gan_test,
    image_stats,
    lowres_probe,
    majority_rate,
    probe,
    scores,
    tstr,
)
from .report import reading, summary_table

__all__ = [
    "COPY_DISTANCE",
    "DOMAIN_SIZE",
    "ENV_INCEPTION",
    "EXTRACTORS",
    "FEATURES_DIM",
    "FEATURES_NAME",
    "FEATURES_VERSION",
    "INCEPTION_URL",
    "MANN_WHITNEY",
    "NOTEBOOK_04",
    "NOTEBOOK_06",
    "SET_KEYS",
    "WELCH",
    "FeatureExtractor",
    "Prepared",
    "brightness_gap",
    "build_extractor",
    "choose_extractor",
    "class_probes",
    "closest_pairs",
    "diversity",
    "diversity_curves",
    "diversity_over_epochs",
    "domain_extractor",
    "domain_predict",
    "evaluate_framework",
    "evaluate_run",
    "fit_predict",
    "fixed_comparison",
    "fixed_features",
    "fixed_space",
    "frechet_distance",
    "gan_test",
    "gray01",
    "image_stats",
    "inception_extractor",
    "kid",
    "lowres_probe",
    "majority_rate",
    "memorization",
    "memorization_checks",
    "memorization_verdict",
    "mmd2",
    "nearest",
    "one_thread",
    "pairs_figure",
    "per_class_metrics",
    "pixel_distances",
    "pixels",
    "prdc",
    "prepare",
    "probe",
    "reading",
    "real_halves",
    "real_vs_generated",
    "real_vs_real",
    "reference_metrics",
    "scores",
    "set_distances",
    "set_metrics",
    "shortcut_probes",
    "size_dependence",
    "summary_table",
    "tstr",
    "vgg16_extractor",
]
