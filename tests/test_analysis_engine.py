"""analyze_run on a run directory written by probe.runs.audit with the tiny SD Generator and a
Classifier from load_classifier: the real seams, end to end (small settings)."""

from __future__ import annotations

import json

import pytest

from color_classifier import calibrated_redness_classifier
from probe.analysis import AnalysisConfig, Thresholds, analysis_config, analyze_run
from probe.classifiers import load_classifier
from probe.runs import AuditConfig, audit
from probe.tokens import TokenConfig

TOKEN = TokenConfig(lr=0.1, max_steps=1, patience=1, guidance_scale=3.0, eval_images=2, batch_size=2, steps=2)


@pytest.fixture()
def engine_run(tmp_path, tiny_sd_path, tiny_generator):
    module = calibrated_redness_classifier(tiny_generator, seeds=range(2), guidance_scale=3.0)
    clf = load_classifier(module, labels=["other", "star <b>"], input_size=32, mean=(0, 0, 0), std=(1, 1, 1), crop_pct=1.0)
    config = AuditConfig(model="tests:redness", out=str(tmp_path / "run"), generator=str(tiny_sd_path), token=TOKEN,
                         analyze=False, report=False, classes="1")
    result = audit(config, classifier=clf, generator=tiny_generator, progress=False)
    assert not result.failed
    return result.run_dir, clf, tiny_generator, config


def test_analysis_runs_on_a_real_run_directory(engine_run, tmp_path):
    run, clf, gen, _ = engine_run
    cues = tmp_path / "cues.txt"
    cues.write_text("{} on grass | {} on sand\n")
    cfg = AnalysisConfig(cues=str(cues), sufficiency_seeds=1, necessity_seeds=1, necessity_top_k=1, ig_steps=4, n_boot=200,
                         thresholds=Thresholds(weak_effect=0.0))
    findings = analyze_run(run, clf, gen, cfg)
    a = json.loads((run / "analysis.json").read_text())
    assert a["cues"]["count"] == 1 and a["generation"]["steps"] == 2
    # the redness classifier has no conv layer: Grad-CAM is skipped with a reason, the others ran
    assert "grad_cam" in a["attributions"]["skipped"]
    assert a["attributions"]["methods_run"] == ["integrated_gradients", "occlusion"]
    star = run / "classes" / "1-star-b"
    metrics = json.loads((star / "metrics.json").read_text())
    stems = {i["path"].split("/")[-1][:-4] for i in metrics["images"]}
    assert {p.stem for p in (star / "attributions" / "integrated_gradients").glob("*.png")} == stems
    # attention maps were captured while regenerating the token images, and saved in the run
    tok_stems = {i["path"].split("/")[-1][:-4] for i in metrics["images"] if i["kind"] == "token"}
    assert {p.stem for p in (star / "cross_attention").glob("*.npy")} == tok_stems
    info = a["classes"]["1"]
    assert info["nearest_words"] and 0.0 <= info["off_object"]["share_outside"] <= 1.0
    assert any("token-shift skipped" in n for n in a["notes"])  # no concept scorer outside the shapes world
    assert (run / "findings.json").is_file() and (run / "findings.parquet").is_file()
    for f in findings:
        assert all((run / p).is_file() for p in f.evidence)


def test_audit_config_maps_to_analysis_defaults(tmp_path):
    config = AuditConfig(model="m.pt", out=str(tmp_path / "run"))
    assert analysis_config(config) == AnalysisConfig()
    assert analysis_config({"cues": "world", "attribution_methods": ["occlusion"]}).methods == ("occlusion",)
    assert analysis_config({"analysis": {"cues": "x.txt", "classes": [1, 2]}}).classes == (1, 2)
    with_flags = AuditConfig(model="m.pt", out=str(tmp_path / "run"), analysis={"cues": "c.txt", "attribution_layer": "layer4"})
    assert analysis_config(with_flags).attribution_layer == "layer4" and analysis_config(with_flags).cues == "c.txt"
    from probe.analysis import AnalysisError

    with pytest.raises(AnalysisError, match="unknown"):
        analysis_config({"cuess": "typo.txt"})
