"""Find numbers typed by hand into notebook prose: results and times belong in code output, computed from the run.

A markdown cell may state fixed facts (the report's numbers, the paper's settings, the frameworks'
defaults); those are listed in :data:`FACTS`. Any other decimal, percentage or duration in a markdown
cell is a result written for one run that the next run will contradict, so it is reported.
A line may opt out with the invisible marker ``<!-- fact -->`` when it states a fixed fact not listed here.

``python -m covidgan_utils.prose notebooks/*.ipynb`` prints what it finds and exits 1 if anything is found.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# Fixed facts: the report (0.958 -> 0.974 / 0.98), Waheed et al. (0.85 -> 0.95), the paper's optimiser and
# BatchNorm settings, the frameworks' defaults, the ImageNet normalisation, thresholds and test levels.
FACTS = {
    "0.958", "0.974", "0.98", "0.85", "0.95", "+1.6", "+2.2", "1.6", "2.2", "+0.17", "0.17", "0.016",
    "2e-4", "0.0002", "1e-4", "1e-3", "0.001", "0.5", "0.999", "0.1", "0.8", "0.9", "0.99", "0.01", "0.2",
    "0.05", "0.025", "0.975", "0.0", "1.0", "0.485", "0.456", "0.406", "0.229", "0.224", "0.225",
    "4.6", "6.6", "9.4", "5%", "10%", "20%", "80%", "95%", "90%", "50%", "100%",
    # architecture and initialisation facts: log 2 (the loss at p = 0.5), Dropout 0.4, the default BatchNorm eps,
    # the DCGAN and Keras initialisers, the report's parameter counts in millions
    "0.693", "0.4", "1e-5", "0.02", "-0.05", "7.8", "24", "0.3",
}
MARKER = "<!-- fact -->"

_NUMBER = re.compile(
    r"(?<![\w.\-/])"  # not inside a word, a version, a path or a range's tail
    r"(?P<n>\d+(?:\.\d+)?\s?(?:s|sec|seconds|min|minutes|h|hours)\b|[+-]?\d*\.\d+(?:e-?\d+)?%?|[+-]?\d+%|\d+e-\d+)"
)
_CODE = re.compile(r"`[^`]*`")  # inline code names a setting or a file, not a result
_LINK = re.compile(r"\]\([^)]*\)")


def hand_numbers(text: str) -> list[str]:
    """The numbers in one markdown text that are neither fixed facts nor on a line marked as a fact."""
    found = []
    for line in text.splitlines():
        if MARKER in line:
            continue
        line = _LINK.sub("]", _CODE.sub("", line))
        for match in _NUMBER.finditer(line):
            number = match.group("n").replace(" ", "")
            if number not in FACTS:
                found.append(number)
    return found


def check_notebook(path: str | Path) -> list[tuple[int, str, str]]:
    """(cell index, number, the cell's first line) for every hand-typed number in the notebook's markdown."""
    nb = json.loads(Path(path).read_text())
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        for number in hand_numbers(text):
            problems.append((i, number, text.strip().splitlines()[0][:70]))
    return problems


def main(argv=None) -> int:
    paths = list(sys.argv[1:] if argv is None else argv)
    bad = 0
    for path in paths:
        for index, number, first in check_notebook(path):
            print(f"{Path(path).name} cell {index}: {number!r} typed by hand ({first})")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
