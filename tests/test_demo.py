"""probe demo end to end at reduced size: the bundled world, the real CLI path, and the planted cue found."""

from __future__ import annotations

import json
import sys

from probe.world import bundled_bias


def test_demo_finds_the_planted_grass_cue_of_star(tmp_path, monkeypatch, capsys):
    from probe.cli import main

    out = tmp_path / "demo"
    monkeypatch.setattr(sys, "argv", ["probe", "demo", "--out", str(out), "--classes", "star", "--quiet"])
    try:
        main()
    except SystemExit as e:
        assert not e.code, capsys.readouterr().err
    stdout, stderr = capsys.readouterr()
    assert "planted star: background=grass" in stderr
    metrics = json.loads((out / "classes" / "3-star" / "metrics.json").read_text())
    assert metrics["status"] == "done"
    assert metrics["token"]["mean_target_prob"] > metrics["baseline"]["mean_target_prob"]
    findings = [f for f in json.loads((out / "findings.json").read_text()) if f["class_name"] == "star"]
    top = [f for f in findings if f["passes"]][0]
    assert "grass" in top["cue"].lower(), top
    assert bundled_bias("biased")["star"] == {"background": "grass"}
    assert (out / "report" / "index.html").is_file()


def test_planted_cue_recovery_needs_a_passing_top_finding_with_the_planted_value():
    from probe.analysis import Finding
    from probe.world.demo import planted_cue_recovery

    def finding(index, value, passes, kind="necessity"):
        return Finding(class_index=index, class_name=["circle", "star"][index], cue=value, kind=kind, effect=0.5,
                       ci_low=0.2, ci_high=0.8, n_images=8, evidence=(), passes=passes, strength="strong",
                       sentence=value, details={"value": value})

    labels = ["circle", "star"]
    planted = {"star": {"background": "grass"}}
    off_object_first = [finding(1, "off-object", True, kind="off-object"), finding(1, "grass", True)]
    assert planted_cue_recovery(off_object_first, labels, planted)[0].recovered
    assert not planted_cue_recovery([finding(1, "snow", True), finding(1, "grass", True)], labels, planted)[0].recovered
    assert not planted_cue_recovery([finding(1, "grass", False)], labels, planted)[0].recovered
    assert not planted_cue_recovery([finding(0, "grass", True)], labels, planted)[0].recovered
