"""probe.analysis.necessity: does P(class) drop when the cue is swapped for a neutral counter?"""

from __future__ import annotations

import numpy as np
import pytest

from analysis_fakes import (CLASSES, FakeGenerator, FakeOracles, OracleConcepts, PlantedClassifier, WaterLooksGreenish,
                            fake_cues)
from probe.analysis import OracleCheck, Cue, Lab, measure_necessity
from probe.analysis.necessity import every_counter_suspect, neutral_counters

STAR = CLASSES.index("star")
PROMPTS = [("a photo of a {}", "<probe-2> star")]
SEEDS = list(range(6))
CUES = {c.name: c for c in fake_cues()}


def _lab(gen, planted=True, **kw) -> Lab:
    clf = PlantedClassifier({STAR: "grass"} if planted else {})
    return Lab(gen, [clf], check=OracleCheck(FakeOracles()), batch_size=64, **kw)


def _gen(**kw) -> FakeGenerator:
    return FakeGenerator({"<probe-2>": "on grass"}, **kw)


def test_planted_dependence_is_found_and_a_clean_classifier_shows_none():
    biased = measure_necessity(_lab(_gen()), STAR, CUES["grass"], PROMPTS, SEEDS, object_value="star")
    assert biased.kind == "necessity" and biased.n == len(SEEDS) == biased.attempted and biased.excluded == 0
    assert biased.diffs.min() > 0.1 and biased.effect().ci_low > 0.1
    assert biased.extra["counters"] == ["on sand", "on snow", "on water"]
    # same object, same place, other backgrounds: a classifier that ignores backgrounds does not move at all
    clean = measure_necessity(_lab(_gen(), planted=False), STAR, CUES["grass"], PROMPTS, SEEDS, object_value="star")
    assert clean.n == len(SEEDS) and np.abs(clean.diffs).max() < 1e-4
    # the token's own "grass" is overridden by the counter: swapping grass for sand is what the diffs measure
    sand = measure_necessity(_lab(_gen()), STAR, CUES["sand"], PROMPTS, SEEDS, object_value="star")
    assert sand.diffs.max() < 0  # the counters include grass, which the classifier likes


def test_an_intervention_that_lost_its_object_is_excluded_and_counted():
    # even seeds: the reference image ("star on grass") comes out as a circle
    lose_ref = lambda p, s: p.replace("star on grass", "circle on grass") if s % 2 == 0 else p
    sample = measure_necessity(_lab(_gen(rewrite=lose_ref)), STAR, CUES["grass"], PROMPTS, SEEDS, object_value="star")
    assert sample.attempted == len(SEEDS) and sample.excluded == 3 and sample.n == 3
    assert sample.excluded_share == pytest.approx(0.5)
    assert sample.extra["images_failed_check"] == 3
    assert sample.diffs.min() > 0.1  # the pairs that remain are the real thing


def test_a_counter_that_lost_its_object_is_left_out_of_its_pair():
    # every "star on sand" counter comes out as a circle (P(star) near zero): were it averaged in, a classifier
    # that ignores backgrounds would seem to depend on grass
    lose_counter = lambda p, s: p.replace("star on sand", "circle on sand")
    sample = measure_necessity(_lab(_gen(rewrite=lose_counter), planted=False), STAR, CUES["grass"], PROMPTS, SEEDS,
                               object_value="star")
    assert sample.n == len(SEEDS) and sample.excluded == 0  # the other counters still hold
    assert sample.extra["images_failed_check"] == len(SEEDS)
    assert np.abs(sample.diffs).max() < 1e-4
    # without an object value nothing is checked: the lost counter then biases the result
    unchecked = measure_necessity(_lab(_gen(rewrite=lose_counter), planted=False), STAR, CUES["grass"], PROMPTS, SEEDS)
    assert unchecked.diffs.mean() > 0.1


