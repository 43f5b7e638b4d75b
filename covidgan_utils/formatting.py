"""Small number helpers shared by the result modules: numbers and intervals as text, a NaN-aware mean, JSON-safe copies."""

from __future__ import annotations

import math

import numpy as np


def signed(x, digits: int = 3) -> str:
    """A difference with its sign and ``digits`` decimals; a value that rounds to zero is "+0.000", never "-0.000"."""
    value = round(float(x), digits)
    return f"{(value if value != 0 else 0.0):+.{digits}f}"


def fmt_p(p, digits: int = 2) -> str:
    """A p-value (or any number) as text with ``digits`` significant digits; "n/a" for None, NaN or inf."""
    return "n/a" if p is None or not math.isfinite(p) else f"{p:.{digits}g}"


def num(x, digits: int = 3) -> str:
    """A number with ``digits`` decimals; "n/a" for None or NaN."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def with_interval(value, interval, digits: int = 3) -> str:
    """ "0.950 [0.910, 0.980]": a value and its interval; the value alone without one; "n/a" without a value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    low, high = interval or (None, None)
    return f"{value:.{digits}f}" if low is None else f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def signed_interval(interval) -> str:
    """ "[-0.010, +0.030]": a difference's interval with signs; "" without one."""
    low, high = interval or (None, None)
    return "" if low is None else f"[{signed(low, 3)}, {signed(high, 3)}]"


def fmt_diff(entry) -> str:
    """A paired difference (estimate, 95% interval, p) as one phrase; "not compared" for None."""
    if entry is None:
        return "not compared"
    low, high = entry["interval"]
    if low is None:
        return f"{signed(entry['estimate'], 3)}"
    return f"{signed(entry['estimate'], 3)}, 95% {signed_interval((low, high))}, p = {fmt_p(entry['p'], 3)}"


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


__all__ = ["clean", "fmt_diff", "fmt_p", "nanmean", "num", "signed", "signed_interval", "with_interval"]
