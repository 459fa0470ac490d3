"""Are the demo's findings true? The fast version of benchmarks/finding_validity.py.

The README's demo run (biased classifier, star) and a clean-classifier run are scored against the
classifiers' true behaviour on rendered scenes (probe.world.true_effects): the planted cue is found strong, every
strong passing finding is confirmed by the truth table, and the clean classifier gets no passing finding.
"""

from __future__ import annotations

import pytest

from probe.analysis import read_findings
from probe.classifiers import load_classifier
from probe.world import bundled_classifier_path
from probe.world.truth import true_effects


@pytest.fixture(scope="module")
def biased_truth():
    return true_effects(load_classifier(str(bundled_classifier_path("biased"))), n=200)


def test_every_strong_passing_finding_of_the_demo_is_true(readme_demo, biased_truth):
    """The planted star/grass passes *strong* (its whole interval clears the bar) and every strong passing finding is
    true. A *moderate* one (only its estimate clears the bar) may be false, as measured on every validity set (README:
    strong 58/60 true, moderate 62/82): on an Intel Xeon with AMX (5 December 2026) the README demo fixture
    also passes star/snow at +0.26 (95% CI 0.07-0.44; true +0.13), which an AMD EPYC's floating point left weak."""
    from probe.run.summary import clears_bar

    findings = read_findings(readme_demo / "runs" / "demo")
    passing = [f for f in findings if f.passes]  # off-object findings included
    assert any(f.class_name == "star" and f.cue == "grass" and clears_bar(f.to_dict()) for f in passing), \
        [f.sentence for f in findings[:8]]

    def true(f) -> bool:
        return biased_truth.confirms(f.class_name, f.cue, f.kind, f.effect,
                                     counters=f.details.get("counter_values") if f.kind == "necessity" else None)

    false_strong = [f.sentence for f in passing if clears_bar(f.to_dict()) and not true(f)]
    assert not false_strong, false_strong  # a false one is never called strong
    for f in passing:
        assert f.n_images >= 16 and f.q <= 0.05 and f.status == "passes"


def test_the_clean_classifier_gets_no_passing_cue_finding(clean_demo):
    """The clean demo classifier, audited on star and made to confirm every test the biased demo confirmed."""
    biased, clean, stderr = clean_demo
    findings = read_findings(clean)
    assert [f.sentence for f in findings if f.passes] == []  # off-object findings included
    assert "passing findings: none" in stderr
    # not for want of trying: every cue test the biased demo passed was confirmed here too, on its seeds (its
    # confirmation pairs are in analysis.json, --confirm-like)
    import json

    analysis = json.loads((clean / "analysis.json").read_text())
    confirmed = {(p["kind"], p["class_index"], p["cue"]) for p in analysis["pairs"] if p.get("confirm")}
    passed = {(f.kind, f.class_index, f.cue) for f in read_findings(biased) if f.passes and f.kind != "off-object"}
    assert analysis["confirm_like"]["confirmed_here_only_for_it"] > 0
    assert passed and passed <= confirmed, passed - confirmed


def test_a_classifier_with_random_weights_gets_no_false_passing_finding(tmp_path):
    """The sanity check of attribution research (randomise the model, the explanation must change): a shapes-world
    network with random weights, audited at the demo's settings; whatever passes must be true of *it* by its own
    truth table (it depends on little, so little may pass)."""
    import torch

    from probe.auditing.loop import audit
    from probe.world.classifiers import Thumbnail, build_classifier, save_world_classifier
    from probe.world.demo import demo_config

    torch.manual_seed(0)
    path = save_world_classifier(Thumbnail(build_classifier(), 4).eval(), tmp_path / "random.pt2")
    audit(demo_config(out=tmp_path / "run", model=path, classes="star", max_steps=3, report=False),
          progress=False)
    findings = read_findings(tmp_path / "run")
    assert findings  # its tests were screened (and some confirmed): an empty run would pass the check below
    truth = true_effects(load_classifier(str(path)), n=200)
    false = [f.sentence for f in findings if f.passes and not truth.confirms(
        f.class_name, f.cue, f.kind, f.effect,
        counters=f.details.get("counter_values") if f.kind == "necessity" else None)]
    assert not false, false


