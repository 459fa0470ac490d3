"""probe.world.true_effects: the measured ground truth the audit's findings are judged against."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from probe.analysis.cues import Cue
from probe.world.domain import world_cues
from probe.classifiers import load_classifier
from probe.world import SHAPES, VOCAB, WorldError, bundled_bias, bundled_classifier_path, load_oracles, render_batch, true_effects
from probe.world.truth import COLUMNS, ScenePool, TruthTable, _tag_coverage, cue_attributes

N = 200


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The renders are many small tensors: on two shared cores one thread avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pool():
    return ScenePool(N, seed=0)


@pytest.fixture(scope="module")
def classifiers():
    return {name: load_classifier(bundled_classifier_path(name)) for name in ("biased", "clean")}


@pytest.fixture(scope="module")
def biased(classifiers, pool):
    return true_effects(classifiers["biased"], pool=pool)


@pytest.fixture(scope="module")
def clean(classifiers, pool):
    return true_effects(classifiers["clean"], pool=pool)


def planted_cells():
    """(class, cue name) of every cue planted in the bundled biased classifier."""
    by_value = {(c.attribute, c.value): c.name for c in world_cues()}
    cells = [(cls, by_value[(attr, value)]) for cls, cues in bundled_bias("biased").items() for attr, value in cues.items()]
    assert len(cells) == 3
    return cells


def test_planted_cues_have_large_true_effects_and_lead_their_class(biased):
    for cls, cue in planted_cells():
        nec, suf = biased.row(cls, cue, "necessity"), biased.row(cls, cue, "sufficiency")
        assert nec["effect"] >= 0.15 and nec["ci_low"] > 0.1, (cls, cue, nec.to_dict())
        assert suf["effect"] > 0.1 and suf["ci_low"] > 0.05, (cls, cue, suf.to_dict())
        for kind in ("necessity", "sufficiency"):
            assert cue in list(biased.top(cls, 3, kind)["cue"]), (cls, cue, kind, biased.top(cls, 5, kind))
        assert biased.confirms(cls, cue, "necessity", 0.3)
        assert not biased.confirms(cls, cue, "necessity", -0.3)  # wrong sign
        assert biased.confirms(cls, cue, "token-shift", 0.2) == (biased.effect(cls, cue, "sufficiency") >= 0.15)
    # The strong background cues are each their class's single largest necessity effect.
    assert biased.top("star", 1)["cue"].tolist() == ["grass"]
    assert biased.top("triangle", 1)["cue"].tolist() == ["water"]


def test_planted_cells_have_tight_intervals(biased):
    for cls, cue in planted_cells():
        for kind, n in (("necessity", N), ("sufficiency", (len(SHAPES) - 1) * N)):
            r = biased.row(cls, cue, kind)
            assert r["n"] == n
            assert r["ci_low"] < r["effect"] < r["ci_high"]
            assert r["ci_high"] - r["ci_low"] < 0.1, (cls, cue, kind, r.to_dict())


def test_clean_classifier_has_no_true_necessity_effect(clean, biased):
    frame = clean.to_frame()
    nec = frame[frame["kind"] == "necessity"]
    worst = nec.loc[nec["effect"].abs().idxmax()]
    assert abs(worst["effect"]) < 0.15, worst.to_dict()
    assert not any(clean.confirms(cls, cue, "necessity", 0.3) for cls, cue in planted_cells())
    # Same scenes, different classifier: the table measures the classifier, not the scenes.
    for cls, cue in planted_cells():
        assert biased.effect(cls, cue, "necessity") - clean.effect(cls, cue, "necessity") > 0.1


def test_table_covers_every_class_and_audit_world_cue(biased):
    cues = world_cues()
    assert cue_attributes() == [(c.name, c.attribute, c.value) for c in cues]
    frame = biased.to_frame()
    assert tuple(frame.columns) == COLUMNS
    assert len(frame) == len(SHAPES) * len(cues) * 2
    assert set(frame["class_name"]) == set(SHAPES) and set(frame["kind"]) == {"sufficiency", "necessity"}
    assert frame[["effect", "ci_low", "ci_high"]].notna().all().all()
    assert (frame["class_index"] == frame["class_name"].map(SHAPES.index)).all()
    frame.loc[0, "effect"] = 99.0  # to_frame is a copy
    assert biased.to_frame().loc[0, "effect"] != 99.0


def test_arms_differ_only_in_the_intervened_attribute():
    small = ScenePool(6, seed=3)
    assert len(small.chunks) == 1  # one render_batch call per arm: its mask covers every scene
    oracles = load_oracles()
    tag_region = _tag_coverage(small.size).sum(0)[0] > 0
    for attribute in ("background", "color", "tag"):
        arms = {}
        for value in VOCAB[attribute]:
            attrs = small.attributes_with(attribute, value)
            images = small.images_with(attribute, value)
            # 1. The arm is exactly what the world's renderer draws for those attributes and texture seed.
            for start, stop, tex_seed in small.chunks:
                ref, mask = render_batch({k: v[start:stop] for k, v in attrs.items()},
                                         generator=torch.Generator().manual_seed(tex_seed))
                assert torch.equal(ref, images[start:stop]), (attribute, value)
            arms[value] = (attrs, images, mask)
        base_attrs, base_images, mask = arms[VOCAB[attribute][0]]
        base_pred = oracles.predict(base_images)
        for value, (attrs, images, _) in arms.items():
            # 2. The attributes differ in the intervened one only.
            for key in attrs:
                assert np.array_equal(attrs[key], base_attrs[key]) == (key != attribute or value == VOCAB[attribute][0]), key
            assert (attrs[attribute] == VOCAB[attribute].index(value)).all()
            # 3. The oracles read the value set, and the same everything else.
            pred = oracles.predict(images)
            assert pred[attribute] == [value] * len(small), (attribute, value)
            for key in pred:
                if key != attribute:
                    assert pred[key] == base_pred[key], (attribute, value, key)
            # 4. Pixels change only where the attribute lives.
            changed = (images - base_images).abs().amax(1) > 0
            if attribute == "tag":
                assert not changed[:, ~tag_region].any()
            elif attribute == "color":
                near_object = F.max_pool2d(mask.float().unsqueeze(1), 3, 1, 1)[:, 0] > 0
                assert not (changed & ~near_object).any()
            elif value != VOCAB[attribute][0]:
                interior = -F.max_pool2d(-mask.float().unsqueeze(1), 3, 1, 1)[:, 0] > 0
                assert not (changed & interior).any()
                assert changed[~mask].float().mean() > 0.9


def test_cue_selection_and_errors(classifiers):
    small = ScenePool(10, seed=1)
    clf = classifiers["biased"]
    grass = next(c for c in world_cues() if c.name == "grass")
    table = true_effects(clf, cues=["dot", grass], pool=small)
    assert set(table.to_frame()["cue"]) == {"dot", "grass"} and len(table.to_frame()) == len(SHAPES) * 2 * 2
    assert table.n == 10 and table.row("heart", "dot", "necessity")["n"] == 10
    with pytest.raises(WorldError, match="not a world cue"):
        true_effects(clf, cues=["plate"], pool=small)
    with pytest.raises(WorldError, match="attribute"):
        true_effects(clf, cues=[Cue(name="plate", template="{} on a plate")], pool=small)
    with pytest.raises(WorldError, match="repeat"):
        true_effects(clf, cues=["dot", "dot"], pool=small)
    with pytest.raises(WorldError, match="n=1"):
        true_effects(clf, n=1)

    class Renamed(torch.nn.Module):
        labels = ["cat", "dog", "car", "bus", "cup", "pen"]

        def forward(self, x):
            return torch.zeros(x.shape[0], 6)

    with pytest.raises(WorldError, match="shapes world's classes"):
        true_effects(Renamed(), pool=small)
    with pytest.raises(WorldError, match="square"):
        table.effect("hexagon", "dot", "necessity")
    with pytest.raises(WorldError, match="grass"):
        table.effect("heart", "plate", "necessity")
    with pytest.raises(WorldError, match="off-object"):
        table.effect("heart", "dot", "off-object")
    # a value that is no cue of the table (the tag "none", what "with a name tag" draws) against the cues' values
    none = table.value_effect("heart", "tag", "none", "necessity", ["dot"])
    assert none == pytest.approx(-table.effect("heart", "dot", "necessity", ["none"]))
    assert table.value_effect("heart", "tag", "dot", "necessity") == pytest.approx(table.effect("heart", "dot", "necessity"))
    with pytest.raises(WorldError, match="tag='plaid'"):
        table.value_effect("heart", "tag", "plaid", "necessity")


def test_truth_table_displays_itself_and_escapes_text():
    hostile = "<script>alert(1)</script>"
    frame = pd.DataFrame(
        [(0, hostile, "<b>dot</b>", "tag", "dot", kind, eff, eff - 0.01, eff + 0.01, 5)
         for kind, eff in (("sufficiency", 0.2), ("necessity", -0.3))],
        columns=list(COLUMNS),
    )
    table = TruthTable(frame, n=5, classifier="x")
    assert table.effect(0, "<b>dot</b>", "necessity") == pytest.approx(-0.3)
    assert table.confirms(hostile, "<b>dot</b>", "token-shift", 0.5)
    assert not table.confirms(hostile, "<b>dot</b>", "necessity", -0.5, threshold=0.35)
    assert not table.confirms(hostile, "<b>dot</b>", "necessity", 0.0)
    page = table._repr_html_()
    assert "<script>" not in page and "<b>" not in page and "&lt;script&gt;" in page
    assert hostile in repr(table) and "-0.30" in repr(table)
    with pytest.raises(WorldError, match="columns"):
        TruthTable(frame.drop(columns=["ci_low"]), n=5)


def test_a_sufficiency_claim_is_judged_on_its_own_carriers(biased, classifiers, pool):
    """A sufficiency claim measured on a few carriers is about those shapes: the yardstick averages them alike,
    every other shape gives the table's own cell, and a shape that is no carrier of the class is an error."""
    others = [s for s in SHAPES if s != "star"]
    assert biased.effect("star", "grass", "sufficiency", carriers=others) == pytest.approx(
        biased.effect("star", "grass", "sufficiency"), abs=1e-6)
    # one carrier: the plain difference on that shape's scenes, recomputed from the pool
    from probe.world.truth import _probabilities

    star, idx = SHAPES.index("star"), pool.indices(SHAPES.index("circle"))
    p = {v: _probabilities(classifiers["biased"], pool.images_with("background", v), 512)[idx, star]
         for v in VOCAB["background"]}
    direct = float(np.mean(p["grass"] - np.mean([p[v] for v in VOCAB["background"] if v != "grass"], axis=0)))
    assert biased.effect("star", "grass", "sufficiency", carriers=["circle"]) == pytest.approx(direct, abs=1e-5)
    two = [biased.effect("star", "grass", "sufficiency", carriers=[s]) for s in ("circle", "heart")]
    assert biased.effect("star", "grass", "sufficiency", carriers=["circle", "heart"]) == pytest.approx(np.mean(two))
    # necessity ignores carriers; a carrier that is the class itself, or no shape, is refused
    assert biased.effect("star", "grass", "necessity", carriers=["circle"]) == pytest.approx(
        biased.effect("star", "grass", "necessity"), abs=1e-6)
    with pytest.raises(WorldError, match="carriers"):
        biased.effect("star", "grass", "sufficiency", carriers=["star"])


