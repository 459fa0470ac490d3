"""The shapes world: probe's embedded default generator, classifiers and ground truth.

- ``render(...)`` / ``sample_scene(rng)`` -> :class:`Scene` (image, mask, attributes); ``caption(scene, rng)``
- vocabularies ``SHAPES``, ``COLORS``, ``BACKGROUNDS``, ``TAGS``
- bundled files: ``bundled_generator_path()`` (a diffusers StableDiffusionPipeline folder),
  ``bundled_classifier_path("biased" | "clean")`` (torch.export ``.pt2``), ``bundled_bias(name)``
- ``load_oracles()`` -> attribute oracles with ``predict(images01)`` and ``probabilities(images01)``
- training: ``probe.world.train`` (generator), ``train_world_classifier`` (classifiers)
"""

from probe.world.assets import bundled_bias, bundled_classifier_path, bundled_generator_path
from probe.world.classifiers import (
    BUNDLED_BIAS,
    ClassifierConfig,
    evaluate_classifier,
    load_world_classifier,
    parse_bias,
    save_world_classifier,
    train_world_classifier,
)
from probe.world.oracles import Oracles, load_oracles
from probe.world.render import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    TAGS,
    VOCAB,
    Scene,
    WorldError,
    render,
    render_batch,
    sample_attributes,
    sample_scene,
)
from probe.world.text import caption, full_caption
from probe.world.truth import true_effects

__all__ = [
    "SHAPES", "COLORS", "BACKGROUNDS", "TAGS", "VOCAB", "Scene", "WorldError",
    "render", "render_batch", "sample_attributes", "sample_scene", "caption", "full_caption",
    "bundled_generator_path", "bundled_classifier_path", "bundled_bias",
    "Oracles", "load_oracles",
    "BUNDLED_BIAS", "ClassifierConfig", "train_world_classifier", "evaluate_classifier",
    "save_world_classifier", "load_world_classifier", "parse_bias",
    "true_effects",
]
