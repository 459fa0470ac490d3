"""The shapes world as a probe domain: its cues, oracles and true masks, registered through the
``probe.domains`` entry point so the analysis and the generator aliases never import the world."""

from __future__ import annotations

from probe.domains import Domain


def world_cues():
    """The world's attribute vocabulary as cues: backgrounds, colours and corner tags, each with its counters."""
    from probe.analysis.cues import cues_from_vocabulary
    from probe.world.scenes import BACKGROUNDS, COLORS, TAGS
    from probe.world.text import TAG_PHRASES

    return cues_from_vocabulary(backgrounds=list(BACKGROUNDS), colors=list(COLORS), tags=list(TAGS),
                                tag_phrases=TAG_PHRASES)


def scenes(shape: str, n: int, seed: int):
    """``n`` rendered scenes of ``shape``: (images01 (n,3,32,32), true masks (n,32,32) bool, full captions)."""
    import numpy as np
    import torch

    from probe.world.scenes import SHAPES, render
    from probe.world.text import full_caption

    if shape not in SHAPES:
        return None
    rendered = [render(shape=shape, seed=seed + k) for k in range(n)]
    images = torch.stack([s.image01() for s in rendered])
    masks = np.stack([s.mask for s in rendered]) > 0.5
    return images, masks, [full_caption(s.attributes) for s in rendered]


def domain() -> Domain:
    from probe.world.assets import bundled_generator_path
    from probe.world.oracles import load_oracles

    from probe.world.assets import bundled_concepts_path
    from probe.world.unfaithful import unfaithful_variant

    return Domain(name="world", generator_path=bundled_generator_path, cues=world_cues, scorer=load_oracles,
                  object_attribute="shape", scenes=scenes, variant=unfaithful_variant,
                  concepts_path=bundled_concepts_path,
                  description="probe's shapes world: renderer oracles judge every generated image")