def test_a_pair_whose_counters_all_failed_is_excluded():
    lose_all = lambda p, s: p.replace("star on", "circle on") if "grass" not in p.split("star")[-1] else p
    sample = measure_necessity(_lab(_gen(rewrite=lose_all)), STAR, CUES["grass"], PROMPTS, SEEDS, object_value="star")
    assert sample.n == 0 and sample.excluded == len(SEEDS)
    assert sample.extra["images_failed_check"] == 3 * len(SEEDS)


def test_a_counter_that_does_not_show_its_value_fails_its_check():
    # the generator ignores "on snow": the image shows the seed's background, rarely snow
    ignore = lambda p, s: p.replace(" on snow", "")
    gen = _gen(rewrite=ignore)
    sample = measure_necessity(_lab(gen), STAR, CUES["grass"], PROMPTS, SEEDS, object_value="star")
    drawn = [FakeOracles().predict(gen.scene("a photo of a <probe-2> star on snow", s)[0][None])["background"][0]
             for s in SEEDS]
    assert sample.extra["images_failed_check"] == sum(b != "snow" for b in drawn) > 0
    assert sample.excluded == 0


def test_rotate_uses_one_counter_per_pair_in_turn():
    gen = _gen()
    sample = measure_necessity(_lab(gen), STAR, CUES["grass"], PROMPTS, SEEDS, object_value="star", rotate=True)
    assert gen.images_made == 2 * len(SEEDS)  # one reference and one counter per pair
    counters = [(p, s) for p, s in gen.prompts if not p.endswith("on grass")]
    assert [s for _, s in counters] == SEEDS
    assert [p.rsplit(" ", 1)[-1] for p, _ in counters] == ["sand", "snow", "water", "sand", "snow", "water"]
    assert sample.n == len(SEEDS) and sample.diffs.min() > 0.1
    full = _gen()
    measure_necessity(_lab(full), STAR, CUES["grass"], PROMPTS, SEEDS, object_value="star")
    assert full.images_made == 4 * len(SEEDS)


def test_cues_of_one_attribute_share_their_images():
    gen = _gen()
    lab = _lab(gen)
    measure_necessity(lab, STAR, CUES["grass"], PROMPTS, SEEDS[:2], object_value="star")
    assert gen.images_made == 2 * 4  # grass and its three counters
    measure_necessity(lab, STAR, CUES["sand"], PROMPTS, SEEDS[:2], object_value="star")
    assert gen.images_made == 2 * 4  # sand and its counters were all drawn already


def test_several_prompts_and_evidence(tmp_path):
    gen = _gen()
    lab = _lab(gen, run_root=tmp_path)
    prompts = PROMPTS + [("a picture of a {}", "<probe-2> star")]
    sample = measure_necessity(lab, STAR, CUES["grass"], prompts, [0, 1], object_value="star",
                               evidence_dir=tmp_path / "classes" / "2-star" / "analysis" / "necessity", n_evidence=4)
    assert sample.attempted == 4 and sample.n == 4
    assert 1 <= len(sample.evidence) <= 4
    assert all(e.startswith("classes/2-star/analysis/necessity/") and (tmp_path / e).is_file() for e in sample.evidence)


def test_a_cue_without_counters_is_skipped():
    sample = measure_necessity(_lab(_gen()), STAR, Cue("x", "{} x"), PROMPTS, SEEDS)
    assert sample.n == 0 and sample.attempted == 0 and sample.extra["skipped"] == "no counters"


def test_neutral_counters_drop_suspect_counters_and_keep_values_aligned():
    grass = CUES["grass"]
    neutral, dropped = neutral_counters(grass, {"{} on sand", "{} on grass", "{} on lava"})
    assert dropped == ["on sand"]
    assert neutral.counters == ("{} on snow", "{} on water") and neutral.counter_values == ("snow", "water")
    assert neutral.name == grass.name and neutral.template == grass.template
    same, none = neutral_counters(grass, set())
    assert same == grass and none == []
    # every counter a suspect: no neutral one is left, so all are kept (a test against them beats no test)
    kept, none_dropped = neutral_counters(grass, set(grass.counters) | {"{} on lava"})
    assert kept == grass and none_dropped == [] and every_counter_suspect(grass, set(grass.counters))
    assert not every_counter_suspect(grass, {"{} on sand"}) and not every_counter_suspect(Cue("x", "{} x"), set())


