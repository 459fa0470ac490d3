"""probe.analysis.finding: the Finding record, its ranking, its sentence and its files."""

from __future__ import annotations

import json
import math

import pytest

from probe.analysis import AnalysisError, Finding, Findings, rank_findings, read_findings, write_findings
from probe.analysis.finding import sentence


def _f(cue="grass", kind="sufficiency", effect=0.5, passes=True, status="passes", class_index=2, **kw) -> Finding:
    base = dict(class_index=class_index, class_name="star", cue=cue, kind=kind, effect=effect, ci_low=effect - 0.1,
                ci_high=effect + 0.1, n_images=16, evidence=("analysis/cues/00-grass/a.png",), passes=passes,
                strength="strong" if passes else "weak", sentence=f"{cue} {kind}", details={"category": "background"},
                p=1e-4, q=0.01, status=status, excluded=1, attempted=17)
    base.update(kw)
    return Finding(**base)


def test_round_trip_through_dict_and_json_with_nan_as_null():
    f = _f(p=float("nan"), q=float("nan"), status="screened", passes=False)
    d = f.to_dict()
    assert d["p"] is None and d["q"] is None and d["evidence"] == ["analysis/cues/00-grass/a.png"]
    text = json.dumps(d, allow_nan=False)  # strict JSON: no NaN tokens
    back = Finding.from_dict(json.loads(text))
    assert math.isnan(back.p) and math.isnan(back.q)
    assert back.evidence == f.evidence and isinstance(back.evidence, tuple)
    assert back.details == f.details and back.status == "screened" and back.excluded == 1 and back.attempted == 17
    g = _f()
    assert Finding.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    # unknown keys from a newer writer are ignored, missing optional ones take their defaults
    old = {k: v for k, v in g.to_dict().items() if k not in ("p", "q", "status", "unit", "excluded", "attempted")}
    legacy = Finding.from_dict({**old, "future_field": 1})
    assert legacy.status == "weak" and legacy.unit == "pairs" and math.isnan(legacy.q)
    infinite = _f(ci_low=float("-inf"))
    assert infinite.to_dict()["ci_low"] is None and math.isnan(Finding.from_dict(infinite.to_dict()).ci_low)


def test_kind_strength_and_status_are_validated():
    with pytest.raises(AnalysisError, match="kind 'bias'"):
        _f(kind="bias")
    with pytest.raises(AnalysisError, match="strength"):
        _f(strength="medium")
    with pytest.raises(AnalysisError, match="status 'confirmed'.*passes"):
        _f(status="confirmed")
    for status in ("passes", "weak", "inconclusive", "screened"):
        assert _f(status=status).status == status


def test_rank_puts_passing_first_then_status_cue_kinds_agreement_and_size():
    weak_big = _f("snow", effect=0.9, passes=False, status="weak")
    screened = _f("sand", effect=0.95, passes=False, status="screened")
    inconclusive = _f("water", effect=0.99, passes=False, status="inconclusive")
    off = _f("off-object", kind="off-object", effect=0.99, unit="images")
    small = _f("dot", effect=0.2)
    agreed = [_f("grass", effect=0.3), _f("grass", kind="necessity", effect=0.25)]
    ranked = rank_findings([weak_big, screened, inconclusive, off, small, *agreed])
    assert isinstance(ranked, Findings)
    assert [f.cue for f in ranked] == ["grass", "grass", "dot", "off-object", "snow", "water", "sand"]
    assert [f.kind for f in ranked[:2]] == ["sufficiency", "necessity"]  # larger effect first among agreeing ones
    assert ranked.passing == ranked[:4] and all(not f.passes for f in ranked[4:])
    assert rank_findings([_f(effect=float("nan"), passes=False, status="weak"), weak_big])[0] is weak_big


def test_findings_select_and_display_themselves():
    fs = rank_findings([_f(), _f("sand", passes=False, status="weak", class_index=0)])
    assert fs.for_class(0) == [fs[1]] and len(fs.passing) == 1
    assert repr(fs).startswith("Findings(2 findings, 1 passing)")
    assert "Finding[passes] sufficiency class 2 cue 'grass'" in repr(fs)
    frame = fs.to_frame()
    assert list(frame["cue"]) == ["grass", "sand"]
    evil = _f(class_name="<script>alert(1)</script>", sentence="'<script>' is predicted from grass")
    html = Findings([evil])._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "1 findings, 1 passing" in html


