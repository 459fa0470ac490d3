"""probe.analysis.engine: analyze_run from a run directory to ranked findings.

Fast tests run a fake world end to end (analysis_fakes: a procedural generator, colour classifiers with a
planted background cue, oracles that read shape, background and tag back), registered as a domain through
probe.domains exactly as the shapes world is. One test runs the real seams (tiny Stable Diffusion,
load_classifier, audit); it is gated (PROBE_RUN_SLOW=1), the suite runs those seams in tests/test_runs.py and
tests/test_demo.py. The bundled shapes world's audit is checked on the README's own demo runs
(tests/test_demo.py, tests/test_finding_validity.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

import pytest
import torch

from analysis_fakes import CLASSES, FakeGenerator, PlantedClassifier, fake_cues, registered, write_run
from probe.analysis import AnalysisConfig, AnalysisError, Cue, analyze_run, read_findings

STAR = CLASSES.index("star")
TOKENS = {0: "<probe-0>", 1: "<probe-1>", 2: "<probe-2>"}
FAST = AnalysisConfig(ig_steps=4, methods=("integrated_gradients", "occlusion"))
CUE_TESTS_ONLY = FAST.replace(attributions=False, off_object=False)
NEXT = {"circle": "square", "square": "star", "star": "circle"}


def _lose_object(prompt: str) -> str:
    return re.sub(r"\b(circle|square|star)\b", lambda m: NEXT[m.group(1)], prompt)




def _audit(tmp: Path, planted: bool, *, config=FAST, tokens=TOKENS, rewrite=None, moved=None, domain=True, **kw):
    source = tmp / "fake-pipeline"
    source.mkdir(parents=True)
    gen = FakeGenerator({"<probe-2>": "on grass"} if planted else {}, rewrite=rewrite, source=str(source))
    clf = PlantedClassifier({STAR: "grass"} if planted else {})
    run = write_run(tmp / "run", gen, clf, tokens=tokens, n_seeds=4, moved=moved)
    if not domain:
        return run, gen, analyze_run(run, clf, gen, config, **kw)
    with registered(source):
        return run, gen, analyze_run(run, clf, gen, config, **kw)


def _analysis(run: Path) -> dict:
    return json.loads((run / "analysis.json").read_text())


@pytest.fixture(scope="module")
def biased(tmp_path_factory):
    said: list[str] = []
    run, gen, findings = _audit(tmp_path_factory.mktemp("biased"), True, progress=said.append)
    return run, gen, findings, said


def test_the_planted_cue_passes_on_fresh_confirmation_pairs(biased):
    run, _, findings, _ = biased
    star = findings.for_class(STAR)
    assert star[0].cue == "grass" and star[0].passes and star[0].status == "passes"
    suff = next(f for f in star if f.kind == "sufficiency" and f.cue == "grass")
    assert suff.passes and suff.n_images >= 16 and suff.q <= 0.05 and suff.p <= suff.q
    assert suff.effect > 0.5 and suff.ci_low > 0.15
    # the decision rests on confirmation pairs, not the screening ones
    assert suff.details["screen"]["n"] == 4 and suff.n_images > suff.details["screen"]["n"]
    assert suff.sentence.startswith("'star' is predicted from grass backgrounds: +0.") and f"{suff.n_images} pairs" in suff.sentence
    kinds = {f.kind for f in star if f.cue == "grass" and f.passes}
    assert {"sufficiency", "necessity", "token-shift"} <= kinds
    nec = next(f for f in star if f.kind == "necessity" and f.cue == "grass")
    assert nec.n_images >= 16 and "grass" not in " ".join(nec.details["counters"])
    # nothing about the classes without a planted cue passes (other than where attribution lies)
    assert not [f for f in findings if f.passes and f.class_index != STAR and f.kind != "off-object"]
    # the counter rule: grass raises the star, so it is no neutral counter for anyone's other cues
    a = _analysis(run)
    assert a["dropped_counters"] and all("on grass" in v for v in a["dropped_counters"].values())
    assert a["tests"]["confirmed"] >= 3 and a["tests"]["passing"] == len(findings.passing)


def test_the_interventions_were_checked_and_progress_was_told(biased):
    run, gen, findings, said = biased
    a = _analysis(run)
    assert a["domain"] == "fake" and a["interventions_checked_by"] == "fake oracles"
    assert a["concept_scorer"] == "FakeOracles" and a["cues"]["source"] == "fake domain"
    assert a["cues"]["count"] == len(fake_cues()) and a["images_generated"] == gen.images_made
    assert not any("unchecked" in n for n in a["notes"])
    assert any("screening sufficiency" in m for m in said) and any("confirming" in m for m in said)
    assert any("class 2" in m for m in said)


def test_findings_and_analysis_files_hold_relative_evidence_paths(biased):
    run, _, findings, _ = biased
    rows = json.loads((run / "findings.json").read_text())
    assert len(rows) == len(findings) and [r["cue"] for r in rows] == [f.cue for f in findings]
    assert [f.sentence for f in read_findings(run)] == [f.sentence for f in findings]
    table = pd.read_parquet(run / "findings.parquet")
    assert list(table["kind"]) == [r["kind"] for r in rows]
    for r in rows:
        assert r["evidence"], r
        for p in r["evidence"]:
            assert not Path(p).is_absolute() and ".." not in p and (run / p).is_file(), p
    a = _analysis(run)
    for key in ("config", "rule", "cues", "tests", "timings_s", "classes", "notes", "generation"):
        assert key in a, key
    assert AnalysisConfig.from_dict(a["config"]) == FAST
    assert a["generation"] == {"steps": 4, "guidance_scale": 2.0}  # the run's token settings
    assert a["classes"]["2"]["dir"] == "classes/2-star" and a["classes"]["2"]["nearest_words"]
    assert str(run) not in (run / "analysis.json").read_text()  # nothing absolute about this machine
    assert a["attributions"]["methods_run"] == ["integrated_gradients", "occlusion"]
    off = next(f for f in findings.for_class(STAR) if f.kind == "off-object")
    assert off.unit == "images" and off.details["share_outside"] > 0.5  # the planted classifier looks at the grass
    assert off.effect == pytest.approx(off.details["share_outside"] - off.details["area_outside"], abs=1e-6)
    assert all(e.startswith("classes/2-star/attributions/integrated_gradients/") for e in off.evidence)


def test_a_clean_classifier_yields_no_passing_finding(tmp_path):
    run, _, findings = _audit(tmp_path, False)
    assert not findings.passing, [repr(f) for f in findings.passing]
    assert all(f.status != "passes" for f in findings)
    assert _analysis(run)["n_passing"] == 0


def test_a_token_that_did_not_move_yields_no_token_shift_finding_and_a_note(tmp_path):
    cfg = CUE_TESTS_ONLY.replace(sufficiency=False, necessity=False)
    run, _, findings = _audit(tmp_path / "still", True, config=cfg, tokens={0: "<probe-0>", STAR: "<probe-2>"},
                              moved={0: False, STAR: False})
    assert not [f for f in findings if f.kind == "token-shift"]
    # one note for the two classes (1000 classes under the paper's stop rule would otherwise write hundreds)
    unchanged = [n for n in _analysis(run)["notes"] if "token unchanged" in n]
    assert unchanged == [f"classes 0, {STAR}: token unchanged (the classifier already accepts the baseline images); "
                         "no token-shift finding is derived from it"], unchanged
    # the same run with a token that moved: the shift is found (the check above can fail)
    _, _, moved = _audit(tmp_path / "moved", True, config=cfg, tokens={STAR: "<probe-2>"}, moved={STAR: True})
    assert any(f.kind == "token-shift" and f.cue == "grass" and f.passes for f in moved)


def test_a_test_whose_confirmation_interventions_mostly_fail_is_inconclusive(tmp_path):
    # screening is clean; on confirmation seeds three grass images in four come out as another object
    confirm_from = CUE_TESTS_ONLY.seed + 100_000

    def flaky(prompt, seed):
        return _lose_object(prompt) if "on grass" in prompt and seed >= confirm_from and seed % 4 else prompt

    cfg = CUE_TESTS_ONLY.replace(necessity=False, token_shift=False)
    run, _, findings = _audit(tmp_path, True, config=cfg, rewrite=flaky)
    grass = next(f for f in findings if f.kind == "sufficiency" and f.cue == "grass" and f.class_index == STAR)
    assert grass.status == "inconclusive" and not grass.passes
    assert grass.excluded > grass.attempted / 2 and grass.details["excluded_note"].endswith("were excluded")
    assert grass.sentence.startswith("Inconclusive: ")
    assert not [f for f in findings if f.cue == "grass" and f.passes]


def test_a_test_whose_screening_interventions_mostly_fail_is_inconclusive_and_never_confirmed(tmp_path):
    def flaky(prompt, seed):
        return _lose_object(prompt) if "on grass" in prompt and seed % 4 else prompt

    cfg = CUE_TESTS_ONLY.replace(screen_seeds=4, token_shift=False)
    run, _, findings = _audit(tmp_path, True, config=cfg, rewrite=flaky)
    grass = [f for f in findings if f.cue == "grass"]
    assert {f.kind for f in grass} == {"sufficiency", "necessity"} and len(grass) >= 4
    assert all(f.status == "inconclusive" and not f.passes and math.isnan(f.q) for f in grass)
    suff = next(f for f in grass if f.kind == "sufficiency" and f.class_index == STAR)
    assert suff.attempted == 8 and suff.excluded == 6 and suff.n_images == 2  # 2 carriers x 4 seeds, 1 seed in 4 kept
    assert suff.effect > 0.5  # the valid pairs look like a finding: it is the failed interventions that hold it back
    assert "6 of 8 image pairs lost the object or the cue" in suff.details["excluded_note"]
    notes = _analysis(run)["notes"]
    # never confirmed (other cues' small real effects in the fake world may be: their screens are ambiguous)
    assert not [e for e in _analysis(run)["pairs"] if e["cue"] == "grass" and e.get("confirm") is not None]
    # one note per cue, naming the classes (a dozen at most), not one per class
    dot = [n for n in notes if n.startswith("necessity of 'dot' skipped (the cue has no counters): class 0, class 1")]
    assert len(dot) == 1 and not any(n.startswith("class 1: necessity of 'dot'") for n in notes), notes


def _drifting(prompt: str, seed: int) -> str:
    """A generator that draws another object for about 3 images in 10, whatever the cue (a drifting real generator):
    about half of all pairs lose one of their images."""
    return _lose_object(prompt) if zlib.crc32(f"{prompt}|{seed}".encode()) % 10 < 3 else prompt


@pytest.mark.parametrize("planted", [True, False])
def test_a_generator_that_fails_whatever_the_cue_costs_pairs_not_findings(tmp_path, planted):
    # Failures the generator makes on every cue leave a random subset of pairs: they are topped up and the planted
    # cue still passes; the same drift on a clean classifier passes nothing. Before the limit read the generator's
    # own failure rate, about half of these tests were inconclusive and the planted grass did not pass.
    cfg = CUE_TESTS_ONLY.replace(token_shift=False)
    run, _, findings = _audit(tmp_path, planted, config=cfg, rewrite=_drifting)
    if not planted:
        assert not [f for f in findings if f.passes]
        return
    grass = next(f for f in findings if f.kind == "sufficiency" and f.cue == "grass" and f.class_index == STAR)
    assert grass.passes and grass.status == "passes" and grass.n_images >= 16
    failure = grass.details["generator_failure"]
    assert 0.3 <= failure <= 0.7  # the class's median excluded share: about half the pairs, as drawn
    assert grass.excluded > 0 and grass.attempted > grass.n_images  # pairs were lost and made up for
    assert "whatever the cue" in grass.details["excluded_note"]


def test_necessity_screens_on_a_drifting_generator_are_topped_up_to_their_planned_pairs(tmp_path):
    # A 4-pair necessity screen that loses two or three pairs to the generator's own drift said "inconclusive" and
    # its cue was never confirmed: screens are now topped up on fresh seeds until they hold the valid pairs they were
    # planned with, or have attempted 3 times as many.
    cfg = CUE_TESTS_ONLY.replace(token_shift=False, sufficiency=False, confirm=False, screen_extend=())
    _, _, findings = _audit(tmp_path, True, config=cfg, rewrite=_drifting)
    necessity = [f for f in findings if f.kind == "necessity"]
    assert necessity and all(f.details.get("generator_failure", 0) > 0 for f in necessity)
    assert any(f.details.get("screen_topped_up") for f in necessity)
    for f in necessity:
        screen = f.details["screen"]
        attempted = screen["n"] + screen["excluded"]
        planned = attempted - f.details.get("screen_topped_up", 0)
        assert screen["n"] >= planned or attempted >= 3 * planned, (f.cue, f.class_name, screen, planned)


def test_without_a_domain_the_interventions_are_unchecked_and_the_report_says_so(tmp_path):
    cfg = CUE_TESTS_ONLY.replace(necessity=False, confirm=False)
    run, _, findings = _audit(tmp_path, True, config=cfg, domain=False, cues=fake_cues())
    a = _analysis(run)
    assert a["domain"] is None and a["interventions_checked_by"] is None and a["concept_scorer"] is None
    assert any("interventions unchecked" in n for n in a["notes"]) and any("token-shift skipped" in n for n in a["notes"])
    # unconfirmed: a strong screened effect is reported as screening only, never as passing
    grass = next(f for f in findings if f.kind == "sufficiency" and f.cue == "grass" and f.class_index == STAR)
    assert grass.status == "screened" and not grass.passes and grass.sentence.startswith("Screening only")


def test_untrusted_cue_names_stay_inside_the_run(tmp_path):
    evil = Cue(name="../../evil <script>", template="{} on grass", counters=("{} on sand",))
    cfg = CUE_TESTS_ONLY.replace(necessity=False, token_shift=False, confirm=False)
    run, _, findings = _audit(tmp_path, True, config=cfg, cues=[evil])
    paths = [p for f in findings for p in f.evidence]
    assert paths and all(".." not in p and "<" not in p for p in paths)
    assert all((run / p).resolve().is_relative_to(run.resolve()) for p in paths)


def test_classes_filter_and_bad_inputs_are_named(tmp_path):
    cfg = CUE_TESTS_ONLY.replace(classes=(STAR,), sufficiency=False, necessity=False, token_shift=False)
    run, _, findings = _audit(tmp_path / "one", True, config=cfg)
    assert set(_analysis(run)["classes"]) == {"2"}
    with pytest.raises(AnalysisError, match="does not exist"):
        analyze_run(tmp_path / "nope", PlantedClassifier(), FakeGenerator())
    (tmp_path / "empty" / "classes").mkdir(parents=True)
    with pytest.raises(AnalysisError, match="no finished class"):
        analyze_run(tmp_path / "empty", PlantedClassifier(), FakeGenerator())
    with pytest.raises(AnalysisError, match="AnalysisConfig"):
        analyze_run(run, PlantedClassifier(), FakeGenerator(), {"cues": "world"})


def test_a_classifier_without_hooks_skips_grad_cam_and_says_why(tmp_path):
    source = tmp_path / "fake-pipeline"
    source.mkdir()
    gen, clf = FakeGenerator(source=str(source)), PlantedClassifier({STAR: "grass"})
    clf.supports_hooks = False
    run = write_run(tmp_path / "run", gen, clf, tokens={STAR: "<probe-2>"}, n_seeds=2)
    cfg = AnalysisConfig(ig_steps=4, sufficiency=False, necessity=False, token_shift=False, off_object=False)
    analyze_run(run, clf, gen, cfg, cues=fake_cues())
    a = _analysis(run)
    assert "hooks" in a["attributions"]["skipped"]["grad_cam"]
    assert a["attributions"]["methods_run"] == ["integrated_gradients", "occlusion"]
    assert not (run / "classes" / "2-star" / "attributions" / "grad_cam").exists()
    assert (run / "classes" / "2-star" / "attributions" / "occlusion").is_dir()


# ----------------------------------------------------------------------------- the real seams (slow)
# skipped before any fixture is built (the tiny pipeline is session-scoped and would be built first)
ONLY_IF_ASKED = pytest.mark.skipif(not os.environ.get("PROBE_RUN_SLOW"),
                                   reason="slow: set PROBE_RUN_SLOW=1 (PROBE_TEST_DEVICE=cuda for a GPU)")


@pytest.mark.slow
@ONLY_IF_ASKED
def test_analysis_runs_on_a_run_directory_written_by_audit(tmp_path, tiny_sd_path, tiny_generator):
    """The real seams: tiny Stable Diffusion, load_classifier and audit (about 40 s on 2 busy cores, hence gated;
    `probe demo` in tests/test_demo.py covers the same path on the shapes world)."""
    from color_classifier import calibrated_redness_classifier
    from probe.classifiers import load_classifier
    from probe.auditing.loop import AuditConfig, audit
    from probe.tokens import TokenConfig

    token = TokenConfig(lr=0.1, max_steps=1, patience=1, guidance_scale=3.0, eval_images=2, batch_size=2, steps=2)
    module = calibrated_redness_classifier(tiny_generator, seeds=range(2), guidance_scale=3.0)
    clf = load_classifier(module, labels=["other", "star <b>"], input_size=32, mean=(0, 0, 0), std=(1, 1, 1), crop_pct=1.0)
    config = AuditConfig(model="tests:redness", out=str(tmp_path / "run"), generator=str(tiny_sd_path), token=token,
                         analyze=False, report=False, classes="1")
    result = audit(config, classifier=clf, generator=tiny_generator, progress=False)
    assert not result.failed
    run = result.run_dir
    cues = tmp_path / "cues.txt"
    cues.write_text("{} on grass | {} on sand\n")
    cfg = AnalysisConfig(cues=str(cues), ig_steps=4, confirm=False, n_carriers=2)
    findings = analyze_run(run, clf, tiny_generator, cfg)
    a = _analysis(run)
    assert a["cues"]["count"] == 1 and a["cues"]["source"] == f"file {cues}" and a["generation"]["steps"] == 2
    assert a["domain"] is None and any("interventions unchecked" in n for n in a["notes"])
    assert "grad_cam" in a["attributions"]["skipped"]  # the redness classifier has no conv layer
    assert a["attributions"]["methods_run"] == ["integrated_gradients", "occlusion"]
    star = run / "classes" / "1-star-b"
    metrics = json.loads((star / "metrics.json").read_text())
    stems = {Path(i["path"]).stem for i in metrics["images"]}
    assert {p.stem for p in (star / "attributions" / "integrated_gradients").glob("*.png")} == stems
    tok_stems = {Path(i["path"]).stem for i in metrics["images"] if i["kind"] == "token"}
    assert {p.stem for p in (star / "cross_attention").glob("*.npy")} == tok_stems
    info = a["classes"]["1"]
    assert info["nearest_words"] and 0.0 <= info["off_object"]["share_outside"] <= 1.0
    assert any("token-shift skipped" in n for n in a["notes"])
    assert all(not f.passes for f in findings)  # nothing is confirmed with confirm=False
    for f in findings:
        assert all((run / p).is_file() for p in f.evidence)


def test_off_object_is_confirmed_on_fresh_images_and_tested_in_the_fdr_family(tmp_path, monkeypatch):
    """An off-object candidate (screened on the token gallery) is measured again on min_pairs fresh token images;
    its q comes from the same false-discovery-rate family as the cue tests; the clean classifier's does not pass.
    The fake generator has no UNet: its cross-attention (one seam) is the scene's true object mask."""
    import probe.analysis.attention as attention

    def capture(generator, prompts, seeds, words, **_):
        scenes = [generator.scene(p, s) for p, s in zip(prompts, seeds)]
        return torch.stack([im for im, _, _ in scenes]), torch.stack([torch.from_numpy(m.astype("float32"))
                                                                       for _, m, _ in scenes])

    monkeypatch.setattr(attention, "capture_cross_attention", capture)
    config = FAST.replace(sufficiency=False, necessity=False, token_shift=False,
                          thresholds=FAST.thresholds.__class__(min_effect=0.1, weak_effect=0.05))
    run, _, findings = _audit(tmp_path / "planted", True, config=config)
    off = next(f for f in findings.for_class(STAR) if f.kind == "off-object")
    assert off.status == "passes" and off.passes, off
    assert off.n_images == 16 and off.details["screen"]["n"] == 8  # decided on fresh images, not the gallery's
    assert 0 < off.p <= off.q <= 0.05
    info = _analysis(run)["classes"][str(STAR)]["off_object"]
    assert info["stage"] == "confirm" and info["n"] == 16 and info["q"] == pytest.approx(off.q)
    _, _, clean = _audit(tmp_path / "clean", False, config=config)
    assert not [f for f in clean if f.kind == "off-object" and f.passes]


