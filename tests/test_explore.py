"""The notebook API: a run as an object (no models), and a user's hypothesis tested with the audit's procedure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import probe
from probe.run import format as fmt
from probe.analysis.cues import Cue
from probe.analysis.retest import resolve_cue
from probe.errors import RunError

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def demo_run(readme_demo, tmp_path_factory) -> Path:
    """A private copy of the README demo's run, so tests may add files to it."""
    copy = tmp_path_factory.mktemp("explore") / "demo"
    shutil.copytree(readme_demo / "runs" / "demo", copy)
    return copy


def test_open_run_gives_dataframes_and_classes(demo_run):
    run = probe.open_run(demo_run)
    assert list(run.summary["class_name"]) == ["circle", "square", "triangle", "star", "cross", "heart"]
    assert (run.summary["status"] == "done").all()
    index = run.summary["class_index"].iloc[3]  # numpy's int64, as the DataFrames give it: a KeyError before
    assert type(index).__module__ == "numpy" and run.classes[index].name == "star" and index in run.classes
    findings = run.findings
    assert {"class_name", "cue", "kind", "effect", "ci_low", "ci_high", "n_images", "p", "q", "passes",
            "evidence"} <= set(findings.columns)
    stored = json.loads((demo_run / "findings.json").read_text())
    assert len(findings) == len(stored) and int(findings["passes"].sum()) == sum(f["passes"] for f in stored)
    assert set(findings["checked_by"]) == {"world oracles"}  # who checked every finding's images
    # clears_bar: the whole interval beyond the analysis' bar in the claimed direction (the summary's "strong")
    bar = json.loads((demo_run / "analysis.json").read_text())["config"]["thresholds"]["min_effect"]
    for _, f in findings[findings["kind"] != "off-object"].iterrows():
        assert f["clears_bar"] == (f["ci_low"] >= bar if f["effect"] >= 0 else -f["ci_high"] >= bar), f["sentence"]
    for _, f in run.passing.iterrows():  # the summary's word for this very finding
        text = str(run.classes[f["class_name"]].summary)
        marker = f"({f['kind']}, effect {fmt.effect(f['effect'])}, 95% CI"
        assert marker in text, (marker, text)
        assert text[text.index(marker):].split("), ", 1)[1].startswith("strong" if f["clears_bar"] else "moderate")
    assert (run.passing["passes"]).all() and len(run.passing) == int(findings["passes"].sum())
    strong = int(run.passing["clears_bar"].sum())  # the run's display counts claims and leads apart, as the report
    apart = f"{strong} strong, {len(run.passing) - strong} moderate"
    assert f"passing findings: {len(run.passing)} ({apart}))" in repr(run)
    assert f"of {len(run.passing)} passing: {apart})" in run._repr_html_()
    star = run.classes["star"]
    assert star is not None and run.classes[3].name == "star"
    accuracy = float(star.row()["token_accuracy"])  # rounded as the report rounds it, not 0.6666666865348816
    assert f"token accuracy {accuracy:.2f}, " in repr(star)
    n = int(star.row()["passing_findings"])  # the demo's star has one: "1 passing finding", not "1 passing findings"
    assert repr(star).endswith(f"{n} passing finding{'' if n == 1 else 's'})"), repr(star)
    assert len(star.images("baseline")) == len(star.images("token")) > 0
    assert set(star.history.columns) >= {"step", "loss"}
    assert not star.topk.empty and set(star.topk["kind"]) == {"baseline", "token"}
    with pytest.raises(KeyError, match="it has: 0 'circle', 1 'square', 2 'triangle', 3 'star', 4 'cross', 5 'heart'"):
        run.classes["unicorn"]


def test_gallery_shows_saved_overlays_or_says_which_exist(demo_run):
    star = probe.open_run(demo_run).classes["star"]
    methods = star.overlays()
    assert methods, "the demo's analysis saves attribution overlays"
    gallery = star.gallery(overlay=methods[0])
    assert gallery.paths and all(f"attributions/{methods[0]}/" in p.as_posix() for p in gallery.paths)
    assert "data:image/png;base64," in gallery._repr_html_()
    with pytest.raises(RunError, match="no 'saliency_of_dreams' overlays"):
        star.gallery(overlay="saliency_of_dreams")
    figure = gallery.figure()
    assert len(figure.axes) >= 2


