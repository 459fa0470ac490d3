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


def test_the_geometry_fit_recovers_a_rendered_scene_s_geometry():
    """fit_geometry, calibrated on renders whose geometry is known (30 of them correlated 0.94-0.96 per parameter,
    6 December 2026): here 6 scenes, size within 0.05 and centre within 0.06 of the truth."""
    import numpy as np

    import geometry_dependence as gd
    from probe.world.scenes import render

    rng = np.random.default_rng(3)
    for _ in range(6):
        scene = render("cross", str(rng.choice(["red", "blue", "purple"])), str(rng.choice(["water", "sand", "snow"])),
                       "none", seed=int(rng.integers(1 << 30)))
        fit = gd.fit_geometry(scene.image01(), "cross", scene.attributes["color"], scene.attributes["background"], "none")
        truth = scene.attributes
        assert abs(fit["size"] - truth["size"]) < 0.05, (fit, truth)
        assert abs(fit["x"] - truth["x"]) < 0.06 and abs(fit["y"] - truth["y"]) < 0.06, (fit, truth)


def test_a_run_s_token_images_are_fitted_and_rendered_again(readme_demo):
    """--run on the README demo: the star token's images, each rendered again at its fitted geometry and at the
    renderer's uniform geometry, P(star) reported per way of drawing and by whether the oracles read grass."""
    import geometry_dependence as gd
    from probe.classifiers import load_classifier
    from probe.world import bundled_classifier_path

    classifier = load_classifier(str(bundled_classifier_path("biased")), device="cpu")
    row = gd.generated_geometry(readme_demo / "runs" / "demo", classifier, "star", "grass", n=6)
    assert row["kept (the oracles read the class)"] >= 3
    p = row["P(class)"]
    assert set(p) == {"generated", "rendered, fitted geometry", "rendered, uniform geometry"}
    # rendered again at its fitted geometry a token image reads as the generated one does (0.71 and 0.76 here)
    assert abs(p["generated"] - p["rendered, fitted geometry"]) < 0.2, p
    if 0 < row["with the cue"] < row["kept (the oracles read the class)"]:  # both sides drawn: the planted grass shows
        for key in p:
            assert row["P(class) with the cue"][key] > row["P(class) without the cue"][key] + 0.15, row
    assert set(row["fitted geometry, mean (sd)"]) == {"size", "x", "y", "rotation"}
    with pytest.raises(SystemExit, match="no token"):
        gd.generated_geometry(readme_demo / "runs" / "demo", classifier, "hexagon", "grass", n=2)
