"""The shared number helpers: numbers, intervals and p-values as text, NaN-aware mean, JSON-safe copies."""

import json
import math

import numpy as np
import pytest

from covidgan_utils.formatting import clean, fmt_diff, fmt_p, nanmean, num, signed_interval, with_interval


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


def test_numbers_and_intervals_as_text():
    assert num(0.95) == "0.950" and num(0.95, 1) == "0.9" and num(None) == num(math.nan) == "n/a"
    assert with_interval(0.95, [0.9, 0.98]) == "0.950 [0.900, 0.980]"
    assert with_interval(0.95, None) == with_interval(0.95, [None, None]) == "0.950"
    assert with_interval(None, [0.1, 0.2]) == with_interval(math.nan, None) == "n/a"
    assert signed_interval([-0.01, 0.03]) == "[-0.010, +0.030]" and signed_interval(None) == ""


def test_a_paired_difference_as_one_phrase():
    entry = {"estimate": 0.02, "interval": [-0.01, 0.05], "p": 0.1234}
    assert fmt_diff(entry) == "+0.020, 95% [-0.010, +0.050], p = 0.123"
    assert fmt_diff({"estimate": -0.02, "interval": [None, None], "p": None}) == "-0.020"
    assert fmt_diff(None) == "not compared"


def test_signed_never_shows_minus_zero():
    from covidgan_utils.formatting import signed, signed_interval

    assert signed(-0.0001) == "+0.000" and signed(-0.0) == "+0.000" and signed(0.0004) == "+0.000"
    assert signed(-0.0006) == "-0.001" and signed(0.1234, 2) == "+0.12"
    assert signed_interval((-0.0002, 0.03)) == "[+0.000, +0.030]"