def _by_round(entry: dict, cfg) -> list[list[float]]:
    """A screen's values split by the round that drew them (its seeds say which: keys "s<seed>:...")."""
    first = cfg.screen_seeds if entry["kind"] == "sufficiency" else cfg.necessity_screen_seeds
    more = [cfg.sufficiency_extend_seeds(m) if entry["kind"] == "sufficiency" else m for m in cfg.screen_extend]
    ends = [cfg.seed + first + sum(more[:r]) for r in range(len(more) + 1)]
    rounds = [[] for _ in ends]
    for key, value in zip(entry["screen"]["keys"], entry["screen"]["values"]):
        seed = int(key.split(":")[0][1:])
        rounds[next(r for r, end in enumerate(ends) if seed < end)].append(value)
    return rounds


def test_adaptive_screening_adds_pairs_only_to_ambiguous_screens_of_both_kinds(tmp_path):
    """Each round extends the sufficiency and necessity screens that are neither clearly nothing nor clearly a
    candidate: 0 <= mean < min_effect and at least the weak bar or a 97.5% t upper bound that reaches min_effect
    (probe.analysis.screening.ambiguous). A screen whose pairs agree on nothing, or that points the other way,
    keeps its first pairs (the old rule extended every screen in [0, min_effect), and no sufficiency screen).
    (The fake classifier's effects are large or nil, so the band is widened to make both kinds appear.)"""
    from probe.analysis import Thresholds
    from probe.analysis.screening import upper_bound

    low, high = 0.05, 0.9
    base = CUE_TESTS_ONLY.replace(token_shift=False, confirm=False, screen_seeds=4,  # 4: sufficiency screens see the
                                  thresholds=Thresholds(min_effect=high, weak_effect=low))  # fake's small effects too
    run, _, _ = _audit(tmp_path, True, config=base)
    entries = [e for e in _analysis(run)["pairs"] if e["kind"] in ("sufficiency", "necessity")]

    def ambiguous(values) -> bool:
        mean = sum(values) / len(values)
        return 0 <= mean < high and (mean >= low or upper_bound(values) >= high)

    seen = {(kind, what): 0 for kind in ("sufficiency", "necessity") for what in ("clear", "nil", "extended", "twice")}
    for e in entries:
        rounds = _by_round(e, base)
        so_far = []
        for r, values in enumerate(rounds[:-1]):
            so_far += values
            extended = bool(rounds[r + 1])
            assert extended == (bool(so_far) and ambiguous(so_far)), (e, r)
            if not extended:
                break
        mean = sum(rounds[0]) / len(rounds[0]) if rounds[0] else None
        seen[(e["kind"], "extended")] += bool(rounds[1])
        seen[(e["kind"], "twice")] += bool(rounds[2])
        seen[(e["kind"], "clear")] += not rounds[1]
        seen[(e["kind"], "nil")] += not rounds[1] and mean is not None and 0 <= mean < high  # clear in the old band
        assert len(set(e["screen"]["keys"])) == len(e["screen"]["values"])  # every added pair has its own seed
    assert all(seen[(k, w)] for k in ("sufficiency", "necessity") for w in ("clear", "extended")), str(seen)
    assert seen[("sufficiency", "nil")] + seen[("necessity", "nil")], str(seen)  # the old rule extended these
    assert seen[("necessity", "twice")], seen
    extended = seen[("sufficiency", "extended")] + seen[("necessity", "extended")]
    assert f"adaptive screening: {extended} ambiguous screens got more pairs" in _analysis(run)["notes"]
    # candidates: a screen at the bar, or one that spent every round and still reaches the weak bar
    expected = sum(1 for e in entries if (v := e["screen"]["values"]) and (
        sum(v) / len(v) >= high or (all(_by_round(e, base)) and sum(v) / len(v) >= low)))
    assert _analysis(run)["tests"]["candidates"] == expected > 0
    run2, _, _ = _audit(tmp_path / "fixed", True, config=base.replace(screen_extend=()))
    assert not [n for n in _analysis(run2)["notes"] if n.startswith("adaptive screening")]  # nothing said that did not run
    fixed = [e for e in _analysis(run2)["pairs"] if e["kind"] in ("sufficiency", "necessity")]
    first = {"sufficiency": base.screen_seeds, "necessity": base.necessity_screen_seeds}
    assert fixed and all(int(k.split(":")[0][1:]) < base.seed + first[e["kind"]] for e in fixed for k in e["screen"]["keys"])


