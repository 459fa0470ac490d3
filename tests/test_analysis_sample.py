"""probe.analysis.sample: one test's paired observations, their effect, and pooling of confirmation rounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from probe.analysis import Sample


def test_difference_samples():
    s = Sample("sufficiency", 2, "grass", diffs=np.array([0.5, 0.25, 0.75, 0.5]), attempted=6, excluded=2,
               evidence=["a.png"], extra={"carriers": ["circle"]})
    assert s.n == 4 and s.mean == pytest.approx(0.5) and s.excluded_share == pytest.approx(1 / 3)
    e = s.effect()
    assert e.n == 4 and e.mean == pytest.approx(0.5) and e.method.startswith("sign-flip")
    empty = Sample("necessity", 2, "grass")
    assert empty.n == 0 and math.isnan(empty.mean) and empty.excluded_share == 0.0


def test_proportion_samples_use_paired_proportions():
    s = Sample("token-shift", 2, "grass", before=np.array([False, False, True, False]), after=np.array([True] * 4))
    assert s.n == 4 and s.mean == pytest.approx(0.75)
    e = s.effect()
    assert e.method == "newcombe-mcnemar" and e.mean == pytest.approx(0.75) and e.p == pytest.approx(0.25)


def test_pooling_rounds_adds_everything():
    a = Sample("sufficiency", 2, "grass", diffs=np.array([0.5, 0.5]), attempted=3, excluded=1, evidence=["a"],
               extra={"carriers": ["circle"]})
    b = Sample("sufficiency", 2, "grass", diffs=np.array([0.1]), attempted=2, excluded=1, evidence=["b"])
    both = a + b
    assert both.diffs.tolist() == [0.5, 0.5, 0.1] and both.n == 3
    assert both.attempted == 5 and both.excluded == 2 and both.evidence == ["a", "b"]
    assert both.extra == {"carriers": ["circle"]} and both.before is None
    t1 = Sample("token-shift", 2, "grass", before=np.array([False]), after=np.array([True]), attempted=1)
    t2 = Sample("token-shift", 2, "grass", before=np.array([True, False]), after=np.array([True, False]), attempted=3,
                excluded=1)
    pooled = t1 + t2
    assert pooled.before.tolist() == [False, True, False] and pooled.after.tolist() == [True, True, False]
    assert pooled.n == 3 and pooled.attempted == 4 and pooled.excluded == 1
    # a count in extra adds up too (images_failed_check kept only the last round's, while attempted was summed)
    n1 = Sample("necessity", 2, "grass", diffs=np.array([0.2]), attempted=4, excluded=1, extra={"images_failed_check": 1})
    n2 = Sample("necessity", 2, "grass", diffs=np.array([0.3]), attempted=4, excluded=2, extra={"images_failed_check": 5})
    assert (n1 + n2).extra["images_failed_check"] == 6 and (n1 + n2).excluded == 3
