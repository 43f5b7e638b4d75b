"""How to read each condition of a run: a better classifier, a better operating point, or a moved threshold.

The rules, applied to the statistics in results.json (:func:`covidgan_utils.statistics.analyse`):
- "a better classifier" needs a paired gain in ROC AUC; for a GAN condition, against the best no-GAN
  control (a primary comparison, Holm-corrected);
- "a better operating point" needs a paired gain in accuracy or balanced accuracy over ``real`` that also
  beats ``real`` with its threshold corrected for the class prior and ``real+classweight``;
- otherwise a gain is the decision threshold moving, and the reading names the control that matches it;
- without a gain, a TOST with a margin of 1.6 points says "no difference", or the verdict is "inconclusive".
Every sentence is computed from the results it is given.

One module per job: ``rules`` (the verdicts), ``text`` (the reading), ``other_sets`` (its lines on other test sets).
"""

from .other_sets import baseline_lines, test_set_lines
from .rules import CONTROL_DESCRIPTIONS, set_verdict, verdict
from .text import large_procedure_lines, reading, truth_text

__all__ = [
    "CONTROL_DESCRIPTIONS",
    "baseline_lines",
    "large_procedure_lines",
    "reading",
    "set_verdict",
    "test_set_lines",
    "truth_text",
    "verdict",
]
