"""The README's results section, written from a finished run (so the README's numbers are the run's, never typed).

``make notebooks`` calls ``python -m covidgan_utils readme --run-dir runs/demo``: the text between the two markers
below is replaced by :func:`render`; everything else in README.md is left as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import glance
from .config import read_run_overrides
from .files import write_text
from .formatting import num, with_interval
from .settings import PARAMETER_ALIASES, profile_settings
from .verdicts import large_procedure_lines, verdict

START = "<!-- run-results:start (written by `python -m covidgan_utils readme` from a finished run; do not edit) -->"
END = "<!-- run-results:end -->"
STUDIES_START = ("<!-- studies:start (written by `python -m covidgan_utils readme` from notebook 07's run, "
                 "make studies; do not edit) -->")
STUDIES_END = "<!-- studies:end -->"
REAL_START = ("<!-- real-results:start (written by `python -m covidgan_utils readme --section real` from a run on real "
              "X-rays, make real-results; do not edit) -->")
REAL_END = "<!-- real-results:end -->"
SECTIONS = {"demo": (START, END), "real": (REAL_START, REAL_END)}
STUDIES_NOTEBOOK = "07_"
TIMES_HEADER = ("Time per notebook in this run (wall clock; a load average above the number of CPUs means other work "
                "shared them, so the time is an upper bound):")

LABELS = {
    "real": "real",
    "real:prior-corrected": "real, prior-corrected threshold",
    "real+classweight": "real + class-weighted loss",
    "real+copies": "real + copies (no GAN)",
    "real+torch": "real + PyTorch GAN",
    "real+tf": "real + TensorFlow GAN",
    "synthetic-only:torch": "PyTorch GAN only",
    "synthetic-only:tf": "TensorFlow GAN only",
}
FRAMEWORKS = {"torch": "PyTorch", "tf": "TensorFlow"}


class ReadmeError(ValueError):
    """The run is not finished, or README.md lacks the markers."""


def _load(path: Path) -> dict:
    if not path.is_file():
        raise ReadmeError(f"{path} is missing: finish the run first (make notebooks).")
    return json.loads(path.read_text())


def run_settings(run_dir: Path) -> dict:
    """The run's settings: its profile's, with the parameters it was run with (pipeline.json) and overrides.json."""
    pipeline = _load(run_dir / "pipeline.json")
    values = profile_settings(pipeline.get("profile") or "demo")
    values.update(read_run_overrides(run_dir))  # overrides.json, checked as every notebook reads it
    for name, value in (pipeline.get("params") or {}).items():
        for target in PARAMETER_ALIASES.get(name, (name,)):
            if target in values and value is not None:
                values[target] = value
    return values


def _load_text(load) -> str:
    """"1.8 / 1.9 / 2.0": the 1, 5 and 15 minute load averages as recorded; "n/a" where none was."""
    return " / ".join(f"{x:.1f}" for x in load) if load else "n/a"


def _times(pipeline: dict) -> str:
    rows = ["| notebook | seconds in this run | finished | load average (1/5/15 min) at the end | CPUs |",
            "| --- | --- | --- | --- | --- |"]
    total = 0.0
    drawing = pipeline.get("phantoms") or {}
    if drawing.get("seconds") is not None:  # the phantom sets, drawn before the notebooks (reused when present)
        total += drawing["seconds"]
        rows.append(f"| drawing the phantom sets | {drawing['seconds']:.0f} | {drawing.get('finished', 'n/a')} | "
                    f"{_load_text(drawing.get('load_average'))} | |")
    for name, entry in (pipeline.get("notebooks") or {}).items():
        seconds = entry.get("seconds")
        if seconds is None or name.startswith(STUDIES_NOTEBOOK):  # 07 is make studies', timed in its own section
            continue
        total += seconds
        load = entry.get("load_average")
        rows.append(f"| `{name}` | {seconds:.0f} | {entry.get('finished', 'n/a')} | {_load_text(load)} | "
                    f"{entry.get('cpus', 'n/a')} |")
    rows.append(f"| total | {total:.0f} ({total / 60:.1f} min) | | | |")
    return "\n".join(rows)


def _conditions_table(results: dict) -> str:
    rows = ["| condition | accuracy | balanced accuracy | ROC AUC | external accuracy | truth: ROC AUC | reading |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for cond, block in results.get("conditions", {}).items():
        reading = "the baseline" if cond == "real" else verdict(results, cond)["kind"]
        external = (block.get("external") or {}).get("accuracy")
        truth = (block.get("large_test") or {}).get("roc_auc")
        rows.append(
            f"| {LABELS.get(cond, cond)} | {with_interval(block.get('accuracy'), block.get('accuracy_ci'))} | "
            f"{with_interval(block.get('balanced_accuracy'), block.get('balanced_accuracy_ci'))} | "
            f"{with_interval(block.get('roc_auc'), block.get('roc_auc_ci'))} | {num(external)} | {num(truth)} | {reading} |")
    base = results.get("baseline") or {}
    if base.get("validation"):
        v = base["validation"]
        rows.append(
            "| pixel baseline: logistic regression on the pixels, trained on real (no VGG16) | "
            f"{with_interval(v.get('accuracy'), v.get('accuracy_ci'))} | "
            f"{with_interval(v.get('balanced_accuracy'), v.get('balanced_accuracy_ci'))} | "
            f"{with_interval(v.get('roc_auc'), v.get('roc_auc_ci'))} | {num((base.get('external') or {}).get('accuracy'))} | "
            f"{num((base.get('large_test') or {}).get('roc_auc'))} | the reference without transfer learning |")
    return "\n".join(rows)


def _quality_table(metrics: dict) -> str:
    fixed = (metrics.get("fixed") or {}).get("real_vs_real") or {}
    independent = any(((metrics.get(fw) or {}).get("gan_test") or {}).get("independent") for fw in FRAMEWORKS)
    ind_head = " independent classifier: generated / real training images, Normal; COVID |" if independent else ""
    rows = ["| GAN | class fidelity: Normal / COVID |" + ind_head + " TSTR / real-trained | PRDC recall (fixed-v1) | "
            "KID (fixed-v1) |", "| --- | --- |" + (" --- |" if independent else "") + " --- | --- | --- |"]
    blank = " |" if independent else ""
    for fw, name in FRAMEWORKS.items():
        block = metrics.get(fw)
        if not block:
            continue
        test = block.get("gan_test") or {}
        recall = test.get("per_class_recall") or {}
        ind = test.get("independent") or {}
        ind_cell = (" " + "; ".join(f"{num((ind.get('per_class_recall') or {}).get(c), 2)} / "
                                    f"{num((ind.get('real_per_class_recall') or {}).get(c), 2)}" for c in ("Normal", "COVID"))
                    + " |") if independent else ""
        tstr = block.get("tstr") or {}
        ratio = tstr.get("accuracy") / tstr["trtr_accuracy"] if tstr.get("trtr_accuracy") else None
        f = block.get("fixed") or {}
        rows.append(f"| {name} | {num(recall.get('Normal'), 2)} / {num(recall.get('COVID'), 2)} |{ind_cell} "
                    f"{num(tstr.get('accuracy'))} / {num(tstr.get('trtr_accuracy'))} = {num(ratio, 2)} | "
                    f"{num(f.get('recall'), 2)} | {num(f.get('kid'), 3)} |")
    real = next(((metrics[fw].get("gan_test") or {}).get("real_cv_per_class_recall") for fw in FRAMEWORKS
                 if (metrics.get(fw) or {}).get("gan_test", {}).get("real_cv_per_class_recall")), None)
    if real:
        rows.append(f"| real images, cross-validated (reference) | {num(real.get('Normal'), 2)} / {num(real.get('COVID'), 2)} "
                    f"|{blank} | | |")
    rows.append(f"| two real halves (reference) | |{blank} | {num(fixed.get('recall'), 2)} | {num(fixed.get('kid'), 3)} |")
    named = next((metrics[fw]["fixed"].get("recall_name") for fw in FRAMEWORKS if (metrics.get(fw) or {}).get("fixed")), None)
    if named:
        rows.append(f"\nRecall is {named}.")
    if independent:
        rows.append("The independent classifier learned from other real images that neither it nor the GAN had seen "
                    "(phantoms drawn for the check), so generated and training images are both new to it: generated "
                    "clearly above real there is a caricature; above only the cross-validated level is a likeness of "
                    "the training images.")
    return "\n".join(rows)


def _average_text(decay) -> str:
    """', sampled from a weight average (decay 0.99)' when the run averaged the generator's weights, else ''."""
    return f", sampled from a weight average (decay {decay:g})" if decay else ""


