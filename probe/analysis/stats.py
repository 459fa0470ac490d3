"""Effects, small-sample tests and false-discovery-rate control for findings.

Every effect in probe's findings is the mean of *paired* differences: the same
seed and prompt rendered with and without a cue, with and without the token.
A finding is a claim about such a mean, and one audit makes many claims (about
70 for a small model: classes × cues × kinds), so the decision rule has two
parts:

1. **One test per claim that is valid for a handful of pairs.** The paired
   sign-flip permutation test (:func:`sign_flip_test`): under "no effect" the
   two sides of a pair are exchangeable, so each difference is as likely to
   have come out with the opposite sign. The p-value is the share of the 2^n
   sign patterns whose mean is at least as extreme as the observed one. It is
   exact for any n (enumerated up to ``exact_max_n`` = 16 non-zero pairs among
   at most 24, as its interval is; Monte-Carlo with the ``(b + 1) / (m + 1)`` correction above), needs no
   normality, and cannot produce a p-value below ``2 / 2**n``: with 4 pairs
   the smallest two-sided p-value is 0.125, so 4 pairs can never be evidence
   at 5%, however large the effect looks. Its confidence interval
   (:func:`mean_interval`) is the set of shifts the same test does not reject,
   so the p-value and the interval always tell the same story. Binary outcomes
   (a concept shown or not, on the same seed with and without the token) have
   their own exact tools: :func:`paired_proportions` (Newcombe's interval and
   the exact McNemar test).
2. **Control of the false discovery rate over the confirmed tests.** :func:`fdr`
   turns p-values into q-values (Benjamini–Hochberg, or Benjamini–Yekutieli
   under arbitrary dependence, the default because tests in one audit share
   images); :func:`fdr_family_q` applies it to one family for the audit, or per
   class with Benjamini–Bogomolov selection (:func:`benjamini_bogomolov`). The
   family is the *confirmed* tests: screening chose them on other pairs.

This module holds statistics only. What they decide (a finding passes only
when its q-value is at most ``Thresholds.fdr_q``, it rests on at least
``Thresholds.min_pairs`` pairs and the effect is large enough to matter) is
the decision policy in :mod:`probe.analysis.policy`.

A percentile bootstrap is deliberately absent: it is not a valid decision
rule for a few pairs (a bootstrap of 4 values has at most 35 distinct
resamples and its interval is too narrow).

Non-finite differences (NaN) mark missing pairs and are dropped everywhere in
this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from probe.analysis.errors import AnalysisError

__all__ = [
    "FDR_FAMILIES",
    "FDR_METHODS",
    "benjamini_bogomolov",
    "binomial_interval",
    "fdr_family_q",
    "simes",
    "Effect",
    "apply_fdr",
    "fdr",
    "mean_interval",
    "paired_effect",
    "paired_effect_columns",
    "paired_proportions",
    "sign_flip_test",
]

_NAN = float("nan")
_ALTERNATIVES = ("two-sided", "greater", "less")
FDR_METHODS = ("bh", "by")  # Benjamini–Hochberg, Benjamini–Yekutieli
# Sums of sign-flipped differences that agree to this relative precision count
# as ties (a tie counts as "at least as extreme", the conservative side).
_REL_TOL = 1e-9
# Meet-in-the-middle enumeration holds 2**(n/2) sums per half: 2**15 at n = 30.
_EXACT_MAX_N_LIMIT = 30
# The interval inverts the test of the *shifted* differences, where every pair (a zero too) is informative, so its
# exact path enumerates all of them: up to 24 pairs (2**12 sums per half of the meet-in-the-middle, ~20 ms an interval).
_EXACT_SHIFTED_N = 24


def _enumerate(d: np.ndarray, exact_max_n: int) -> bool:
    """Whether the sign-flip test and its interval enumerate every sign pattern (else they sample them): one rule for
    both, so the interval excludes 0 exactly when p < 1 - confidence. They used to differ where zeros were present
    (the test counted the non-zero pairs, the interval all of them): 16 non-zero differences and one zero gave p 0.052
    beside a 95% interval of [+0.0003, +0.204]."""
    return int(np.count_nonzero(d)) <= exact_max_n and d.size <= max(exact_max_n, _EXACT_SHIFTED_N)


@dataclass(frozen=True)
class Effect:
    """Mean of paired differences with a confidence interval and a test.

    ``mean``, ``ci_low``, ``ci_high`` and ``n`` (pairs used) come first so that
    ``Effect(mean, lo, hi, n)`` keeps working. ``p`` is the two-sided p-value of
    "the mean of the paired differences is 0", ``q`` its false-discovery-rate
    adjusted value once the audit's tests are pooled (:func:`apply_fdr`; NaN
    until then), ``method`` names the interval and test, ``confidence`` the
    interval's level. An interval end may be infinite (no bounds given and too
    few pairs for the test ever to reject).
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int
    p: float = _NAN
    q: float = _NAN
    method: str = ""
    confidence: float = 0.95

    def __repr__(self) -> str:
        parts = [
            f"{self.mean:+.3f}",
            f"{self.confidence:.0%} CI [{self.ci_low:+.3f}, {self.ci_high:+.3f}]",
            f"n={self.n}",
        ]
        if math.isfinite(self.p):
            parts.append(f"p={self.p:.3g}")
        if math.isfinite(self.q):
            parts.append(f"q={self.q:.3g}")
        if self.method:
            parts.append(self.method)
        return f"Effect({', '.join(parts)})"