def test_the_validity_sets_share_no_classifier_and_published_sets_are_unchanged():
    """The benchmark's sets (benchmarks/finding_validity.py): the held-out and fresh sets keep their names, seeds,
    cues and recipes (their cached audits are what the README's rows were measured on), and every set, each made
    for a change diagnosed on the one before, shares no name or training seed with the others."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import finding_validity as fv

    tuning, heldout, fresh, fresh2 = fv.plan(), fv.plan(heldout=True), fv.plan(fresh=True), fv.plan(named="fresh2")
    fresh3, fresh4, fresh5 = fv.plan(named="fresh3"), fv.plan(named="fresh4"), fv.plan(named="fresh5")
    fresh6 = fv.plan(named="fresh6")
    assert [(i["name"], i["seed"]) for i in heldout[:2]] == [("heldout-biased-0", 1100), ("heldout-biased-1", 1101)]
    assert heldout[0]["bias"] == {"star": {"background": "grass"}} and heldout[0]["recipe"] == fv.HELDOUT_RECIPES[0]
    assert [i["name"] for i in fresh] == ["fresh-biased-0", "fresh-biased-1", "fresh-biased-2", "fresh-clean-0"]
    assert fresh[0]["bias"] == {"square": {"background": "sand"}, "circle": {"color": "blue"}}
    assert fresh[0]["seed"] == 2100 and fresh[0]["recipe"] == fv.HELDOUT_RECIPES[3]
    assert [i["name"] for i in fresh2] == ["fresh2-biased-0", "fresh2-biased-1", "fresh2-biased-2", "fresh2-clean-0"]
    assert [i["name"] for i in fresh3] == ["fresh3-biased-0", "fresh3-biased-1", "fresh3-biased-2", "fresh3-clean-0"]
    assert [i["name"] for i in fresh4] == ["fresh4-biased-0", "fresh4-biased-1", "fresh4-biased-2", "fresh4-clean-0"]
    assert [i["name"] for i in fresh5] == ["fresh5-biased-0", "fresh5-biased-1", "fresh5-biased-2", "fresh5-clean-0"]
    assert [i["name"] for i in fresh6] == ["fresh6-biased-0", "fresh6-biased-1", "fresh6-biased-2", "fresh6-clean-0"]
    later = [item for name in fv.SETS if name not in ("heldout", "fresh", "fresh2", "fresh3", "fresh4", "fresh5",
                                                      "fresh6") for item in fv.plan(named=name)]
    assert fv.plan(named="fresh9")[0]["bias"] == {"cross": {"background": "wood"}}
    everything = tuning + heldout + fresh + fresh2 + fresh3 + fresh4 + fresh5 + fresh6 + later
    names = [i["name"] for i in everything]
    seeds = [i["seed"] for i in everything]
    assert len(set(names)) == len(names) and len(set(seeds)) == len(seeds)
    assert sum(bool(i["bias"]) for i in fresh) == 3


def test_the_audit_defaults_row_analyses_with_what_probe_audit_would_use():
    """``reanalyse --audit-defaults`` replaces exactly the settings the demo's analysis changes, so its row is what a
    user of plain `probe audit` gets (a demo setting added later joins it without an edit)."""
    import sys
    from pathlib import Path

    from probe.analysis import AnalysisConfig
    from probe.world.demo import DEMO_ANALYSIS

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import finding_validity as fv

    changed = fv._demo_changes(DEMO_ANALYSIS, AnalysisConfig())
    assert set(changed) == {"max_pairs", "n_carriers", "screen_extend"}
    restored = DEMO_ANALYSIS.replace(**{n: getattr(AnalysisConfig(), n) for n in changed})
    assert restored == AnalysisConfig()

    class DemoRun:  # what analysis.json of a run audited at the demo's settings holds
        def read_analysis(self):
            return {"config": DEMO_ANALYSIS.replace(steps=12).to_dict()}

    # the discovery benchmark's --audit-defaults reads the same settings: the run's own, the demo's changes undone
    assert fv.analysis_config(DemoRun()) == DEMO_ANALYSIS.replace(steps=12)
    assert fv.analysis_config(DemoRun(), audit_defaults=True) == AnalysisConfig().replace(steps=12)


def test_the_benchmark_judges_a_claim_on_its_own_counters_and_carriers():
    """benchmarks/finding_validity.py's Judge: a necessity claim against its own counters, a sufficiency claim on its
    own carriers, and stands_for names the (attribute, value) a finding is about (discovery recall reads it)."""
    import sys
    from pathlib import Path

    from probe.classifiers import load_classifier
    from probe.world import bundled_classifier_path, true_effects
    from probe.world.truth import ScenePool

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import finding_validity as fv

    truth = true_effects(load_classifier(bundled_classifier_path("biased")), pool=ScenePool(24, seed=3))
    judge = fv.Judge(truth, 0.15)

    def finding(kind, cue, effect, **details):
        return {"class_name": "star", "cue": cue, "kind": kind, "effect": effect, "details": details}

    grass = finding("necessity", "grass", 0.4, counter_values=["sand", "snow"])
    assert judge(grass) == truth.confirms("star", "grass", "necessity", 0.4, counters=["sand", "snow"]) is True
    assert judge.stands_for(grass) == ("background", "grass")
    # the same sufficiency claim judged on two different carriers can differ; the judge reads the claim's own
    # (this classifier calls a triangle on grass a star far more than a heart on grass: +0.64 against +0.01 at 200
    # scenes a shape, +0.24 over every other shape)
    assert truth.effect("star", "grass", "sufficiency") >= 0.15
    assert judge(finding("sufficiency", "grass", 0.3, carriers=["triangle"])) is True
    assert judge(finding("sufficiency", "grass", 0.3, carriers=["heart"])) is False
    assert judge(finding("sufficiency", "grass", 0.3)) is True  # no carriers named: every other shape
    assert judge.stands_for(finding("off-object", "off-object", 0.3)) is None


def test_the_near_bar_counterfactual_cuts_a_confirmation_back_to_where_the_old_rule_stopped():
    """benchmarks/near_bar_counterfactual.py: a confirmation that went on to 32 pairs because its interval held the
    bar is cut back to the 16 pairs of its first two rounds (the old rule stopped there); one whose interval was clear
    of the bar is left as it was; pairs are told apart by their seeds' round."""
    import sys
    from pathlib import Path

    import numpy as np

    from probe.analysis import AnalysisConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import near_bar_counterfactual as nb

    cfg = AnalysisConfig(max_pairs=32)
    base = cfg.seed + 100_000 * 2  # necessity's seed block

    def record(centre, spread=0.1):
        keys = [f"s{base + 1000 * r + i}:p0" for r in range(4) for i in range(8)]
        diffs = list(centre + np.tile([-spread, spread], 16))
        return {"kind": "necessity", "class_index": 0, "cue": "snow", "diffs": diffs, "keys": keys,
                "attempted": 32, "excluded": 0}

    assert [nb._round_of(k, "necessity", cfg.seed) for k in record(0.2)["keys"]][::8] == [0, 1, 2, 3]
    near = nb._old_prefix(cfg, record(0.17))  # narrow at 16 pairs: the old rule stopped there, bar or not
    assert len(near["keys"]) == len(near["diffs"]) == 16 and near["attempted"] == 16
    wide = nb._old_prefix(cfg, record(0.17, spread=0.5))  # too wide at 16 and 24: the old rule went on to the budget
    assert len(wide["keys"]) == 32 and wide["attempted"] == 32


