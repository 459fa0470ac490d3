"""Small-sample tests, intervals and false-discovery-rate control (probe.analysis.stats).

Every test is seeded. The null and FDR simulations assert against bounds with a
margin of three Monte-Carlo standard errors computed from their own draws, so
they fail on a real defect (an anti-conservative p-value, a missing m/k factor
in Benjamini–Hochberg, an interval that is too narrow) and not by chance.

Figures measured by these simulations (seeds as in the code, numpy 2.4):

- null, 600 audits × 70 dependent tests of 16 pairs: per-test P(p <= 0.05) =
  0.041; share of audits with any discovery (= FDR under the full null) 0.033
  with BH and 0.002 with BY at q = 0.05; without correction 0.90 of the null
  audits report at least one "effect";
- 60 nulls + 10 planted effects per audit, 16 pairs: power of BY at q = 0.05
  is 0.99 for effects of mean 0.5, sd 0.3 (BH 1.00), and only 0.38 for mean
  0.3, sd 0.3 (BH 0.77); with 24 pairs the latter rises to 0.85 (BH 0.96).
  Mean false discovery proportion: BH 0.025-0.036, BY at most 0.003;
- coverage of the 95% sign-flip interval, 16 pairs: 0.956 on symmetric data,
  0.943 on skewed three-valued data.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from probe.analysis.errors import AnalysisError
from probe.analysis.stats import (
    Effect,
    apply_fdr,
    fdr,
    mean_interval,
    paired_effect,
    paired_proportions,
    sign_flip_test,
)


def _margin(rate: float, draws: int) -> float:
    """Three binomial standard errors of a rate estimated from ``draws`` draws."""
    return 3.0 * math.sqrt(rate * (1.0 - rate) / draws)


# ----------------------------------------------------------------------------- sign-flip test


def test_sign_flip_exact_values_match_hand_counts():
    # n = 3 all positive: only the observed pattern and its mirror are as extreme: 2/8.
    assert sign_flip_test([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    assert sign_flip_test([1.0, 2.0, 3.0], alternative="greater") == pytest.approx(1 / 8)
    assert sign_flip_test([1.0, 2.0, 3.0], alternative="less") == pytest.approx(1.0)
    assert sign_flip_test([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(2 / 32)
    # Ties: the 8 sums of ±1 ±1 ±2 are 2, 0, 4, 2, -2, -4, 0, -2; |S| >= 2 for 6 of them.
    assert sign_flip_test([1.0, -1.0, 2.0]) == pytest.approx(6 / 8)
    assert sign_flip_test([1.0, -1.0, 2.0], alternative="greater") == pytest.approx(3 / 8)
    # The floor: 4 pairs can never reach p <= 0.05, whatever the effect.
    assert sign_flip_test([0.9, 0.8, 0.95, 0.99]) == pytest.approx(0.125)


def test_sign_flip_zeros_contribute_nothing_and_edge_cases():
    assert sign_flip_test([0.0, 0.0, 0.0, 1.0, 2.0, 3.0]) == pytest.approx(0.25)
    # 17 zeros + 3 positives: 20 pairs, still exact over the 3 informative ones.
    assert sign_flip_test([0.0] * 17 + [1.0, 2.0, 3.0]) == pytest.approx(0.25)
    assert sign_flip_test([0.0, 0.0]) == 1.0
    assert math.isnan(sign_flip_test([]))
    assert math.isnan(sign_flip_test([np.nan, np.nan]))
    assert sign_flip_test([1.0, np.nan, 2.0, 3.0]) == pytest.approx(0.25)  # NaN = missing pair
    with pytest.raises(AnalysisError, match="alternative"):
        sign_flip_test([1.0], alternative="bigger")
    with pytest.raises(AnalysisError, match="infinite"):
        sign_flip_test([1.0, np.inf])


def test_the_interval_excludes_zero_exactly_when_p_is_below_alpha_also_with_zero_differences():
    """The test and its interval take the same path (enumerated or sampled): with 16 non-zero differences and one
    zero the test enumerated and the interval sampled, giving p 0.052 beside a 95% interval of [+0.0003, +0.204]."""
    found = [0.09, 0.071, -0.159, 0.117, 0.009, 0.412, 0.283, 0.114, 0.287, 0.035, 0.383, 0.119, 0.266, -0.203,
             0.207, -0.302, 0.0]
    p, (low, high) = sign_flip_test(found), mean_interval(found)
    assert p == pytest.approx(0.0519, abs=1e-4) and low < 0 < high
    rng = np.random.default_rng(11)
    for n in (8, 17, 20, 24, 25, 32):
        for zeros in (0, 1, 3, n // 3):
            for _ in range(3):
                d = np.round(rng.normal(0.1, 0.2, n), 3)
                d[:zeros] = 0.0
                p, (low, high) = sign_flip_test(d), mean_interval(d)
                if abs(p - 0.05) > 1e-3:  # away from the boundary, where bisection's tolerance decides
                    assert (p < 0.05) == (low > 0 or high < 0), (n, zeros, p, low, high, d.tolist())


def test_sign_flip_exact_and_monte_carlo_agree_at_16_pairs():
    rng = np.random.default_rng(3)
    m = 20000
    for mu in (0.0, 0.1, 0.2, 0.35):
        d = np.clip(rng.normal(mu, 0.3, size=16), -1, 1)
        exact = sign_flip_test(d)
        mc = sign_flip_test(d, exact_max_n=0, n_resamples=m, seed=1)
        # Monte-Carlo SE of a p-value, plus the (b+1)/(m+1) offset.
        assert abs(mc - exact) <= 4 * math.sqrt(exact * (1 - exact) / m) + 2 / m, (mu, exact, mc)
        mc_greater = sign_flip_test(d, alternative="greater", exact_max_n=0, n_resamples=m, seed=1)
        exact_greater = sign_flip_test(d, alternative="greater")
        assert abs(mc_greater - exact_greater) <= 4 * math.sqrt(exact_greater * (1 - exact_greater) / m) + 2 / m


def test_sign_flip_monte_carlo_p_is_never_zero():
    d = np.full(40, 0.5)
    p = sign_flip_test(d, n_resamples=1000)
    assert p == pytest.approx(1 / 1001)  # b = 0: the observed pattern counts as one draw


# ----------------------------------------------------------------------------- interval


def _subset_means(d: np.ndarray) -> np.ndarray:
    out = []
    for k in range(1, d.size + 1):
        out.extend(np.mean(c) for c in itertools.combinations(d, k))
    return np.sort(np.array(out))


def test_interval_ends_are_the_subset_means_the_theory_predicts():
    # Flipping set F beats the data iff mean(F) <= delta, so the 95% lower end is the
    # k-th smallest non-empty subset mean with k = floor(0.05 * 2**(n-1)) = 6 at n = 8.
    rng = np.random.default_rng(5)
    d = np.round(rng.normal(0.2, 0.3, size=8), 3)
    means = _subset_means(d)
    k = math.floor(0.05 * 2 ** (d.size - 1))
    lo, hi = mean_interval(d, 0.95)
    assert lo == pytest.approx(means[k - 1], abs=1e-8)
    assert hi == pytest.approx(means[-k], abs=1e-8)


def test_interval_contains_mean_and_shrinks_with_n():
    rng = np.random.default_rng(7)
    widths = []
    for n in (8, 16, 40, 120):
        d = np.clip(rng.normal(0.2, 0.3, size=n), -1, 1)
        lo, hi = mean_interval(d, bounds=(-1, 1))
        assert lo <= d.mean() <= hi
        widths.append(hi - lo)
    assert all(a > b for a, b in zip(widths, widths[1:])), widths


def test_interval_is_honest_for_tiny_samples():
    d = [0.3, 0.2, 0.5, 0.1]
    assert mean_interval(d, bounds=(-1, 1)) == (-1.0, 1.0)  # n <= 5: the test can never reject
    lo, hi = mean_interval(d)
    assert lo == -math.inf and hi == math.inf
    six = [0.3, 0.2, 0.5, 0.1, 0.2, 0.4]
    assert mean_interval(six) == pytest.approx((0.1, 0.5), abs=1e-8)  # n = 6: the full range of the data
    assert all(math.isnan(v) for v in mean_interval([]))
    with pytest.raises(AnalysisError, match="bounds"):
        mean_interval([0.5, 1.5], bounds=(-1, 1))


@pytest.mark.parametrize(
    "name, draw, true_mean, draws",
    [
        ("symmetric", lambda rng, n: 0.2 + rng.uniform(-0.5, 0.5, n), 0.2, 500),
        ("skewed three-valued", lambda rng, n: rng.choice([-1.0, 0.0, 1.0], p=[0.05, 0.65, 0.3], size=n), 0.25, 300),
    ],
)
def test_interval_coverage_on_bounded_data(name, draw, true_mean, draws):
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(draws):
        lo, hi = mean_interval(draw(rng, 16), 0.95, bounds=(-1, 1))
        hits += lo <= true_mean <= hi
    coverage = hits / draws  # measured 0.956 (symmetric), 0.943 (skewed)
    assert coverage >= 0.93, (name, coverage)


def test_interval_monte_carlo_regime_agrees_with_its_p_value():
    rng = np.random.default_rng(2)
    d = np.clip(rng.normal(0.1, 0.3, size=30), -1, 1)
    e = paired_effect(d)
    assert e.method == "sign-flip" and e.n == 30
    # Same sign patterns for the test and the interval: 0 is outside iff p <= 0.05.
    assert (e.ci_low > 0 or e.ci_high < 0) == (e.p <= 0.05)
    assert e.ci_low <= e.mean <= e.ci_high


def test_paired_effect_fields():
    e = paired_effect([0.1, 0.2, 0.3, 0.1, 0.25, 0.4, 0.15, 0.2])
    assert e.p == pytest.approx(2 / 256)
    assert math.isnan(e.q) and e.method == "sign-flip" and e.confidence == 0.95
    assert "p=0.00781" in repr(e) and "sign-flip" in repr(e)
    empty = paired_effect([])
    assert empty.n == 0 and math.isnan(empty.mean)


# ----------------------------------------------------------------------------- paired proportions


def test_newcombe_matches_hand_computation():
    # Altman et al. (2000), "Statistics with confidence", table 6.2: 14 pairs both positive,
    # 5 positive only before, 22 neither. By hand: Wilson (0.3206, 0.6125) for 19/41 and
    # (0.2156, 0.4945) for 14/41; phi = (14*22 - 41/2) / sqrt(19*22*14*27) = 0.7233;
    # low = 0.12195 - 0.11047 = 0.0115, high = 0.12195 + 0.10454 = 0.2265 (for before - after).
    before = [True] * 19 + [False] * 22
    after = [True] * 14 + [False] * 27
    e = paired_proportions(before, after)
    assert e.mean == pytest.approx(-5 / 41)
    assert (e.ci_low, e.ci_high) == pytest.approx((-0.2265, -0.0115), abs=2e-4)
    assert e.p == pytest.approx(2 / 32)  # 5 discordant pairs, all one way
    assert e.method == "newcombe-mcnemar" and e.n == 41


def test_newcombe_properties_and_mcnemar():
    e = paired_proportions([False] * 8 + [True] * 4 + [False] * 4, [True] * 8 + [True] * 4 + [False] * 4)
    assert e.p == pytest.approx(2 * 0.5**8)  # 8 discordant, all in one direction
    assert -1 <= e.ci_low <= e.mean <= e.ci_high <= 1 and e.ci_low > 0
    widths = []
    for k in (1, 4, 16):
        before = np.array([True] * 6 * k + [False] * 14 * k)
        after = np.array([True] * 4 * k + [False] * 2 * k + [True] * 6 * k + [False] * 8 * k)
        e = paired_proportions(before, after)
        assert e.mean == pytest.approx(0.2)  # 10 of 20 after vs 6 of 20 before
        assert -1 <= e.ci_low <= e.mean <= e.ci_high <= 1
        widths.append(e.ci_high - e.ci_low)
    assert widths[0] > widths[1] > widths[2]
    # Balanced discordance: McNemar p = 1.
    assert paired_proportions([True, False] * 5, [False, True] * 5).p == pytest.approx(1.0)


def test_newcombe_edge_cases():
    same = paired_proportions([True] * 10, [True] * 10)  # phi undefined: margins empty
    assert same.mean == 0 and same.p == 1.0 and -1 <= same.ci_low < 0 < same.ci_high <= 1
    extreme = paired_proportions([False] * 12, [True] * 12)
    assert extreme.mean == 1.0 and extreme.ci_high == pytest.approx(1.0) and 0 < extreme.ci_low < 1
    assert extreme.p == pytest.approx(2 * 0.5**12)
    assert math.isnan(paired_proportions([], []).mean)
    assert paired_proportions([0, 1, 1], [1, 1, 0]).n == 3
    with pytest.raises(AnalysisError, match="paired"):
        paired_proportions([True, False], [True])
    with pytest.raises(AnalysisError, match="booleans"):
        paired_proportions([0.5, 1.0], [1.0, 0.0])


# ----------------------------------------------------------------------------- FDR


def test_bh_and_by_match_hand_computed_values():
    p = [0.01, 0.02, 0.025, 0.5]
    # BH: 4p/k = 0.04, 0.04, 0.0333, 0.5; running minimum from the top: 1/30, 1/30, 1/30, 0.5.
    q_bh, rej_bh = fdr(p, 0.05, method="bh")
    np.testing.assert_allclose(q_bh, [1 / 30, 1 / 30, 1 / 30, 0.5])
    assert rej_bh.tolist() == [True, True, True, False]
    # BY: times c(4) = 25/12, capped at 1.
    q_by, rej_by = fdr(p, 0.05, method="by")
    np.testing.assert_allclose(q_by, [25 / 360, 25 / 360, 25 / 360, 1.0])
    assert not rej_by.any()
    # NaN: ignored, not counted in m, never rejected; shape kept.
    q_nan, rej_nan = fdr([0.01, np.nan, 0.02, 0.025, 0.5], method="bh")
    assert math.isnan(q_nan[1]) and not rej_nan[1]
    np.testing.assert_allclose(np.delete(q_nan, 1), q_bh)
    assert fdr(np.array([[0.01, 0.5], [np.nan, 0.02]]), method="bh")[0].shape == (2, 2)
    with pytest.raises(AnalysisError, match="method"):
        fdr(p, method="holm")
    with pytest.raises(AnalysisError, match="pvalues"):
        fdr([0.1, 1.2])


def test_fdr_rejections_equal_the_step_up_rule_and_by_is_larger():
    rng = np.random.default_rng(4)
    for trial in range(200):
        m = int(rng.integers(1, 80))
        p = np.where(rng.random(m) < 0.3, rng.random(m) * 0.01, rng.random(m))
        for method, c in (("bh", 1.0), ("by", float(np.sum(1 / np.arange(1, m + 1))))):
            q, rej = fdr(p, 0.05, method=method)
            s = np.sort(p)
            passing = np.nonzero(s <= np.arange(1, m + 1) * 0.05 / (m * c))[0]
            k = passing[-1] + 1 if passing.size else 0
            assert rej.sum() == k and (np.sort(p[rej]) == s[:k]).all()
            assert (q >= p - 1e-15).all() and (q <= 1).all()
            # Monotone in p.
            order = np.argsort(p, kind="stable")
            assert (np.diff(q[order]) >= -1e-15).all()
        assert (fdr(p, method="by")[0] >= fdr(p, method="bh")[0] - 1e-15).all()


def test_apply_fdr_sets_q_on_copies():
    effects = [Effect(0.3, 0.1, 0.5, 16, p=0.001), Effect(0.2, -0.1, 0.4, 16, p=0.4), Effect(0.1, 0, 0.2, 0)]
    out = apply_fdr(effects, method="bh")
    assert out[0].q == pytest.approx(0.002) and out[1].q == pytest.approx(0.4) and math.isnan(out[2].q)
    assert math.isnan(effects[0].q)  # the inputs are untouched
    assert out[0].mean == 0.3 and out[0].p == 0.001


# ----------------------------------------------------------------------------- simulations


def _null_audit(rng: np.random.Generator, m: int = 70, n: int = 16) -> np.ndarray:
    """n pairs × m tests with no effect, dependent like one audit's tests.

    A pair-level component shared by all tests (same seeds and images) plus
    per-test noise; a third of the tests are three-valued (concept shown or
    not), the rest continuous. Every column is symmetric around 0.
    """
    shared = rng.uniform(-0.3, 0.3, size=(n, 1))
    cont = shared + rng.uniform(-0.5, 0.5, size=(n, m))
    disc = rng.choice([-1.0, 0.0, 0.0, 1.0], size=(n, m))
    return np.where(rng.random(m) < 1 / 3, disc, cont)


def test_null_simulation_false_positive_rate_and_fdr():
    """600 audits × 70 tests of 16 pairs, no effect anywhere.

    Measured: per-test P(p <= 0.05) = 0.041; share of audits with any
    discovery (the FDR when every hypothesis is null) 0.033 with BH, 0.002 with BY.
    """
    rng = np.random.default_rng(2024)
    audits, m = 600, 70
    pvals = np.array([[sign_flip_test(col) for col in _null_audit(rng, m).T] for _ in range(audits)])
    fpr = float((pvals <= 0.05).mean())
    assert fpr <= 0.05 + _margin(0.05, pvals.size), fpr
    assert fpr >= 0.02  # a test that never rejects would pass the bound above
    for method in ("bh", "by"):
        fdp = np.array([fdr(p, 0.05, method=method)[1].any() for p in pvals], dtype=float)
        assert fdp.mean() <= 0.05 + _margin(0.05, audits), (method, fdp.mean())
    # The old rule: ~70 tests at 5% each without correction find an "effect" in most null
    # audits (measured 0.90 here; 1 - 0.95**70 = 0.97 for independent continuous tests).
    assert (pvals <= 0.05).any(axis=1).mean() > 0.8


def _planted_audit(rng, mu: float, sd: float, n: int, m: int = 70, m1: int = 10) -> np.ndarray:
    d = _null_audit(rng, m, n)
    d[:, :m1] = rng.normal(mu, sd, size=(n, m1))
    return np.clip(d, -1, 1)


@pytest.mark.parametrize(
    "mu, sd, n, audits, floor",
    [
        (0.5, 0.3, 16, 150, 0.9),  # measured 0.986
        (0.3, 0.3, 16, 150, 0.3),  # measured 0.377 (BH 0.77): 16 pairs are few for 70 tests under BY
        (0.3, 0.3, 24, 40, 0.75),  # measured 0.845
    ],
)
def test_power_and_fdr_with_planted_effects(mu, sd, n, audits, floor):
    """10 planted effects among 60 nulls per audit; power of BY at q = 0.05 and the realised FDR.

    Measured power of BY: 0.986 (mean 0.5, sd 0.3, 16 pairs), 0.377 (mean 0.3,
    sd 0.3, 16 pairs; BH 0.77), 0.845 (mean 0.3, sd 0.3, 24 pairs). Why the
    middle one is low: a sign-flip sum standardised by its permutation spread
    is at most sqrt(n) = 4 at 16 pairs, and a 1-sd effect reaches only about
    2.8 (p ~ 0.005), while BY over 70 tests asks for p <= k * 1.5e-4.
    """
    rng = np.random.default_rng(99)
    m, m1 = 70, 10
    power, power_bh, fdp = [], [], {"bh": [], "by": []}
    for _ in range(audits):
        d = _planted_audit(rng, mu, sd, n, m, m1)
        p = np.array([sign_flip_test(d[:, j], exact_max_n=max(16, n)) for j in range(m)])
        for method in ("bh", "by"):
            rej = fdr(p, 0.05, method=method)[1]
            fdp[method].append(rej[m1:].sum() / max(1, rej.sum()))
            (power if method == "by" else power_bh).append(rej[:m1].mean())
    assert np.mean(power) >= floor, np.mean(power)
    assert np.mean(power_bh) >= np.mean(power)
    for method, values in fdp.items():
        # FDR <= q * m0 / m; margin: three standard errors of the mean FDP over the audits.
        values = np.asarray(values)
        assert values.mean() <= 0.05 + 3 * values.std(ddof=1) / math.sqrt(audits), (method, values.mean())


# ----------------------------------------------------------------------------- thresholds


def test_effect_keeps_its_positional_fields_and_displays_itself():
    e = Effect(0.3, 0.1, 0.5, 4)
    assert (e.mean, e.ci_low, e.ci_high, e.n) == (0.3, 0.1, 0.5, 4)
    assert math.isnan(e.p) and math.isnan(e.q) and e.method == ""
    assert repr(e) == "Effect(+0.300, 95% CI [+0.100, +0.500], n=4)"
def test_binomial_interval_is_the_exact_clopper_pearson_interval():
    from probe.analysis.stats import binomial_interval

    # published Clopper–Pearson ends (R: binom.test(k, n)$conf.int)
    assert binomial_interval(16, 17) == pytest.approx((0.7131106, 0.9985118), abs=1e-6)
    assert binomial_interval(0, 10) == pytest.approx((0.0, 0.3084971), abs=1e-6)
    assert binomial_interval(5, 5) == pytest.approx((0.4781762, 1.0), abs=1e-6)
    # coverage is at least the stated level for every true proportion (checked exactly at a few)
    import math
    n = 12
    for p in (0.05, 0.3, 0.5, 0.9):
        covered = sum(math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n + 1)
                      if binomial_interval(k, n)[0] <= p <= binomial_interval(k, n)[1])
        assert covered >= 0.95
    with pytest.raises(AnalysisError):
        binomial_interval(3, 2)
