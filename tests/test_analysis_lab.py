"""probe.analysis.lab: generate once per (prompt, seed), check the intervention, classify, keep evidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis_fakes import CLASSES, ColourClassifier, FakeGenerator, FakeOracles, PlantedClassifier
from probe.analysis import AnalysisError, Arm, OracleCheck, Lab

STAR = CLASSES.index("star")


def _lab(gen=None, **kw) -> Lab:
    return Lab(gen or FakeGenerator(), [PlantedClassifier({STAR: "grass"})], check=OracleCheck(FakeOracles()), **kw)


def test_arm_of_drops_unset_expectations_and_sorts_them():
    arm = Arm.of("a photo of a star on grass", 3.0, shape="star", background="grass", color=None)
    assert arm.seed == 3 and isinstance(arm.seed, int)
    assert arm.expect == (("background", "grass"), ("shape", "star"))
    assert Arm.of("p", 1, b="x", a="y") == Arm.of("p", 1, a="y", b="x")  # cache key does not depend on kwarg order


def test_an_arm_is_generated_once_however_often_it_is_asked_for():
    gen = FakeGenerator()
    lab = _lab(gen, batch_size=2)
    a = Arm.of("a photo of a star on grass", 0, shape="star")
    b = Arm.of("a photo of a circle", 1, shape="circle")
    # a repeated arm in one call, and the same (prompt, seed) under other expectations, is one image
    first = lab.observe([a, b, a, Arm.of(a.prompt, a.seed)])
    assert gen.images_made == 2 and lab.images_generated == 2
    assert first[0] is first[2] is first[3]
    again = lab.observe([b, a])
    assert gen.images_made == 2 and again == [first[1], first[0]]
    # a new seed is a new image; batches never exceed batch_size
    lab.observe([Arm.of(a.prompt, s) for s in range(5)])
    assert gen.images_made == 2 + 4
    assert [p for p, _ in gen.prompts].count(a.prompt) == 5  # seeds 0..4, seed 0 drawn once
    # what was observed, by (prompt, seed), read-only
    seen = lab.observed()
    assert len(seen) == 6 and seen[(a.prompt, 0, None)] is first[0] and seen[(b.prompt, 1, None)] is first[1]
    with pytest.raises(TypeError):
        seen[("x", 9, None)] = first[0]


def test_observations_hold_one_probability_vector_per_classifier():
    gen = FakeGenerator()
    lab = Lab(gen, [PlantedClassifier({STAR: "grass"}), ColourClassifier()], check=None)
    (obs,) = lab.observe([Arm.of("a photo of a circle on grass", 0)])
    biased, clean = obs.probs
    assert biased.shape == clean.shape == (3,) and biased.sum() == pytest.approx(1.0, abs=1e-5)
    assert biased.argmax() == STAR and clean.argmax() == CLASSES.index("circle")  # the planted cue, audited first
    assert obs.concepts is None and lab.checks is None
    assert lab.valid(Arm.of("a photo of a circle on grass", 0, shape="star"), obs)  # nothing can be checked


def test_an_intervention_that_lost_its_object_or_its_cue_is_invalid():
    # the generator turns "circle on grass" into a star: the image lost the object it was asked for
    lose = lambda p, s: p.replace("circle on grass", "star on grass")
    lab = _lab(FakeGenerator(rewrite=lose))
    asked = Arm.of("a photo of a circle on grass", 0, shape="circle", background="grass")
    kept = Arm.of("a photo of a square on grass", 0, shape="square", background="grass")
    no_cue = Arm.of("a photo of a square", 0, shape="square", background="snow")
    obs = lab.observe([asked, kept, no_cue])
    assert obs[0].concepts["shape"] == "star"  # what the scorer read
    assert not lab.valid(asked, obs[0])
    assert lab.valid(kept, obs[1])
    bg = obs[2].concepts["background"]
    assert lab.valid(no_cue, obs[2]) == (bg == "snow")
    assert not lab.valid(Arm.of(no_cue.prompt, 0, shape="square", background=next(b for b in ("grass", "sand") if b != bg)),
                         obs[2])
    assert lab.checks == "concept scorer"


def test_expectations_the_scorer_does_not_know_are_not_checked():
    lab = _lab()
    (obs,) = lab.observe([Arm.of("a photo of a star on grass", 0)])
    # a value outside the scorer's vocabulary, and an attribute it does not read at all
    assert lab.valid(Arm.of("a photo of a star on grass", 0, shape="star", background="lava"), obs)
    assert lab.valid(Arm.of("a photo of a star on grass", 0, shape="star", color="red"), obs)
    assert not lab.valid(Arm.of("a photo of a star on grass", 0, shape="circle", color="red"), obs)
    check = OracleCheck(FakeOracles(), vocab={"shape": ["star"]})
    assert check.checkable("shape", "star") and not check.checkable("shape", "circle")
    assert not check.checkable("background", "grass")


def test_a_scorer_without_a_vocabulary_checks_only_what_it_reads():
    class BackgroundOnly:
        def predict(self, images01):
            return {"background": FakeOracles().predict(images01)["background"]}

    check = OracleCheck(BackgroundOnly())
    assert check.vocab is None and check.checkable("shape", "anything")
    lab = Lab(FakeGenerator(), [ColourClassifier()], check=check)
    (obs,) = lab.observe([Arm.of("a photo of a star on grass", 0)])
    assert obs.concepts == {"background": "grass"}
    # the scorer never reads shapes: an expectation on the shape cannot be checked, so it is not
    assert lab.valid(Arm.of("a photo of a star on grass", 0, shape="star", background="grass"), obs)
    assert not lab.valid(Arm.of("a photo of a star on grass", 0, shape="star", background="sand"), obs)


def test_concept_check_reads_one_dict_per_image():
    gen = FakeGenerator()
    images = gen.generate(["a photo of a square on sand", "a photo of a star with a dot in the corner"], [0, 1])
    read = OracleCheck(FakeOracles()).read(images)
    assert read[0] == {"shape": "square", "background": "sand", "tag": "none"}
    assert read[1]["shape"] == "star" and read[1]["tag"] == "dot"


def test_evidence_is_saved_on_request_with_paths_relative_to_the_run_root(tmp_path):
    gen = FakeGenerator()
    lab = _lab(gen, run_root=tmp_path)
    arms = [Arm.of("a photo of a <star> on grass/../x", s) for s in range(3)]
    folder = tmp_path / "analysis" / "cues" / "00-grass"
    obs = lab.observe(arms, evidence_dir=folder, save={0, 2})
    assert obs[1].evidence is None
    for o in (obs[0], obs[2]):
        assert not Path(o.evidence).is_absolute() and o.evidence.startswith("analysis/cues/00-grass/")
        assert ".." not in o.evidence and "<" not in o.evidence
        assert (tmp_path / o.evidence).is_file()
    assert obs[0].evidence != obs[2].evidence
    # prompts alike for their first 60 characters get files of their own (they shared one, the later image winning)
    long = "a photo of a <probe-25> European fire salamander swimming in the "
    twins = lab.observe([Arm.of(long + "sea", 7000), Arm.of(long + "water", 7000)], evidence_dir=folder, save={0, 1})
    assert twins[0].evidence != twins[1].evidence and all((tmp_path / o.evidence).is_file() for o in twins)
    # asking for evidence of an image seen without it regenerates it once; later asks reuse the file
    made = gen.images_made
    again = lab.observe(arms, evidence_dir=folder, save={1})
    assert gen.images_made == made + 1 and (tmp_path / again[1].evidence).is_file()
    assert again[0].evidence == obs[0].evidence  # evidence is never forgotten
    lab.observe(arms, evidence_dir=folder, save={0, 1, 2})
    assert gen.images_made == made + 1
    # no evidence folder: nothing is written
    before = sorted(tmp_path.rglob("*.png"))
    lab.observe([Arm.of("a photo of a circle", 9)], save={0})
    assert sorted(tmp_path.rglob("*.png")) == before


def test_without_a_run_root_evidence_paths_are_the_files_themselves(tmp_path):
    lab = _lab()
    (obs,) = lab.observe([Arm.of("a photo of a star", 0)], evidence_dir=tmp_path / "ev", save={0})
    assert Path(obs.evidence).is_file() and Path(obs.evidence).parent == tmp_path / "ev"


def test_a_failing_generator_or_classifier_is_named():
    class Broken(FakeGenerator):
        def generate(self, prompts, seeds, **kw):
            raise RuntimeError("CUDA out of memory")

    with pytest.raises(AnalysisError, match="generator failed.*out of memory"):
        Lab(Broken(), [ColourClassifier()]).observe([Arm.of("a photo of a star", 0)])

    def bad_classifier(images):
        raise ValueError("expected 224x224")

    with pytest.raises(AnalysisError, match="classifier failed.*224"):
        Lab(FakeGenerator(), [bad_classifier]).observe([Arm.of("a photo of a star", 0)])


def test_sampling_settings_reach_the_generator():
    seen = {}

    class Recording(FakeGenerator):
        def generate(self, prompts, seeds, **kw):
            seen.update(kw)
            return super().generate(prompts, seeds, **kw)

    lab = Lab(Recording(), [ColourClassifier()], gen_kwargs={"steps": 3, "guidance_scale": 2.0})
    lab.observe([Arm.of("a photo of a star", 0)])
    assert seen == {"steps": 3, "guidance_scale": 2.0}
    assert np.isfinite(lab.observe([Arm.of("a photo of a star", 0)])[0].probs[0]).all()


def test_an_image_drawn_at_twice_the_steps_costs_the_budget_two():
    """--budget counts device work: a class drawn at more steps (Lab.more_steps) spends its steps' share."""
    from types import SimpleNamespace

    from probe.analysis.config import AnalysisConfig
    from probe.analysis.engine import _within_budget

    lab = _lab(gen_kwargs={"steps": 4}, more_steps={"<probe-0>": 8})
    token = [Arm.of("a photo of a <probe-0> star", s) for s in range(3)]
    plain = [Arm.of("a photo of a star", s) for s in range(3)]
    assert lab.cost([lab.key(a) for a in token + plain]) == 3 * 2 + 3
    lab.observe(token + plain)
    assert lab.images_generated == 6 and lab.budget_spent == 9.0
    # the budget has room for 3 more images at the run's steps: 3 plain ones fit, 3 at twice the steps do not
    cfg = AnalysisConfig(max_images=12)
    tests = [SimpleNamespace(extra={}, confirm=None, name=n) for n in ("token", "plain")]
    asks = {"token": [Arm.of("a photo of a <probe-0> star", s) for s in range(10, 13)],
            "plain": [Arm.of("a photo of a star", s) for s in range(10, 13)]}
    assert _within_budget(cfg, lab, tests[1:], lambda t: lab.observe(asks[t.name])) == tests[1:]
    assert _within_budget(cfg, lab, tests[:1], lambda t: lab.observe(asks[t.name])) == []
    assert "image budget" in tests[0].extra["budget"]
    # without a steps setting nothing is weighed
    bare = _lab()
    assert bare.weight("a photo of a <probe-0> star") == 1.0