def _real_data_text(run_dir: Path) -> str:
    """"1,124 real X-rays from the folder `name` (403 COVID + 721 Normal; train 331 / 601, validation 72 / 120)":
    the folder's name only, never its path on this machine."""
    info = _load(run_dir / "data" / "info.json")
    counts = info.get("counts") or {}
    total = {c: sum((counts.get(c) or {}).values()) for c in ("COVID", "Normal")}
    split = {part: " / ".join(str((counts.get(c) or {}).get(part, 0)) for c in ("COVID", "Normal"))
             for part in ("train", "val")}
    return (f"{sum(total.values()):,} real X-rays from the folder `{Path(str(info.get('source', ''))).name}` "
            f"({total['COVID']} COVID + {total['Normal']} Normal; COVID / Normal train {split['train']}, "
            f"validation {split['val']})")


def _sets_text(results: dict) -> str:
    """What the external and truth columns hold in this run, or why they are n/a."""
    external = (results.get("external_set") or {}).get("evaluated")
    large = (results.get("large_test_set") or {}).get("evaluated")
    parts = ["\"External\" is the same classifiers on another site's images" if external else
             "\"External\" is n/a: this run had no other site's images (external_dir)",
             "\"truth\" is the ROC AUC on the large independent phantom set" if large else
             "\"truth\" is n/a: a large labelled set exists only for the phantoms"]
    return "; ".join(parts) + "."


