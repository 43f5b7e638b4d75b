"""Progress bars that help a person and stay out of saved notebooks.

Set COVIDGAN_PROGRESS=0 (the pipeline runner and the notebook tests do) to turn bars off, so
executed notebooks do not fill with thousands of progress lines.
"""

from __future__ import annotations

import os

ENV_PROGRESS = "COVIDGAN_PROGRESS"


def enabled(progress: bool = True) -> bool:
    """True when a bar should be shown: asked for, and not turned off by COVIDGAN_PROGRESS=0."""
    return bool(progress) and os.environ.get(ENV_PROGRESS, "1").lower() not in ("0", "false", "no", "off")


def tqdm(iterable=None, *args, disable: bool = False, **kwargs):
    """tqdm.auto.tqdm (widgets in JupyterLab, text in a terminal) honouring COVIDGAN_PROGRESS."""
    from tqdm.auto import tqdm as _tqdm

    return _tqdm(iterable, *args, disable=disable or not enabled(), **kwargs)
