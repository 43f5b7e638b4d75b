"""Publishing executed notebooks: the injected-parameters cell goes, execution counts run 1..N, no machine metadata."""

import nbformat

from covidgan_utils import publish


def test_clean_notebook_drops_the_injected_cell_and_renumbers(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = None", execution_count=1)
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell('profile = "demo"', execution_count=2)
    injected.metadata["tags"] = ["injected-parameters"]
    injected.metadata["papermill"] = {"duration": 0.1}
    work = nbformat.v4.new_code_cell("1 + 1", execution_count=3)
    work.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)]
    widget = nbformat.v4.new_code_cell("explore()", execution_count=4)
    widget.outputs = [nbformat.v4.new_output("display_data", {publish.WIDGET_VIEW: {"model_id": "abc"}, "text/plain": "Tab()"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), params, injected, work, widget]
    nb.metadata["papermill"] = {"parameters": {"profile": "demo"}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}
    src, dst = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, str(src))
    publish.clean_notebook(src, dst)
    out = nbformat.read(str(dst), as_version=4)
    codes = [c for c in out.cells if c.cell_type == "code"]
    assert [c.source for c in codes] == ["profile = None", "1 + 1", "explore()"]
    assert [c.execution_count for c in codes] == [1, 2, 3] and codes[1].outputs[0]["execution_count"] == 2
    assert codes[2].outputs == [] and "widgets" not in out.metadata
    assert "papermill" not in out.metadata and out.metadata["kernelspec"]["name"] == "python3"


def test_compare_notebooks_masks_timings_and_finds_other_changes():
    def nb(text):
        cell = nbformat.v4.new_code_cell("train()", execution_count=1)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        return {"cells": [cell]}

    assert publish.compare_notebooks(nb("done in 12.5 s, 3.1 s/epoch, 1.2x\n"), nb("done in 40.1 s, 9.0 s/epoch, 1.9x\n")) == []
    assert publish.compare_notebooks(nb("accuracy 0.711\n"), nb("accuracy 0.769\n")) == ["cell 0: outputs differ"]
    assert publish.compare_notebooks(nb("a"), {"cells": []}) == ["1 cells vs 0"]


def _png(pixels) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_figures_compare_with_a_pixel_tolerance():
    import base64

    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (60, 80))
    hinted = np.clip(base + rng.integers(-10, 11, base.shape), 0, 255)  # anti-aliasing-sized differences
    moved = base.copy()
    moved[:20, :20] = 255 - moved[:20, :20]  # another curve in one corner
    assert publish.same_picture(_png(base), _png(hinted))
    assert not publish.same_picture(_png(base), _png(moved))
    assert not publish.same_picture(_png(base), _png(base[:, :70]))

    def nb(png):
        cell = nbformat.v4.new_code_cell("plot()", execution_count=1)
        data = {"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"}
        cell.outputs = [nbformat.v4.new_output("display_data", data)]
        return {"cells": [cell]}

    assert publish.compare_notebooks(nb(_png(base)), nb(_png(hinted))) == []
    assert publish.compare_notebooks(nb(_png(base)), nb(_png(moved))) == ["cell 0: figure differs"]


def test_compare_all_covers_notebooks_figures_and_the_readme():
    found = publish.compare_all("HEAD")
    assert any(k.startswith("notebooks/") for k in found)
    assert any(k.startswith("figures/") for k in found)
    assert "README.md (run results)" in found


def test_stream_chunks_and_timing_cells():
    def cell(outputs, tags=()):
        c = nbformat.v4.new_code_cell("run()", execution_count=1)
        c.outputs = outputs
        c.metadata["tags"] = list(tags)
        return {"cells": [c]}

    out = nbformat.v4.new_output
    whole = cell([out("stream", name="stdout", text="a = 1\nb = 2\n"), out("display_data", {"text/plain": "<Figure>"})])
    chunked = cell([out("stream", name="stdout", text="a = 1\n"), out("stream", name="stdout", text="b = 2\n"),
                    out("display_data", {"text/plain": "<Figure>"})])
    assert publish.compare_notebooks(whole, chunked) == []  # the kernel split stdout otherwise: the same output
    other = cell([out("stream", name="stdout", text="a = 1\nb = 3\n")])
    assert publish.compare_notebooks(whole, other) == ["cell 0: outputs differ"]
    slow = cell([out("stream", name="stdout", text="features 27.9 s\n")], tags=[publish.TIMINGS_TAG])
    fast = cell([out("stream", name="stdout", text="features 41.2\n")], tags=[publish.TIMINGS_TAG])
    assert publish.compare_notebooks(slow, fast) == []  # a cell tagged "timings": its text is not compared