def render(run_dir, section: str = "demo") -> str:
    """The README's results section for the finished run in ``run_dir`` (markdown, between the markers).

    ``section`` "demo": ``make notebooks``' run on the phantoms; "real": a run on real X-rays (``make real-results``),
    between the REAL_START / REAL_END markers, naming the data folder but never its path.
    """
    if section not in SECTIONS:
        raise ReadmeError(f"section must be one of {sorted(SECTIONS)}, not {section!r}")
    start, end = SECTIONS[section]
    run_dir = Path(run_dir)
    results = _load(run_dir / "transfer" / "results.json")
    pipeline = _load(run_dir / "pipeline.json")
    s = run_settings(run_dir)
    n_val = sum((results.get("n_val_per_class") or {}).values())
    what = "One run of `make notebooks`" if section == "demo" else f"One run on {_real_data_text(run_dir)}"
    lines = [
        start,
        f"{what} (profile `{pipeline.get('profile')}`: {s['image_size']} px, PyTorch GAN "
        f"{s['torch_epochs']} epochs at width {s['torch_width']:g} (batch {s['torch_batch_size']}, Adam lr "
        f"{s['torch_lr']:g}{_average_text(s.get('torch_ema'))}), TensorFlow GAN {s['tf_epochs']} epochs at width "
        f"{s['tf_width']:g} (batch {s['tf_batch_size']}, Adam lr {s['tf_lr']:g}{_average_text(s.get('tf_ema'))}), "
        f"GAN seed {s['gan_seeds'][0]}; VGG16 last layer {results.get('epochs')} epochs, "
        f"{len(results.get('seeds') or [])} head seed(s); {n_val} validation images). "
        f"VGG16 weights: {glance.weights_text(results)}.",
        "",
        *[f"- {reason}" for reason in glance.comparable(results)],
        "",
        f"Each number is the mean of the {len(results.get('seeds') or [])} head seeds. Intervals are 95% and cover the "
        "sampling of the validation images only (accuracy: Wilson; the others: class-stratified bootstrap): not the "
        f"head seeds' spread, and not another training of the GANs (one GAN seed, {s['gan_seeds'][0]}: a limitation). "
        + _sets_text(results) + " The reading is notebook 05's rule: a better classifier needs a paired ROC AUC gain.",
        "",
        _conditions_table(results),
        "",
        "What the run says (notebook 05's computed reading):",
        "",
        *[f"- {LABELS[c]}: {verdict(results, c)['text']}." for c in glance.GAN_CONDITIONS if c in results.get("conditions", {})],
        *[f"- {line}" for line in large_procedure_lines((results.get("procedure_error_rate") or {}).get("large_test"))],
        "",
    ]
    metrics_path = run_dir / "evaluation" / "metrics.json"
    if metrics_path.is_file():
        lines += ["The generated images (notebook 06; fixed-v1 features, defined once and versioned, so these "
                  "numbers compare across runs):", "", _quality_table(_load(metrics_path)), ""]
    lines += [TIMES_HEADER, "", _times(pipeline), end]
    return "\n".join(lines)


def _markdown(rows: list[dict], columns: dict[str, tuple[str, int]]) -> str:
    """A markdown table of ``rows`` (dicts); ``columns`` maps key -> (header, decimals of a number)."""
    lines = ["| " + " | ".join(h for h, _ in columns.values()) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(num(r.get(k), d) if isinstance(r.get(k), float) else str(r.get(k))
                                for k, (_, d) in columns.items()) + " |" for r in rows]
    return "\n".join(lines)


SHORTCUT_COLUMNS = {"arm": ("arm", 0), "condition": ("condition", 0), "home accuracy": ("home accuracy", 3),
                    "external accuracy": ("external accuracy", 3), "drop": ("drop", 3),
                    "flip: class changed": ("flip: predictions changed", 3)}
FINETUNE_COLUMNS = {"trainable_blocks": ("trainable blocks", 0), "condition": ("condition", 0),
                    "accuracy": ("accuracy", 3), "balanced_accuracy": ("balanced accuracy", 3),
                    "roc_auc": ("ROC AUC", 3), "train_seconds": ("training seconds", 0)}