def test_displays_escape_hostile_labels(demo_run, tmp_path):
    hostile = tmp_path / "hostile"
    shutil.copytree(demo_run, hostile)
    labels = json.loads((hostile / "labels.json").read_text())
    labels[3] = HOSTILE
    (hostile / "labels.json").write_text(json.dumps(labels))
    metrics_file = next((hostile / "classes").glob("3-*/metrics.json"))
    metrics = json.loads(metrics_file.read_text())
    metrics["class_name"] = HOSTILE
    metrics_file.write_text(json.dumps(metrics))
    findings = json.loads((hostile / "findings.json").read_text())
    for f in findings:
        f["class_name"], f["sentence"] = HOSTILE, HOSTILE + f["sentence"]
    (hostile / "findings.json").write_text(json.dumps(findings))
    (hostile / "findings.parquet").unlink(missing_ok=True)
    run = probe.open_run(hostile)
    pages = [run._repr_html_(), run.classes[HOSTILE]._repr_html_(), run.classes[3].gallery()._repr_html_()]
    for page in pages:
        assert "<script>" not in page and "&lt;script&gt;" in page


def test_open_run_refuses_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(RunError, match="pass the folder `probe audit` wrote"):
        probe.open_run(tmp_path)


def test_resolve_cue_finds_run_cues_by_name_or_phrase_and_builds_free_ones():
    grass = Cue("grass", "{} on grass", counters=("{} on sand", "{} on snow"), attribute="background", value="grass",
                counter_values=("sand", "snow"))
    sand = Cue("sand", "{} on sand", attribute="background", value="sand")
    cues = {"grass": grass, "sand": sand}
    assert resolve_cue(cues, "grass") is grass and resolve_cue(cues, "on  grass") is grass
    swapped = resolve_cue(cues, "on grass", counters=["on sand"])
    assert swapped.counters == ("{} on sand",) and swapped.counter_values == ("sand",)  # checked like the audit's
    free = resolve_cue(cues, "at night")
    assert free.template == "{} at night" and free.counters == ("{}",) and free.attribute is None


def test_a_retest_is_inconclusive_by_the_audits_rule_at_the_class_failure_rate(tmp_path):
    """`test_cue` decides as the audit does (probe.analysis.plan.Test.inconclusive): the excluded share is held to
    policy.excluded_limit of the generator's own failure rate on the class, and a test that lost every pair is
    inconclusive. It used the flat limit of 0.5, and called a test with no valid pair "weak"."""
    import numpy as np

    from probe.analysis import AnalysisConfig
    from probe.analysis.class_evidence import ClassRun
    from probe.analysis.retest import _decide
    from probe.analysis.sample import Sample

    cue = Cue("grass", "{} on grass", counters=("{} on sand",), attribute="background", value="grass")
    star = ClassRun(3, "star", tmp_path, {})
    lost_most = Sample("necessity", 3, "grass", diffs=np.full(16, 0.4), attempted=40, excluded=24)  # 60% excluded
    assert _decide(AnalysisConfig(), "necessity", star, cue, lost_most, "world oracles").status == "inconclusive"
    # where the generator loses 40% of this class's pairs whatever the cue, 60% is what the audit tolerates
    kept = _decide(AnalysisConfig(), "necessity", star, cue, lost_most, "world oracles", failure=0.4)
    assert kept.status != "inconclusive" and kept.effect == pytest.approx(0.4)
    lost_all = Sample("necessity", 3, "grass", attempted=16, excluded=16)
    assert _decide(AnalysisConfig(), "necessity", star, cue, lost_all, "world oracles").status == "inconclusive"


@pytest.fixture(scope="module")
def attached(demo_run):
    from probe.explore import AuditedRun
    from probe.world import bundled_classifier_path, bundled_generator_path

    classifier = probe.load_classifier(bundled_classifier_path("biased"))
    generator = probe.load_generator(bundled_generator_path(), device="cpu")
    return AuditedRun.attach(demo_run, classifier, generator)