def test_stated_contexts_are_drawn_per_pair_the_same_in_both_arms_and_checked():
    """Both arms of a pair state one random value of every other attribute; an arm whose image does not show
    the stated context is evidence of nothing and leaves its pair."""
    from probe.analysis.context import Stated, StatedContexts

    from analysis_fakes import BACKGROUNDS
    from probe.analysis.cues import cues_from_vocabulary

    cues = cues_from_vocabulary(BACKGROUNDS, [], ["none", "dot"], {"dot": "with a dot in the corner", "none": "with no tag"})
    contexts = StatedContexts.from_cues(cues, OracleCheck(FakeOracles()))
    assert contexts.attributes == ["background", "tag"]
    drawn = [contexts.draw(s, 0, "background") for s in range(40)]
    assert {d[0].attribute for d in drawn} == {"tag"} and {d[0].value for d in drawn} == {"none", "dot"}
    assert drawn == [contexts.draw(s, 0, "background") for s in range(40)]  # seeded by the pair: stable
    dot, grass = Stated("tag", "dot", "{} with a dot in the corner"), Stated("background", "grass", "{} on grass")
    assert contexts.compose("<probe-2> star", [dot, grass]) == "<probe-2> star on grass with a dot in the corner"
    gen = _gen()
    lab = _lab(gen, contexts=contexts)
    seeds = list(range(12))
    sample = measure_necessity(lab, STAR, CUES["grass"], PROMPTS, seeds, object_value="star")
    by_seed: dict[int, set[bool]] = {}
    for prompt, seed in gen.prompts:
        by_seed.setdefault(seed, set()).add("with a dot in the corner" in prompt)
    assert all(len(v) == 1 for v in by_seed.values())  # ref and counters of a pair state the same tag
    assert {next(iter(v)) for v in by_seed.values()} == {True, False}  # and the pairs sample both values
    assert sample.n == len(seeds) and sample.diffs.min() > 0.1  # the planted grass dependence, in every context
    # the generator drops the stated dot from every counter arm: those pairs have no valid counter
    drop = lambda p, s: p.replace(" with a dot in the corner", "") if " on grass" not in p else p
    lost = measure_necessity(_lab(_gen(rewrite=drop), contexts=contexts), STAR, CUES["grass"], PROMPTS, seeds,
                             object_value="star")
    dotted = sum(next(iter(v)) for v in by_seed.values())
    assert lost.excluded == dotted and lost.n == len(seeds) - dotted



def test_a_concept_model_states_contexts_and_judges_each_stated_value_against_its_attribute_s_others():
    """With a concept model as the check, necessity pairs state the other attributes as with the oracles, and the
    concept model must find each stated value beating that attribute's other values: a counter arm whose stated dot
    was not drawn leaves its pair (were stated values not judged, those pairs would stay, unlike the oracles')."""
    from probe.analysis.checks import ConceptModelCheck
    from probe.analysis.context import StatedContexts

    from analysis_fakes import BACKGROUNDS
    from probe.analysis.cues import cues_from_vocabulary

    cues = cues_from_vocabulary(BACKGROUNDS, [], ["none", "dot"], {"dot": "with a dot in the corner", "none": "with no tag"})
    check = ConceptModelCheck(OracleConcepts(cues), list(CLASSES), cues, object_attribute="shape")
    contexts = StatedContexts.from_cues(cues, check)
    assert contexts.attributes == ["background", "tag"]
    assert contexts.rivals(contexts.draw(0, 0, "background")) in ({"tag": ("dot",)}, {"tag": ("none",)})
    clf = PlantedClassifier({STAR: "grass"})
    seeds = list(range(12))
    gen = _gen()
    sample = measure_necessity(Lab(gen, [clf], check=check, batch_size=64, contexts=contexts), STAR, CUES["grass"],
                               PROMPTS, seeds, object_value="star")
    assert sample.n == len(seeds) and sample.excluded == 0 and sample.diffs.min() > 0.1
    dotted = {s for p, s in gen.prompts if "with a dot in the corner" in p}
    assert 0 < len(dotted) < len(seeds)
    drop = lambda p, s: p.replace(" with a dot in the corner", "") if " on grass" not in p else p
    lost = measure_necessity(Lab(_gen(rewrite=drop), [clf], check=check, batch_size=64, contexts=contexts), STAR,
                             CUES["grass"], PROMPTS, seeds, object_value="star")
    assert lost.excluded == len(dotted) and lost.n == len(seeds) - len(dotted)