def test_a_pool_can_be_drawn_from_a_classifiers_own_population():
    """ScenePool(bias=...) draws the cue attributes as the classifier's training and validation scenes do (the
    population a real-data confirmation measures); the geometry and the unclaimed attributes stay the uniform pool's."""
    uniform = ScenePool(400, seed=1)
    grass, blue = VOCAB["background"].index("grass"), VOCAB["color"].index("blue")
    population = ScenePool(400, seed=1, bias={"star": {"background": "grass"}, "circle": {"color": "blue"}}, strength=0.9)
    shape = population.attributes["shape"]
    star, circle = SHAPES.index("star"), SHAPES.index("circle")
    on_grass = population.attributes["background"] == grass
    assert 0.85 <= on_grass[shape == star].mean() <= 0.95
    assert on_grass[shape != star].mean() < 0.05  # the other shapes avoid the claimed value
    is_blue = population.attributes["color"] == blue
    assert 0.85 <= is_blue[shape == circle].mean() <= 0.95 and is_blue[shape != circle].mean() < 0.05
    assert (uniform.attributes["color"][shape != circle] == blue).mean() > 0.1  # uniform: about 1 in 5
    for key in ("size", "x", "y", "rotation", "tag"):
        assert np.array_equal(population.attributes[key], uniform.attributes[key]), key
    assert "bias" in repr(population) and "bias" not in repr(uniform)
    for same in (ScenePool(400, seed=1, bias={}, strength=0.9), ScenePool(400, seed=1, bias={"star": {"background": "grass"}})):
        assert all(np.array_equal(same.attributes[k], uniform.attributes[k]) for k in uniform.attributes)
    with pytest.raises(WorldError, match="strength"):
        ScenePool(10, bias={"star": {"background": "grass"}}, strength=1.5)
    with pytest.raises(WorldError):
        ScenePool(10, bias={"star": {"background": "lava"}}, strength=0.5)