def test_the_screen_upper_bound_is_student_t():
    """upper_bound: mean + t(0.975, n-1) * sd / sqrt(n), with Student t's quantiles (3.182 at 3 degrees of freedom;
    1.96 in the limit); the demo's heart/dot necessity screen (+0.06 on 4 pairs) reaches 0.17."""
    from probe.analysis.screening import t975, upper_bound

    assert t975(1) == pytest.approx(12.706) and t975(3) == pytest.approx(3.182) and t975(30) == pytest.approx(2.042)
    assert t975(60) == pytest.approx(2.000, abs=2e-3) and t975(10_000) == pytest.approx(1.960, abs=1e-3)
    assert upper_bound([0.05, 0.01, 0.02, 0.16]) == pytest.approx(0.1695, abs=1e-3)
    assert upper_bound([0.0, 0.0, 0.0]) == 0.0 and upper_bound([0.3]) == math.inf
    with pytest.raises(ValueError):
        t975(0)


def test_a_token_shift_is_confirmed_only_where_its_sufficiency_test_is():
    """engine._corroborable: a token shift passes only on its cue's confirmed sufficiency pairs, so a token shift
    whose cue's sufficiency test was screened but is not confirmed (nor pre-stated by confirm_like) is not confirmed;
    one whose cue has no sufficiency test keeps its place."""
    from types import SimpleNamespace

    from probe.analysis.engine import _corroborable
    from probe.analysis.plan import Test
    from probe.analysis.sample import Sample

    star = SimpleNamespace(index=STAR, name="star")
    cues = {c.name: c for c in fake_cues()}
    grass, sand = cues["grass"], next(c for n, c in cues.items() if n != "grass" and c.attribute == "background")

    def test(kind, cue):
        return Test(kind, star, cue, Sample(kind, STAR, cue.name))

    suff_grass, suff_sand = test("sufficiency", grass), test("sufficiency", sand)
    shift_grass, shift_sand = test("token-shift", grass), test("token-shift", sand)
    tests = [suff_grass, suff_sand, shift_grass, shift_sand]
    kept = _corroborable([suff_grass, shift_grass, shift_sand], tests, [])
    assert kept == [suff_grass, shift_grass]  # sand's sufficiency was screened, not confirmed
    assert _corroborable([shift_sand], tests, [suff_sand]) == [shift_sand]  # confirm_like confirms it
    assert _corroborable([shift_sand], [shift_sand], []) == [shift_sand]  # no sufficiency test: nothing to wait for


