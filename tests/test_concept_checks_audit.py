"""Outside the shapes world: `probe audit --concepts` checks every generated test image with a CLIP/SigLIP model
and every finding says who checked it; without one (`--concepts none`, or a default that cannot be loaded
offline) the run goes on, its cue findings are unverified, none passes, and the gate does not count them.

The audits run the shapes world's biased classifier (star: planted grass) with the world generator, the concept
model a tiny random CLIP saved as a user's folder (its verdicts are recorded, not obeyed: a random CLIP rejects
most images); the default concept model's offline failure is checked on the tiny SD pipeline."""

from __future__ import annotations

import json
import os

from dataclasses import replace

from conftest import run_main
from probe import open_run
from probe.run import RunDir

CUES = "{} on grass | {} on sand; {} in the snow\n{} in the water | {} on sand; {} on grass\n"


def _audit(monkeypatch, capsys, tmp_path, out: str, *extra: str, steps: int = 5) -> RunDir:
    """The biased world classifier's star (planted: grass) with a two-cue file, a short token and one confirmation
    (no attribution maps: the checks are what these tests are about); ``steps``: sampling steps (fewer where no
    finding's strength is asserted)."""
    from probe.world import bundled_classifier_path

    cues = tmp_path / "cues.txt"
    cues.write_text(CUES)
    args = ["audit", "--model", str(bundled_classifier_path("biased")), "--generator", "world", "--classes", "star",
            "--max-steps", "2", "--eval-images", "2", "--steps", str(steps), "--out", str(tmp_path / out), "--cues", str(cues),
            "--max-pairs", "16", "--no-report", "--quiet", "--device", "cpu", "--attributions", "none", *extra]
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 0, err
    return RunDir(tmp_path / out)


def test_a_concept_model_checks_the_interventions_and_every_finding_says_so(tmp_path, monkeypatch, capsys):
    """--concepts replaces the world's oracles with a CLIP folder (the code path of a user's real generator)."""
    from tiny_concepts import save_tiny_clip

    from probe.analysis.checks import ConceptModelCheck

    clip = save_tiny_clip(tmp_path / "my-clip")
    judged = []
    judge = ConceptModelCheck.valid

    def valid(self, arm, reading):  # a random CLIP rejects nearly every image: record its verdicts, accept the images
        judged.append(judge(self, arm, reading))
        return True

    monkeypatch.setattr(ConceptModelCheck, "valid", valid)
    run = _audit(monkeypatch, capsys, tmp_path, "checked", "--concepts", str(clip), "--discover", "1", steps=3)
    analysis = run.read_analysis_summary()
    assert analysis.checked_by == "concepts: my-clip"
    assert not any("unchecked" in n for n in analysis.notes)
    assert all(c.get("attribute") for c in analysis.cues["list"])  # the file's cues became checkable
    # ... but a file's categories do not exclude one another as a domain's attributes do: nothing is stated
    assert analysis.stated_contexts is None
    findings = run.read_finding_records()
    assert findings and {f.checked_by for f in findings} == {"concepts: my-clip"}
    assert all(f.status != "unverified" for f in findings)
    # the generator-bias control: how many of the class's plain-prompt (baseline) images show each cue
    baseline = [r for r in run.read_class(run.class_dir(3, "star")).images if r.get("kind") == "baseline"]
    rates = analysis.classes["3"]["base_rates"]
    # every listed cue's, and every cue discovery proposed for the class (a concept model reads any phrase)
    proposed = {p["cue"] for p in analysis.cues.get("discovered", {}).get("3", [])}
    assert set(rates) == {c["name"] for c in analysis.cues["list"]} | proposed
    assert all(r["of"] == len(baseline) and 0 <= r["shown"] <= r["of"] for r in rates.values())
    assert all(f.details["base_rate"] == rates[f.cue] for f in findings if f.kind != "off-object")
    # every generated test image was read and judged by the concept model (the random one rejects some)
    assert len(judged) >= 16 and any(v is False for v in judged)
    # the run panel's times account for the analysis: discovery and its cues' tests are timed, and added to (not
    # written over) the listed cues' screening and confirmation times
    timings = json.loads((run.root / "analysis.json").read_text())["timings_s"]
    parts = sum(v for k, v in timings.items() if k not in ("total", "decide", "off_object_confirm"))
    assert "discovery" in timings and 0.9 * timings["total"] <= parts <= timings["total"] + 0.01, timings


