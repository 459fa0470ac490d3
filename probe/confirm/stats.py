"""The statistics of a real-data confirmation: two independent proportions (a slice with the cue against one without).

- :func:`wilson`: the Wilson score interval of one proportion.
- :func:`newcombe`: Newcombe's hybrid score interval (his method 10) for the difference of two independent
  proportions, built from the two Wilson intervals; it stays inside [-1, 1] and behaves at 0 and n.
- :func:`fisher_exact`: the two-sided Fisher exact test of a 2x2 table (the sum of the hypergeometric
  probabilities no larger than the observed one's), exact at any slice size.
- :func:`mean_difference`: a difference of two means (mean P(class)) with Welch's interval: Student's t on the
  Welch-Satterthwaite degrees of freedom, so a slice of 7 images gets the wider interval it should (t 2.45, not 1.96).
- :func:`t_quantile`: Student's t quantile (the regularised incomplete beta by its continued fraction, inverted by
  bisection).
- :func:`images_to_decide`: how many images per slice a two-proportion test needs to see a gap of a given size
  (normal approximation, two-sided level ``alpha``, power ``power``): what "not seen in your data" asks for.

Pure Python (no scipy): the project's environment does not carry it.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["wilson", "newcombe", "fisher_exact", "mean_difference", "t_quantile", "images_to_decide"]

_Z = NormalDist()


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence!r} must be between 0 and 1, e.g. 0.95")
    return _Z.inv_cdf(0.5 + confidence / 2)


def wilson(x: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``x`` successes in ``n``; (0, 1) when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """(p1 - p2, low, high): Newcombe's hybrid score interval for the difference of two independent proportions."""
    if n1 <= 0 or n2 <= 0:
        return float("nan"), -1.0, 1.0
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, confidence)
    l2, u2 = wilson(x2, n2, confidence)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, max(-1.0, low), min(1.0, high)


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_exact(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of Fisher's exact test for x1/n1 against x2/n2 (1.0 when a slice is empty)."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    total, successes = n1 + n2, x1 + x2
    low, high = max(0, successes - n2), min(successes, n1)

    def log_p(k: int) -> float:
        return _log_choose(n1, k) + _log_choose(n2, successes - k) - _log_choose(total, successes)

    observed = log_p(x1)
    p = sum(math.exp(lp) for k in range(low, high + 1) if (lp := log_p(k)) <= observed + 1e-7)
    return min(1.0, p)


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (modified Lentz), evaluated on
    the side of the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where it converges quickly."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    log_front = a * math.log(x) + b * math.log1p(-x) - math.log(a) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for term in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                     -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + term * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + term / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return math.exp(log_front) * h


def _t_upper(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(prob: float, df: float) -> float:
    """The ``prob`` quantile of Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    if not 0 < prob < 1 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < prob < 1 and df > 0, got prob={prob!r}, df={df!r}")
    if prob < 0.5:
        return -t_quantile(1 - prob, df)
    if prob == 0.5:
        return 0.0
    low, high = 0.0, 1.0
    while _t_upper(high, df) > 1 - prob:
        high *= 2
    while high - low > 1e-10 * max(1.0, high):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_upper(mid, df) > 1 - prob else (low, mid)
    return (low + high) / 2


def mean_difference(a: list[float], b: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high) with Welch's interval (Student's t on the Welch-Satterthwaite degrees of
    freedom); NaNs for the interval when a side has fewer than 2 values. Two slices without spread give a zero-width
    interval at the difference."""
    if len(a) < 2 or len(b) < 2:
        d = (sum(a) / len(a) - sum(b) / len(b)) if a and b else float("nan")
        return d, float("nan"), float("nan")
    _z(confidence)  # checks it
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    sa = sum((v - ma) ** 2 for v in a) / (len(a) - 1) / len(a)  # squared standard errors
    sb = sum((v - mb) ** 2 for v in b) / (len(b) - 1) / len(b)
    se = math.sqrt(sa + sb)
    if se == 0:
        return ma - mb, ma - mb, ma - mb
    df = (sa + sb) ** 2 / (sa ** 2 / (len(a) - 1) + sb ** 2 / (len(b) - 1))
    half = t_quantile(0.5 + confidence / 2, df) * se
    return ma - mb, ma - mb - half, ma - mb + half


def images_to_decide(p1: float, gap: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Images per slice a two-sided two-proportion test at ``alpha`` needs to see ``p1`` against ``p1 - gap`` with
    probability ``power`` (the usual normal-approximation formula, rounded up)."""
    p1 = min(0.99, max(0.01, p1))
    p2 = min(0.99, max(0.01, p1 - gap))
    if abs(p1 - p2) < 1e-9:
        p2 = max(0.01, p1 - 0.05) if p1 > 0.5 else min(0.99, p1 + 0.05)
    za, zb = _Z.inv_cdf(1 - alpha / 2), _Z.inv_cdf(power)
    mean = (p1 + p2) / 2
    n = (za * math.sqrt(2 * mean * (1 - mean)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p1 - p2) ** 2
    return int(math.ceil(n))
