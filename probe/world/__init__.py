"""The shapes world: probe's embedded default generator, classifiers and ground truth (the renderer is
probe.world.scenes; its names load lazily here).

- ``render(...)`` / ``sample_scene(rng)`` -> :class:`Scene` (image, mask, attributes); ``caption(scene, rng)``
- vocabularies ``SHAPES``, ``COLORS``, ``BACKGROUNDS``, ``TAGS``
- bundled files: ``bundled_generator_path()`` (a diffusers StableDiffusionPipeline folder),
  ``bundled_classifier_path("biased" | "clean")`` (torch.export ``.pt2``), ``bundled_bias(name)``
- ``load_oracles()`` -> attribute oracles with ``predict(images01)`` and ``probabilities(images01)``
- training: ``probe.world.training.train`` (generator), ``train_world_classifier`` (classifiers)
"""


# Names load on first use (like probe/__init__.py): `import probe.world.cli` or the renderer must not pull in torch
# and the classifiers, so that `probe check` and `probe compare` stay light.
from probe.lazy import lazy_attributes

_LAZY = {
    'bundled_bias': 'probe.world.assets',
    'bundled_classifier_path': 'probe.world.assets',
    'bundled_generator_path': 'probe.world.assets',
    'BUNDLED_BIAS': 'probe.world.classifiers',
    'ClassifierConfig': 'probe.world.classifiers',
    'evaluate_classifier': 'probe.world.classifiers',
    'load_world_classifier': 'probe.world.classifiers',
    'parse_bias': 'probe.world.classifiers',
    'save_world_classifier': 'probe.world.classifiers',
    'train_world_classifier': 'probe.world.classifiers',
    'Oracles': 'probe.world.oracles',
    'load_oracles': 'probe.world.oracles',
    'BACKGROUNDS': 'probe.world.scenes',
    'COLORS': 'probe.world.scenes',
    'SHAPES': 'probe.world.scenes',
    'TAGS': 'probe.world.scenes',
    'VOCAB': 'probe.world.scenes',
    'Scene': 'probe.world.scenes',
    'WorldError': 'probe.world.scenes',
    'render': 'probe.world.scenes',
    'render_batch': 'probe.world.scenes',
    'sample_attributes': 'probe.world.scenes',
    'sample_scene': 'probe.world.scenes',
    'caption': 'probe.world.text',
    'full_caption': 'probe.world.text',
    'true_effects': 'probe.world.truth',
    'validation_truth': 'probe.world.valset',
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "SHAPES", "COLORS", "BACKGROUNDS", "TAGS", "VOCAB", "Scene", "WorldError",
    "render", "render_batch", "sample_attributes", "sample_scene", "caption", "full_caption",
    "bundled_generator_path", "bundled_classifier_path", "bundled_bias",
    "Oracles", "load_oracles",
    "BUNDLED_BIAS", "ClassifierConfig", "train_world_classifier", "evaluate_classifier",
    "save_world_classifier", "load_world_classifier", "parse_bias",
    "true_effects", "validation_truth",
]
