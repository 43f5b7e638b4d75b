"""Small number helpers shared by the result modules: p-value text, a NaN-aware mean, JSON-safe copies."""

from __future__ import annotations

import math

import numpy as np


def fmt_p(p, digits: int = 2) -> str:
    """A p-value (or any number) as text with ``digits`` significant digits; "n/a" for None, NaN or inf."""
    return "n/a" if p is None or not math.isfinite(p) else f"{p:.{digits}g}"


def nanmean(values) -> float:
    """Mean ignoring NaN and None (both mean "missing"); NaN when nothing is left, without a warning."""
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    kept = arr[~np.isnan(arr)]
    return float(kept.mean()) if kept.size else math.nan


def clean(obj):
    """JSON-safe copy: NaN/inf -> None, numpy arrays and scalars -> Python lists and numbers, keys -> str."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


__all__ = ["clean", "fmt_p", "nanmean"]