def test_a_cue_whose_every_counter_is_a_cue_elsewhere_is_still_tested_against_them(tmp_path):
    """The counter rule drops a counter that raises another class; when that leaves a cue no counter at all, the
    test uses every counter and says so (it was skipped before: fresh7-biased-1's planted heart/water, +0.28,
    was never tested because noisy screens made every other background a suspect)."""
    from probe.analysis.cues import cues_from_vocabulary

    cues = cues_from_vocabulary(["grass", "sand", "snow"], [], ["none", "dot"],
                                {"dot": "with a dot in the corner", "none": ""})
    # sand raises circles and snow raises squares: for the star, grass has no neutral counter left
    clf = PlantedClassifier({STAR: "grass", CLASSES.index("circle"): "sand", CLASSES.index("square"): "snow"})
    source = tmp_path / "fake-pipeline"
    source.mkdir()
    gen = FakeGenerator({"<probe-2>": "on grass"}, source=str(source))
    run = write_run(tmp_path / "run", gen, clf, tokens=TOKENS, n_seeds=4)
    cfg = CUE_TESTS_ONLY.replace(token_shift=False)
    with registered(source):
        findings = analyze_run(run, clf, gen, cfg, cues=cues)
    analysis = _analysis(run)
    assert set(analysis["dropped_counters"][str(STAR)]) >= {"on sand", "on snow"}  # keyed by class index
    assert any(n.startswith("necessity measured against all its counters") and "class 2 'grass'" in n
               for n in analysis["notes"]), analysis["notes"]
    star_grass = [f for f in findings if f.kind == "necessity" and f.class_index == STAR and f.cue == "grass"]
    assert star_grass and star_grass[0].passes, [repr(f) for f in star_grass]
    assert star_grass[0].details["counter_values"] == ["sand", "snow"] and star_grass[0].details["every_counter_suspect"]