def test_without_a_check_the_planted_cue_is_unverified_never_passing_and_the_gate_does_not_count_it(tmp_path,
                                                                                                  monkeypatch, capsys):
    """The same audit with --concepts none: the planted star/grass dependence meets the bars, but nothing checked
    its images, so it is unverified; the gate is undecided (exit 4) unless told to count unverified findings."""
    run = _audit(monkeypatch, capsys, tmp_path, "none", "--concepts", "none")
    analysis = run.read_analysis_summary()
    assert analysis.checked_by == "unchecked"
    assert any(n.startswith("interventions unchecked (--concepts none)") for n in analysis.notes)
    findings = run.read_finding_records()
    assert {f.checked_by for f in findings} == {"unchecked"}
    assert not any(f.passes for f in findings if f.kind != "off-object")
    grass = [f for f in findings if f.cue == "on grass" and f.kind == "necessity"]
    assert grass and grass[0].status == "unverified" and grass[0].sentence.startswith("Unverified"), grass
    code, out, err = run_main(monkeypatch, capsys, "check", str(run.root), "--max-effect", "0.05")
    assert code == 4 and "unverified" in err, (out, err)
    code, out, err = run_main(monkeypatch, capsys, "check", str(run.root), "--max-effect", "0.05", "--include-unverified")
    assert code == 3, (out, err)


def test_a_default_concept_model_that_cannot_load_is_one_line_and_leaves_the_run_unchecked(tiny_generator, monkeypatch):
    from probe.analysis.plan import _concept_model, generator_family

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert generator_family(tiny_generator) == "sd1"
    model, why = _concept_model("auto", tiny_generator)
    assert model is None and why.startswith("interventions unchecked, the cue findings are unverified")
    assert "openai/clip-vit-large-patch14" in why and "--concepts DIR" in why and "\n" not in why


def test_a_concept_model_is_loaded_once_per_process_and_again_when_its_folder_changes(tiny_generator, tmp_path,
                                                                                      monkeypatch):
    # a Ray worker or a shard analyses class after class: the concept model is loaded once, like its classifier
    import probe.concepts
    from probe.analysis import plan
    from tiny_concepts import save_tiny_clip

    monkeypatch.setattr(plan, "_CONCEPT_MODELS", {})
    loads = []
    real = probe.concepts.load_concepts
    monkeypatch.setattr(probe.concepts, "load_concepts", lambda *a, **k: loads.append(a) or real(*a, **k))
    folder = save_tiny_clip(tmp_path / "clip")
    first, why = plan._concept_model(str(folder), tiny_generator)
    again, _ = plan._concept_model(str(folder), tiny_generator)
    assert first is not None and why == "" and again is first and len(loads) == 1
    save_tiny_clip(folder, seed=1)  # rewritten in place: read again
    config = folder / "config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    assert plan._concept_model(str(folder), tiny_generator)[0] is not first and len(loads) == 2
    missing, why = plan._concept_model(str(tmp_path / "nowhere"), tiny_generator)  # a failure is not kept
    assert missing is None and why and len(plan._CONCEPT_MODELS) == 2  # the two loaded ones, no failure
    assert not any("nowhere" in key[0] for key in plan._CONCEPT_MODELS)


def test_an_unchecked_passing_cue_finding_is_unverified_and_counted_by_the_gate_only_when_asked(tmp_path, monkeypatch,
                                                                                                capsys):
    from probe.analysis.policy import checked
    from probe.gate import check_run
    from probe.report.synthetic import make_synthetic_run
    from probe.run.types import Finding

    passing = Finding(class_index=0, class_name="star", cue="grass", kind="necessity", effect=0.4, ci_low=0.2,
                      ci_high=0.6, n_images=16, evidence=(), passes=True, strength="strong", sentence="s",
                      status="passes", p=0.001, q=0.01)
    assert checked(passing, "world oracles") == replace(passing, checked_by="world oracles")
    unverified = checked(passing, "unchecked")
    assert (unverified.status, unverified.passes, unverified.checked_by) == ("unverified", False, "unchecked")
    assert unverified.sentence.startswith("Unverified")
    off = replace(passing, kind="off-object", cue="off-object", unit="images")
    assert checked(off, "unchecked").passes  # the token's own images: no intervention to check

    run = make_synthetic_run(tmp_path / "run", 6, images_per_kind=1, attributions=False, checked_by=None)
    records = RunDir(run).read_finding_records()
    flagged = [f for f in records if f.status == "unverified"]
    assert flagged and all(not f.passes for f in flagged)
    limit = min(abs(f.effect) for f in flagged) - 0.01
    left_out = check_run(run, max_effect=limit)
    assert not any(f.status == "unverified" for f in left_out.offenders)
    assert left_out.passed and left_out.unverified == len(flagged)
    assert f"{len(flagged)} unverified finding(s) left out (--include-unverified counts them)" in left_out.verdict()
    counted = check_run(run, max_effect=limit, include_unverified=True)
    assert {(f.class_index, f.cue, f.kind) for f in flagged} <= {(f.class_index, f.cue, f.kind) for f in counted.offenders}
    code, out, err = run_main(monkeypatch, capsys, "check", str(run), "--max-effect", str(limit), "--include-unverified")
    assert code == 3