def test_real_data_confirmations_are_scored_by_what_the_confirmation_measures():
    """benchmarks/finding_validity.py confirm: against the truth in the data, a token-shift finding is judged by the
    class's own images (necessity: what probe confirm compares for it), a sufficiency one by the other classes'; a
    confirmed finding whose effect does not hold there is counted false; the audit's yardstick reads the claim's kind."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import finding_validity as fv

    class Truth:  # necessity and sufficiency of (class, cue); counters recorded
        effects = {("cross", "grass", "necessity"): -0.16, ("cross", "grass", "sufficiency"): 0.01,
                   ("square", "sand", "necessity"): 0.10, ("square", "sand", "sufficiency"): 0.20}
        asked: list = []

        def effect(self, c, cue, kind, counters=None, carriers=None):
            return self.effects[(c, cue, "sufficiency" if kind == "token-shift" else kind)]

        def slice_gap(self, c, cue, kind, counters=None):  # the data's yardstick reads the slices' expected gap
            self.asked.append((c, cue, kind, counters))
            return self.effects[(c, cue, kind)]

    def finding(c, cue, kind, effect, passes, counters=None):
        return {"class_name": c, "cue": cue, "kind": kind, "effect": effect, "passes": passes,
                "details": {"counter_values": counters}}

    findings = [finding("cross", "grass", "token-shift", -0.33, False),
                finding("square", "sand", "necessity", 0.21, True, ["wood", "snow"]),
                finding("square", "sand", "sufficiency", 0.28, True)]
    verdicts = {("cross", "grass", "token-shift"): "confirmed", ("square", "sand", "necessity"): "confirmed",
                ("square", "sand", "sufficiency"): "weaker"}
    real = {k: 0.1 for k in verdicts}
    clean = {"name": "c", "bias": {}}
    data, uniform = {}, {}
    truth = Truth()
    row = fv._confirm_tally(data, clean, findings, truth, verdicts, real, 0.15, measured=True)
    assert ("square", "sand", "necessity", ["wood", "snow"]) in truth.asked
    # in the data: the token shift holds (crosses on grass are recognised less: -0.16), the necessity does not (+0.10)
    assert data["confirmed"] == 2 and data["confirmed_false"] == 1 and data["clean_confirmed_false"] == 1
    assert data["holding"] == 1 and data["holding_confirmed"] == 0 and data["false_passing_confirmed"] == 1
    assert any("holds True" in t for t in row["confirmed (any finding)"])
    fv._confirm_tally(uniform, clean, findings, Truth(), verdicts, real, 0.15, measured=False)
    # by the claims' own kinds: the token shift reads the sufficiency truth (+0.01) and is false
    assert uniform["confirmed_false"] == 2 and uniform["holding"] == 1


def test_recall_counts_a_planted_cue_the_audit_missed_and_the_data_confirmed_apart():
    """benchmarks/finding_validity.py confirm: recall by the audit alone and by the audit with the user's data. A
    planted cue the classifier learned whose finding did not pass but is confirmed on the data counts for the second
    only; one the classifier did not learn counts for neither."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import finding_validity as fv

    class Truth:
        effects = {("heart", "dot"): 0.20, ("star", "grass"): 0.45, ("circle", "red"): 0.05}

        def effect(self, c, cue, kind, counters=None, carriers=None):
            return self.effects[(c, cue)]

        def slice_gap(self, c, cue, kind, counters=None):
            return self.effects[(c, cue)]

    def finding(c, cue, effect, passes):
        return {"class_name": c, "cue": cue, "kind": "necessity", "effect": effect, "passes": passes,
                "details": {"counter_values": None}}

    item = {"name": "b", "bias": {"heart": {"tag": "dot"}, "star": {"background": "grass"},
                                  "circle": {"color": "red"}}}
    findings = [finding("star", "grass", 0.40, True), finding("heart", "dot", 0.07, False),
                finding("circle", "red", 0.02, False)]
    verdicts = {("star", "grass", "necessity"): "confirmed", ("heart", "dot", "necessity"): "confirmed",
                ("circle", "red", "necessity"): "contradicted"}
    tally: dict = {}
    row = fv._confirm_tally(tally, item, findings, Truth(), verdicts, {k: 0.2 for k in verdicts}, 0.15, measured=True)
    assert (tally["learned"], tally["learned_by_audit"], tally["learned_by_data"], tally["learned_by_either"]) == \
        (2, 1, 2, 2)
    assert row["learned, found by"] == {"heart/dot": "data", "star/grass": "audit+data"}
    # a false finding on a planted cue (here the wrong sign) finds nothing, passing or confirmed (review, 8 December
    # 2026: recall matched findings to planted cues by name only)
    tally = {}
    wrong = [finding("heart", "dot", -0.30, True)]
    fv._confirm_tally(tally, item, wrong, Truth(), {("heart", "dot", "necessity"): "confirmed"},
                      {("heart", "dot", "necessity"): 0.2}, 0.15, measured=True)
    assert (tally["learned_by_audit"], tally["learned_by_data"]) == (0, 0)