def _measured(study: dict) -> str:
    """", finished 2026-12-01 05:27 UTC at load 3.1": when a study's time was taken, if it was recorded."""
    m = study.get("measured") or {}
    return f", finished {m['finished']} at load {m['load_average'][0]:.1f}" if m.get("load_average") else ""


def render_studies(run_dir) -> str:
    """The README's studies section from notebook 07's run in ``run_dir`` (its studies/summary.json)."""
    run_dir = Path(run_dir)
    if not (run_dir / "studies" / "summary.json").is_file():  # a new demo run: the studies of the last one are gone
        return "\n".join([STUDIES_START, "Not run yet on this demo run: `make studies` writes this section.", STUDIES_END])
    summary = _load(run_dir / "studies" / "summary.json")
    entry = (_load(run_dir / "pipeline.json").get("notebooks") or {})
    entry = next((v for k, v in entry.items() if k.startswith(STUDIES_NOTEBOOK)), {})
    load = entry.get("load_average")
    s1, s2 = summary["shortcut"], summary["finetune"]
    when = (f"finished {entry.get('finished', 'n/a')}, load average {_load_text(load)} at the end, "
            f"{entry.get('cpus', 'n/a')} CPUs")
    lines = [STUDIES_START,
             f"One run of `make studies` on the run above ({when}). VGG16 weights: study 1 {s1.get('vgg16', 'n/a')}, "
             f"study 2 {s2.get('vgg16', 'n/a')}.", ""]
    s1s = s1.get("settings") or {}
    minutes = {k: v / 60 for k, v in (s1.get("seconds") or {}).items()}
    lines += [f"**Study 1, a planted shortcut** (scale `{s1['scale']}`: {s1s.get('image_size')} px, GAN(s) "
              f"{', '.join(s1s.get('frameworks') or [])} for {s1s.get('gan_epochs')} epochs, head seeds "
              f"{s1s.get('seeds')}; {minutes.get('total', float('nan')):.1f} min: shortcut arm "
              f"{minutes.get('shortcut', float('nan')):.1f}, clean arm {minutes.get('clean', float('nan')):.1f}"
              f"{_measured(s1)}):", "",
              _markdown(s1["table"], SHORTCUT_COLUMNS), "", *[f"- {line}" for line in s1["reading"]], ""]
    s2s = s2.get("settings") or {}
    lines += [f"**Study 2, unfreezing VGG16's last blocks** (trainable_blocks {s2s.get('blocks')}, head seeds "
              f"{s2s.get('seeds')}, {s2s.get('epochs')} epochs with blocks unfrozen, "
              f"{s2s.get('head_epochs', s2s.get('epochs'))} for the last layer alone, on the images of "
              f"{s2s.get('run_dir')}; {sum((s2.get('seconds') or {}).values()) / 60:.1f} min{_measured(s2)}):", "",
              _markdown(s2["table"], FINETUNE_COLUMNS), "", *[f"- {line}" for line in s2["reading"]], ""]
    found = [r.get("option") for r in summary.get("comparison") or []]
    missing = summary.get("missing_comparison_runs") or {}
    sweep = (summary.get("sweep") or {}).get("accuracy")
    points = f"{len({r['point'] for r in sweep})} points" if sweep else "not run (`make sweeps`)"
    lines += [f"GAN-option runs read by notebook 07: {', '.join(dict.fromkeys(map(str, found))) or 'none'}"
              + (f"; not run: {', '.join(missing)} (`make sweeps`)" if missing else "")
              + f". Training-set-size sweep: {points}.",
              STUDIES_END]
    return "\n".join(lines)


def _replace(text: str, start: str, end: str, body: str, readme: Path, what: str) -> str:
    if start not in text or end not in text:
        raise ReadmeError(f"{readme} has no {what} markers: add the two lines\n{start}\n{end}\nwhere the section goes.")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + body + tail


def update(readme, run_dir, section: str = "demo") -> bool:
    """Replace the results section of ``readme`` with :func:`render` of ``run_dir``, and its studies section (where
    it has one) with :func:`render_studies`: notebook 07's run, or a line saying it has not run on this run yet;
    True when the text changed. ``section="real"`` replaces the real-data section only."""
    readme = Path(readme)
    text = readme.read_text()
    start, end = SECTIONS.get(section, (None, None))
    new = _replace(text, start, end, render(run_dir, section), readme,
                   "results" if section == "demo" else "real-data results")
    if section == "demo" and (STUDIES_START in new or (Path(run_dir) / "studies" / "summary.json").is_file()):
        new = _replace(new, STUDIES_START, STUDIES_END, render_studies(run_dir), readme, "studies")
    if new == text:
        return False
    write_text(readme, new)
    return True


__all__ = ["END", "REAL_END", "REAL_START", "SECTIONS", "START", "STUDIES_END", "STUDIES_START", "ReadmeError", "render",
           "render_studies", "run_settings", "update"]