def test_a_real_format_generator_with_the_curated_object_cues_runs_to_the_end(tmp_path, tiny_sd_path, tiny_generator):
    """A user's path outside the world: a diffusers folder (the tiny random SD pipeline), a classifier, a concept
    model folder and cues without attributes in the curated list's "object" category (things beside the subject:
    "on a plate"). The concept model reads the class's object under "object" too; the two must stay apart. Before,
    every necessity arm of such a cue got the keyword twice, the analysis stopped with a TypeError after the tokens
    (found by auditing a timm resnet18 on the tiny SD with the default cue list), and the check counted "plate"
    among the class names."""
    import json

    from color_classifier import calibrated_redness_classifier
    from tiny_concepts import save_tiny_clip

    from probe.analysis import AnalysisConfig
    from probe.analysis.checks import ConceptModelCheck
    from probe.analysis.policy import Thresholds
    from probe.auditing.loop import AuditConfig, audit
    from probe.classifiers import load_classifier
    from probe.tokens import TokenConfig

    clip = save_tiny_clip(tmp_path / "my-clip")
    cues = tmp_path / "cues.json"
    cues.write_text(json.dumps([
        {"name": "plate", "category": "object", "template": "{} on a plate", "counters": ["{} on a rock"]},
        {"name": "grass", "category": "background", "template": "{} on grass", "counters": ["{} on sand"]}]))
    module = calibrated_redness_classifier(tiny_generator, seeds=range(2))
    clf = load_classifier(module, labels=["other", "star"], input_size=32, mean=(0, 0, 0), std=(1, 1, 1), crop_pct=1.0)
    analysis = AnalysisConfig(cues=str(cues), concepts=str(clip), attributions=False, off_object=False, iou_images=0,
                              discover=0, screen_extend=(), max_pairs=8, thresholds=Thresholds(min_pairs=8))
    vocab = []
    real = ConceptModelCheck.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        vocab.append(dict(self.vocab))

    config = AuditConfig(model="tests:redness", out=str(tmp_path / "run"), generator=str(tiny_sd_path), classes="1",
                         token=TokenConfig(lr=0.1, max_steps=1, patience=1, eval_images=1, batch_size=2),
                         analysis=analysis, report=False)
    ConceptModelCheck.__init__ = spy
    try:
        result = audit(config, classifier=clf, generator=tiny_generator, progress=False)
    finally:
        ConceptModelCheck.__init__ = real
    assert not result.failed and not result.problems, result.problems
    run = RunDir(result.run_dir)
    summary = run.read_analysis_summary()
    assert summary.checked_by == "concepts: my-clip"
    assert summary.concept_scorer == "concepts: my-clip"  # the run panel names the model (it said "ConceptModelCheck")
    # the random CLIP rejects most pairs: the class records it, and its summary says what would decide its tests
    assert summary.classes["1"]["generator_failure"] >= 0.5, summary.classes["1"]
    assert "rejected" in open_run(run.root).classes["star"].summary
    attributes = {c["name"]: c["attribute"] for c in summary.cues["list"]}
    assert attributes == {"plate": "objects", "grass": "background"}
    assert vocab and vocab[0]["object"] == ["other", "star"] and vocab[0]["objects"] == ["plate", "on a rock"]
    tested = {(t["kind"], t["cue"]["name"]) for t in run.read_class_analysis(run.class_dir(1, "star"), strict=True).tests}
    assert ("necessity", "plate") in tested


def test_a_cue_file_cannot_name_the_attribute_the_class_object_is_read_under(tmp_path):
    """A user's cue with attribute "object" would be read as the class's own object: one line naming the fix."""
    import json

    import pytest

    from probe.analysis.cues import load_cues
    from probe.errors import AnalysisError

    path = tmp_path / "cues.json"
    path.write_text(json.dumps([{"name": "plate", "template": "{} on a plate", "attribute": "object", "value": "plate"}]))
    with pytest.raises(AnalysisError, match="reserved for the class's own object.*'objects'"):
        load_cues(path)