class _RoughAtFewSteps(FakeGenerator):
    """A generator whose star-token images, below 8 sampling steps, show another object 8 times in 10 (the world's
    5-step circles that its shape oracle read as stars); at 8 steps or more they are faithful. Its default is 8."""

    def __init__(self, *args, default_steps: int = 8, **kw):
        super().__init__(*args, **kw)
        from types import SimpleNamespace

        self.defaults = SimpleNamespace(steps=default_steps)
        self.steps_seen: list[tuple[int, str]] = []

    def generate(self, prompts, seeds, *, steps=None, **kw):
        self.steps_seen += [(int(steps), p) for p in prompts]
        rough = [_lose_object(p) if int(steps) < 8 and "<probe-2>" in p and zlib.crc32(f"{p}|{s}".encode()) % 10 < 8
                 else p for p, s in zip(prompts, seeds)]
        return super().generate(rough, seeds, steps=steps, **kw)


@pytest.mark.parametrize("default_steps", [8, 4])
def test_a_class_whose_images_fail_at_few_steps_is_drawn_at_more(tmp_path, default_steps):
    # The run sampled at 4 steps; the star token's images lose the object 8 times in 10 there. With room below the
    # generator's default (8), the star's top-ups and confirmation are drawn at 8 steps and its planted grass passes;
    # without room (the default is the run's 4) nothing is drawn at more steps, and the test is decided on the class's
    # name instead of its token (inconclusive before that fallback).
    source = tmp_path / "fake-pipeline"
    source.mkdir(parents=True)
    gen = _RoughAtFewSteps({"<probe-2>": "on grass"}, source=str(source), default_steps=default_steps)
    clf = PlantedClassifier({STAR: "grass"})
    run = write_run(tmp_path / "run", gen, clf, tokens=TOKENS, n_seeds=4)
    gen.steps_seen.clear()
    with registered(source):
        findings = analyze_run(run, clf, gen, CUE_TESTS_ONLY.replace(token_shift=False, sufficiency=False))
    grass = next(f for f in findings if f.kind == "necessity" and f.cue == "grass" and f.class_index == STAR)
    a = _analysis(run)
    if default_steps == 4:
        assert grass.details.get("drawn_with_name") == "star" and "sampling_steps" not in grass.details
        assert "sampling_steps" not in a["classes"][str(STAR)] and {s for s, _ in gen.steps_seen} == {4}
        return
    assert grass.passes and grass.details["sampling_steps"] == 8 and grass.n_images >= 16
    assert a["classes"][str(STAR)]["sampling_steps"] == 8
    assert any(n.startswith("more sampling steps: 'star' at 8") for n in a["notes"])
    # only the star's token prompts were drawn at 8 steps; the other classes' stayed at the run's 4
    assert {s for s, p in gen.steps_seen if "<probe-2>" not in p} == {4}
    assert 8 in {s for s, p in gen.steps_seen if "<probe-2>" in p}
    other = [f for f in findings if f.kind == "necessity" and f.class_index != STAR]
    assert other and not any("sampling_steps" in f.details for f in other)
    # a re-test of the run draws the star as the audit did
    from probe.analysis.retest import RunContext

    with registered(source):
        assert RunContext.open(run, clf, gen).lab.more_steps == {"<probe-2>": 8}


