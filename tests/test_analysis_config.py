"""probe.analysis.config: AnalysisConfig, typed and validated, and its way through AuditConfig and JSON."""

from __future__ import annotations

import json

import pytest

from probe.analysis import METHODS, AnalysisConfig, AnalysisError, Thresholds


def test_defaults_are_valid_and_cpu_sized():
    cfg = AnalysisConfig()
    assert cfg.methods == METHODS and cfg.cues == "auto" and cfg.confirm
    assert cfg.max_pairs >= cfg.thresholds.min_pairs and cfg.screen_seeds < cfg.thresholds.min_pairs


def test_json_round_trip_is_exact():
    cfg = AnalysisConfig(cues="my_cues.txt", methods=["occlusion"], classes=[3, 1], carriers=["dog", "cat"],
                         max_pairs=48, thresholds=Thresholds(min_pairs=20, fdr_method="bh"), steps=5)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["thresholds"]["min_pairs"] == 20 and data["methods"] == ["occlusion"]
    back = AnalysisConfig.from_dict(data)
    assert back == cfg
    assert back.methods == ("occlusion",) and back.classes == (3, 1) and back.carriers == ("dog", "cat")
    assert isinstance(back.thresholds, Thresholds) and back.thresholds.fdr_method == "bh"
    assert AnalysisConfig.from_dict({}) == AnalysisConfig()


def test_from_dict_rejects_unknown_keys_by_name():
    with pytest.raises(AnalysisError, match=r"unknown setting\(s\) cuess;"):
        AnalysisConfig.from_dict({"cuess": "typo.txt"})
    with pytest.raises(AnalysisError, match="sufficiency_seeds"):
        AnalysisConfig.from_dict({"sufficiency_seeds": 6, "cues": "world"})  # a setting of the old analysis


def test_max_pairs_below_min_pairs_is_an_error():
    with pytest.raises(AnalysisError, match="--max-pairs 8 is below the 16 pairs"):
        AnalysisConfig(max_pairs=8)
    assert AnalysisConfig(max_pairs=8, thresholds=Thresholds(min_pairs=8)).max_pairs == 8


@pytest.mark.parametrize("changes, match", [
    ({"methods": ("saliency",)}, "subset"),
    ({"methods": ()}, "non-empty"),
    ({"carrier_template": "no slot"}, "carrier_template"),
    ({"screen_seeds": 0}, "screen_seeds=0"),
    ({"confirm_round": 0}, "confirm_round"),
    ({"n_evidence": -1}, "n_evidence"),
    ({"target_halfwidth": 0.0}, "target_halfwidth"),
    ({"thresholds": {"min_pairs": 4}}, "Thresholds"),
])
def test_bad_settings_are_named(changes, match):
    with pytest.raises(AnalysisError, match=match):
        AnalysisConfig(**changes)


def test_replace_validates_again():
    cfg = AnalysisConfig()
    assert cfg.replace(ig_steps=4).ig_steps == 4 and cfg.ig_steps == 16
    with pytest.raises(AnalysisError, match="ig_steps"):
        cfg.replace(ig_steps=0)


def test_audit_config_carries_a_typed_analysis_config(tmp_path):
    from probe.auditing.loop import AuditConfig

    plain = AuditConfig(model="m.pt", out=str(tmp_path / "run"))
    assert plain.analysis == AnalysisConfig()
    from_json = AuditConfig(model="m.pt", out=str(tmp_path / "run"),
                            analysis={"cues": "c.txt", "attribution_layer": "layer4", "classes": [1, 2]})
    assert isinstance(from_json.analysis, AnalysisConfig)
    assert from_json.analysis.classes == (1, 2) and from_json.analysis.attribution_layer == "layer4"
    with pytest.raises(AnalysisError, match="unknown"):
        AuditConfig(model="m.pt", out=str(tmp_path / "run"), analysis={"cuess": "typo.txt"})