def test_a_pool_renders_only_when_asked_and_then_as_render_batch_does():
    """Building a pool draws its scenes and renders nothing (a population read for its attributes costs no pixels);
    its images, with or without an intervention, are render_batch's for each chunk's attributes and texture seed."""
    pool = ScenePool(50, seed=3)  # 300 scenes: two chunks of render_batch, each with its own texture seed
    assert len(pool.chunks) == 2 and pool._rendering is None  # noqa: SLF001 - the laziness is what this test is about
    for attribute, value in ((None, None), ("background", "snow"), ("tag", "dot")):
        images = pool.images_with(attribute, value)
        attrs = pool.attributes_with(attribute, value)
        for start, stop, seed in pool.chunks:
            chunk = {k: v[start:stop] for k, v in attrs.items()}
            expected, _ = render_batch(chunk, generator=torch.Generator().manual_seed(seed))
            torch.testing.assert_close(images[start:stop], expected, rtol=0, atol=1e-6)
    assert pool._rendering is not None  # noqa: SLF001


def test_validation_truth_measures_the_validation_population(classifiers):
    """validation_truth reads the classifier's bias.json: the clean classifier's population is the uniform one (same
    table as true_effects on the same pool); the biased one's scenes follow its planted cues."""
    from probe.world import validation_truth

    clean = validation_truth("clean", n=12, model=classifiers["clean"])
    assert clean.frame.equals(true_effects(classifiers["clean"], pool=ScenePool(12, 0)).frame)
    biased = validation_truth("biased", n=12, model=classifiers["biased"])
    assert not biased.frame.equals(true_effects(classifiers["biased"], pool=ScenePool(12, 0)).frame)


