"""Paired comparisons of the VGG16 conditions: class-stratified bootstrap, McNemar, Holm, TOST, power.

The unit is the validation image, and the images are assumed independent. Every condition is scored
on the same images, so conditions are compared image by image (paired). Resampling draws images
with replacement *within each class* (the validation set has a fixed 72/120 design, and AUC,
sensitivity and specificity are defined per class), B = 2000 times, seeded; the same draws serve
every condition and every metric. A condition's statistic on a draw is the mean over its head seeds
of that metric, so the point estimates equal the seed means in results.json, and the intervals cover
validation sampling (head seeds averaged; GAN seeds not at all). Decisions compared image by image
(exact McNemar) use each image's probability averaged over the head seeds, thresholded at 0.5.

Thresholds are never tuned on the validation set: the only threshold other than 0.5 is the class-prior
correction of ``real``, a logit offset of log(n_normal / n_covid) computed from the training counts.

One module per job:
- ``bootstrap``: the class prior, resampling weights, metrics on them, intervals, p-values, differences;
- ``comparisons``: the analysis of results.json (the pre-specified comparisons, Holm, TOST);
- ``power``: exact McNemar power and the minimum detectable effect;
- ``procedure``: the report's procedure simulated, from head seeds and against a large test set's truth.
"""

from .bootstrap import (
    BOOTSTRAP_METRICS,
    EQUIVALENCE_MARGIN,
    GAN_CONDITIONS,
    NO_GAN_CONTROLS,
    PRIOR_CORRECTED,
    add_prior_corrected,
    bootstrap_pvalue,
    differences,
    exact_mcnemar,
    exact_mcnemar_p,
    holm,
    independent_differences,
    mcnemar_table,
    paired_differences,
    percentile_interval,
    prior_corrected,
    prior_offset,
    scored,
    seed_matrix,
    stratified_counts,
    tost,
    weighted_metrics,
)
from .comparisons import (
    OPERATING_POINT_CONTROLS,
    PRIMARY_RULE,
    analyse,
    best_control,
    comparisons,
    find,
    judge,
    judged_p,
)
from .power import mcnemar_mde, mcnemar_power, min_significant_images, power_table
from .procedure import UNKNOWN_TRUTH_RATE, procedure_error_rate, procedure_on_test_set, rate_is
from .procedure import _declared_gains as _declared_gains
from .procedure import _draw_validation_sets as _draw_validation_sets

__all__ = [
    "BOOTSTRAP_METRICS",
    "EQUIVALENCE_MARGIN",
    "GAN_CONDITIONS",
    "NO_GAN_CONTROLS",
    "OPERATING_POINT_CONTROLS",
    "PRIMARY_RULE",
    "PRIOR_CORRECTED",
    "UNKNOWN_TRUTH_RATE",
    "add_prior_corrected",
    "analyse",
    "best_control",
    "bootstrap_pvalue",
    "comparisons",
    "differences",
    "exact_mcnemar",
    "exact_mcnemar_p",
    "find",
    "holm",
    "independent_differences",
    "judge",
    "judged_p",
    "mcnemar_mde",
    "mcnemar_power",
    "mcnemar_table",
    "min_significant_images",
    "paired_differences",
    "percentile_interval",
    "power_table",
    "prior_corrected",
    "prior_offset",
    "procedure_error_rate",
    "procedure_on_test_set",
    "rate_is",
    "scored",
    "seed_matrix",
    "stratified_counts",
    "tost",
    "weighted_metrics",
]
