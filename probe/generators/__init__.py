"""Generators: a diffusers text-to-image pipeline that turns prompts (with a learned token) into images.

``load_generator(id_or_path)`` accepts any ``StableDiffusionPipeline``-layout model: SD 1.x, 2.x,
SD-Turbo, or the bundled shapes world, and ``StableDiffusionXLPipeline`` layouts (SDXL, SDXL-Turbo).

==================  ===========================================================================================
module              what it holds
==================  ===========================================================================================
``registry``        the aliases (``GENERATORS``), the pipeline families (``PIPELINE_FAMILIES``: model_index.json's
                    class -> Generator class), the schedulers, the dtype
``generator``       :class:`Generator`: tokens as trainable embedding rows, sampling with gradient through the
                    last ``grad_steps`` UNet calls, decoding
``load``            :func:`load_generator`: folder, hub id, alias or domain -> the family's Generator
``sdxl``            :class:`SDXLGenerator`: the SDXL family's differences (two text encoders, pooled embeddings)
``gradient``        :func:`token_gradient_step`: the token's gradient taken chunk by chunk with bounded memory
``memory``          :func:`resolve_max_batch`: the chunk size that fits the device
==================  ===========================================================================================

The public names below load on first use: the registry (aliases, ``SCHEDULER_NAMES``, the default generator) is
read without torch, e.g. by ``TokenConfig``'s checks and the cost plan; a name's module loads when it is used.
"""

from __future__ import annotations

from probe.lazy import lazy_attributes

_LAZY = {
    **dict.fromkeys(("Generator", "Sampling", "SamplingDefaults", "add_token_row", "vocab_id"),
                    "probe.generators.generator"),
    "load_generator": "probe.generators.load",
    **dict.fromkeys(("DEFAULT_GENERATOR", "GENERATOR_ALIASES", "GENERATORS", "PIPELINE_FAMILIES", "SCHEDULER_NAMES",
                     "GeneratorSpec", "PipelineFamily", "alias_spec", "resolve_dtype"), "probe.generators.registry"),
}

__all__ = [
    "load_generator", "Generator", "Sampling", "SamplingDefaults", "add_token_row", "vocab_id",
    "DEFAULT_GENERATOR", "GENERATORS", "GENERATOR_ALIASES", "PIPELINE_FAMILIES", "SCHEDULER_NAMES",
    "GeneratorSpec", "PipelineFamily", "alias_spec", "resolve_dtype",
]

__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__():
    return sorted(set(globals()) | set(__all__))