def test_test_cue_supports_the_planted_cue_and_not_a_phrase_the_classifier_ignores(attached, demo_run):
    # the bundled classifier's planted star cue, against one counter the user names (the default counters, the cue
    # list's, are the quickstart notebook's test: tests/test_notebook.py); 2 images per pair instead of 4
    planted = attached.test_cue("star", "on grass", counters=["on sand"], n_pairs=16)
    assert planted.counters == ("{} on sand",)  # the user's counter, and only it
    assert planted.passes and planted.verdict == "supported" and "checked by world oracles" in repr(planted), planted
    assert planted.finding.n_images >= 16 and planted.effect >= 0.15 and planted.p <= 0.05
    assert planted.finding.ci_low <= planted.effect <= planted.finding.ci_high
    assert planted.finding.evidence and all((demo_run / e).is_file() and "analysis/hypotheses/" in e
                                            for e in planted.finding.evidence)
    # a tag cue planted for heart, not star
    null = attached.test_cue("star", "with a dot in the corner", counters=["with no tag"], n_pairs=16)
    assert not null.passes and null.verdict == "not supported", null
    table = attached.hypotheses
    assert list(table["hypothesis"]) == ["on grass", "with a dot in the corner"]
    # adjusted over the session's family: the two p-values through the audit's FDR method, as one family
    from probe.analysis.stats import fdr

    method = attached._context.cfg.thresholds.fdr_method
    assert list(table["q"]) == pytest.approx(list(fdr(list(table["p"]), method=method)[0]), rel=1e-3)  # q kept to 4 digits
    html = planted._repr_html_()
    assert "<td>supported</td>" in html and "data:image/png;base64," in html
    assert "<td>not supported</td>" in null._repr_html_()


def test_test_cue_without_a_check_is_unverified_not_supported(demo_run):
    """A notebook user whose images nothing checks (a generator outside any domain, no concept model reachable, or
    concepts="none") gets the planted cue as *unverified*, never "supported", and every result says who checked it
    (a walk on a tiny SD pipeline got "not supported ... n=32 pairs" with no word that nothing was checked).
    The models are given as paths here, as `probe report --model M --generator G` takes them (attach failed on
    paths with "the generator failed ... 'str' object has no attribute 'generate'")."""
    from probe.explore import AuditedRun
    from probe.world import bundled_classifier_path

    unchecked = AuditedRun.attach(demo_run, str(bundled_classifier_path("biased")), "world", concepts="none",
                                  device="cpu")
    assert isinstance(unchecked.classifier, probe.Classifier) and isinstance(unchecked.generator, probe.Generator)
    assert unchecked.classifier.labels == probe.open_run(demo_run).labels
    planted = unchecked.test_cue("star", "on grass", counters=["on sand"], n_pairs=16)
    assert planted.effect >= 0.15 and not planted.passes, planted
    assert planted.verdict.startswith("unverified: nothing checked the images"), planted
    assert "checked by unchecked" in repr(planted) and "unchecked" in planted._repr_html_()


def test_test_cue_errors_name_the_fix(attached):
    with pytest.raises(probe.ProbeError, match="not a finished class of this run; use one of: 0 circle, 1 square, 2 triangle, 3 star, 4 cross, 5 heart"):
        attached.test_cue("unicorn", "on grass")
    with pytest.raises(probe.ProbeError, match="use one of \\['necessity', 'sufficiency'\\]"):
        attached.test_cue("star", "on grass", kind="vibes")
    with pytest.raises(probe.ProbeError, match="n_pairs=1 must be an integer >= 2"):
        attached.test_cue("star", "on grass", n_pairs=1)