def test_generated_vs_rendered_redraws_the_generated_pairs_faithfully(readme_demo, biased_truth):
    """benchmarks/generated_vs_rendered.py on the README demo's star/grass: fresh necessity pairs, each generated image
    rendered again from what the oracles read in it, and the truth table; the planted cue is large all three ways, and
    the demo run is left as it was (the script works on a copy); ``subject`` and ``guidance`` draw other images."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import generated_vs_rendered as gvr

    from probe.generators import load_generator

    run = readme_demo / "runs" / "demo"
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    row = gvr.measure(run, "star", "grass", pairs=6, geometries=1)  # loads the run's models and its truth table
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert row["pairs"] >= 4 and row["pairs rendered again"] >= 4
    assert row["rendered from the oracles' readings"][0] >= 0.15 and row["generated, those pairs"][0] >= 0.15
    assert row["truth table (uniform contexts)"] >= 0.15 and biased_truth.effect("star", "grass", "necessity") >= 0.15
    # models loaded once by the caller (as the guidance sweep does): the same row
    loaded = {"classifier": load_classifier(str(bundled_classifier_path("biased"))),
              "generator": load_generator("world", device="cpu"), "truth_table": biased_truth}
    again = gvr.measure(run, "star", "grass", pairs=6, geometries=1, **loaded)
    assert again["generated, those pairs"] == row["generated, those pairs"]
    assert again["rendered from the oracles' readings"] == row["rendered from the oracles' readings"]
    # drawn from the class's plain name instead of its token: other images, the planted cue still large
    named = gvr.measure(run, "star", "grass", pairs=6, geometries=1, subject="name", **loaded)
    assert named["subject"] == "name" and named["pairs"] >= 4 and named["generated, those pairs"][0] >= 0.15
    assert named["generated, those pairs"] != row["generated, those pairs"]
    # drawn at a lower guidance scale than the audit's (the token as learned): the same seeds, other images
    lower = gvr.measure(run, "star", "grass", pairs=6, geometries=1, guidance=2.0, **loaded)
    assert row["guidance"] == 4.0 and lower["guidance"] == 2.0 and lower["pairs"] >= 4
    assert lower["generated, those pairs"] != row["generated, those pairs"]
    # ... or at another number of sampling steps than the audit's 5 (fewer here, to stay cheap)
    fewer = gvr.measure(run, "star", "grass", pairs=6, geometries=1, steps=3, **loaded)
    assert row["steps"] == 5 and fewer["steps"] == 3 and fewer["pairs"] >= 1
    assert fewer["generated, those pairs"] != row["generated, those pairs"]


def test_the_validity_table_counts_strong_findings_only_where_a_row_records_them(tmp_path, capsys):
    """``finding_validity.py table``: per (checker, infidelity) the sums over a set's reanalyse rows, the last row of a
    cell per classifier, clean classifiers' passing findings apart, and strong findings summed over the rows that
    record strength (older rows do not), with the number of classifiers those cover."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import finding_validity as fv

    def row(found, planted, true, passing, strong=None, **extra):
        r = {"checker": "oracles", "infidelity": 0.3, "analysis": "probe audit defaults",
             "recall": {"k": found, "n": planted}, "precision": {"k": true, "n": passing},
             "unverified (met the bars, nobody checked)": [], **extra}
        if strong is not None:
            r["strong"] = {"precision": {"k": strong[0], "n": strong[1]}, "recall": {"k": 0, "n": 0}}
        return r

    rows = {"b-old": [row(1, 2, 3, 4)],  # no strength recorded
            "b-new": [row(0, 1, 0, 1, strong=(0, 0)), row(2, 2, 5, 6, strong=(4, 5), code="later")],  # the later row counts
            "c-new": [row(0, 0, 0, 1, strong=(0, 0))]}
    for name, rs in rows.items():
        (tmp_path / f"validity_reanalysed_{name}.json").write_text(json.dumps(rs))
    items = [{"name": "b-old", "bias": {"star": {"background": "grass"}}},
             {"name": "b-new", "bias": {"heart": {"tag": "dot"}}}, {"name": "c-new", "bias": {}}]
    cell = fv.table(items, results=tmp_path, root=tmp_path)["oracles, probe audit defaults @ 0.3"]
    capsys.readouterr()
    assert cell["classifiers"] == 3
    assert (cell["recall"]["k"], cell["recall"]["n"]) == (3, 4)
    assert (cell["precision"]["k"], cell["precision"]["n"]) == (8, 11)
    assert cell["passing on clean classifiers"] == 1
    strong = cell["strong findings true"]
    assert (strong["classifiers"], strong["k"], strong["n"]) == (2, 4, 5)


