"""The whole engine under the null, at 10 classes (benchmarks/engine_null.py): the engine's real screening,
counter rule, adaptive screening, confirmation rounds, futility stop, top-up, FDR step and pass rule, on a synthetic
Lab whose cue effects are planted. Small: 12 cues (backgrounds and lighting), a few replications."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import engine_null  # noqa: E402
import probe.analysis.decide as decide  # noqa: E402
from probe.analysis.cues import default_cues  # noqa: E402
from probe.analysis.policy import Thresholds  # noqa: E402

CUES = [c for c in default_cues() if c.category in ("background", "lighting")]
# the effect bar lowered to the weak bar: what stands between a null test and a pass is then the FDR step alone
LOW_BAR = engine_null.analysis_config(thresholds=Thresholds(min_effect=0.05, weak_effect=0.05))


def _null(cfg):
    return engine_null.simulate(10, 2, planted=0.0, noise=0.3, cfg=cfg, cues=CUES, say=lambda _line: None)


def test_under_the_null_the_fdr_step_keeps_false_passes_away_and_without_it_they_come():
    with_fdr = _null(LOW_BAR)
    for family in ("audit", "per-class"):
        assert with_fdr["families"][family]["false"] <= 1, with_fdr
    assert with_fdr["confirmed_per_rep"] >= 20  # the null tests did reach the decision
    # the same replications with the FDR step skipped (q = p): the assertion above is one that can fail
    real = decide.fdr_family_q
    try:
        decide.fdr_family_q = lambda effects, families, **kw: [replace(e, q=e.p) for e in effects]
        without = _null(LOW_BAR)
    finally:
        decide.fdr_family_q = real
    assert without["families"]["audit"]["false"] >= 3, without


def test_planted_effects_of_0_4_are_found_and_nothing_false_passes():
    s = engine_null.simulate(10, 1, planted=0.2, noise=0.2, cues=CUES, say=lambda _line: None)
    for family in ("audit", "per-class"):
        f = s["families"][family]
        assert f["power"]["0.4"]["of"] >= 8
        assert f["power"]["0.4"]["power"] >= 0.8, f
        assert f["false"] <= 1, f


def test_the_simulation_s_truth_follows_the_counters_the_engine_kept():
    """A necessity test's true effect is the cue's minus its kept counters' mean: a planted counter makes it negative."""
    cues = CUES[:3]
    world = engine_null.World(4, cues, {(1, cues[0].name): 0.4})

    class T:  # the two fields true_effect reads, as a Test carries them
        def __init__(self, kind, cls, cue):
            self.kind, self.cls, self.cue = kind, type("C", (), {"index": cls})(), cue

    assert engine_null.true_effect(world, T("sufficiency", 1, cues[0])) == pytest.approx(0.4)
    assert engine_null.true_effect(world, T("sufficiency", 2, cues[0])) == 0.0
    rival = next(c for c in cues if cues[0].template in c.counters)
    assert engine_null.true_effect(world, T("necessity", 1, rival)) < 0


def test_a_later_pass_keeps_the_counters_an_earlier_pass_found_to_be_cues_out_of_its_necessity_tests():
    """Discovered cues are tested in a second pass (probe.analysis.engine.analyze_run): the counters the listed cues'
    counter rule found to be cues for the class are kept out of that pass's necessity tests too (its counter rule
    started from nothing, so a discovered 'water' was measured against 'on grass', a cue of the class)."""
    from probe.analysis.cues import template_phrase
    from probe.analysis.engine import run_cue_tests
    from probe.analysis.plan import class_carriers

    cues = [c for c in default_cues() if any(template_phrase(t) == "on grass" for t in c.counters)][:2]
    assert cues, "a curated cue whose counters include 'on grass'"
    grass = next(t for t in cues[0].counters if template_phrase(t) == "on grass")  # suspects are templates
    cfg = engine_null.analysis_config(confirm=False)
    world = engine_null.World(2, cues, {}, noise=0.05, seed=3)
    classes = engine_null.make_classes(2)
    labels = [engine_null.label(c) for c in range(2)]
    lab = engine_null.SyntheticLab(generator=None, classifiers=[engine_null._Classifier(2)], batch_size=cfg.batch_size,
                                   world=world)
    carriers = class_carriers(cfg, labels, set(), classes)
    run = run_cue_tests(cfg, lab, classes, cues, labels, carriers, generator=None, object_attribute=None,
                        object_of=lambda _cls: None, evidence_root=engine_null._NOWHERE,
                        known_suspects={0: {grass}})
    necessity = [t for t in run.tests if t.kind == "necessity"]
    kept = {t.cls.index: {template_phrase(c) for c in t.cue.counters} for t in necessity}
    assert necessity and "on grass" not in kept[0] and "on grass" in kept[1], kept
