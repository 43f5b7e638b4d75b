"""Publish a finished phantom run's executed notebooks over notebooks/, cleaned for committing.

``make notebooks`` runs the demo and then this, so the committed notebooks are exactly that run's
outputs: the injected-parameters cell is dropped and execution counts renumbered 1..N (as a person
running the notebook top to bottom sees them), machine metadata removed, figures re-encoded smaller,
and every notebook checked for size and machine paths. Runs on real data are refused.
"""

from __future__ import annotations

from pathlib import Path

from . import config
from .files import atomic_path, read_json
from .pipeline import STATE, PipelineError, notebooks_dir

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _compact_png(b64: str) -> str:
    """Re-encode a notebook PNG smaller: gray images as 8-bit gray, colour ones with a 256-colour palette."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")
    arr = np.asarray(img, dtype=np.int16)
    gray = int(np.abs(arr - arr.mean(axis=2, keepdims=True)).max()) <= 3
    small = img.convert("L") if gray else img.quantize(colors=256)
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=True)
    out = base64.b64encode(buf.getvalue()).decode()
    return out if len(out) < len(b64) else b64


def clean_notebook(src: Path, dst: Path) -> None:
    """Copy an executed notebook for committing: drop the injected-parameters cell (renumbering the cells) and machine metadata."""
    import nbformat

    nb = nbformat.read(str(src), as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    count = 0
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        for key in ("papermill", "execution", "ExecuteTime"):
            meta.pop(key, None)
        if cell.get("cell_type") == "code" and cell.get("execution_count") is not None:
            count += 1
            cell["execution_count"] = count
            for output in cell.get("outputs", []):
                if "execution_count" in output:
                    output["execution_count"] = count
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                output["data"]["image/png"] = _compact_png(png)
    for cell in nb.cells:  # widget views need a live kernel; a committed notebook keeps only plain outputs
        if cell.get("outputs"):
            cell["outputs"] = [o for o in cell["outputs"] if WIDGET_VIEW not in o.get("data", {})]
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    with atomic_path(dst) as tmp:
        nbformat.write(nb, str(tmp))


ABSOLUTE_PATH = r"(?<![\w.])/(?:work|tmp|root|home|Users|private|var)/[\w.-]+"


def refuse_real_data(run_path: Path) -> None:
    """Stop unless the run was made on the built-in phantoms: published notebooks must never carry real X-rays."""
    info_path = run_path / "data" / "info.json"
    state_path = run_path / STATE
    info = read_json(info_path) if info_path.is_file() else {}
    state = read_json(state_path) if state_path.is_file() else {}
    if info.get("phantoms") is not True or state.get("data_dir") is not None:
        source = "real data" if info.get("phantoms") is False or state.get("data_dir") else "unknown data (no data/info.json)"
        raise PipelineError(
            f"{config.rel(run_path)} was made from {source}; its notebooks would carry X-rays or their statistics "
            "into the repository. Only runs on the built-in phantoms are published. Fix: publish a phantom run "
            "(make notebooks), and keep real-data runs under runs/ (gitignored)."
        )


def publish(run_dir, dest=None, max_kb: int = 1024, only=None) -> list[Path]:
    """Copy a finished run's executed notebooks over notebooks/ (cleaned), checking size and machine paths;
    ``only``: the numbers to copy (e.g. ["07"]: what make studies ran, leaving 01-06 as make notebooks published them)."""
    import re

    run_path = config.resolve(run_dir=str(run_dir), claim=False).run_dir
    dest = Path(dest) if dest else notebooks_dir()
    refuse_real_data(run_path)
    executed = sorted((run_path / "executed").glob("[0-9][0-9]_*.ipynb"))
    executed = [p for p in executed if not p.name.endswith(".failed.ipynb")]
    if only is not None:
        executed = [p for p in executed if p.name[:2] in {str(n).zfill(2) for n in only}]
    if not executed:
        raise PipelineError(f"No executed notebooks in {config.rel(run_path)}/executed. Run the pipeline first.")
    written, problems = [], []
    for src in executed:
        out = dest / src.name
        clean_notebook(src, out)
        text = out.read_text()
        kb = len(text.encode()) // 1024
        if kb > max_kb:
            problems.append(f"{out.name} is {kb} KB (limit {max_kb} KB)")
        found = sorted(set(re.findall(ABSOLUTE_PATH, text)))
        if found:
            problems.append(f"{out.name} holds machine paths: {', '.join(found[:3])}")
        written.append(out)
        print(f"published {config.rel(out)} ({kb} KB)")
    if problems:
        raise PipelineError("Published notebooks need attention:\n  - " + "\n  - ".join(problems))
    return written


TIMING = r"\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds|min|minutes|h|hours)\b|\d+(?:\.\d+)?\s?s/epoch|\d+(?:\.\d+)?x\b"


PIXEL_TOLERANCE = 24  # gray levels: anti-aliasing and font hinting differ by less on another machine
CHANGED_PIXELS = 0.002  # share of a figure's pixels allowed beyond PIXEL_TOLERANCE


def _pixels(png: bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)


def same_picture(a: bytes, b: bytes) -> bool:
    """Two PNGs show the same picture: same size, and almost every pixel within PIXEL_TOLERANCE gray levels."""
    pa, pb = _pixels(a), _pixels(b)
    if pa.shape != pb.shape:
        return False
    return float((abs(pa - pb) > PIXEL_TOLERANCE).mean()) <= CHANGED_PIXELS


def mask_timings(text: str) -> str:
    import re

    return re.sub(TIMING, "<time>", text)


TIMINGS_TAG = "timings"  # a cell whose printed output is mostly run times: its text is not compared (its figures are)


def _outputs(cell) -> tuple[list[str], list[bytes]]:
    """A code cell's outputs: the texts with timings masked, and its figures as PNG bytes.

    Consecutive stream outputs are joined first: how a kernel splits stdout into chunks varies from run to run."""
    import base64

    texts, pngs, stream = [], [], None
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            if stream is not None and stream[0] == output.get("name"):
                stream[1] += text
            else:
                stream = [output.get("name"), text]
                texts.append(stream)
            continue
        stream = None
        data = output.get("data", {})
        png = data.get("image/png")
        if png:
            pngs.append(base64.b64decode("".join(png) if isinstance(png, list) else png))
            continue  # a figure is compared by its pixels, not by its "<Figure size ...>" text
        text = data.get("text/plain") or ""
        texts.append("".join(text) if isinstance(text, list) else text)
    return [mask_timings(t[1] if isinstance(t, list) else t) for t in texts], pngs


def _tagged(cell, tag: str) -> bool:
    return tag in (cell.get("metadata", {}).get("tags") or [])


def compare_notebooks(old: dict, new: dict) -> list[str]:
    """Differences between two executed notebooks (nbformat dicts), timings masked: [] when they agree."""
    problems = []
    old_cells, new_cells = old.get("cells", []), new.get("cells", [])
    if len(old_cells) != len(new_cells):
        return [f"{len(old_cells)} cells vs {len(new_cells)}"]
    for i, (a, b) in enumerate(zip(old_cells, new_cells)):
        if "".join(a.get("source", "")) != "".join(b.get("source", "")):
            problems.append(f"cell {i}: source differs")
        elif a.get("cell_type") == "code":
            (ta, pa), (tb, pb) = _outputs(a), _outputs(b)
            if ta != tb and not (_tagged(a, TIMINGS_TAG) or _tagged(b, TIMINGS_TAG)):
                problems.append(f"cell {i}: outputs differ")
            elif len(pa) != len(pb) or not all(same_picture(x, y) for x, y in zip(pa, pb)):
                problems.append(f"cell {i}: figure differs")
    return problems


def _git_show(root, rev: str, rel_path: str) -> bytes | None:
    import subprocess

    shown = subprocess.run(["git", "show", f"{rev}:{rel_path}"], cwd=root, capture_output=True)
    return shown.stdout if shown.returncode == 0 else None


def _compare_tracked(rev: str, pattern: str, differences) -> dict[str, list[str]]:
    """{file: differences(committed bytes, file path)} for the files matching ``pattern`` (relative to the repository)."""
    root = config.repo_root()
    out = {}
    for path in sorted(root.glob(pattern)):
        rel_path = path.relative_to(root).as_posix()
        old = _git_show(root, rev, rel_path)
        out[rel_path] = [f"not in {rev}"] if old is None else differences(old, path)
    return out


def compare_figures(rev: str = "HEAD", folder: str = "figures") -> dict[str, list[str]]:
    """Compare the PNGs in ``folder`` with their committed versions at ``rev``, pixel by pixel (with tolerance)."""
    return _compare_tracked(rev, f"{folder}/*.png",
                            lambda old, path: [] if same_picture(old, path.read_bytes()) else ["figure differs"])


def compare_readme(rev: str = "HEAD", path: str = "README.md") -> dict[str, list[str]]:
    """Compare the README's run-results section (timings masked) with its version at ``rev``."""
    from . import readme

    root = config.repo_root()
    old = _git_show(root, rev, path)

    def section(text: str) -> str:  # the run's results without its times (they change from run to run)
        if readme.START not in text:
            return ""
        body = text.split(readme.START, 1)[1].split(readme.END, 1)[0]
        return mask_timings(body.split(readme.TIMES_HEADER, 1)[0])

    if old is None:
        return {path: [f"not in {rev}"]}
    lines_old, lines_new = section(old.decode()).splitlines(), section((root / path).read_text()).splitlines()
    changed = [f"line {i}: {b[:80]}" for i, (a, b) in enumerate(zip(lines_old, lines_new)) if a != b]
    if len(lines_old) != len(lines_new):
        changed.append(f"{len(lines_old)} lines vs {len(lines_new)}")
    return {path + " (run results)": changed}


def compare_with_git(rev: str = "HEAD", folder: str = "notebooks") -> dict[str, list[str]]:
    """Compare the notebooks in ``folder`` with their committed versions at ``rev`` (after `make notebooks`)."""
    import json

    return _compare_tracked(rev, f"{folder}/[0-9][0-9]_*.ipynb",
                            lambda old, path: compare_notebooks(json.loads(old), json.loads(path.read_text())))


def compare_all(rev: str = "HEAD") -> dict[str, list[str]]:
    """What `make notebooks` writes (notebooks, figures/, the README's run results) against ``rev``: [] = the same."""
    return {**compare_with_git(rev), **compare_figures(rev), **compare_readme(rev)}