def test_a_necessity_test_the_token_cannot_draw_is_drawn_with_the_class_name(tmp_path):
    # The star token loses its object whenever grass is stated (fresh8-biased-0's circle token drew squares and
    # triangles when asked for a yellow circle): every screening pair of star/grass is excluded, however many are
    # added, and the planted cue was inconclusive. Drawn with the class's name, the same test keeps its object and the
    # planted grass passes; the other tests of the class keep their token.
    def lose_on_grass(prompt: str, seed: int) -> str:
        return _lose_object(prompt) if "<probe-2>" in prompt and "on grass" in prompt else prompt

    cfg = CUE_TESTS_ONLY.replace(token_shift=False, sufficiency=False)
    run, _, findings = _audit(tmp_path, True, config=cfg, rewrite=lose_on_grass)
    grass = next(f for f in findings if f.kind == "necessity" and f.cue == "grass" and f.class_index == STAR)
    assert grass.passes and grass.details["drawn_with_name"] == "star" and grass.n_images >= 16
    token = grass.details["token_screen"]
    assert token["n"] == 0 and token["excluded"] >= 4  # the token's screen: every pair lost
    assert grass.details["excluded_note"].startswith("drawn with the class's name 'star' instead of its token")
    assert any(n.startswith("necessity drawn with the class's name instead of its token: star/grass")
               for n in _analysis(run)["notes"])
    others = [f for f in findings if f.kind == "necessity" and not (f.class_index == STAR and f.cue == "grass")]
    assert others and not any(f.details.get("drawn_with_name") for f in others)