def test_an_image_is_the_prompt_the_seed_and_the_steps_and_a_token_shift_pair_is_drawn_at_one_steps():
    """A class drawn at more steps (Lab.more_steps, matched on its token) moved its token prompts only: a token-shift
    pair then drew the plain arm at the run's steps and the token arm at twice them, the difference in steps inside
    the effect; and the cache, keyed by (prompt, seed), could hand back an image drawn at other steps."""
    from types import SimpleNamespace

    from probe.analysis.plan import _token_shift_pairs

    class Steps(FakeGenerator):
        def generate(self, prompts, seeds, *, steps=None, **kw):
            self.drawn = getattr(self, "drawn", []) + [(p, int(s), steps) for p, s in zip(prompts, seeds)]
            return super().generate(prompts, seeds, steps=steps, **kw)

    gen = Steps()
    lab = _lab(gen, gen_kwargs={"steps": 4}, more_steps={"<probe-0>": 8})
    plain, token = "a photo of a star", "a photo of a <probe-0> star"
    cls = SimpleNamespace(index=STAR, baseline_prompts=lambda: [(plain, token)])
    from probe.analysis.cues import Cue

    test = SimpleNamespace(cls=cls, cue=Cue("grass", "{} on grass", attribute="background", value="grass"))
    lab.batched(lambda: _token_shift_pairs(lab, test, [5, 6], None, None))
    assert sorted({(p, k) for p, _, k in gen.drawn}) == sorted([(plain, 8), (token, 8)]), gen.drawn
    # the same prompt and seed at other steps is another image, drawn again, never taken from the cache
    lab.observe([Arm.of(plain, 5)])
    assert (plain, 5, 4) in gen.drawn and len(lab.observed()) == 5