def test_a_class_name_two_classes_share_is_never_guessed(tmp_path):
    """ImageNet-1k names two classes 'crane' (134 the bird, 517 the machine) and two 'maillot': run.classes['crane']
    must not silently return one of them; at 1000 classes an unknown name suggests close names instead of listing all."""
    from probe.report.synthetic import make_synthetic_run

    labels = ["crane", "tabby", "crane"] + [f"breed {i}" for i in range(22)]
    run = probe.open_run(make_synthetic_run(tmp_path / "run", len(labels), labels=labels, images_per_kind=1,
                                            attributions=False))
    assert run.classes[2].name == "crane" and run.classes["tabby"].index == 1
    with pytest.raises(KeyError, match=r"'crane' names 2 classes of this run \(0, 2\); pick one by its index"):
        run.classes["crane"]
    with pytest.raises(KeyError, match="it has 25 classes; run.summary lists them\\); close names: 'tabby'") as raised:
        run.classes["tabbby"]
    assert "breed 7" not in str(raised.value)


def test_test_cue_on_a_run_opened_without_models_says_how_to_attach_them(tmp_path):
    """A notebook user's first try, ``probe.open_run(d).test_cue(...)``, got a bare AttributeError; it names
    AuditedRun.attach and the models the audit used, and loads nothing the run names."""
    from probe.report.synthetic import make_synthetic_run

    run = probe.open_run(make_synthetic_run(tmp_path / "run", 3, images_per_kind=1, attributions=False))
    with pytest.raises(probe.ProbeError, match=r"open_run loads no models: run = probe\.AuditedRun\.attach\('.*run', "
                                              r"classifier, generator\) .*the audit used model 'synthetic://biased', "
                                              r"generator 'tiny-sd'\)") as raised:
        run.test_cue("class 0", "on grass")
    assert "\n" not in str(raised.value)


def test_audit_loads_the_classifier_on_the_generators_device(monkeypatch):
    """probe.Audit(model, generator, device=...) loaded the generator there and the classifier on the CPU (found by
    review, 7 December 2026): both now go to the one resolved device, the config's when a config is given."""
    import probe.classifiers as classifiers
    import probe.generators as generators
    from probe.auditing.config import AuditConfig
    from probe.world import bundled_classifier_path

    seen = {}
    real_classifier, real_generator = classifiers.load_classifier, generators.load_generator
    monkeypatch.setattr(classifiers, "load_classifier",
                        lambda *a, **k: seen.setdefault("classifier", k.get("device")) and real_classifier(*a, **k))
    monkeypatch.setattr(generators, "load_generator",
                        lambda *a, **k: seen.setdefault("generator", k.get("device")) and real_generator(*a, **k))
    audit = probe.Audit(str(bundled_classifier_path("biased")), "world", device="cpu")
    assert seen == {"classifier": "cpu", "generator": "cpu"} and audit.config.device == "cpu"
    seen.clear()
    probe.Audit(str(bundled_classifier_path("biased")), "world", device="cuda:7",
                config=AuditConfig(model="m", out="o", device="cpu"))
    assert seen == {"classifier": "cpu", "generator": "cpu"}  # the config's device wins, for both models
    with pytest.raises(RunError, match="config must be a probe.AuditConfig"):
        probe.Audit(str(bundled_classifier_path("biased")), "world", config={"device": "cpu"})
    # a generator given loaded decides the classifier's device (review, 8 December 2026: one on cuda:1 left a
    # classifier loaded from a path on the device argument's default), and a config's dtype is the generator's
    loaded = real_generator("world", device="cpu")
    loaded.device = torch.device("cuda", 1)  # where it would live on a GPU machine; only read here
    monkeypatch.setattr(classifiers, "load_classifier",
                        lambda *a, **k: seen.setdefault("classifier", k.get("device")) and real_classifier(
                            *a, **{**k, "device": "cpu"}))
    seen.clear()
    probe.Audit(str(bundled_classifier_path("biased")), loaded)
    assert seen == {"classifier": "cuda:1"}
    monkeypatch.setattr(generators, "load_generator",
                        lambda *a, **k: seen.setdefault("dtype", k.get("dtype")) and real_generator(*a, **k))
    seen.clear()
    probe.Audit(str(bundled_classifier_path("biased")), "world", config=AuditConfig(model="m", out="o", device="cpu",
                                                                                     dtype="float32"))
    assert seen["dtype"] == "float32"
