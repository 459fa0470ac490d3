"""probe.analysis.policy: what the statistics decide (the thresholds, passes / weak / inconclusive, the rule's words)."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from probe.analysis.errors import AnalysisError
from probe.analysis.policy import (EXCLUDED_LIMIT, Thresholds, attempt_budget, describe_rule, excluded_limit,
                                   failure_rate, verdict)
from probe.analysis.stats import Effect, apply_fdr, paired_effect


def _effect(mean: float, n: int, q: float) -> Effect:
    return Effect(mean, mean - 0.1, mean + 0.1, n, p=q / 10, q=q, method="sign-flip")


def test_judge_q_rules():
    t = Thresholds()
    assert t.judge_q("sufficiency", _effect(0.4, 16, 0.001)) == (True, "strong")
    # Too few pairs: never passes, however strong.
    for n in (4, 8, 15):
        assert t.judge_q("sufficiency", _effect(0.9, n, 1e-6)) == (False, "weak")
    # q above the level never passes.
    assert t.judge_q("necessity", _effect(0.5, 64, 0.051)) == (False, "weak")
    assert t.judge_q("necessity", _effect(0.5, 64, float("nan"))) == (False, "weak")
    # Negative sufficiency/necessity effects are not evidence for the claim.
    assert t.judge_q("sufficiency", _effect(-0.5, 64, 1e-6)) == (False, None)
    assert t.judge_q("necessity", _effect(-0.5, 64, 1e-6)) == (False, None)
    # Token-shift is a claim in either direction ("the token removes snow").
    assert t.judge_q("token-shift", _effect(-0.5, 64, 1e-6)) == (True, "strong")
    assert t.judge_q("token-shift", _effect(-0.08, 64, 0.5)) == (False, "weak")
    # Small effects: below the bar even with a tiny q.
    assert t.judge_q("sufficiency", _effect(0.1, 64, 1e-6)) == (False, "weak")
    assert t.judge_q("sufficiency", _effect(0.01, 64, 1e-6)) == (False, None)
    assert t.judge_q("sufficiency", Effect(float("nan"), 0, 0, 0)) == (False, None)
    # Off-object is judged like the cue kinds: an excess over the area, with its q, on min_pairs images.
    assert t.judge_q("off-object", _effect(0.3, 16, 1e-4)) == (True, "strong")
    assert t.judge_q("off-object", _effect(0.3, 16, 0.2)) == (False, "weak")
    assert t.judge_q("off-object", _effect(0.3, 6, 1e-4)) == (False, "weak")  # the 6 gallery images never decide
    # before: an interval of shares above one half passed with no q-value at all
    assert t.judge_q("off-object", Effect(0.7, 0.55, 0.8, 6)) == (False, "weak")


def test_judge_q_end_to_end_with_real_tests():
    rng = np.random.default_rng(8)
    strong = paired_effect(np.clip(rng.normal(0.5, 0.2, size=16), -1, 1))
    few = paired_effect(np.clip(rng.normal(0.5, 0.2, size=8), -1, 1))
    nulls = [paired_effect(np.clip(rng.normal(0, 0.3, size=16), -1, 1)) for _ in range(20)]
    judged = apply_fdr([strong, few, *nulls])
    t = Thresholds()
    assert t.judge_q("sufficiency", judged[0]) == (True, "strong")
    assert t.judge_q("sufficiency", judged[1])[0] is False  # 8 pairs: p >= 2/256 and below min_pairs


def test_thresholds_validate_and_round_trip_through_json():
    t = Thresholds(fdr_q=0.1, fdr_method="bh", min_pairs=24)
    back = Thresholds(**json.loads(json.dumps(asdict(t))))
    assert back == t and back.two_sided_kinds == ("token-shift",)
    assert Thresholds(**{k: v for k, v in asdict(Thresholds()).items() if k in ("min_effect", "min_images")}) == Thresholds()
    with pytest.raises(AnalysisError, match="fdr_method"):
        Thresholds(fdr_method="bonferroni")
    with pytest.raises(AnalysisError, match="--fdr-q"):
        Thresholds(fdr_q=0.0)
    with pytest.raises(AnalysisError, match="min_pairs"):
        Thresholds(min_pairs=0)
    with pytest.raises(AnalysisError, match="two_sided_kinds"):
        Thresholds(two_sided_kinds="token-shift")


def test_describe_rule_states_the_bars_and_what_the_test_is_of():
    s = describe_rule(Thresholds())
    for part in ("0.15", "0.05", "Benjamini–Yekutieli", "16 fresh image pairs", "token-shift", "confirmed tests",
                 "point estimate", "not of 'effect below 0.15'", "lean upward",
                 "a token shift also needs the cue's own fresh sufficiency pairs"):
        assert part in s, part
    assert "all tests of the audit" not in s  # the family is the confirmed tests (screening chose them)
    assert "Benjamini–Hochberg" in describe_rule(Thresholds(fdr_method="bh", min_pairs=32))
    assert "32 fresh image pairs" in describe_rule(Thresholds(min_pairs=32))


def test_verdict_is_the_status_the_audit_and_retest_share():
    t = Thresholds()
    strong = _effect(0.4, 16, 0.001)
    assert verdict(t, "sufficiency", strong, False) == ("passes", True, "strong")
    assert verdict(t, "sufficiency", strong, True) == ("inconclusive", False, "weak")  # failed checks sink any effect
    assert verdict(t, "necessity", _effect(0.5, 64, 0.2), False) == ("weak", False, "weak")
    assert verdict(t, "sufficiency", _effect(0.01, 64, 1e-6), False) == ("weak", False, None)  # below the weak bar


def test_the_excluded_limit_reads_the_generators_own_failure_rate():
    # the median over a class's screens: the few cues that break the image themselves do not move it
    assert failure_rate([0.0] * 25 + [1.0] * 5) == 0.0
    assert failure_rate([0.4, 0.5, 0.6, 1.0]) == pytest.approx(0.55)
    assert failure_rate([]) == 0.0 and failure_rate([1.0, 1.0]) == 0.8  # capped: some pairs must be kept
    # a faithful generator keeps today's limit; one that loses half the pairs anyway allows half of the rest
    assert excluded_limit(0.0) == EXCLUDED_LIMIT == 0.5
    assert excluded_limit(0.5) == pytest.approx(0.75) and excluded_limit(0.99) == pytest.approx(0.9)
    # the budget counts valid pairs: attempts grow with the failure rate, at most threefold
    assert attempt_budget(16) == 16 and attempt_budget(16, 0.5) == 32 and attempt_budget(16, 0.8) == 48
    assert attempt_budget(24, 0.3) == 35
