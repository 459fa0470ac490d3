"""Multiplicity that keeps power at many classes: Benjamini–Bogomolov over per-class families
(probe.analysis.stats.benjamini_bogomolov), AnalysisConfig.fdr, and the rule sentence that states its guarantee."""

from __future__ import annotations

import numpy as np
import pytest

from probe.analysis import AnalysisConfig, AnalysisError
from probe.analysis.policy import Thresholds, describe_rule
from probe.analysis.stats import Effect, benjamini_bogomolov, fdr, fdr_family_q, simes

# four classes' confirmed tests
P = [0.001, 0.02, 0.5, 0.03, 0.04, 0.2, 0.9, 0.6]
FAMILY = ["A", "A", "A", "B", "B", "C", "C", "D"]


def test_benjamini_bogomolov_matches_the_hand_computed_example():
    # Simes per class: A min(3*.001/1, 3*.02/2, .5) = .003; B min(2*.03, .04) = .04; C .4; D .6
    assert [simes(np.array(P)[[i for i, f in enumerate(FAMILY) if f == x]]) for x in "ABCD"] == \
        pytest.approx([0.003, 0.04, 0.4, 0.6])
    # BH over the 4 classes at .05: .003 <= .0125 selects A; .04 > .025: R = 1 of M = 4 (class q: .012 .08 .533 .6)
    # within A, BH at .05 * 1/4: q .003 .03 .5, times M/R = 4: .012 .12 1; within B: .04 .04 -> .16, under .08
    q, rejected = benjamini_bogomolov(P, FAMILY, q=0.05, method="bh")
    assert q == pytest.approx([0.012, 0.12, 1.0, 0.16, 0.16, 1.0, 1.0, 1.0])
    assert rejected.tolist() == [True, False, False, False, False, False, False, False]
    # with BY inside the classes, A's first test: .001 * 3 * (1 + 1/2 + 1/3) * 4 = .022
    q_by, _ = benjamini_bogomolov(P, FAMILY, q=0.05, method="by")
    assert q_by[0] == pytest.approx(0.022)


def test_per_class_families_keep_power_where_one_audit_family_loses_it():
    """1000 classes of 6 confirmed tests; 20 classes hold one real effect each (p = 5e-5). BY over the 6000 tests
    finds none (q = 5e-5 * 6000 / 20 * c(6000) = 0.14); per-class Benjamini-Bogomolov selects the 20 classes
    (Simes 3e-4 <= 20 * 0.05 / 1000) and BY within each at 0.05 * 20 / 1000 finds all 20 (6 * 2.45 * 5e-5 = 7.4e-4)."""
    p = np.tile([0.3, 0.5, 0.7, 0.8, 0.9, 0.95], 1000)
    real = np.arange(0, 6000, 300)  # 20 classes' first test
    p[real] = 5e-5
    fam = np.repeat(np.arange(1000), 6)
    assert fdr(p, q=0.05, method="by")[1].sum() == 0
    q, rejected = benjamini_bogomolov(p, fam, q=0.05, method="by")
    assert rejected.sum() == 20 and rejected[real].all()


def test_nan_p_values_are_left_out_and_no_selection_means_nothing_passes():
    q, rejected = benjamini_bogomolov([float("nan"), 0.9, 0.8], ["A", "A", "B"], q=0.05)
    assert np.isnan(q[0]) and not rejected.any() and (q[1:] == 1.0).all()
    with pytest.raises(AnalysisError, match="one family per test"):
        benjamini_bogomolov([0.1, 0.2], ["A"])


def test_fdr_family_q_dispatches_by_family_and_refuses_an_unknown_one():
    effects = [Effect(0.3, 0.1, 0.5, 16, p=x) for x in P]
    audit = fdr_family_q(effects, FAMILY, family="audit", q=0.05, method="bh")
    assert [e.q for e in audit] == pytest.approx(fdr(P, method="bh")[0].tolist())
    per = fdr_family_q(effects, FAMILY, family="per-class", q=0.05, method="bh")
    assert [e.q for e in per] == pytest.approx([0.012, 0.12, 1.0, 0.16, 0.16, 1.0, 1.0, 1.0])
    with pytest.raises(AnalysisError, match="not one of"):
        fdr_family_q(effects, FAMILY, family="hierarchical")


def test_the_family_is_a_setting_auto_switches_above_20_classes_and_the_rule_says_which_guarantee_holds():
    assert AnalysisConfig().fdr_family(6) == "audit" and AnalysisConfig().fdr_family(1000) == "per-class"
    assert AnalysisConfig(fdr="audit").fdr_family(1000) == "audit"
    with pytest.raises(AnalysisError, match="fdr="):
        AnalysisConfig(fdr="global")
    audit, per = describe_rule(Thresholds()), describe_rule(Thresholds(), family="per-class")
    assert describe_rule(Thresholds(), family="audit") == audit and "over the audit's confirmed tests" in audit
    assert "Benjamini–Bogomolov" in per and "Benjamini–Bogomolov" not in audit
    assert "not the share of false findings over the whole audit" in per
