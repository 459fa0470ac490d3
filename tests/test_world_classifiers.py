"""World classifiers: planted-cue sampling, the saved .pt2 + sidecars, the bundled pair's accuracy gap."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probe.errors import ProbeError
from probe.world import SHAPES, VOCAB, bundled_bias, bundled_classifier_path
from probe.world.classifiers import (
    BUNDLED_BIAS, ClassifierConfig, evaluate_classifier, load_world_classifier, parse_bias,
    sample_biased_attributes, save_world_classifier, train_world_classifier,
)


def test_parse_bias_string_and_errors():
    assert parse_bias("star=grass, heart=dot,circle=red") == {
        "star": {"background": "grass"}, "heart": {"tag": "dot"}, "circle": {"color": "red"}}
    with pytest.raises(ProbeError, match="'hexagon' is not a shape"):
        parse_bias("hexagon=grass")
    with pytest.raises(ProbeError, match="no color, background or tag"):
        parse_bias("star=plaid")
    with pytest.raises(ProbeError, match="both 'star' and 'heart'"):
        parse_bias({"star": {"background": "grass"}, "heart": {"background": "grass"}})
    with pytest.raises(ProbeError, match="strength"):
        ClassifierConfig(strength=1.5)


def test_biased_sampling_plants_the_cue_at_the_given_strength():
    a = sample_biased_attributes(6000, {"star": {"background": "grass"}}, 0.9, np.random.default_rng(0))
    star = a["shape"] == SHAPES.index("star")
    grass = a["background"] == VOCAB["background"].index("grass")
    assert abs(grass[star].mean() - 0.9) < 0.03
    assert grass[~star].mean() < 0.05  # the other classes avoid the cue
    u = sample_biased_attributes(6000, {}, 0.9, np.random.default_rng(0))
    assert abs((u["background"] == 0).mean() - 0.2) < 0.03


def test_tiny_classifier_saves_as_export_program_with_sidecars(tmp_path):
    cfg = ClassifierConfig(bias="star=grass", strength=0.9, steps=3, batch_size=8, train_size=16, pool=2)
    model = train_world_classifier(cfg, log=lambda *a: None)
    path = save_world_classifier(model, tmp_path / "m.pt2", bias=cfg.bias, strength=0.9, config=cfg)
    program = torch.export.load(str(path))
    x = torch.rand(5, 3, 32, 32)
    mod = program.module()
    assert mod(x).shape == (5, len(SHAPES)) and mod(x[:1]).shape == (1, len(SHAPES))  # dynamic batch
    assert (tmp_path / "m.labels.txt").read_text().split() == list(SHAPES)
    data = json.loads((tmp_path / "m.data.json").read_text())
    assert data["input_size"] == [3, 32, 32] and len(data["mean"]) == 3 and data["crop_pct"] == 1.0
    assert json.loads((tmp_path / "m.bias.json").read_text())["bias"] == {"star": {"background": "grass"}}
    # the loaded file computes what the trained model computed
    torch.testing.assert_close(load_world_classifier(path)(x), model(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ProbeError, match=r"\.pt2"):
        save_world_classifier(model, tmp_path / "m.pt")


def test_bundled_files_and_bias():
    for name in ("clean", "biased"):
        path = bundled_classifier_path(name)
        assert path.stat().st_size <= 3 * 2**20
        assert (path.parent / f"{name}.labels.txt").exists() and (path.parent / f"{name}.data.json").exists()
    bias = bundled_bias("biased")
    assert bias == BUNDLED_BIAS
    assert sum("background" in c for c in bias.values()) >= 2 and sum("tag" in c for c in bias.values()) >= 1
    assert bundled_bias("clean") == {}
    with pytest.raises(ProbeError, match="unknown bundled classifier"):
        bundled_classifier_path("fancy")


@pytest.fixture(scope="module")
def gaps():
    out = {}
    for name in ("clean", "biased"):
        program = torch.export.load(str(bundled_classifier_path(name)))  # as a user's loader would
        assert isinstance(program, torch.export.ExportedProgram)
        out[name] = evaluate_classifier(load_world_classifier(bundled_classifier_path(name)), BUNDLED_BIAS, 0.97, n=360)
    return out


def test_biased_classifier_loses_accuracy_on_its_biased_classes(gaps):
    m = gaps["biased"]
    assert m["in_distribution"] >= 0.95
    drops = {c: m["per_class"][c][0] - m["per_class"][c][1] for c in BUNDLED_BIAS}
    assert all(d >= 0.05 for d in drops.values()), drops
    assert m["decorrelated"] <= m["in_distribution"] - 0.04


def test_clean_classifier_does_not(gaps):
    m = gaps["clean"]
    assert m["in_distribution"] >= 0.95 and m["decorrelated"] >= m["in_distribution"] - 0.02
    assert all(m["per_class"][c][1] >= 0.93 for c in SHAPES)


def test_bias_shares_are_the_samplers_exact_probabilities():
    """bias_shares: what sample_biased_attributes draws, per shape and value (a truth table weighs slices by it)."""
    from probe.world.classifiers import bias_shares

    bias = {"star": {"background": "grass"}, "heart": {"tag": "dot"}, "circle": {"color": "blue"}}
    a = sample_biased_attributes(200_000, bias, 0.9, np.random.default_rng(1))
    shares = bias_shares(bias, 0.9)
    for (shape, attr, value), p in shares.items():
        rows = a["shape"] == SHAPES.index(shape)
        seen = float((a[attr][rows] == VOCAB[attr].index(value)).mean())
        assert abs(seen - p) < 0.01, (shape, attr, value, seen, p)  # about 3.5 standard errors
    for shape in SHAPES:
        for attr in ("color", "background", "tag"):
            assert sum(shares[(shape, attr, v)] for v in VOCAB[attr]) == pytest.approx(1.0)
    assert bias_shares({}, 0.9)[("star", "background", "grass")] == pytest.approx(1 / len(VOCAB["background"]))


def test_the_training_sampler_draws_what_it_drew_when_the_bundled_classifiers_were_trained():
    """sample_biased_attributes and bias_shares read one rule (_redraw_rule); the sampler's draws, and so every
    world classifier retrained from its recipe, must not move with it: a digest of a fixed draw (one free tag value
    left, the case where the draw has a single choice, included)."""
    import hashlib

    bias = {"star": {"background": "grass"}, "heart": {"tag": "dot"}, "square": {"tag": "bar"}, "circle": {"color": "blue"}}
    a = sample_biased_attributes(3000, bias, 0.9, np.random.default_rng(7))
    digest = hashlib.sha256(b"".join(np.asarray(a[k], dtype=np.int64).tobytes() for k in sorted(a))).hexdigest()
    assert digest == "8e07fc3f5c198f5b761ce466b6b9cf53094f442f119b9da3dde2178c32e4a9ca"
