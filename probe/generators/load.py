"""Loading a generator: ``load_generator(id_or_path)`` resolves a folder, hub id, alias or domain ("world"), reads
the pipeline family from model_index.json, loads the diffusers pipeline (with an optional VAE and a fused LoRA
adapter) and wraps it in the family's Generator class with its sampling defaults.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from probe.devices import resolve_device
from probe.progress import quiet_hf_libraries
from probe.errors import GeneratorError
from probe.hub import hub_unavailable
from probe.generators.generator import Generator, SamplingDefaults
from probe.generators.registry import (DEFAULT_GENERATOR, GENERATORS, OWN_SCHEDULER, PIPELINE_FAMILIES, SCHEDULERS,
                                       GeneratorSpec, alias_spec, resolve_dtype)

# Sampling defaults for a folder or hub id that is NOT an alias (an alias states its own, see GeneratorSpec): a
# fallback guessed from the name (docs/generators.md), which the folder's probe_generator.json overrides.
_FAMILY_DEFAULTS = {
    "turbo": {"default_steps": 2, "guidance_scale": 0.0},
    "default": {"default_steps": 15, "guidance_scale": 7.5},
}
SETTINGS_FILE = "probe_generator.json"


def _looks_like_hub_id(text: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", text)) and not text.startswith((".", "/"))


def sampling_for(alias: GeneratorSpec | None, source: str, folder: Path | None,
                 scheduler: str | None = None) -> tuple[str | None, dict]:
    """What :func:`load_generator` samples with, known without loading: ``(scheduler, settings)``.

    ``scheduler`` is a ``--scheduler`` name, or None for the pipeline's own; ``settings`` holds ``default_steps``
    and ``guidance_scale``. An explicit ``scheduler`` wins; an alias applies its own stated sampling (its
    GeneratorSpec), whatever its base folder's probe_generator.json or path say. A folder or hub id that is not
    an alias keeps its own scheduler and gets 15 steps with guidance 7.5, or 2 steps without guidance when its
    path or id contains "turbo" (a fallback guess, documented in docs/generators.md), then its folder's
    probe_generator.json over either.
    """
    if alias is not None:
        if scheduler is None and alias.scheduler != OWN_SCHEDULER:
            scheduler = alias.scheduler
        return scheduler, alias.settings()
    return scheduler, _folder_settings(source, folder)


def _folder_settings(source: str, folder: Path | None) -> dict:
    family = "turbo" if "turbo" in source.lower() else "default"
    settings = dict(_FAMILY_DEFAULTS[family])
    if folder is not None and (folder / SETTINGS_FILE).is_file():
        try:
            given = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # ValueError: not JSON, or not UTF-8
            raise GeneratorError(f"{folder / SETTINGS_FILE} is not valid JSON ({type(e).__name__}: {str(e)[:120]}); "
                                 "fix or delete it") from e
        if not isinstance(given, dict):
            raise GeneratorError(f"{folder / SETTINGS_FILE} holds {type(given).__name__}, not a JSON object of settings; "
                                 "fix or delete it")
        settings.update(given)
    # checked here, before the pipeline loads: they were read only after it, where a bad value was a traceback
    for key, low, kind in (("default_steps", 1, int), ("guidance_scale", 0, float)):
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low \
                or (kind is int and value != int(value)):
            raise GeneratorError(f"{folder / SETTINGS_FILE if folder is not None else source}: {key} is {value!r}, not "
                                 f"{'a whole number of at least 1' if kind is int else 'a finite number of at least 0'}; "
                                 "fix or delete it")
    return settings


def _alternatives() -> str:
    return ", ".join(f"{k} ({v.base}{' + ' + v.lora if v.lora else ''})" for k, v in GENERATORS.items())


def load_generator(id_or_path: str | Path | None = None, *, device: str | torch.device | None = "auto",
                   dtype: str | torch.dtype | None = None, scheduler: str | None = None, lora: str | Path | None = None,
                   compile: bool = False, vae: str | Path | None = None) -> Generator:
    """Load a StableDiffusionPipeline- or StableDiffusionXLPipeline-layout model from a local folder or a hub id.

    ``id_or_path`` may be a folder, a hub id (``owner/name``), an alias (``sd14``, ``sd15``, ``sd21``,
    ``sd-turbo``, ``sd15-lcm``, ``sdxl``, ``sdxl-turbo``) or ``world`` for the bundled shapes-world model.
    ``None`` means DEFAULT_GENERATOR (the ``sd14`` alias). An alias samples as its GeneratorSpec states
    (scheduler, steps, guidance; an explicit ``scheduler`` wins), see :func:`sampling_for`. The family
    (PIPELINE_FAMILIES) comes from model_index.json's ``_class_name``. ``vae`` (folder or hub id of an AutoencoderKL) replaces the pipeline's VAE, e.g. a fixed
    fp16 SDXL VAE, which then decodes in the model's dtype.
    ``lora`` (a folder or hub id of a diffusers LoRA adapter) is loaded and fused into the weights; an alias may
    bring its own (``sd15-lcm``: the LCM-LoRA), see :func:`alias_spec` for pointing it at local folders.
    ``compile`` calls :meth:`Generator.compile`.
    """
    import diffusers

    from probe.domains import domains

    # 1. what to load: a domain's bundled pipeline, an alias (base, adapter, scheduler, sampling), or a path/hub id
    spec = str(id_or_path) if id_or_path is not None else DEFAULT_GENERATOR
    variant = None
    name, colon, options = spec.partition(":")
    if colon and name in domains():  # "world:infidelity=0.15": the domain's generator as its options ask
        variant = domains()[name].variant
        if variant is None:
            raise GeneratorError(f"generator {spec!r}: the {name!r} domain takes no options; pass --generator {name}")
        spec = name
    alias_name = spec if spec in GENERATORS else None
    alias = alias_spec(spec)
    if spec in domains():  # a domain's bundled pipeline ("world"), registered by the domain itself
        spec = str(domains()[spec].generator_path())
    if alias is not None:
        spec = alias.base
        lora = lora if lora is not None else alias.lora
        vae = vae if vae is not None else alias.vae
    folder = _pipeline_folder(spec)
    scheduler, settings = sampling_for(alias, spec, folder, scheduler)
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise GeneratorError(f"--scheduler {scheduler!r} is unknown; use one of {', '.join(SCHEDULERS)}")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    quiet_hf_libraries()
    unavailable = hub_unavailable()  # only the cache is read, at once, when the hub cannot be asked
    offline = unavailable is not None
    # 2. the family (model_index.json's pipeline class), then the pipeline itself
    class_name = _pipeline_class(spec, folder, alias, offline)
    family = PIPELINE_FAMILIES[class_name]
    kwargs = dict(family.load_kwargs)
    if vae is not None:
        kwargs["vae"] = _load_vae(str(vae), torch_dtype, offline)
    try:
        pipe = getattr(diffusers, class_name).from_pretrained(
            str(folder or spec), dtype=torch_dtype, local_files_only=offline or folder is not None, **kwargs)
    except Exception as e:  # diffusers raises OSError, ValueError, EnvironmentError, hub errors...
        if folder is not None:
            raise GeneratorError(f"could not load the diffusers pipeline in {spec!r}: {str(e).splitlines()[0]}; "
                                 "check that the folder is complete (unet/, vae/, text_encoder/, tokenizer/, scheduler/)") from e
        where = (f"it is not in the local cache and {unavailable}" if offline
                 else "the Hugging Face hub is unreachable or the id does not exist")
        raise GeneratorError(
            f"could not load generator {spec!r}: {where}; download it where the hub is reachable "
            f"(`hf download {spec} --local-dir DIR`) and pass --generator DIR, or try: {_alternatives()}"
        ) from e
    pipe.set_progress_bar_config(disable=True)
    if scheduler is not None:
        import diffusers

        pipe.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
    pipe.to(dev)
    # 3. a LoRA adapter, fused into the weights so sampling and gradients run through plain modules
    if lora is not None:
        _fuse_lora(pipe, str(lora), offline=offline, alias=alias_name)
    # 4. sampling defaults (sampling_for): the alias's, else the folder's guess and its probe_generator.json
    defaults = SamplingDefaults(steps=int(settings["default_steps"]), guidance_scale=float(settings["guidance_scale"]))
    generator = family.generator_class()(pipe, source=spec, device=dev, dtype=torch_dtype, defaults=defaults, settings=settings,
                          alias=alias_name, licence=alias.licence if alias is not None else None,
                          lora=str(lora) if lora is not None else None)
    if variant is not None:
        generator = variant(generator, options)
    return generator.compile() if compile else generator


def _pipeline_class(spec: str, folder: Path | None, alias: GeneratorSpec | None, offline: bool) -> str:
    """The diffusers pipeline class of ``spec``: model_index.json of the folder (or, for a hub id, of the hub
    model when reachable), else the alias's; a class probe has no family for is a GeneratorError."""
    name = None
    try:
        if folder is not None:
            name = json.loads((folder / "model_index.json").read_text()).get("_class_name")
        elif alias is None:
            from diffusers import DiffusionPipeline

            name = DiffusionPipeline.load_config(spec, local_files_only=offline).get("_class_name")
    except Exception:  # unreachable hub or unreadable file: from_pretrained reports it with the fix
        name = None
    name = name or (alias.pipeline if alias is not None else "StableDiffusionPipeline")
    if not isinstance(name, str) or name not in PIPELINE_FAMILIES:  # a list names a custom pipeline's own code
        raise GeneratorError(f"generator {spec!r} is a {name}; probe loads {' and '.join(PIPELINE_FAMILIES)} "
                             "layouts (SD 1.x/2.x, SD-Turbo, SDXL, SDXL-Turbo); see docs/generators.md for others")
    return name


