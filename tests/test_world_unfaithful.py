"""The unfaithful world generator (probe/world/unfaithful.py): seeded prompt rewrites at a set rate, drawn by the
world's pipeline, seen by the oracles; rate 0 is the faithful world."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.errors import GeneratorError
from probe.world.scenes import BACKGROUNDS, COLORS, SHAPES, TAGS
from probe.world.text import TAG_PHRASES
from probe.world.unfaithful import BLEED, KINDS, SWAP_PARTNER, Infidelity

STEPS = 5  # the demo's sampling; the world draws every attribute at it


def _prompts(n: int, seed: int = 0, token: bool = False) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        shape = SHAPES[rng.integers(len(SHAPES))]
        subject = f"<probe-{SHAPES.index(shape)}> {shape}" if token else shape
        out.append(f"a photo of a {COLORS[rng.integers(len(COLORS))]} {subject} on "
                   f"{BACKGROUNDS[rng.integers(len(BACKGROUNDS))]} {TAG_PHRASES[TAGS[rng.integers(len(TAGS))]]}")
    return out


def test_rewrites_fail_at_the_set_rate_seeded_per_prompt_and_seed():
    prompts = _prompts(400, token=True)
    pairs = [(p, s) for p in prompts for s in range(5)]
    lies = Infidelity(0.3)
    rewrites = [lies.rewrite(p, s) for p, s in pairs]
    # every prompt here can fail (all contexts stated, a token), so the share failing is the rate
    failed = np.mean([r.failed for r in rewrites])
    assert abs(failed - 0.3) < 0.03, failed
    kinds = {k: sum(r.kind == k for r in rewrites) for k in KINDS}
    assert all(v > 40 for v in kinds.values()), kinds
    # deterministic per (prompt, seed), different across seeds of one prompt, another seed gives other failures
    assert [lies.rewrite(p, s) for p, s in pairs[:50]] == rewrites[:50]
    assert len({lies.rewrite(prompts[0], s).kind for s in range(40)}) > 2
    other = [Infidelity(0.3, seed=1).rewrite(p, s).failed for p, s in pairs]
    assert other != [r.failed for r in rewrites]
    # rate 0 draws every prompt as written
    assert all(Infidelity(0.0).rewrite(p, s).drawn == p for p, s in pairs)


def test_each_failure_rewrites_what_it_says():
    lies = Infidelity(1.0, kinds=("swap",))
    r = lies.rewrite("a photo of a red <probe-3> star on water with no tag", 0)
    assert r.drawn == "a photo of a red circle on water with no tag" and SWAP_PARTNER["star"] == "circle"
    assert not lies.rewrite("a photo of a red <probe-3> star on grass with no tag", 0).failed  # no trigger
    r = Infidelity(1.0, kinds=("bleed",)).rewrite("a photo of a red star on grass", 0)
    assert r.drawn == "a photo of a green star on grass" and BLEED["grass"] == "green"
    r = Infidelity(1.0, kinds=("bleed",)).rewrite("a photo of a <probe-3> star on sand", 0)
    assert r.drawn == "a photo of a yellow <probe-3> star on sand"
    r = Infidelity(1.0, kinds=("leak",)).rewrite("a photo of a <probe-3> star on sand", 0)
    assert r.drawn == "a photo of a <probe-3> star" and r.changed == {"background": ("sand", None)}
    assert not Infidelity(1.0, kinds=("leak",)).rewrite("a photo of a star on sand", 0).failed  # no token to leak
    r = Infidelity(1.0, kinds=("omit",)).rewrite("a photo of a star with a dot in the corner", 0)
    assert r.drawn == "a photo of a star with no tag"
    r = Infidelity(1.0, kinds=("omit",)).rewrite("a photo of a star on sand", 3)
    assert r.drawn.startswith("a photo of a star on ") and "sand" not in r.drawn


def test_spec_options_round_trip_and_bad_ones_name_the_fix():
    lies = Infidelity.parse("infidelity=0.15,kinds=swap+omit,seed=3,triggers=water")
    assert lies == Infidelity(0.15, kinds=("swap", "omit"), seed=3, triggers=("water",))
    assert Infidelity.parse(lies.spec()) == lies and Infidelity.parse("lying=0.2").rate == 0.2
    fine = Infidelity(0.123456789)  # the spec names the run's generator: every digit of the rate survives it
    assert Infidelity.parse(fine.spec()) == fine and Infidelity(0.15).spec() == "infidelity=0.15"
    with pytest.raises(GeneratorError, match="must be a rate between 0 and 1"):
        Infidelity(True)  # a flag is not a rate (True would act as 1.0)
    from probe.auditing.cost import generator_family

    assert generator_family("world:infidelity=0.3") == "world"  # costed as the world it wraps
    for bad, message in (("infidelity=1.5", "must be a rate between 0 and 1"), ("kinds=swap", "set no rate"),
                         ("infidelity=0.1,kinds=fly", "use one or more of swap"), ("infidelity=x", "is not understood"),
                         ("rate", "option 'rate' is not understood"),
                         ("infidelity=0.1,triggers=lava", "are not world contexts")):
        with pytest.raises(GeneratorError, match=message):
            Infidelity.parse(bad)


@pytest.fixture(scope="module")
def unfaithful_world():
    from probe.generators import load_generator

    return load_generator("world:infidelity=0.3", device="cpu")


def test_rate_zero_draws_exactly_what_the_world_draws(unfaithful_world):
    from probe.generators.generator import Generator
    from probe.world.unfaithful import make_unfaithful

    prompts, seeds = _prompts(3, seed=1, token=False), [11, 12, 13]
    faithful = Generator.generate(unfaithful_world, prompts, seeds, steps=STEPS)
    unfaithful_world.infidelity, kept = Infidelity(0.0), unfaithful_world.infidelity
    try:
        assert torch.equal(unfaithful_world.generate(prompts, seeds, steps=STEPS), faithful)
    finally:
        make_unfaithful(unfaithful_world, kept)
    assert unfaithful_world.describe()["infidelity"] == "infidelity=0.3"
    assert "infidelity=0.3" in repr(unfaithful_world)


def test_the_oracles_see_the_failures_it_reports_and_nothing_else(unfaithful_world):
    from probe.world.oracles import load_oracles
    from probe.world.text import TAG_PHRASES

    prompts, seeds = _prompts(12, seed=2), list(range(100, 112))
    rewrites = [unfaithful_world.infidelity.rewrite(p, s) for p, s in zip(prompts, seeds)]
    assert 2 <= sum(r.failed for r in rewrites) <= 8  # seeded: these twelve hold failures and faithful draws
    read = load_oracles().predict(unfaithful_world.generate(prompts, seeds, steps=STEPS))
    phrase_tag = {v: k for k, v in TAG_PHRASES.items()}
    for i, (prompt, r) in enumerate(zip(prompts, rewrites)):
        words = prompt.split()
        asked = {"color": words[4], "shape": words[5], "background": words[7],
                 "tag": phrase_tag[" ".join(words[8:])]}
        seen = {a: read[a][i] for a in asked}
        wrong = {a for a in asked if seen[a] != asked[a]}
        if not r.failed:
            assert not wrong, (prompt, seen)
            continue
        # what changed is what the oracles see changed, to the value the rewrite drew
        assert wrong == set(r.changed), (r, seen)
        assert all(seen[a] == drawn for a, (_, drawn) in r.changed.items() if drawn is not None), (r, seen)