def test_the_guidance_sweep_pairs_each_test_and_counts_which_guidance_is_closer(tmp_path, capsys):
    """benchmarks/guidance_near_bar.py's summary: a test counts only where both guidances measured it, distances and
    bar sides are per guidance, and the sign test is exact (3 of 3 closer: p = 0.25)."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import guidance_near_bar as gnb

    def row(test, g, generated, rendered, truth):
        return {"run": "r", "class": test, "cue": "dot", "guidance": g, "pairs": 48, "pairs rendered again": 20,
                "generated, those pairs": [generated, 0, 0], "rendered from the oracles' readings": [rendered, 0, 0],
                "mean P(class) cue arm, generated / rendered": [0.9, 0.8], "mean P(class) counter arms, generated / rendered": [0.7, 0.4],
                "truth table (uniform contexts)": truth}

    rows = [row("a", 4.0, 0.08, 0.19, 0.20), row("a", 2.0, 0.16, 0.19, 0.20),
            row("b", 4.0, 0.25, 0.10, 0.10), row("b", 2.0, 0.12, 0.10, 0.10),
            row("c", 4.0, 0.00, 0.05, 0.05), row("c", 2.0, 0.04, 0.05, 0.05),
            row("d", 4.0, 0.30, 0.30, 0.30)]  # measured at one guidance only: left out
    out = tmp_path / "sweep.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = gnb.summary(out)
    assert s["tests"] == 3
    assert s["guidance 4"]["generated on the truth's side of the bar"] == "1/3"  # a misses, b overstates
    assert s["guidance 2"]["generated on the truth's side of the bar"] == "3/3"
    assert s["guidance 4"]["true >= bar, generated >= bar"] == "0/1"
    assert s["guidance 2"]["true < bar, generated >= bar"] == "0/2"
    assert abs(s["guidance 4"]["mean |generated - rendered|"] - (0.11 + 0.15 + 0.05) / 3) < 1e-4
    closer = s["guidance 2 closer to the rendered than 4"]
    assert closer == {"tests": "3/3", "sign test p (two-sided)": 0.25}
    assert gnb._sign_test(0, 10) == gnb._sign_test(10, 10) < 0.002
    assert gnb._fit([0.0, 0.1, 0.2], [0.01, 0.06, 0.11]) == [0.5, 0.01] and gnb._fit([0.1, 0.1, 0.1], [0, 1, 2]) is None
    assert s["guidance 2"]["mean P(class) counter arm, generated - rendered"] == 0.3


def _validity_module():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import finding_validity as fv

    return fv


class _Truth:
    """A classifier's truth table as the benchmark reads it: (class, cue, kind) -> true effect (a token shift reads
    the sufficiency effect)."""

    def __init__(self, effects: dict):
        self.effects = effects
        self.frame = {"cue": sorted({cue for _, cue, _ in effects})}

    def effect(self, c, cue, kind, counters=None, carriers=None):
        return self.effects.get((c, cue, "sufficiency" if kind == "token-shift" else kind), 0.0)

    def confirms(self, c, cue, kind, claimed, threshold=0.15, counters=None, carriers=None):
        true = self.effect(c, cue, kind)
        return bool(claimed * true > 0 and abs(true) >= threshold)


def _passing(c, cue, kind, effect, strong=True):
    return {"class_index": 0, "class_name": c, "cue": cue, "kind": kind, "effect": effect,
            "ci_low": 0.16 if strong else 0.05, "ci_high": 0.6, "n_images": 32, "passes": True, "status": "passes",
            "q": 0.001, "p": 0.001, "details": {}, "strength": "strong", "sentence": ""}


@pytest.fixture
def fake_validity(tmp_path, monkeypatch):
    """benchmarks/finding_validity.py's score and reanalyse on findings written here, against truth tables given
    here: no classifier, generator or analysis is loaded or run. Returns (module, add(name, bias, truth, findings))."""
    import json
    from pathlib import Path

    import probe.classifiers
    import probe.run
    import probe.run.summary
    import probe.world

    fv = _validity_module()
    monkeypatch.setattr(fv, "ROOT", tmp_path / "validity")
    truths = {}

    class Run:
        def __init__(self, root):
            self.root = Path(root)

        def read_findings(self):
            return json.loads((self.root / "findings.json").read_text())

        def read_analysis(self):
            return {}

    monkeypatch.setattr(probe.run, "RunDir", Run)
    monkeypatch.setattr(probe.classifiers, "load_classifier", lambda path, **kw: Path(path).name.split(".")[0])
    monkeypatch.setattr(probe.world, "true_effects", lambda classifier, **kw: truths[classifier])
    monkeypatch.setattr(probe.run.summary, "clears_bar", lambda f, analysis=None: f["ci_low"] >= 0.15)
    monkeypatch.setattr(fv, "_family", lambda run, threshold: {})

    def add(name, bias, truth, findings):
        """An audit (runs/NAME, read by score) and its audit-defaults reanalysis (read by reanalyse), the same
        findings in both; returns the run folder to pass to reanalyse."""
        truths[name] = _Truth(truth)
        model = tmp_path / "classifiers" / f"{name}.pt2"
        model.parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "classifiers" / f"{name}.bias.json").write_text(json.dumps({"bias": bias}))
        run = fv.ROOT / "runs" / name
        dest = fv.ROOT / "reanalysed" / f"{name}-oracles-0-auditdefaults"
        for folder in (run, dest):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "findings.json").write_text(json.dumps(findings))
        (run / "config.json").write_text(json.dumps({"audit": {"model": str(model)}}))
        return run

    return fv, add


def test_recall_counts_a_planted_cue_only_when_a_true_finding_names_it(fake_validity, capsys):
    """score and reanalyse: a planted cue the classifier learned is found when a *true* passing finding names it; a
    false claim about it (here its sufficiency, which the classifier does not have) finds nothing. The per-finding
    precision counts each passing finding, the per-(class, cue) one each class's cue once."""
    fv, add = fake_validity
    truth = {("star", "grass", "necessity"): 0.40, ("star", "grass", "sufficiency"): 0.01,
             ("heart", "dot", "necessity"): 0.30, ("heart", "dot", "sufficiency"): 0.25}
    run = add("b", {"star": {"background": "grass"}, "heart": {"tag": "dot"}}, truth,
              [_passing("star", "grass", "sufficiency", 0.30), _passing("heart", "dot", "necessity", 0.28),
               _passing("heart", "dot", "sufficiency", 0.20)])
    item = {"name": "b", "bias": {"star": {"background": "grass"}, "heart": {"tag": "dot"}}, "seed": 0}
    estimate = fv.score([item])["tuning"]["estimate"]
    recall = estimate["recall (planted cues with a true effect >= 0.15, found passing)"]
    assert (recall["k"], recall["n"]) == (1, 2)
    precision = estimate["precision (true effect >= 0.15 against the claim's own counters and carriers)"]
    assert (precision["k"], precision["n"]) == (2, 3)
    assert (estimate[fv.PER_CUE]["k"], estimate[fv.PER_CUE]["n"]) == (1, 2)
    row = fv.reanalyse(run, "oracles", 0.0, audit_defaults=True)
    capsys.readouterr()
    assert (row["recall"]["k"], row["recall"]["n"]) == (1, 2)
    assert (row["strong"]["recall"]["k"], row["strong"]["recall"]["n"]) == (1, 2)
    assert (row["precision"]["k"], row["precision"]["n"]) == (2, 3)
    assert (row["precision per (class, cue)"]["k"], row["precision per (class, cue)"]["n"]) == (1, 2)