def test_sentences_say_pairs_and_name_their_status():
    s = sentence("sufficiency", "star", "grass backgrounds", 0.62, (0.5, 0.7), 24, status="passes", extra={})
    assert s == "'star' is predicted from grass backgrounds: +0.62 probability when added to other objects (95% CI 0.50–0.70, 24 pairs)"
    # a sufficiency claim is about the objects it was measured on, and names them
    named = sentence("sufficiency", "star", "grass backgrounds", 0.62, (0.5, 0.7), 24, status="passes",
                     extra={"carriers": ["circle", "heart"]})
    assert "when added to other objects ('circle', 'heart') (95% CI" in named
    many = sentence("sufficiency", "star", "grass", 0.62, (0.5, 0.7), 24, status="passes",
                    extra={"carriers": ["a", "b", "c", "d", "e"]})
    assert "('a', 'b', 'c' … 5 in all)" in many
    n = sentence("necessity", "star", "grass backgrounds", 0.3, (0.2, 0.4), 16, status="weak",
                 extra={"counters": ["on sand", "on snow", "on water"]})
    assert n.startswith("Weak evidence: 'star' depends on grass backgrounds: swapping it for 'on sand', 'on snow' …")
    assert "lowers its probability by 0.30" in n and "16 pairs" in n
    t = sentence("token-shift", "star", "grass backgrounds", -0.5, (-0.7, -0.3), 20, status="screened",
                 extra={"freq_baseline": 0.75, "freq_token": 0.25})
    assert t.startswith("Screening only (not confirmed): The token for 'star' removes grass backgrounds: 75% → 25%")
    assert "20 pairs" in t
    i = sentence("sufficiency", "star", "grass", 0.5, (float("nan"), float("inf")), 2, status="inconclusive", extra={})
    assert i.startswith("Inconclusive: ") and "95% CI unbounded, 2 pairs" in i
    o = sentence("off-object", "star", "", 0.2, (0.1, 0.3), 16, status="passes",
                 extra={"area_outside": 0.6, "share_outside": 0.8})
    assert o == ("80% of the attribution for 'star' lies outside the object, +0.20 more than the 60% of the image "
                 "outside it (excess +0.20, 95% CI 0.10–0.30, 16 images)")
    assert "pairs" not in o
    with pytest.raises(KeyError):
        sentence("sufficiency", "star", "grass", 0.5, (0.4, 0.6), 16, status="maybe", extra={})


def test_write_and_read_findings(tmp_path):
    import pandas as pd

    fs = rank_findings([_f(), _f("sand", p=float("nan"), q=float("nan"), passes=False, status="screened")])
    write_findings(tmp_path, fs)
    rows = json.loads((tmp_path / "findings.json").read_text())
    assert [r["cue"] for r in rows] == ["grass", "sand"] and rows[1]["q"] is None
    table = pd.read_parquet(tmp_path / "findings.parquet")
    assert list(table.columns) == list(Finding.__dataclass_fields__) and json.loads(table["details"][0]) == fs[0].details
    back = read_findings(tmp_path)
    assert isinstance(back, Findings) and back[0] == fs[0] and back[1].status == "screened" and math.isnan(back[1].q)
    with pytest.raises(AnalysisError, match="findings.json does not exist"):
        read_findings(tmp_path / "nowhere")


def test_a_token_shift_passes_only_with_the_classifiers_response_confirmed_by_the_bar_on_fresh_pairs():
    """Measured on six validity sets: corroborated by a 6-8 pair sufficiency *screen* at the weak bar, 3 of 4 passing
    token shifts were false (cross/dot -0.34: the token drew fewer dots, the screen said -0.26, the classifier's true
    response is below 0.15). The response must now come from the cue's confirmed sufficiency pairs and reach 0.15."""
    from types import SimpleNamespace

    import numpy as np

    from probe.analysis import AnalysisConfig
    from probe.analysis.decide import _corroborate
    from probe.analysis.sample import Sample

    cfg = AnalysisConfig()
    shift = _f(cue="dot", kind="token-shift", effect=-0.34)
    screened_only = SimpleNamespace(confirm=None, screen=Sample("sufficiency", 2, "dot", diffs=np.full(6, -0.26)))
    out = _corroborate(cfg, shift, screened_only)
    assert not out.passes and out.status == "weak" and "never confirmed on fresh pairs" in out.details["not_corroborated"]

    def confirmed(mean):
        return SimpleNamespace(confirm=Sample("sufficiency", 2, "dot", diffs=np.full(16, mean)), screen=None)

    rises = _f(cue="dot", kind="token-shift", effect=0.62)
    assert _corroborate(cfg, rises, confirmed(0.45)).passes
    small = _corroborate(cfg, rises, confirmed(0.08))  # the right sign, below the bar: weak, and says by how much
    assert not small.passes and "+0.08" in small.details["not_corroborated"]
    assert not _corroborate(cfg, rises, confirmed(-0.3)).passes  # the other sign
