"""benchmarks/geometry_dependence.py: one (class, cue) rendered under each geometry condition, the same scenes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_each_geometry_condition_renders_the_same_scenes_and_the_planted_cue_shows_in_each():
    import geometry_dependence as gd
    from probe.classifiers import load_classifier
    from probe.world import bundled_classifier_path
    from probe.world.scenes import SIZE_RANGE

    classifier = load_classifier(str(bundled_classifier_path("biased")), device="cpu")
    rows = gd.measure(classifier, "star", "grass", n=24)
    assert [r["geometry"] for r in rows] == list(gd.CONDITIONS)
    fixed = {r["geometry"]: r["fixed"] for r in rows}
    assert fixed["uniform"] == {} and fixed["smallest"] == {"size": SIZE_RANGE[0]}
    assert fixed["largest"] == {"size": SIZE_RANGE[1]} and fixed["centred, upright"] == {"x": 0.0, "y": 0.0, "rotation": 0.0}
    assert all(r["counters"] == ["water", "sand", "snow", "wood"] for r in rows)
    # the planted grass moves P(star) under every geometry (README: +0.38 centred to +0.70 largest on 120 scenes)
    assert all(r["necessity effect"] >= 0.15 for r in rows), rows
    # seeded: the same rows again
    assert gd.measure(classifier, "star", "grass", n=24) == rows
    with pytest.raises(SystemExit, match="not a colour, background or tag"):
        gd.measure(classifier, "star", "round")