def test_the_table_counts_the_recall_denominator_score_decided_on_unrounded_effects(fake_validity, tmp_path, capsys):
    """A planted cue at true +0.1497 is not learned (below 0.15) for score, though its row's planted_true reads 0.15
    (rounded to 3 decimals): table counts the planted cues score decided were learned, so its recall is score's."""
    fv, add = fake_validity
    add("b", {"star": {"background": "grass"}}, {("star", "grass", "necessity"): 0.40},
        [_passing("star", "grass", "necessity", 0.35)])
    add("c", {"cross": {"color": "yellow"}}, {("cross", "yellow", "necessity"): 0.1497}, [])
    items = [{"name": "b", "bias": {"star": {"background": "grass"}}, "seed": 0},
             {"name": "c", "bias": {"cross": {"color": "yellow"}}, "seed": 1}]
    recall = fv.score(items)["tuning"]["estimate"]["recall (planted cues with a true effect >= 0.15, found passing)"]
    assert (recall["k"], recall["n"]) == (1, 1)
    (tmp_path / "results").mkdir()
    cell = fv.table(items, results=tmp_path / "results", root=fv.ROOT)["oracles @ 0"]
    capsys.readouterr()
    assert (cell["recall"]["k"], cell["recall"]["n"]) == (1, 1)
    assert cell["classifiers"] == 2 and cell["classifiers lacking"] == []