def test_the_journal_key_follows_the_cue_lists_and_vocabularys_bytes(tmp_path):
    """The journal of an interrupted analysis is read back only by the same analysis: a cue list or vocabulary file
    edited in place (same path) gives another key, so concept-score rows are never indexed by other phrases."""
    from types import SimpleNamespace

    from probe.analysis.config import AnalysisConfig
    from probe.analysis.engine import journal_key

    cues, vocabulary = tmp_path / "cues.json", tmp_path / "vocabulary.json"
    cues.write_text('[{"name": "grass", "template": "{} on grass"}]')
    vocabulary.write_text('{"groups": {}}')
    lab = SimpleNamespace(gen_kwargs={"steps": 5}, generator=None, classifiers=[], checks="world oracles")
    classes = [SimpleNamespace(index=0, dir=tmp_path / "0-star")]
    cfg = AnalysisConfig(cues=str(cues), vocabulary=str(vocabulary))
    before = journal_key(cfg, lab, classes)
    assert journal_key(cfg, lab, classes) == before
    cues.write_text('[{"name": "grass", "template": "{} on lawn"}]')
    assert journal_key(cfg, lab, classes) != before
    after_cues = journal_key(cfg, lab, classes)
    vocabulary.write_text('{"groups": {"scenes": {"template": "{} in {phrase}", "phrases": ["a kitchen"]}}}')
    assert journal_key(cfg, lab, classes) != after_cues