def test_a_necessity_confirmation_the_token_cannot_draw_starts_again_with_the_class_name(tmp_path):
    # The star token keeps its object on grass in the screen and loses it in every confirmation pair (fresh8-biased-0's
    # discovered yellow circles: 4 of 4 screening pairs kept, 3 of 8 confirmation pairs, inconclusive). The test is
    # confirmed again with the class's name on fresh seeds; only the name's pairs decide, and the planted grass passes.
    # Before this fallback it ended inconclusive.
    def lose_on_grass_when_confirming(prompt: str, seed: int) -> str:
        confirming = seed >= 100_000  # confirmation seeds (plan.confirm_round); screens use the first few
        return _lose_object(prompt) if confirming and "<probe-2>" in prompt and "on grass" in prompt else prompt

    cfg = CUE_TESTS_ONLY.replace(token_shift=False, sufficiency=False)
    run, gen, findings = _audit(tmp_path, True, config=cfg, rewrite=lose_on_grass_when_confirming)
    grass = next(f for f in findings if f.kind == "necessity" and f.cue == "grass" and f.class_index == STAR)
    assert grass.passes and grass.details["drawn_with_name"] == "star", grass.sentence
    assert grass.n_images >= 16 and grass.excluded == 0  # the name's pairs only: none of them lost
    token = grass.details["token_confirm"]
    assert token["n"] == 0 and token["excluded"] >= 4 and "token_screen" not in grass.details
    assert "confirmation pairs" in grass.details["excluded_note"]
    assert any(n.startswith("necessity confirmed with the class's name instead of its token: star/grass")
               for n in _analysis(run)["notes"])
    [pairs] = [e for e in _analysis(run)["pairs"] if (e["kind"], e["class_index"], e["cue"]) == ("necessity", STAR, "grass")]
    assert pairs["confirm"]["attempted"] == grass.attempted and pairs["confirm"]["excluded"] == 0  # the name's pairs
    # the other tests of the class keep their token, and a confirmation that keeps its pairs is never switched
    others = [f for f in findings if f.kind == "necessity" and not (f.class_index == STAR and f.cue == "grass")]
    assert others and not any(f.details.get("drawn_with_name") for f in others)


def test_confirm_with_name_switches_only_a_lost_necessity_confirmation_with_a_real_name():
    from probe.analysis.class_evidence import ClassRun
    from probe.analysis.cues import Cue
    from probe.analysis.plan import Test, confirm_with_name
    from probe.analysis.sample import Sample

    grass = Cue("grass", "{} on grass", ("{} on sand",))
    lost = Sample("necessity", 0, "grass", diffs=np.ones(1), attempted=8, excluded=7)
    kept = Sample("necessity", 0, "grass", diffs=np.ones(8), attempted=9, excluded=1)
    for kind, name, confirm, switched in [("necessity", "star", lost, True), ("necessity", "star", kept, False),
                                          ("sufficiency", "star", lost, False), ("necessity", "LABEL_3", lost, False)]:
        test = Test(kind, ClassRun(0, name, Path("."), {}), grass, screen=kept, confirm=confirm)
        assert confirm_with_name(test) is switched, (kind, name, confirm.excluded)
        assert (test.confirm is None) is switched and ("token_confirm" in test.extra) is switched
        if switched:
            assert test.extra["drawn_with_name"] == name and test.extra["token_confirm"]["excluded"] == 7
            assert not confirm_with_name(test)  # once: a test drawn with the name is never switched again


