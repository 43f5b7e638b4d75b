"""The shared number helpers: p-value text, NaN-aware mean, JSON-safe copies."""

import json
import math

import numpy as np
import pytest

from covidgan_utils.formatting import clean, fmt_p, nanmean


def test_fmt_p():
    assert fmt_p(0.012345) == "0.012" and fmt_p(0.012345, 3) == "0.0123" and fmt_p(3e-7) == "3e-07"
    assert fmt_p(None) == fmt_p(math.nan) == fmt_p(math.inf) == "n/a"


def test_nanmean_treats_none_and_nan_as_missing():
    assert nanmean([1.0, None, 3.0, math.nan]) == pytest.approx(2)
    assert math.isnan(nanmean([])) and math.isnan(nanmean([None, math.nan]))
    assert nanmean(np.array([0.5, 1.5])) == pytest.approx(1)


def test_clean_is_json_safe():
    out = clean({1: np.float32(0.5), "a": [np.int64(3), math.nan, (np.inf, -1.0)], "b": np.arange(3)})
    assert out == {"1": 0.5, "a": [3, None, [None, -1.0]], "b": [0, 1, 2]}
    assert json.loads(json.dumps(out, allow_nan=False)) == out
