"""probe.analysis.evaluation: the token's evaluation images against the plain prompt's, paired by prompt and seed."""

from __future__ import annotations

import pytest

from probe.analysis.stats import paired_proportions
from probe.analysis.evaluation import eval_pairs, gain_text, token_gain


def _image(kind: str, seed: int, correct, prompt_index: int = 0) -> dict:
    return {"kind": kind, "seed": seed, "prompt_index": prompt_index, "correct": correct, "path": f"{kind}{seed}.png"}


def test_images_pair_by_prompt_and_seed_and_an_image_without_its_twin_is_left_out():
    metrics = {"images": [
        _image("token", 1001, False, 1), _image("baseline", 1000, True, 0), _image("token", 1000, False, 0),
        _image("baseline", 1001, True, 1),
        _image("baseline", 1002, True, 2),  # no token twin
        _image("token", 1003, True, 0), _image("baseline", 1003, False, 1),  # same seed, another template: no pair
        _image("token", 1004, "yes", 1), _image("baseline", 1004, True, 1),  # not a yes/no
        {"kind": "token"}, "not a record",
    ]}
    assert eval_pairs(metrics) == [(True, False), (True, False)]
    assert eval_pairs(None) == [] and eval_pairs({"images": "x"}) == []


def test_the_gain_pools_every_class_s_pairs_with_newcombe_s_interval_and_the_exact_mcnemar_test():
    a = {"images": [_image("baseline", s, s % 2 == 0) for s in range(6)] + [_image("token", s, True) for s in range(6)]}
    b = {"images": [_image("baseline", s, True) for s in range(6)] + [_image("token", s, s != 0) for s in range(6)]}
    gain = token_gain([a, b, None])
    expected = paired_proportions([s % 2 == 0 for s in range(6)] + [True] * 6, [True] * 6 + [s != 0 for s in range(6)])
    assert (gain.mean, gain.ci_low, gain.ci_high, gain.n, gain.p) == pytest.approx(
        (expected.mean, expected.ci_low, expected.ci_high, expected.n, expected.p))
    assert gain.n == 12 and gain.mean == pytest.approx(2 / 12)  # 3 gained in a, 1 lost in b
    assert gain_text(gain).startswith("+17 pts (95% CI ") and gain_text(gain).endswith("; 12 pairs)")
    assert token_gain([{"images": []}]) is None and gain_text(None) == ""


def test_a_run_s_gain_is_shown_by_its_result_in_a_notebook_and_by_its_report(tmp_path):
    """AuditResult.token_gain pools the finished classes' pairs (failed ones have none); the notebook's table and the
    report's accuracy card show the same clause."""
    import json

    from probe.auditing.loop import AuditResult
    from probe.report import render_report
    from probe.report.synthetic import make_synthetic_run

    run = make_synthetic_run(tmp_path / "run", n_classes=3, failed=[1])
    records = [json.loads(p.read_text()) for p in sorted(run.glob("classes/*/metrics.json"))]
    expected = token_gain(records)
    assert expected is not None and expected.n == sum(len(eval_pairs(r)) for r in records if r["status"] == "done")
    result = AuditResult(run_dir=run, rows=[])
    assert result.token_gain == expected
    assert f"paired on the same seeds: {gain_text(expected)}</caption>" in result._repr_html_()
    index = render_report(run)
    assert f"{gain_text(expected)} against the baseline" in index.read_text(encoding="utf-8")