def test_a_spent_budget_is_topped_up_once_when_failed_checks_left_too_few_valid_pairs():
    """Measured: with the demo's max_pairs=16, triangle/wood (true effect +0.49) kept 15 of 16 pairs (q=0.002) and
    could not pass; the budget counts valid pairs, so one more round replaces the lost ones."""
    import numpy as np

    from probe.analysis.plan import confirmed_enough
    from probe.analysis.sample import Sample

    cfg = AnalysisConfig(max_pairs=16)

    def sample(n_valid, attempted):
        return Sample("necessity", 0, "wood", diffs=np.full(n_valid, 0.3) + np.linspace(0, 0.01, n_valid),
                      attempted=attempted, excluded=attempted - n_valid)

    assert confirmed_enough(cfg, sample(16, 16), False)  # enough valid pairs: done
    assert not confirmed_enough(cfg, sample(15, 16), False)  # one lost: one more round
    assert confirmed_enough(cfg, sample(15, 24), False)  # after that round: done, whatever it gave
    assert confirmed_enough(cfg, sample(7, 16), False)  # more than half failed: inconclusive, no top-up
    # a generator that loses half of this class's pairs whatever the cue: the budget counts valid pairs, so it tops
    # up to 32 attempts; 9 of 16 kept is within its own rate, not a sign the cue breaks the image
    assert not confirmed_enough(cfg, sample(7, 16), False, failure=0.5)
    assert not confirmed_enough(cfg, sample(14, 24), False, failure=0.5)
    assert confirmed_enough(cfg, sample(16, 28), False, failure=0.5)  # enough valid pairs: done
    assert not confirmed_enough(cfg, sample(12, 40), False, failure=0.5)  # 28 of 40 lost: at that rate, 48 attempts
    assert confirmed_enough(cfg, sample(1, 24), False, failure=0.5)  # 23 of 24 lost: clearly beyond its own rate
    assert confirmed_enough(cfg, sample(10, 56), False, failure=0.5)  # 3 x max_pairs and one round: the cap


def test_confirmation_near_the_bar_spends_the_budget_and_a_clear_interval_stops_early():
    """Measured on five validity sets (development): every false passing finding was a real preference below the bar
    (true 0.09-0.14) whose 16-23 confirmation pairs put it at 0.15-0.26, the interval holding 0.15. The pass rule
    compares the estimate with the bar, so an interval that holds the bar goes on to max_pairs; one clear of it
    (above or below) stops at min_pairs as before."""
    import numpy as np

    from probe.analysis.plan import confirmed_enough
    from probe.analysis.sample import Sample

    cfg = AnalysisConfig(max_pairs=32)
    spread = np.tile([-0.1, 0.1], 8)  # 16 pairs, standard deviation about 0.1: a 95% half-width near 0.055

    def sample(centre, n=16):
        return Sample("necessity", 0, "snow", diffs=centre + spread[:n], attempted=n)

    assert not confirmed_enough(cfg, sample(0.17), False)  # 0.12-0.22 holds the bar: more pairs
    assert not confirmed_enough(cfg, sample(0.13), False)  # just below, still holding it
    assert confirmed_enough(cfg, sample(0.40), False)  # clear above: decided
    assert confirmed_enough(cfg, sample(0.02), False)  # futility, as before
    long = Sample("necessity", 0, "snow", diffs=0.17 + np.tile([-0.1, 0.1], 16), attempted=32)
    assert confirmed_enough(cfg, long, False)  # the budget is spent: stop whatever the interval holds
    assert confirmed_enough(AnalysisConfig(max_pairs=16), sample(0.17), False)  # the demo's budget: 16 and done
    # two-sided kinds (token shift) compare |effect| with the bar
    wide = AnalysisConfig(max_pairs=32, target_halfwidth=0.3)  # proportions' intervals are wider

    def shift(lost):
        return Sample("token-shift", 0, "snow", before=np.array([1] * lost + [0] * (16 - lost), bool),
                      after=np.zeros(16, bool), attempted=16)

    assert confirmed_enough(wide, shift(16), True)  # -1.0, far beyond the bar on its side
    assert not confirmed_enough(wide, shift(4), True)  # -0.25, its interval holds -0.15