def test_scoring_one_set_keeps_the_others_rows_and_the_table_names_what_a_cell_lacks(fake_validity, tmp_path, capsys):
    """score merges score.json's rows by classifier (scoring one set, or one classifier again, leaves the others'),
    and each table cell names the classifiers it lacks: a missing reanalyse file or score row is said, not summed
    silently into a smaller count."""
    import json

    fv, add = fake_validity
    add("s1-biased-0", {"star": {"background": "grass"}},
        {("star", "grass", "necessity"): 0.40, ("star", "grass", "sufficiency"): 0.30},
        [_passing("star", "grass", "necessity", 0.35), _passing("star", "grass", "sufficiency", 0.30)])
    add("s2-biased-0", {"heart": {"tag": "dot"}}, {("heart", "dot", "necessity"): 0.30},
        [_passing("heart", "dot", "necessity", 0.28), _passing("circle", "snow", "necessity", 0.20)])
    items = [{"name": "s1-biased-0", "bias": {"star": {"background": "grass"}}, "seed": 0},
             {"name": "s2-biased-0", "bias": {"heart": {"tag": "dot"}}, "seed": 1}]
    fv.score(items[:1])
    fv.score(items[1:])
    fv.score(items[1:])  # again: its row replaced, not doubled
    rows = json.loads((fv.ROOT / "score.json").read_text())["rows"]
    assert [r["classifier"] for r in rows] == ["s1-biased-0", "s2-biased-0"]
    results = tmp_path / "results"
    results.mkdir()
    (results / "validity_reanalysed_s2-biased-0.json").write_text(json.dumps([fv.reanalyse(
        fv.ROOT / "runs" / "s2-biased-0", "oracles", 0.0, audit_defaults=True)]))
    capsys.readouterr()
    summary = fv.table(items, results=results, root=fv.ROOT)
    err = capsys.readouterr().err
    audit = summary["oracles @ 0"]
    assert audit["classifiers"] == 2 and audit["classifiers lacking"] == []
    assert (audit["recall"]["k"], audit["recall"]["n"]) == (2, 2)
    assert (audit["precision"]["k"], audit["precision"]["n"]) == (3, 4)
    cues = audit["precision per (class, cue)"]
    assert (cues["classifiers"], cues["k"], cues["n"]) == (2, 2, 3)  # star/grass twice, counted once
    defaults = summary["oracles, probe audit defaults @ 0"]
    assert defaults["classifiers"] == 1 and defaults["classifiers lacking"] == ["s1-biased-0"]
    assert "lacks s1-biased-0" in err
    assert (defaults["precision per (class, cue)"]["k"], defaults["precision per (class, cue)"]["n"]) == (1, 2)