def _load_vae(vae: str, dtype: torch.dtype, offline: bool):
    from diffusers import AutoencoderKL

    path = Path(vae).expanduser()
    try:
        return AutoencoderKL.from_pretrained(str(path) if path.exists() else vae, dtype=dtype,
                                             local_files_only=offline or path.exists())
    except Exception as e:
        raise GeneratorError(f"could not load the VAE {vae!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
                             "pass a folder holding an AutoencoderKL (config.json and weights) or its hub id") from e


def _pipeline_folder(spec: str) -> Path | None:
    """The local pipeline folder ``spec`` names, None for a hub id, or a GeneratorError naming the fix."""
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "model_index.json").is_file():
            raise GeneratorError(f"generator {spec!r} is not a diffusers pipeline folder (no model_index.json); "
                                 "pass a folder saved with pipe.save_pretrained() or a hub id")
        return path
    if not _looks_like_hub_id(spec):
        raise GeneratorError(f"generator {spec!r} does not exist as a folder and is not a hub id (owner/name); "
                             f"check the path, or use one of: {_alternatives()}")
    return None


def _fuse_lora(pipe, lora: str, *, offline: bool, alias: str | None) -> None:
    """Load a diffusers LoRA adapter (folder or hub id), fuse it into the weights and drop the adapter layers."""
    try:
        import peft  # noqa: F401  (diffusers' LoRA loading needs it)
    except ImportError as e:
        raise GeneratorError(f"the LoRA adapter {lora!r} needs the peft package; install it with "
                             "`pip install peft` (or `pip install probe-audit[lcm]`)") from e
    path = Path(lora).expanduser()
    local = path.exists()
    if not local and not _looks_like_hub_id(lora):
        raise GeneratorError(f"LoRA adapter {lora!r} is neither a folder nor a hub id (owner/name); check the path")
    try:
        pipe.load_lora_weights(str(path if local else lora), local_files_only=offline or local)
        pipe.fuse_lora()
        pipe.unload_lora_weights()
    except Exception as e:
        hint = ""
        if alias is not None:
            env = "PROBE_" + alias.upper().replace("-", "_")
            hint = f", or point {env}_BASE and {env}_LORA at local folders"
        raise GeneratorError(f"could not load the LoRA adapter {lora!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
                             f"download it (`hf download {lora} --local-dir DIR`){hint}") from e