def test_a_test_that_loses_more_pairs_than_its_class_may_attempt_more_and_is_not_given_up_on_two_rounds():
    """Measured on the fresh2 set at 30% infidelity (world oracles; development figures): the unfaithful generator
    swaps the object "on water" and loses a third of the class's pairs whatever the cue, and more of a cue's own.
    star/water (true effect +0.99) lost 11 of its first 16 pairs, over the limit of 2/3 on a share that noisy
    (exact 95% CI 0.41-0.89), and was given up as inconclusive; square/dot (+0.72) kept 12 of 32 pairs, the budget
    at the class's rate was spent, and it stayed short of the 16 pairs that may decide. A test now attempts at its
    own loss rate (at most 3 x max_pairs) and stops for failing interventions only when the share is clearly over."""
    import numpy as np

    from probe.analysis.plan import confirmed_enough
    from probe.analysis.sample import Sample

    cfg = AnalysisConfig(max_pairs=16)

    def sample(n_valid, attempted):
        return Sample("necessity", 0, "water", diffs=np.full(n_valid, 0.9) + np.linspace(0, 0.01, n_valid),
                      attempted=attempted, excluded=attempted - n_valid)

    third = 1 / 3
    assert not confirmed_enough(cfg, sample(5, 16), False, failure=third)  # star/water: draw on
    assert not confirmed_enough(cfg, sample(12, 32), False, failure=third)  # square/dot: its own rate, 43 attempts
    assert confirmed_enough(cfg, sample(16, 40), False, failure=third)  # enough valid pairs: done
    assert confirmed_enough(cfg, sample(14, 48), False, failure=third)  # 3 x max_pairs attempted: done, whatever it gave
    # a generator that draws what it is asked (failure 0): a test that loses pairs loses them to its own cue
    assert confirmed_enough(cfg, sample(7, 16), False)


def test_every_settings_class_reads_a_dict_with_the_one_policy():
    """AuditConfig, TokenConfig, AnalysisConfig, GateConfig and ScaleConfig read config.json, a Ray worker's wire
    or a notebook dict alike (probe.errors.settings_from_dict): an unknown key is one error naming it, a round trip
    through to_dict gives the same settings."""
    from dataclasses import asdict

    from probe.auditing.config import AuditConfig
    from probe.auditing.scale import ScaleConfig
    from probe.errors import ProbeError
    from probe.gate import GateConfig
    from probe.tokens import TokenConfig

    audit = AuditConfig(model="m.pt2", out="runs/x", gate=GateConfig(max_effect=0.3), scale=ScaleConfig(shard="0/2"))
    assert AuditConfig.from_dict(audit.to_dict()) == audit
    for cls, data in ((AuditConfig, audit.to_dict()), (TokenConfig, audit.token.to_dict()),
                      (AnalysisConfig, audit.analysis.to_dict()), (GateConfig, asdict(audit.gate)),
                      (ScaleConfig, audit.scale.to_dict())):
        with pytest.raises(ProbeError, match=r"unknown setting\(s\) bogus_key;"):
            cls.from_dict({**data, "bogus_key": 1})


@pytest.mark.parametrize("flag, on, methods", [("none", False, METHODS), ("grad_cam", True, ("grad_cam",)),
                                               ("occlusion, grad-cam", True, ("occlusion", "grad_cam")),
                                               ("all", True, METHODS)])
def test_audit_attributions_flag_reaches_the_analysis_config(flag, on, methods, tmp_path, capsys, monkeypatch):
    """`probe audit --attributions`: a 1000-class CPU run needs them off or cheap (integrated gradients and
    occlusion were 100 of 121 s of a 2-class EfficientNet-Lite0 analysis); the audit's config carries the choice."""
    import probe.auditing.loop
    from probe.errors import ProbeError
    from test_hostile_cli import CLEAN, run_cli

    seen = {}

    def reached(config, **kwargs):
        seen["analysis"] = config.analysis
        raise ProbeError("the models would load now")

    monkeypatch.setattr(probe.auditing.loop, "load_models", reached)
    code, text = run_cli(["audit", "--model", CLEAN, "--generator", "world", "--classes", "star", "--out", "runs/x",
                          "--device", "cpu", "--attributions", flag], tmp_path, capsys, monkeypatch)
    assert code == 2 and "the models would load now" in text, text
    assert seen["analysis"].attributions is on and seen["analysis"].methods == methods


def test_audit_attributions_flag_refuses_an_unknown_method_in_one_line(tmp_path, capsys, monkeypatch):
    from test_hostile_cli import CLEAN, run_cli

    code, text = run_cli(["audit", "--model", CLEAN, "--generator", "world", "--out", "runs/x",
                          "--attributions", "grad_cam,saliency"], tmp_path, capsys, monkeypatch)
    assert code == 2 and "--attributions 'grad_cam,saliency'" in text and "integrated_gradients" in text, text
    assert not (tmp_path / "runs").exists()
