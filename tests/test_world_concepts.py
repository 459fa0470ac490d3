"""The shapes world's own concept model (probe/world/assets/concepts, trained by probe.world.training.concepts):
a plain transformers CLIP that reads renders zero-shot and, as a ConceptModelCheck, catches swapped objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.world.scenes import SHAPES, VOCAB, render


@pytest.fixture(scope="module")
def world_clip():
    from probe.concepts import load_concepts

    return load_concepts("world")


@pytest.fixture(scope="module")
def world_check(world_clip):
    from probe.analysis.checks import ConceptModelCheck
    from probe.world.domain import world_cues

    return ConceptModelCheck(world_clip, list(SHAPES), world_cues(), object_attribute="shape")


def test_it_loads_with_plain_transformers_and_through_load_concepts(world_clip):
    from transformers import CLIPModel, CLIPProcessor

    from probe.world.assets import bundled_concepts_path

    folder = bundled_concepts_path()
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 10 * 1024 * 1024
    model = CLIPModel.from_pretrained(folder)
    processor = CLIPProcessor.from_pretrained(folder)
    scene = render(shape="star", color="red", background="grass", tag="dot", seed=5)
    inputs = processor(text=["a photo of a star", "a photo of a heart"], images=[scene.image], return_tensors="pt",
                       padding=True)
    with torch.no_grad():
        logits = model(**inputs).logits_per_image[0]
    assert logits[0] > logits[1]  # plain transformers reads the star, with the folder's own processor
    assert world_clip.name == "world" and world_clip.kind == "CLIP"
    # load_concepts' own scores are the plain model's (its processor path, do_rescale=False on [0, 1] images)
    ours = world_clip.score(scene.image01()[None], ["a photo of a star", "a photo of a heart"])[0]
    assert np.allclose(ours, logits.numpy(), atol=1e-3)


def test_zero_shot_beats_chance_on_held_out_renders(world_check):
    scenes = [render(seed=900_000 + k) for k in range(36)]
    read = world_check.predict(torch.stack([s.image01() for s in scenes]))
    accuracy = {a: np.mean([r == s.attributes[a] for r, s in zip(read[a], scenes)]) for a in VOCAB}
    chance = {a: 1 / len(v) for a, v in VOCAB.items()}
    assert accuracy["shape"] >= chance["shape"] + 0.5, accuracy
    assert accuracy["background"] >= chance["background"] + 0.6, accuracy
    assert accuracy["color"] >= chance["color"] + 0.6 and accuracy["tag"] >= chance["tag"] + 0.4, accuracy


def test_other_phrasings_read_like_the_cue_list(world_clip):
    scenes = [render(background=b, seed=910_000 + k) for k, b in enumerate(VOCAB["background"] * 3)]
    images = torch.stack([s.image01() for s in scenes])
    phrases = ["a photo of something in a green field", "a photo of something floating on a lake",
               "a photo of something on a beach", "a photo of something in the snow",
               "a photo of something on a wooden table"]
    picked = world_clip.score(images, phrases).argmax(1)
    assert np.mean([VOCAB["background"][i] == s.attributes["background"] for i, s in zip(picked, scenes)]) >= 0.8


def test_a_concept_check_with_the_world_clip_rejects_a_swapped_object(world_check):
    from probe.analysis.lab import Arm
    from probe.generators import load_generator
    from probe.world.unfaithful import SWAP_PARTNER, Infidelity, make_unfaithful

    generator = make_unfaithful(load_generator("world", device="cpu"), Infidelity(1.0, kinds=("swap",)))
    prompts, seeds = ["a photo of a star on water"] * 3, [21, 22, 23]
    assert {generator.infidelity.rewrite(p, s).drawn for p, s in zip(prompts, seeds)} == {
        f"a photo of a {SWAP_PARTNER['star']} on water"}
    swapped = generator.generate(prompts, seeds, steps=5)
    faithful = type(generator).__mro__[2].generate(generator, prompts, seeds, steps=5)
    arms = [Arm.of(p, s, against={"background": ("grass", "sand")}, shape="star", background="water")
            for p, s in zip(prompts, seeds)]
    assert not any(world_check.valid(a, r) for a, r in zip(arms, world_check.read(swapped)))
    assert all(world_check.valid(a, r) for a, r in zip(arms, world_check.read(faithful)))
