"""analyze_run end to end on a synthetic run directory (docs/run-format.md) in a
fake shapes world: the planted cue must be the top finding of its class with the
biased classifier, and nothing may pass with the clean one (issue 3, section 4,
fast version)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis_fakes import CLASSES, ColourClassifier, FakeGenerator, FakeOracles, fake_cues, write_run
from probe.analysis import AnalysisConfig, AnalysisError, Cue, analyze_run, read_findings

TOKENS = {0: "<probe-0>", 1: "<probe-1>", 2: "<probe-2>"}
KEYS = {"class_index", "class_name", "cue", "kind", "effect", "ci_low", "ci_high", "n_images", "evidence",
        "passes", "strength", "sentence"}
CONFIG = AnalysisConfig(n_boot=300, ig_steps=8, sufficiency_seeds=6)


def _audit(tmp: Path, bias: float, **kw):
    gen = FakeGenerator({"<probe-2>": "on grass"} if bias else {})
    clf = ColourClassifier(bias)
    run = write_run(tmp, gen, clf, tokens=TOKENS, n_seeds=4)
    cfg = kw.pop("config", CONFIG)
    return run, analyze_run(run, clf, gen, cfg, cues=kw.pop("cues", fake_cues()), scorer=FakeOracles(), **kw)


@pytest.fixture(scope="module")
def biased(tmp_path_factory):
    return _audit(tmp_path_factory.mktemp("biased") / "run", 40.0)


def test_planted_cue_is_the_top_finding_of_its_class(biased):
    _, findings = biased
    star = [f for f in findings if f.class_index == CLASSES.index("star")]
    assert star[0].cue == "grass" and star[0].passes and star[0].strength == "strong"
    kinds = {f.kind for f in star if f.cue == "grass" and f.passes}
    assert {"sufficiency", "token-shift", "necessity"} <= kinds
    suff = next(f for f in star if f.kind == "sufficiency" and f.cue == "grass")
    assert suff.ci_low > 0 and suff.effect > 0.15
    assert suff.sentence.startswith("'star' is predicted from grass backgrounds: +0.")
    # the other classes have no planted cue: nothing about them passes
    assert not [f for f in findings if f.passes and f.class_index != 2 and f.kind != "off-object"]
    off = next(f for f in star if f.kind == "off-object")
    assert off.passes and off.effect > 0.5
    assert findings.for_class(2) == star and all(f.passes for f in findings.passing)
    assert "passing" in repr(findings) and "<table>" in findings._repr_html_()


def test_clean_classifier_gives_no_passing_finding(tmp_path):
    said = []
    _, findings = _audit(tmp_path / "run", 0.0, progress=said.append)
    assert any("sufficiency" in m for m in said) and any("class 2" in m for m in said)
    assert not [f for f in findings if f.passes], [repr(f) for f in findings if f.passes]
    assert all(f.strength == "weak" for f in findings)


def test_files_written_match_the_contract(biased):
    run, findings = biased
    rows = json.loads((run / "findings.json").read_text())
    assert len(rows) == len(findings) and KEYS <= set(rows[0])
    assert rows[0]["kind"] in ("sufficiency", "necessity", "token-shift", "off-object")
    table = pd.read_parquet(run / "findings.parquet")
    assert len(table) == len(rows) and KEYS <= set(table.columns)
    assert list(table["cue"]) == [r["cue"] for r in rows]
    assert [f.sentence for f in read_findings(run)] == [f.sentence for f in findings]
    for r in rows:
        assert r["evidence"] or r["kind"] == "off-object", r
        for p in r["evidence"]:
            assert (run / p).is_file(), p
    analysis = json.loads((run / "analysis.json").read_text())
    assert analysis["attributions"]["methods_run"] == ["integrated_gradients", "grad_cam", "occlusion"]
    assert analysis["attributions"]["skipped"] == {}
    assert analysis["cues"]["count"] == len(fake_cues()) and analysis["timings_s"]["total"] > 0
    assert analysis["classes"]["2"]["nearest_words"]
    # one overlay per gallery image, method and class
    for ci in TOKENS:
        d = run / "classes" / f"{ci}-{CLASSES[ci]}"
        stems = {Path(r["path"]).stem for r in json.loads((d / "metrics.json").read_text())["images"]}
        for m in ("integrated_gradients", "grad_cam", "occlusion"):
            assert {p.stem for p in (d / "attributions" / m).glob("*.png")} == stems


def test_no_hooks_skips_grad_cam_and_says_so(tmp_path):
    class Scripted(ColourClassifier):
        pass

    gen, clf = FakeGenerator(), Scripted(40.0)
    clf.supports_hooks = False
    run = write_run(tmp_path / "run", gen, clf, tokens={2: "<probe-2>"}, n_seeds=2)
    cfg = AnalysisConfig(n_boot=200, ig_steps=4, sufficiency=False, necessity=False, token_shift=False)
    analyze_run(run, clf, gen, cfg, cues=fake_cues())
    a = json.loads((run / "analysis.json").read_text())
    assert "grad_cam" in a["attributions"]["skipped"] and "hooks" in a["attributions"]["skipped"]["grad_cam"]
    assert a["attributions"]["methods_run"] == ["integrated_gradients", "occlusion"]
    assert not (run / "classes" / "2-star" / "attributions" / "grad_cam").exists()
    assert any("token-shift" in n for n in a["notes"]) or a["concept_scorer"] is None


def test_untrusted_cue_names_stay_inside_the_run(tmp_path):
    evil = Cue(name="../../evil <script>", template="{} on grass", counters=("{} on sand",))
    cfg = AnalysisConfig(n_boot=200, attributions=False, off_object=False, sufficiency_seeds=2, necessity=False)
    run, findings = _audit(tmp_path / "run", 40.0, cues=[evil], config=cfg)
    paths = [p for f in findings for p in f.evidence]
    assert paths and all(".." not in p and "<" not in p for p in paths)
    assert all((run / p).resolve().is_relative_to(run.resolve()) for p in paths)


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(AnalysisError, match="does not exist"):
        analyze_run(tmp_path / "nope", ColourClassifier(), FakeGenerator())
    (tmp_path / "empty" / "classes").mkdir(parents=True)
    with pytest.raises(AnalysisError, match="no finished class"):
        analyze_run(tmp_path / "empty", ColourClassifier(), FakeGenerator())
    with pytest.raises(AnalysisError, match="sufficiency_seeds"):
        AnalysisConfig(sufficiency_seeds=0)
    with pytest.raises(AnalysisError, match="carrier_template"):
        AnalysisConfig(carrier_template="no slot")


def test_findings_display_escapes_untrusted_names():
    from probe.analysis import Finding, Findings

    f = Finding(0, "<script>alert(1)</script>", "grass", "sufficiency", 0.5, 0.4, 0.6, 10, ("a.png",), True, "strong",
                "'<script>' is predicted from grass", {})
    html = Findings([f])._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert Finding.from_dict(f.to_dict()) == f