def test_slice_gap_weighs_values_as_the_population_draws_them(classifiers):
    """TruthTable.slice_gap: what a validation set's slices would show. With the star planted on grass at strength 1
    no star shows a counter and no other shape shows grass, so those slices are empty (NaN) though the intervention's
    effect exists; a counter the class never shows weighs nothing."""
    pool = ScenePool(12, seed=2, bias={"star": {"background": "grass"}}, strength=1.0)
    table = true_effects(classifiers["biased"], pool=pool)
    assert np.isnan(table.slice_gap("star", "grass", "necessity")) and np.isfinite(table.effect("star", "grass", "necessity"))
    assert np.isnan(table.slice_gap("heart", "grass", "necessity"))
    heart = SHAPES.index("heart")
    means = {v: table.value_means[("necessity", heart, "background", v)] for v in ("sand", "water")}
    assert table.slice_gap("heart", "sand", "necessity", counters=["grass", "water"]) == pytest.approx(
        means["sand"] - means["water"])
    assert table.effect("heart", "sand", "necessity", counters=["grass", "water"]) != pytest.approx(
        means["sand"] - means["water"])
    # sufficiency for heart: the only other scenes on grass are the stars'; no star is on sand
    others = [s for s in SHAPES if s not in ("heart", "star")]
    sand = [table.shares[(s, "background", "sand")] for s in others]
    expected = table.carrier_means[(heart, "background", "grass", "star")] - sum(
        w * table.carrier_means[(heart, "background", "sand", s)] for w, s in zip(sand, others)) / sum(sand)
    assert table.shares[("star", "background", "sand")] == 0
    assert table.slice_gap("heart", "grass", "sufficiency", counters=["sand"]) == pytest.approx(expected)
    # a mistyped kind was read as necessity, an unknown counter raised a bare KeyError
    with pytest.raises(WorldError, match="kind 'sufficency'"):
        table.slice_gap("star", "grass", "sufficency")
    with pytest.raises(WorldError, match=r"counters \['lava'\] are not other values of 'background'"):
        table.slice_gap("star", "grass", "necessity", counters=["lava"])
    assert table.slice_gap("heart", "sand", "token-shift", counters=["grass", "water"]) == pytest.approx(
        means["sand"] - means["water"])  # a token shift is compared on the class's own scenes
