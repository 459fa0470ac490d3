"""probe.analysis.sufficiency: does adding a cue to other objects raise P(class)?"""

from __future__ import annotations

import numpy as np

from analysis_fakes import CLASSES, FakeGenerator, FakeOracles, PlantedClassifier, fake_cues
from probe.analysis import Carrier, OracleCheck, Lab, measure_sufficiency

STAR, CIRCLE = CLASSES.index("star"), CLASSES.index("circle")
SEEDS = list(range(6))


def _carriers():
    return [Carrier(n, i, n) for i, n in enumerate(CLASSES)]


def _run(gen=None, clf=None, seeds=SEEDS, **kw):
    gen = gen or FakeGenerator()
    lab = Lab(gen, [clf or PlantedClassifier({STAR: "grass"})], check=OracleCheck(FakeOracles()), batch_size=64)
    cues = fake_cues()
    return gen, cues, measure_sufficiency(lab, cues, list(range(3)), _carriers(), seeds, **kw)


def test_a_planted_background_cue_gets_a_large_effect_and_a_clean_pair_none():
    gen, cues, samples = _run()
    assert set(samples) == {(c.name, k) for c in cues for k in range(3)}
    grass = samples[("grass", STAR)]
    # paired by seed on the circle and square carriers; an image whose own background is grass adds nothing
    assert grass.kind == "sufficiency" and grass.n == 2 * len(SEEDS) and grass.excluded == 0
    assert grass.mean > 0.5 and grass.effect().ci_low > 0.2
    assert grass.diffs.min() > -1e-6
    # grass does not raise the circle (it lowers it: the star takes the probability), and sand does nothing to the star
    assert samples[("grass", CIRCLE)].mean < 0
    assert abs(samples[("sand", STAR)].mean) < 0.05
    # a clean classifier: no cue moves any class
    _, _, clean = _run(clf=PlantedClassifier({}))
    assert max(abs(s.mean) for s in clean.values()) < 0.05
    # one shared pass: (cues + 1) x carriers x seeds images, whatever the number of classes
    assert gen.images_made == (len(cues) + 1) * len(CLASSES) * len(SEEDS)


def test_pairs_whose_carrier_is_the_class_itself_are_not_used():
    _, _, samples = _run()
    for (cue, c), s in samples.items():
        assert s.attempted == 2 * len(SEEDS), (cue, c)
        assert CLASSES[c] not in s.extra["carriers"] and len(s.extra["carriers"]) == 2
    # with the class as the only carrier there is nothing to say about that class, and everything about the others
    lab = Lab(FakeGenerator(), [PlantedClassifier({STAR: "grass"})])
    only_star = measure_sufficiency(lab, fake_cues(), [STAR, CIRCLE], [Carrier("star", STAR)], SEEDS)
    assert only_star[("grass", STAR)].n == 0 and only_star[("grass", STAR)].attempted == 0
    assert only_star[("grass", CIRCLE)].n == len(SEEDS)


def test_a_carrier_naming_no_class_serves_every_class():
    gen = FakeGenerator()
    lab = Lab(gen, [PlantedClassifier({STAR: "grass"})])
    cues = [c for c in fake_cues() if c.name == "grass"]
    samples = measure_sufficiency(lab, cues, [STAR], [Carrier("square"), Carrier("circle", CIRCLE)], [0, 1])
    assert samples[("grass", STAR)].n == 4 and samples[("grass", STAR)].mean > 0.5


def test_pairs_where_the_generator_drops_the_cue_are_excluded_and_counted():
    # the generator ignores "on grass" for the circle on odd seeds: those images show another background
    drop = lambda p, s: p.replace("circle on grass", "circle") if s % 2 else p
    gen, _, samples = _run(gen=FakeGenerator(rewrite=drop))
    grass = samples[("grass", STAR)]
    dropped = sum(FakeOracles().predict(gen.scene("a photo of a circle on grass", s)[0][None])["background"][0] != "grass"
                  for s in SEEDS)
    assert dropped >= 2  # odd seeds whose own background is not grass
    assert grass.attempted == 2 * len(SEEDS) and grass.excluded == dropped and grass.n == grass.attempted - dropped
    assert grass.mean > 0.5  # what remains is the cue's real effect
    assert samples[("sand", STAR)].excluded == 0  # other cues keep all their pairs


def test_pairs_where_an_intervention_lost_its_object_are_excluded():
    # "square on sand" comes out as a circle: the pair compares two objects, not two contexts
    lose = lambda p, s: p.replace("square on sand", "circle on sand")
    _, _, samples = _run(gen=FakeGenerator(rewrite=lose))
    assert samples[("sand", STAR)].excluded == len(SEEDS)  # every square pair
    assert samples[("sand", STAR)].n == len(SEEDS)
    assert samples[("grass", STAR)].excluded == 0


