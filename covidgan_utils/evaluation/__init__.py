"""Metrics, intervals and paired tests for the VGG16 experiment, all from scikit-learn / scipy / statsmodels.

Conventions: COVID = 1 is the positive class (sensitivity = COVID recall, specificity = Normal recall).
A condition's headline numbers are means over head seeds; ``accuracy_ci`` is the 95% Wilson interval of a
single run at that accuracy on the n_val validation images (validation-sampling uncertainty), or a
bootstrap over validation images of the seed-averaged correctness. Seed-to-seed spread is reported
separately (``accuracy_seed_sd``, ``accuracy_seed_range`` and ``per_seed``). The other intervals
(``balanced_accuracy_ci``, ``roc_auc_ci``, ...) and every paired comparison (``paired``) come from
:mod:`covidgan_utils.statistics`: a class-stratified paired bootstrap over the validation images.

How a condition is read (:func:`verdict`): "a better classifier" needs a paired gain in ROC AUC (for a
GAN condition: against the best no-GAN control, Holm-corrected); "a better operating point" needs a gain
in accuracy or balanced accuracy that also beats ``real`` with its threshold corrected for the class prior
and ``real+classweight``; otherwise a gain is the decision threshold moving, and the reading names the
control that matches it. Without a gain, a TOST with a margin of 1.6 points says "no difference" or
"inconclusive".

McNemar (exact, statsmodels, kept as before in ``mcnemar``): ``real`` vs each other condition on the same
validation images, on the per-image MAJORITY VOTE over seeds (ties broken by the mean probability); the
seed-matched per-seed p-values are given too (``mcnemar_detail``). With the no-GAN control ``real+copies``
present, each ``real+<gan>`` condition is also tested against it (``mcnemar_vs_copies``).

One module per job: ``scores`` (metrics and single-run tests), ``summary`` (results.json), ``other_sets`` (the
external and large test sets, the pixel baseline), ``tables`` (results.json as tables); the reading's rules are
in :mod:`covidgan_utils.verdicts`.
"""

from .. import CLASSES
from ..verdicts import reading, verdict
from .other_sets import TEST_SET_METRICS, baseline_block, evaluate_test_set
from .scores import (
    METRICS,
    REPORT,
    WAHEED,
    bootstrap_ci,
    majority_vote,
    mcnemar_test,
    metrics,
    paired_test,
    report_mcnemar_best_case,
    wilson_ci,
)
from .summary import summarize, write_results
from .tables import paired_table, power_frame, procedure_frame, results_table, test_set_table

__all__ = [
    "CLASSES",
    "METRICS",
    "REPORT",
    "TEST_SET_METRICS",
    "WAHEED",
    "baseline_block",
    "bootstrap_ci",
    "evaluate_test_set",
    "majority_vote",
    "mcnemar_test",
    "metrics",
    "paired_table",
    "paired_test",
    "power_frame",
    "procedure_frame",
    "reading",
    "report_mcnemar_best_case",
    "results_table",
    "summarize",
    "test_set_table",
    "verdict",
    "wilson_ci",
    "write_results",
]