def test_an_interrupted_analysis_resumes_from_its_journal_and_decides_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """Each batch the lab observes is journalled in the run (.probe-journal): an analysis stopped by Ctrl-C after 3
    batches, run again, reads those images back instead of generating them, generates only the rest, and decides
    the very findings and image counts of an analysis that was never stopped; a damaged journal file is skipped,
    and the journal is gone once the findings are written."""
    import probe.analysis.lab as lab_module

    whole_run, _, whole = _audit(tmp_path / "whole", True, config=CUE_TESTS_ONLY)
    assert not (whole_run / ".probe-journal").exists()
    real = lab_module.generate
    batches: list[int] = []

    def stopped_after_3(generator, prompts, seeds, kwargs):
        if len(batches) == 3:
            raise KeyboardInterrupt
        batches.append(len(prompts))
        return real(generator, prompts, seeds, kwargs)

    source = tmp_path / "cut" / "fake-pipeline"
    source.mkdir(parents=True)
    gen, clf = FakeGenerator({"<probe-2>": "on grass"}, source=str(source)), PlantedClassifier({STAR: "grass"})
    run = write_run(tmp_path / "cut" / "run", gen, clf, tokens=TOKENS, n_seeds=4)
    monkeypatch.setattr(lab_module, "generate", stopped_after_3)
    with registered(source), pytest.raises(KeyboardInterrupt):
        analyze_run(run, clf, gen, CUE_TESTS_ONLY)
    journalled = sorted((run / ".probe-journal").glob("*/*.npz"))
    assert len(journalled) == 3 and not (run / "findings.json").exists()
    (journalled[0].parent / "0000099.npz").write_bytes(b"not a journal")  # damaged: skipped, not fatal
    fresh: list[int] = []

    def counted(generator, prompts, seeds, kwargs):
        fresh.append(len(prompts))
        return real(generator, prompts, seeds, kwargs)

    monkeypatch.setattr(lab_module, "generate", counted)
    with registered(source):
        resumed = analyze_run(run, clf, gen, CUE_TESTS_ONLY)
    facts, whole_facts = _analysis(run), _analysis(whole_run)
    assert facts["images_generated"] == whole_facts["images_generated"]
    assert sum(fresh) == whole_facts["images_generated"] - sum(batches)  # only what the journal did not hold
    assert any(f"resumed: {sum(batches)} of the {facts['images_generated']} images" in n for n in facts["notes"])

    def key(f):
        return f.class_index, f.kind, f.cue, round(f.effect, 9), f.passes, f.n_images

    assert [key(f) for f in resumed] == [key(f) for f in whole] and any(f.passes for f in resumed)
    assert not (run / ".probe-journal").exists()


def test_a_journal_folder_that_links_out_of_the_run_is_never_written_or_removed(tmp_path):
    """A run directory is data: a crafted .probe-journal link to a folder outside the run gets no journal files,
    and the folder it names is not removed when the findings are decided."""
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    source = tmp_path / "fake-pipeline"
    source.mkdir()
    gen, clf = FakeGenerator({"<probe-2>": "on grass"}, source=str(source)), PlantedClassifier({STAR: "grass"})
    run = write_run(tmp_path / "run", gen, clf, tokens=TOKENS, n_seeds=4)
    (run / ".probe-journal").symlink_to(outside, target_is_directory=True)
    with registered(source):
        findings = analyze_run(run, clf, gen, CUE_TESTS_ONLY)
    assert any(f.passes for f in findings)
    assert [p.name for p in outside.iterdir()] == ["keep"] and (run / ".probe-journal").is_symlink()


def test_a_journalled_evidence_path_is_taken_only_inside_the_run(tmp_path):
    """A run directory is data: a journal record whose evidence PNG lies outside the run (``../``) is generated
    again, not linked; one inside the run and still there is taken as it is."""
    from types import SimpleNamespace

    from probe.analysis.lab import Lab
    from probe.run.journal import Journal, Journalled

    run = tmp_path / "run"
    (run / "evidence").mkdir(parents=True)
    (run / "evidence" / "in.png").write_bytes(b"png")
    (tmp_path / "out.png").write_bytes(b"png")
    journal = Journal(run / ".probe-journal" / "k", (2,))
    probs = (np.array([0.3, 0.7], np.float32),)
    journal.append([("p", 1, None, Journalled(probs, None, None, "evidence/in.png")),
                    ("p", 2, None, Journalled(probs, None, None, "../out.png"))])
    lab = Lab(None, [SimpleNamespace(labels=["a", "b"])], run_root=run, journal=Journal(run / ".probe-journal" / "k", (2,)))
    left = lab._restore([("p", 1, None), ("p", 2, None)], {("p", 1, None): run / "evidence", ("p", 2, None): run / "evidence"},
                        None)
    assert left == [("p", 2, None)] and lab.observed()[("p", 1, None)].evidence == "evidence/in.png"
    assert lab.images_restored == 1