def test_the_tag_cue_and_evidence_files(tmp_path):
    gen = FakeGenerator()
    lab = Lab(gen, [PlantedClassifier({STAR: "grass"})], check=OracleCheck(FakeOracles()), run_root=tmp_path)
    cues = fake_cues()
    samples = measure_sufficiency(lab, cues, [STAR], _carriers(), [0, 1], evidence_dir=tmp_path / "analysis" / "cues",
                                  n_evidence=2)
    dot = samples[("dot", STAR)]
    assert dot.excluded == 0 and abs(dot.mean) < 0.05  # the tag is drawn and read back; the classifier ignores it
    for j, cue in enumerate(cues):
        ev = samples[(cue.name, STAR)].evidence
        assert len(ev) == 2 and all(e.startswith(f"analysis/cues/{j:02d}-") for e in ev)
        assert all((tmp_path / e).is_file() for e in ev)
    assert np.isfinite(samples[("grass", STAR)].diffs).all()


def test_stated_contexts_are_the_same_in_both_images_of_a_pair_and_a_cue_that_bleeds_loses_its_pair():
    """With stated contexts, the cue-free and the cue image of a pair state the same other attributes; a generator
    that lets the cue wipe a stated context (as SD's "on grass" paints the carrier green) loses that pair instead of
    crediting the cue with what the lost context did."""
    from analysis_fakes import BACKGROUNDS
    from probe.analysis.context import StatedContexts
    from probe.analysis.cues import cues_from_vocabulary

    cues = cues_from_vocabulary(BACKGROUNDS, [], ["none", "dot"], {"dot": "with a dot in the corner", "none": "with no tag"})
    contexts = StatedContexts.from_cues(cues, OracleCheck(FakeOracles()))
    grass = [c for c in cues if c.name == "grass"]
    seeds = list(range(12))

    def run(gen):
        lab = Lab(gen, [PlantedClassifier({STAR: "grass"})], check=OracleCheck(FakeOracles()), batch_size=64,
                  contexts=contexts)
        return measure_sufficiency(lab, grass, [STAR], [Carrier("circle", CIRCLE, "circle")], seeds)[("grass", STAR)]

    gen = FakeGenerator()
    sample = run(gen)
    dotted = {s for p, s in gen.prompts if "with a dot in the corner" in p}
    for s in seeds:  # both images of a pair state the same tag, and the pairs sample both tags
        assert {("with a dot in the corner" in p) for p, t in gen.prompts if t == s} == {s in dotted}
    assert 0 < len(dotted) < len(seeds)
    assert sample.n == len(seeds) and sample.excluded == 0 and sample.mean > 0.5
    # the cue wipes the stated dot: every dotted pair is lost, and counted
    bleed = lambda p, s: p.replace(" with a dot in the corner", "") if " on grass" in p else p
    lost = run(FakeGenerator(rewrite=bleed))
    assert lost.excluded == len(dotted) and lost.n == len(seeds) - len(dotted)
    # without stated contexts the same generator loses nothing: the check never asked for the dot
    plain = measure_sufficiency(Lab(FakeGenerator(rewrite=bleed), [PlantedClassifier({STAR: "grass"})],
                                    check=OracleCheck(FakeOracles()), batch_size=64),
                                grass, [STAR], [Carrier("circle", CIRCLE, "circle")], seeds)[("grass", STAR)]
    assert plain.excluded == 0 and plain.n == len(seeds)


def test_a_concept_model_judges_a_sufficiency_cue_arm_against_every_value_of_its_attribute():
    """As for necessity: with stated contexts, a grass arm must show grass more than every other background, also
    one the counter rule dropped from the cue's counters (here water)."""
    from analysis_fakes import BACKGROUNDS, WaterLooksGreenish
    from probe.analysis.checks import ConceptModelCheck
    from probe.analysis.context import StatedContexts
    from probe.analysis.cues import cues_from_vocabulary

    cues = cues_from_vocabulary(BACKGROUNDS, [], ["none", "dot"], {"dot": "with a dot in the corner", "none": "with no tag"})
    check = ConceptModelCheck(WaterLooksGreenish(cues), list(CLASSES), cues, object_attribute="shape")
    contexts = StatedContexts.from_cues(cues, check)
    grass = next(c for c in cues if c.name == "grass")
    kept = grass.without_counters({t for t, v in zip(grass.counters, grass.counter_values) if v == "water"})
    swap = lambda p, s: p.replace(" on grass", " on water") if s % 2 else p  # odd seeds: the grass image shows water
    seeds = list(range(8))
    lab = Lab(FakeGenerator(rewrite=swap), [PlantedClassifier({STAR: "grass"})], check=check, batch_size=64,
              contexts=contexts)
    sample = measure_sufficiency(lab, [kept], [STAR], [Carrier("circle", CIRCLE, "circle")], seeds)[("grass", STAR)]
    assert sample.excluded == len(seeds) // 2 and sample.n == len(seeds) // 2