# ----------------------------------------------------------------------------- checks


def _finite_1d(values, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array with NaN (missing pairs) removed."""
    try:
        d = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise AnalysisError(f"{name} must be numbers (paired differences); got {type(values).__name__}.") from e
    if d.ndim > 1 and d.size != max(d.shape):
        raise AnalysisError(f"{name} has shape {d.shape}; pass a 1-D array of paired differences.")
    d = d.reshape(-1)
    if np.isinf(d).any():
        raise AnalysisError(f"{name} contains infinite values; differences of probabilities are finite.")
    return d[~np.isnan(d)]


def _check_confidence(confidence: float) -> None:
    if not 0.5 < confidence < 1.0:
        raise AnalysisError(f"confidence={confidence} must lie in (0.5, 1); use 0.95 for a 95% interval.")


def _check_test_args(alternative: str, n_resamples: int, exact_max_n: int) -> None:
    if alternative not in _ALTERNATIVES:
        raise AnalysisError(f"alternative={alternative!r} is not one of {_ALTERNATIVES}.")
    if int(n_resamples) < 100:
        raise AnalysisError(f"n_resamples={n_resamples} is too small for a Monte-Carlo p-value; use at least 100 (default 20000).")
    if not 0 <= int(exact_max_n) <= _EXACT_MAX_N_LIMIT:
        raise AnalysisError(f"exact_max_n={exact_max_n} must lie in [0, {_EXACT_MAX_N_LIMIT}]; 16 enumerates 65536 patterns.")


def _check_bounds(d: np.ndarray, bounds) -> tuple[float, float] | None:
    if bounds is None:
        return None
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError) as e:
        raise AnalysisError(f"bounds={bounds!r} must be a pair (low, high), e.g. (-1, 1), or None.") from e
    if not lo < hi:
        raise AnalysisError(f"bounds={bounds!r} must have low < high.")
    if d.size and (d.min() < lo or d.max() > hi):
        raise AnalysisError(
            f"diffs range over [{d.min():.4g}, {d.max():.4g}], outside bounds={bounds!r}; "
            "pass the true range of a difference (probabilities: (-1, 1)) or bounds=None."
        )
    return lo, hi


# ----------------------------------------------------------------------------- sign-flip test


@lru_cache(maxsize=None)
def _sign_matrix(h: int) -> np.ndarray:
    """All 2**h sign patterns as rows (bit j of the row index set = flip element j)."""
    bits = (np.arange(2**h, dtype=np.int64)[:, None] >> np.arange(h, dtype=np.int64)) & 1
    out = (1.0 - 2.0 * bits).astype(np.float64)
    out.setflags(write=False)
    return out


def _count_at_least(x: np.ndarray, t: float) -> int:
    """Number of the 2**n sign patterns s with s·x >= t, without listing 2**n sums.

    Meet in the middle: the signed sums of the first half (A) and of the second
    half (B, sorted) are each 2**(n/2) numbers; a pattern is a pair (a, b), and
    for each a the count of b >= t - a is one binary search.
    """
    h = x.size // 2
    a = _sign_matrix(h) @ x[:h]
    b = np.sort(_sign_matrix(x.size - h) @ x[h:])
    return int((b.size - np.searchsorted(b, t - a, side="left")).sum())


def _exact_p(x: np.ndarray, alternative: str, tol: float) -> float:
    """Exact sign-flip p-value of the sum of ``x`` over all 2**n sign patterns."""
    n, t = x.size, float(x.sum())
    total = 2.0**n
    if alternative == "greater":
        return _count_at_least(x, t - tol) / total
    if alternative == "less":
        return _count_at_least(-x, -t - tol) / total
    if abs(t) <= tol:
        return 1.0
    # The permutation distribution is symmetric, and for t != 0 the two tails
    # {S >= |t|} and {S <= -|t|} are disjoint: P(|S| >= |t|) = 2 P(S >= |t|).
    return min(1.0, 2.0 * _count_at_least(x, abs(t) - tol) / total)


def _mc_sums(d: np.ndarray, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """For ``n_resamples`` random sign patterns s: (s·d, sum of s), in memory-bounded chunks."""
    rng = np.random.default_rng(seed)
    n = d.size
    rows = max(1, (1 << 22) // max(n, 1))
    u = np.empty(n_resamples)
    v = np.empty(n_resamples)
    for start in range(0, n_resamples, rows):
        k = min(rows, n_resamples - start)
        s = rng.integers(0, 2, size=(k, n), dtype=np.int8) * np.int8(2) - np.int8(1)
        u[start : start + k] = s @ d
        v[start : start + k] = s.sum(axis=1, dtype=np.int64)
    return u, v


def _mc_p(u: np.ndarray, t: float, alternative: str, tol: float) -> float:
    """Monte-Carlo p-value ``(b + 1) / (m + 1)`` (valid, never 0) from sampled sums ``u``."""
    if alternative == "greater":
        b = np.count_nonzero(u >= t - tol)
    elif alternative == "less":
        b = np.count_nonzero(u <= t + tol)
    else:
        b = np.count_nonzero(np.abs(u) >= abs(t) - tol)
    return (b + 1.0) / (u.size + 1.0)


def sign_flip_test(
    diffs,
    *,
    alternative: str = "two-sided",
    n_resamples: int = 20000,
    seed: int = 0,
    exact_max_n: int = 16,
) -> float:
    """p-value of the paired sign-flip permutation test of "mean of ``diffs`` = 0".

    Under the null hypothesis the two sides of every pair are exchangeable, so
    each difference's sign is a fair coin. The test statistic is the sum (the
    mean times the fixed n); the p-value is the probability, over sign
    patterns, of a sum at least as extreme as the observed one:

    - ``"two-sided"``: |S| >= |observed|; ``"greater"``: S >= observed (evidence
      for a positive mean); ``"less"``: S <= observed.
    - Zero differences flip to themselves and contribute nothing to any sum, so
      they are left out of the enumeration (the distribution is unchanged); a
      sample of zeros only has p = 1.
    - With at most ``exact_max_n`` non-zero differences (among at most 24, the
      interval's rule, :func:`_enumerate`) all 2**n patterns are counted exactly
      (meet-in-the-middle: two sorted halves of 2**(n/2) sums).
      Otherwise ``n_resamples`` random patterns are drawn (``seed``) and
      ``p = (b + 1) / (m + 1)`` with b the number as extreme as the data: the
      observed pattern counts as one of the draws, which makes the p-value
      valid (P(p <= alpha) <= alpha) rather than merely consistent.
    - ``n = 0`` (no finite difference) gives NaN. The smallest attainable
      two-sided p-value is ``2 / 2**n``: 0.125 for 4 pairs, 0.0078 for 8.

    Sums within a relative 1e-9 of the observed one count as ties (as extreme),
    so rounding never makes the test anti-conservative.
    """
    _check_test_args(alternative, n_resamples, exact_max_n)
    d = _finite_1d(diffs, "diffs")
    if d.size == 0:
        return _NAN
    nz = d[d != 0.0]
    if nz.size == 0:
        return 1.0
    tol = _REL_TOL * float(np.abs(nz).sum())
    if _enumerate(d, exact_max_n):
        return _exact_p(nz, alternative, tol)
    u, _ = _mc_sums(d, int(n_resamples), seed)
    return _mc_p(u, float(d.sum()), alternative, tol)


# ----------------------------------------------------------------------------- interval


def mean_interval(
    diffs,
    confidence: float = 0.95,
    *,
    bounds: tuple[float, float] | None = None,
    n_resamples: int = 20000,
    seed: int = 0,
    exact_max_n: int = 16,
) -> tuple[float, float]:
    """Confidence interval for the mean of paired differences, by inverting the sign-flip test.

    The interval is every shift ``delta`` for which the two-sided sign-flip test
    of ``diffs - delta`` does not reject at level ``1 - confidence``; its ends
    are found by bisection.

    1. Why bisection is exact here: flipping a set F of pairs gives a sum at
       least the observed one iff the mean of ``diffs`` over F is <= delta, so
       on each side of the sample mean the p-value is monotone in delta and the
       accepted set is one interval (for the exact test and, with the sign
       patterns held fixed by ``seed``, for the Monte-Carlo one). The exact
       ends are means of subsets of the pairs.
    2. Lower end: below the smallest difference every pair is positive and the
       p-value is at its floor (``2 / 2**n`` exactly). If even that floor is
       above ``1 - confidence`` the test can never reject there and the lower
       end is -inf; otherwise bisect between that point and the mean (where
       p = 1) for the smallest accepted shift. Upper end likewise.
    3. Clip to ``bounds`` (e.g. ``(-1, 1)`` for differences of probabilities,
       which cannot have a mean outside that range).

    With very small n the interval is honest rather than useful: at 95% it is
    unbounded (the whole of ``bounds``) for n <= 5 and reaches the smallest or
    largest difference for n = 6, i.e. the full range of the data or wider.
    The interval covers the *centre of symmetry* of the differences; for
    skewed differences it is approximate, and tests check its coverage on
    bounded data. n = 0 gives (nan, nan).
    """
    _check_confidence(confidence)
    _check_test_args("two-sided", n_resamples, exact_max_n)
    d = _finite_1d(diffs, "diffs")
    lims = _check_bounds(d, bounds)
    n = d.size
    if n == 0:
        return _NAN, _NAN
    alpha = 1.0 - confidence
    mean = float(d.mean())
    spread = float(d.max() - d.min())
    tol = _REL_TOL * n * max(float(np.abs(d).max()), 1e-12)

    # Step 0: the p-value as a function of the shift, sharing one set of sign
    # patterns (Monte-Carlo) so that it is monotone on each side of the mean.
    if _enumerate(d, exact_max_n):

        def p_at(delta: float) -> float:
            return _exact_p(d - delta, "two-sided", tol)

    else:
        u, v = _mc_sums(d, int(n_resamples), seed)
        total = float(d.sum())

        def p_at(delta: float) -> float:
            t = total - n * delta
            if abs(t) <= tol:
                return 1.0
            return _mc_p(u - delta * v, t, "two-sided", tol)

    def end(outside: float) -> float:
        # Steps 1-2: `outside` lies beyond the data, where p is at its floor.
        if p_at(outside) > alpha:
            return math.copysign(math.inf, outside - mean)
        rejected, accepted = outside, mean
        xtol = 1e-10 * (1.0 + spread)
        for _ in range(200):
            if abs(accepted - rejected) <= xtol:
                break
            mid = 0.5 * (rejected + accepted)
            if p_at(mid) > alpha:
                accepted = mid
            else:
                rejected = mid
        return accepted

    margin = 1e-3 * (1.0 + spread)
    lo, hi = end(float(d.min()) - margin), end(float(d.max()) + margin)
    # Step 3.
    if lims is not None:
        lo, hi = max(lo, lims[0]), min(hi, lims[1])
    return float(lo), float(hi)


def paired_effect(
    diffs,
    confidence: float = 0.95,
    seed: int = 0,
    *,
    bounds: tuple[float, float] | None = (-1.0, 1.0),
    n_resamples: int = 20000,
    exact_max_n: int = 16,
) -> Effect:
    """Mean of paired differences with its sign-flip interval and two-sided p-value.

    ``method="sign-flip"``; ``q`` stays NaN until the audit's effects are
    pooled with :func:`apply_fdr`. ``bounds`` defaults to (-1, 1) because
    probe's effects are differences of probabilities or shares; pass
    ``bounds=None`` for other data (the interval may then be infinite).
    """
    _check_confidence(confidence)
    d = _finite_1d(diffs, "diffs")
    _check_bounds(d, bounds)
    if d.size == 0:
        return Effect(_NAN, _NAN, _NAN, 0, method="sign-flip", confidence=confidence)
    p = sign_flip_test(d, n_resamples=n_resamples, seed=seed, exact_max_n=exact_max_n)
    lo, hi = mean_interval(
        d, confidence, bounds=bounds, n_resamples=n_resamples, seed=seed, exact_max_n=exact_max_n
    )
    return Effect(float(d.mean()), lo, hi, int(d.size), p=p, method="sign-flip", confidence=confidence)


def paired_effect_columns(
    diffs,
    mask=None,
    *,
    confidence: float = 0.95,
    seed: int = 0,
    bounds: tuple[float, float] | None = (-1.0, 1.0),
    n_resamples: int = 20000,
    exact_max_n: int = 16,
) -> list[Effect]:
    """:func:`paired_effect` of every column of ``diffs`` (pairs × columns).

    ``mask`` (same
    shape, bool) excludes pairs per column, and NaN entries are missing pairs.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 2:
        raise AnalysisError(f"diffs has shape {d.shape}; pass a 2-D array of pairs × columns.")
    m = np.ones_like(d, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != d.shape:
        raise AnalysisError(f"mask has shape {m.shape} but diffs has shape {d.shape}; they must match.")
    return [
        paired_effect(
            d[m[:, j], j], confidence, seed,
            bounds=bounds, n_resamples=n_resamples, exact_max_n=exact_max_n,
        )
        for j in range(d.shape[1])
    ]


# ----------------------------------------------------------------------------- paired proportions


def _normal_quantile(prob: float) -> float:
    """Standard normal quantile by Newton's method on ``math.erfc`` (|error| < 1e-12)."""
    z = 0.0
    for _ in range(100):
        cdf = 0.5 * math.erfc(-z / math.sqrt(2.0))
        step = (cdf - prob) / (math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi))
        z -= max(-1.0, min(1.0, step))
        if abs(step) < 1e-14:
            break
    return z


def _wilson(x: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for x successes in n trials."""
    denom = n + z * z
    centre = (x + 0.5 * z * z) / denom
    half = z * math.sqrt(x * (n - x) / n + 0.25 * z * z) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _binomial_tail(k: int, n: int, p: float, upper: bool) -> float:
    """P(X >= k) (``upper``) or P(X <= k) for X ~ Binomial(n, p), summed term by term in log space (no overflow
    at thousands of trials), over the shorter side (the other as 1 minus it)."""
    if p <= 0.0 or p >= 1.0:
        at = 0 if p <= 0.0 else n
        return float((at >= k) if upper else (at <= k))
    lp, lq = math.log(p), math.log1p(-p)

    def total(ks) -> float:
        return math.fsum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp
                                  + (n - i) * lq) for i in ks)

    if upper:
        return total(range(k, n + 1)) if n - k <= k else max(0.0, 1.0 - total(range(0, k)))
    return total(range(0, k + 1)) if k <= n - k else max(0.0, 1.0 - total(range(k + 1, n + 1)))


def binomial_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval for a proportion of ``k`` successes in ``n`` trials.

    Each end is the proportion at which the observed count sits on the ``(1 - confidence) / 2`` tail
    (found by bisection on the exact binomial sums): the interval covers the true proportion with at least
    the stated probability whatever it is, at the price of being wider than the Wilson interval. Used for
    the validity figures (precision, recall, coverage), where "at least 95%" is the claim.
    """
    if isinstance(k, bool) or isinstance(n, bool) or not isinstance(k, (int, np.integer)) \
            or not isinstance(n, (int, np.integer)) or not 0 <= k <= n or n < 1:
        raise AnalysisError(f"binomial_interval needs whole numbers 0 <= k <= n, n >= 1 (got k={k!r}, n={n!r})")
    _check_confidence(confidence)
    alpha = (1.0 - confidence) / 2.0

    def solve(tail) -> float:  # tail is monotone in p: bisect for tail(p) = alpha
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if tail(mid) else (lo, mid)
        return (lo + hi) / 2.0

    low = 0.0 if k == 0 else solve(lambda p: _binomial_tail(k, n, p, True) < alpha)
    high = 1.0 if k == n else solve(lambda p: _binomial_tail(k, n, p, False) > alpha)
    return low, high


def _mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: binomial(b + c, 1/2) test on the discordant pairs."""
    k = b + c
    if k == 0:
        return 1.0
    tail = sum(math.comb(k, i) for i in range(min(b, c) + 1))
    # Python's int / int is correctly rounded even for very large k.
    return min(1.0, 2 * tail / 2**k)


def _as_bool(values, name: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1:
        raise AnalysisError(f"{name} has shape {a.shape}; pass a 1-D array, one entry per pair.")
    if a.dtype == bool:
        return a
    if a.size and not (np.issubdtype(a.dtype, np.number) and np.isin(a, (0, 1)).all()):
        raise AnalysisError(f"{name} must be booleans (or 0/1), one per pair; got values such as {a[:3].tolist()}.")
    return a.astype(bool)


def paired_proportions(before, after, confidence: float = 0.95) -> Effect:
    """Difference of two paired proportions, ``mean(after) - mean(before)``.

    For example the share of images that show a concept with the token minus
    the share without it, on the same seeds. The interval is Newcombe's (1998)
    hybrid score interval for paired data (his method 10), the p-value the
    exact two-sided McNemar test; ``method="newcombe-mcnemar"``.

    1. Count the pairs: ``a`` both true, ``b`` only ``after``, ``c`` only
       ``before``, ``d`` neither; the difference is ``(b - c) / n``.
    2. Wilson score intervals (l1, u1) for the ``after`` share p1 and (l2, u2)
       for the ``before`` share p2.
    3. The correlation of the two shares: phi = (ad - bc) / sqrt of the product
       of the four margins, with Newcombe's correction of a positive ad - bc
       towards 0 by n/2 (``max(ad - bc - n/2, 0)``); phi = 0 when a margin is
       empty (all pairs alike), where it is undefined.
    4. Combine (square and add, corrected for the correlation)::

           low  = diff - sqrt((p1-l1)^2 - 2 phi (p1-l1)(u2-p2) + (u2-p2)^2)
           high = diff + sqrt((u1-p1)^2 - 2 phi (u1-p1)(p2-l2) + (p2-l2)^2)

    5. McNemar: only discordant pairs carry information; under "no
       difference" each is ``b`` or ``c`` with probability 1/2, so
       p = min(1, 2 P(Binomial(b + c, 1/2) <= min(b, c))), and p = 1 without
       discordant pairs.

    The interval stays inside [-1, 1] and is never empty; ``n = 0`` gives NaN.
    """
    _check_confidence(confidence)
    x0, x1 = _as_bool(before, "before"), _as_bool(after, "after")
    if x0.shape != x1.shape:
        raise AnalysisError(f"before has {x0.size} pairs but after has {x1.size}; they must be paired one to one.")
    n = int(x0.size)
    if n == 0:
        return Effect(_NAN, _NAN, _NAN, 0, method="newcombe-mcnemar", confidence=confidence)
    # Step 1.
    a = int(np.count_nonzero(x1 & x0))
    b = int(np.count_nonzero(x1 & ~x0))
    c = int(np.count_nonzero(~x1 & x0))
    d = n - a - b - c
    p1, p2 = (a + b) / n, (a + c) / n
    diff = (b - c) / n
    # Step 2.
    z = _normal_quantile(1.0 - (1.0 - confidence) / 2.0)
    l1, u1 = _wilson(a + b, n, z)
    l2, u2 = _wilson(a + c, n, z)
    # Step 3.
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    if margins == 0:
        phi = 0.0
    else:
        if cross > n / 2:
            cross -= n / 2
        elif cross >= 0:
            cross = 0
        phi = cross / math.sqrt(margins)
    # Step 4.
    low = diff - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = diff + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    # Step 5.
    p = _mcnemar_exact(b, c)
    return Effect(diff, max(-1.0, low), min(1.0, high), n, p=p, method="newcombe-mcnemar", confidence=confidence)


# ----------------------------------------------------------------------------- false discovery rate


def fdr(pvalues, q: float = 0.05, method: str = "by") -> tuple[np.ndarray, np.ndarray]:
    """False-discovery-rate adjusted p-values (q-values) and the rejections at level ``q``.

    - ``"bh"`` (Benjamini–Hochberg 1995): with the m p-values sorted,
      q_(i) = min over j >= i of m p_(j) / j, capped at 1. Controls the FDR at
      ``q`` for independent or positively dependent (PRDS) tests.
    - ``"by"`` (Benjamini–Yekutieli 2001): the BH q-values times
      c(m) = 1 + 1/2 + ... + 1/m (about 4.8 for m = 70), capped at 1. Controls
      the FDR under *any* dependence. probe's tests are dependent in ways that
      are hard to sign (the cues of one class are scored on the same images,
      classes share carriers and seeds), so BY is the default.

    A test is rejected (a discovery) when its q-value is at most ``q``, which is
    the step-up procedure. NaN p-values (tests that could not be run) are
    ignored: they do not count in m, their q-value is NaN and they are never
    rejected. The output has the input's shape.
    """
    if not 0.0 < q < 1.0:
        raise AnalysisError(f"q={q} must lie in (0, 1); 0.05 keeps the expected share of false findings at 5%.")
    if method not in FDR_METHODS:
        raise AnalysisError(f"method={method!r} is not one of {FDR_METHODS} (Benjamini–Hochberg, Benjamini–Yekutieli).")
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.reshape(-1)
    ok = ~np.isnan(flat)
    if ((flat[ok] < 0.0) | (flat[ok] > 1.0)).any():
        raise AnalysisError("pvalues must lie in [0, 1] (NaN for tests that were not run).")
    qv = np.full(flat.shape, _NAN)
    pv = flat[ok]
    m = pv.size
    if m:
        order = np.argsort(pv, kind="stable")
        scaled = pv[order] * m / np.arange(1, m + 1)
        if method == "by":
            scaled = scaled * float(np.sum(1.0 / np.arange(1, m + 1)))
        adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
        q_ok = np.empty(m)
        q_ok[order] = adjusted
        qv[ok] = q_ok
    rejected = np.zeros(flat.shape, dtype=bool)
    rejected[ok] = qv[ok] <= q
    return qv.reshape(p.shape), rejected.reshape(p.shape)


def apply_fdr(effects, *, method: str = "by") -> list[Effect]:
    """Copies of ``effects`` with ``q`` set by :func:`fdr` over all their p-values together.

    Pass every effect of one audit at once (all classes, cues and kinds that
    were tested, reported or not): the adjustment is only valid over the full
    family of tests.
    """
    effects = list(effects)
    qv, _ = fdr([e.p for e in effects], method=method)
    return [replace(e, q=float(qi)) for e, qi in zip(effects, qv)]


# ----------------------------------------------------------------------------- families of tests

#: How the confirmed tests are grouped for false-discovery-rate control (``AnalysisConfig.fdr``):
#: "audit", one family over the whole audit (:func:`apply_fdr`); "per-class", one family per class with the
#: classes selected first (:func:`benjamini_bogomolov`), which keeps power when there are thousands of tests.
FDR_FAMILIES = ("audit", "per-class")


def simes(pvalues) -> float:
    """Simes' p-value of "no test in the family has an effect": min over j of m p_(j) / j (NaN ignored)."""
    p = np.sort(np.asarray([x for x in pvalues if not math.isnan(x)], dtype=np.float64))
    if p.size == 0:
        return _NAN
    return float(min(1.0, np.min(p * p.size / np.arange(1, p.size + 1))))


def benjamini_bogomolov(pvalues, families, q: float = 0.05, method: str = "by") -> tuple[np.ndarray, np.ndarray]:
    """Selective inference over families (Benjamini & Bogomolov 2014): (adjusted values, rejections) at level ``q``.

    1. Each family's p-value is Simes' (:func:`simes`) over its tests (NaN p-values are left out, as in :func:`fdr`).
    2. The families are selected by Benjamini–Hochberg over those M family p-values at level ``q``: R of M.
    3. Within each selected family the tests are rejected by ``method`` ("bh" or "by") at level ``q * R / M``.

    Guarantee: the expected share of selected families with no effect at all is at most ``q`` (step 2), and the
    expected *average over the selected families* of the share of false rejections within a family is at most
    ``q`` when the families are independent of each other (with "by", whatever the dependence within a family).

    The adjusted value of a test is ``max(q_family, q_within * M / R)`` capped at 1 (1 when no family is selected),
    so that it is at most ``q`` exactly when the test is rejected. Unlike a q-value it is tied to the level ``q``
    the families were selected at (R depends on it): compare it with that level only.
    """
    if not 0.0 < q < 1.0:
        raise AnalysisError(f"q={q} must lie in (0, 1); 0.05 keeps the expected share of false findings at 5%.")
    if method not in FDR_METHODS:
        raise AnalysisError(f"method={method!r} is not one of {FDR_METHODS} (Benjamini–Hochberg, Benjamini–Yekutieli).")
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    fam = list(families)
    if len(fam) != p.size:
        raise AnalysisError(f"families has {len(fam)} entries for {p.size} p-values; give one family per test.")
    names = list(dict.fromkeys(f for f, x in zip(fam, p) if not math.isnan(x)))
    out = np.full(p.shape, _NAN)
    rejected = np.zeros(p.shape, dtype=bool)
    if not names:
        return out, rejected
    members = {f: [i for i, g in enumerate(fam) if g == f and not math.isnan(p[i])] for f in names}
    # 1-2. the families' Simes p-values, selected by Benjamini-Hochberg
    family_q, selected = fdr([simes(p[members[f]]) for f in names], q=q, method="bh")
    m_families, r_families = len(names), int(selected.sum())
    # 3. within each family, at level q R / M
    for f, qf in zip(names, family_q):
        idx = members[f]
        within, _ = fdr(p[idx], q=q, method=method)
        scaled = within * m_families / r_families if r_families else np.ones(len(idx))
        out[idx] = np.minimum(1.0, np.maximum(qf, scaled))
    rejected[~np.isnan(out)] = out[~np.isnan(out)] <= q
    return out, rejected


def fdr_family_q(effects, families, *, family: str = "audit", q: float = 0.05, method: str = "by") -> list[Effect]:
    """Copies of ``effects`` with ``q`` set under ``family`` (:data:`FDR_FAMILIES`): "audit" is :func:`apply_fdr`
    over them all; "per-class" is :func:`benjamini_bogomolov` with ``families`` (one label per effect: its class)."""
    effects = list(effects)
    if family not in _FAMILY_Q:
        raise AnalysisError(f"fdr family {family!r} is not one of {FDR_FAMILIES}; 'audit' is one family over the audit.")
    qv = _FAMILY_Q[family]([e.p for e in effects], list(families), q, method)
    return [replace(e, q=float(qi)) for e, qi in zip(effects, qv)]


_FAMILY_Q = {
    "audit": lambda p, _families, q, method: fdr(p, q=q, method=method)[0],
    "per-class": lambda p, families, q, method: benjamini_bogomolov(p, families, q=q, method=method)[0],
}