def test_a_concept_model_states_the_contexts_of_cues_that_name_their_attribute_and_not_of_free_categories(tmp_path):
    """set_up (probe/analysis/plan.py) with a concept model: the world's cues, which name their attributes, get stated
    contexts checked by the concept model; a curated-style cue list (free categories) gets none."""
    from tiny_concepts import save_tiny_clip

    from probe.analysis import AnalysisConfig
    from probe.analysis.checks import ConceptModelCheck
    from probe.analysis.cues import default_cues
    from probe.analysis.plan import set_up
    from probe.run import RunDir
    from probe.world.domain import world_cues

    clip = save_tiny_clip(tmp_path / "clip")
    cfg = AnalysisConfig(concepts=str(clip))
    run = RunDir(tmp_path / "run")
    labels = ["circle", "square", "triangle", "star", "cross", "heart"]
    world = set_up(run, None, object(), cfg, world_cues(), None, labels=labels)
    assert isinstance(world.check, ConceptModelCheck) and world.contexts is not None
    assert world.contexts.attributes == ["background", "color", "tag"]
    curated = set_up(run, None, object(), cfg, default_cues(), None, labels=labels)
    assert isinstance(curated.check, ConceptModelCheck) and curated.contexts is None
    unstated = set_up(run, None, object(), cfg.replace(stated_contexts=False), world_cues(), None, labels=labels)
    assert unstated.contexts is None


def test_a_concept_model_judges_the_cue_against_every_value_of_its_attribute_not_only_the_kept_counters():
    """The counter rule may drop a counter (here "on water"); the cue arm must still show the cue more than that value:
    a concept model that rates a water image a little "grass" (as CLIP rated a purple cross a little "blue" against
    yellow and red) would otherwise pass a grass arm that came out on water. Applies where the attribute's values
    exclude one another (stated contexts)."""
    from probe.analysis.checks import ConceptModelCheck
    from probe.analysis.context import StatedContexts

    from analysis_fakes import BACKGROUNDS
    from probe.analysis.cues import cues_from_vocabulary

    cues = cues_from_vocabulary(BACKGROUNDS, [], ["none", "dot"], {"dot": "with a dot in the corner", "none": "with no tag"})
    check = ConceptModelCheck(WaterLooksGreenish(cues), list(CLASSES), cues, object_attribute="shape")
    contexts = StatedContexts.from_cues(cues, check)
    grass = next(c for c in cues if c.name == "grass")
    kept = grass.without_counters({t for t, v in zip(grass.counters, grass.counter_values) if v == "water"})
    assert "water" not in kept.counter_values and "water" in contexts.alternatives("background", "grass", kept.counter_values)
    seeds = list(range(8))
    swap = lambda p, s: p.replace(" on grass", " on water") if s % 2 else p  # odd seeds: the grass arm shows water
    clf = PlantedClassifier({STAR: "grass"})
    sample = measure_necessity(Lab(_gen(rewrite=swap), [clf], check=check, batch_size=64, contexts=contexts), STAR, kept,
                               PROMPTS, seeds, object_value="star")
    assert sample.excluded == len(seeds) // 2 and sample.n == len(seeds) // 2
    # without stated contexts nothing says water is another background: the check knows the kept counters only
    loose = measure_necessity(Lab(_gen(rewrite=swap), [clf], check=check, batch_size=64), STAR, kept, PROMPTS, seeds,
                              object_value="star")
    assert loose.excluded == 0
