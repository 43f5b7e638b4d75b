"""Power of a paired comparison on the validation images: exact McNemar power and the minimum detectable effect."""

from __future__ import annotations

import functools
import math

import numpy as np


def min_significant_images(alpha: float = 0.05) -> int:
    """The smallest paired gain, in images, that can reach two-sided exact McNemar p < alpha (all changes one way)."""
    k = 1
    while 2 * 0.5**k >= alpha:
        k += 1
    return k


@functools.lru_cache(maxsize=8)
def _mcnemar_rejections(n: int, alpha: float) -> np.ndarray:
    """reject[D, b]: True where b of D discordant images (b <= D) give two-sided exact McNemar p < alpha."""
    from scipy.stats import binom

    D = np.arange(n + 1)[:, None]
    b = np.arange(n + 1)[None, :]
    pvals = np.minimum(1.0, 2 * binom.cdf(np.minimum(b, D - b), D, 0.5))
    return (b <= D) & (pvals < alpha) & (D > 0)


def mcnemar_power(n: int, discordance: float, delta: float, alpha: float = 0.05) -> float:
    """Exact power of the two-sided exact McNemar test on n paired images.

    The number of discordant images is Binomial(n, discordance); of those, the ones the better classifier
    gets right are Binomial(D, 1/2 + delta / (2 discordance)); ``delta`` is the accuracy gain as a fraction.
    """
    from scipy.stats import binom

    if not 0 < discordance <= 1 or not 0 <= delta <= discordance:
        raise ValueError(f"Need 0 < discordance <= 1 and 0 <= delta <= discordance, got {discordance}, {delta}.")
    reject = _mcnemar_rejections(int(n), float(alpha))
    D, b = np.nonzero(reject)
    q = 0.5 + delta / (2 * discordance)
    inner = np.bincount(D, weights=binom.pmf(b, D, q), minlength=n + 1)
    return float(binom.pmf(np.arange(n + 1), n, discordance) @ inner)


def mcnemar_mde(
    n: int = 192, discordance: float = 0.10, alpha: float = 0.05, power: float = 0.80, method: str = "exact"
):
    """Minimum detectable accuracy gain of a paired comparison on n images (a fraction; None if out of reach).

    method="exact": the smallest gain whose exact power (``mcnemar_power``) reaches ``power`` (bisection);
    method="normal": Connor's (1987) normal approximation, delta = (z_a sqrt(psi) + z_b sqrt(psi - delta^2)) / sqrt(n).
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    if method == "normal":
        za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)
        f = lambda d: (za * math.sqrt(discordance) + zb * math.sqrt(discordance - d * d)) / math.sqrt(n) - d  # noqa: E731
        return float(brentq(f, 0.0, discordance)) if f(discordance) < 0 else None
    if method != "exact":
        raise ValueError(f"method must be 'exact' or 'normal', not {method!r}.")
    if mcnemar_power(n, discordance, discordance, alpha) < power:
        return None
    low, high = 0.0, discordance
    for _ in range(30):  # the gain to within 1e-9 of the discordance
        mid = (low + high) / 2
        low, high = (mid, high) if mcnemar_power(n, discordance, mid, alpha) < power else (low, mid)
    return float(high)


def power_table(
    n: int = 192, discordances=(0.05, 0.10, 0.20), alpha: float = 0.05, power: float = 0.80, report_gains=None
) -> dict:
    """The minimum detectable effect at several discordance rates (never post-hoc power), for results.json."""
    rows = []
    for psi in discordances:
        exact = mcnemar_mde(n, psi, alpha, power, "exact")
        rows.append(
            {
                "discordance": float(psi),
                "mde": exact,
                "mde_images": None if exact is None else exact * n,
                "mde_normal_approximation": mcnemar_mde(n, psi, alpha, power, "normal"),
            }
        )
    k = min_significant_images(alpha)
    return {
        "n": int(n),
        "alpha": alpha,
        "power": power,
        "method": "exact two-sided McNemar; discordant images Binomial(n, rate); smallest gain with this power",
        "mde": rows,
        "min_significant_images": k,
        "min_significant_gain": k / n,
        "report_gains": dict(report_gains or {}),
    }
