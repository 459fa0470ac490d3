"""The zero-shot concept model: a CLIP or SigLIP image–text model that scores how well phrases describe images.

``load_concepts(spec)`` loads one from a local folder (saved with ``save_pretrained``) or a hub id;
``ConceptModel.score(images, phrases)`` returns the model's own image–text logits, ``choose`` the winning phrase
per image. Text embeddings are cached per phrase: an audit asks about the same few phrases for every batch.

torch and transformers load on first use, so importing this module (for ``KNOWN_CONCEPT_MODELS`` or
``default_concepts`` in the CLI's help) stays light.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probe.errors import ProbeError
from probe.hub import hub_unavailable
from probe.progress import quiet_hf_libraries

if TYPE_CHECKING:
    import torch

__all__ = ["ConceptError", "ConceptModel", "load_concepts", "default_concepts", "KNOWN_CONCEPT_MODELS"]

#: Public concept models that work with :func:`load_concepts`, with what each is good for.
KNOWN_CONCEPT_MODELS: dict[str, str] = {
    "openai/clip-vit-large-patch14": "CLIP ViT-L/14: its text tower is the text encoder of SD 1.x (and SDXL's first)",
    "openai/clip-vit-base-patch32": "CLIP ViT-B/32: small and fast, for quick checks on CPU",
    "google/siglip-so400m-patch14-384": "SigLIP So400m/14 at 384 px: sharper zero-shot recognition, sigmoid logits",
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": "OpenCLIP ViT-H/14: the text tower family of SD 2.x",
}

#: model_type of config.json -> the kind shown to users; SigLIP 2 only where transformers has it.
_KINDS = {"clip": "CLIP", "siglip": "SigLIP", "siglip2": "SigLIP 2"}

_CLIP_L = "openai/clip-vit-large-patch14"
_DTYPES = ("float32", "float16", "bfloat16")
_FAMILY_DEFAULTS = {"sd1": _CLIP_L, "sdxl": _CLIP_L, "sd2": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"}


class ConceptError(ProbeError):
    """The concept model cannot be found, loaded or run, or its inputs are unusable."""


def default_concepts(family: str | None) -> str:
    """The default concept model for a generator family: the CLIP whose text tower the generator itself uses.

    A concept model that shares the generator's text tower reads a phrase the way the generator was conditioned
    on it, so "the token added stripes" is judged in the generator's own vocabulary. SD 1.x (``"sd1"``) and SDXL
    (``"sdxl"``, whose first text encoder is CLIP ViT-L/14) get ``openai/clip-vit-large-patch14``; SD 2.x
    (``"sd2"``, OpenCLIP ViT-H/14) gets ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``. ``None`` and any other family
    (e.g. the shapes world) fall back to the SD 1.x choice.
    """
    return _FAMILY_DEFAULTS.get(family or "sd1", _CLIP_L)


def _supported_kinds() -> dict[str, str]:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return {t: k for t, k in _KINDS.items() if t in CONFIG_MAPPING_NAMES}


def _first_line(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


class ConceptModel:
    """A CLIP or SigLIP model and its processor, scoring images (N, 3, H, W) in [0, 1] against phrases.

    ``score`` gives the logits the model was trained with (CLIP: ``exp(logit_scale) * cosine``; SigLIP: the same
    plus ``logit_bias``, so ``sigmoid(score)`` is SigLIP's probability that the phrase fits the image). The model
    is moved to ``device`` and put in eval mode; images and texts run in batches of ``batch_size``.

    ``dtype``: the towers' precision (``"float32"``, ``"float16"``, ``"bfloat16"``; half precision only on a GPU,
    where it is the default: about 7x less time per image for CLIP ViT-L/14 on an H200 than float32,
    benchmarks/concept_cost.py). Embeddings and logits come back as float32 either way. Where the image processor
    can work on a device (transformers' torchvision-backed processors), the images are resized and normalised
    there too, not on the CPU.
    """

    TEXT_CACHE = 4096  # text embeddings kept (12 MB of CLIP-L's 768-d float32): the check phrases, reused, stay

    def __init__(self, model, processor, *, name: str, device: str = "cpu", batch_size: int = 16,
                 dtype: str | None = None):
        import torch

        model_type = getattr(model.config, "model_type", None)
        kinds = _supported_kinds()
        if not isinstance(model_type, str) or model_type not in kinds:
            raise ConceptError(f"concept model {name!r} is a {model_type!r} model; concept scoring needs one of "
                               f"{', '.join(kinds.values())} (model_type {', '.join(kinds)})")
        if batch_size < 1:
            raise ConceptError(f"batch_size must be at least 1, not {batch_size}")
        gpu = str(device).startswith("cuda")
        dtype = dtype or ("float16" if gpu else "float32")
        if dtype not in _DTYPES:
            raise ConceptError(f"concept model dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
        if dtype != "float32" and not gpu:
            raise ConceptError(f"concept model dtype {dtype} needs a GPU (device {device!r}); use float32 on a CPU")
        self.dtype = getattr(torch, dtype)
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.processor = processor
        self.name = name
        self.kind = kinds[model_type]
        self.device = device
        self.batch_size = batch_size
        self._siglip = model_type != "clip"
        # transformers' torchvision-backed image processors resize and normalise on the model's device
        valid = getattr(getattr(processor.image_processor, "valid_kwargs", None), "__annotations__", {})
        self._on_device = {"device": device} if "device" in valid else {}
        self._text: OrderedDict[str, torch.Tensor] = OrderedDict()  # the last TEXT_CACHE phrases used

    @property
    def dim(self) -> int:
        """The dimension of the shared image–text embedding space."""
        config = self.model.config
        return int(config.text_config.projection_size if self._siglip else config.projection_dim)

    def embed_images(self, images01: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings (N, D), float32 on the CPU; the model's own image processor resizes and
        normalises the images (``do_rescale=False``: they are already in [0, 1])."""
        import torch

        images = _checked_images(images01)
        feats = []
        processor, on_device = self.processor.image_processor, self._on_device
        with torch.no_grad():
            for i in range(0, images.shape[0], self.batch_size):
                batch = images[i : i + self.batch_size]
                inputs = processor(images=batch if on_device else list(batch), return_tensors="pt", do_rescale=False,
                                   input_data_format="channels_first", **on_device)
                out = self.model.get_image_features(
                    **{k: v.to(self.device, self.dtype if v.is_floating_point() else v.dtype) for k, v in inputs.items()})
                feats.append(_pooled(out))
        if not feats:
            return torch.zeros(0, self.dim)
        return torch.nn.functional.normalize(torch.cat(feats), dim=-1)

    def embed_texts(self, phrases: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings (P, D), float32 on the CPU; each distinct phrase is encoded once and cached,
        the ``TEXT_CACHE`` most recently used kept (discovery asks ~1000 phrases naming each class once: a cache that
        kept them all grew by 1000 embeddings per class, about 3 GB of CLIP-L's over 1000 classes).

        SigLIP pads every phrase to the full length (``padding="max_length"``), as it was trained; CLIP pads to the
        longest phrase of the batch. Phrases longer than the text tower's positions are truncated.
        """
        import torch

        phrases = list(phrases)
        found = {}
        for p in dict.fromkeys(phrases):
            if p in self._text:
                found[p] = self._text[p]
                self._text.move_to_end(p)
        missing = [p for p in dict.fromkeys(phrases) if p not in found]
        tokenizer = self.processor.tokenizer
        length = int(self.model.config.text_config.max_position_embeddings)
        with torch.no_grad():
            for i in range(0, len(missing), self.batch_size):
                batch = missing[i : i + self.batch_size]
                tokens = tokenizer(batch, padding="max_length" if self._siglip else True, max_length=length,
                                   truncation=True, return_tensors="pt")
                out = self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()})
                found.update(zip(batch, torch.nn.functional.normalize(_pooled(out), dim=-1)))
        self._text.update((p, found[p]) for p in missing)
        while len(self._text) > self.TEXT_CACHE:
            self._text.popitem(last=False)
        if not phrases:
            return torch.zeros(0, self.dim)
        return torch.stack([found[p] for p in phrases])

    def score(self, images01: torch.Tensor, phrases: list[str]) -> np.ndarray:
        """The model's image–text logits (N images, P phrases) as float32; higher means the phrase fits better."""
        images = self.embed_images(images01)
        texts = self.embed_texts(phrases)
        logits = (images @ texts.T) * float(self.model.logit_scale.detach().float().exp())
        if self._siglip:
            logits = logits + float(self.model.logit_bias.detach().float())
        return logits.numpy().astype(np.float32)

    def choose(self, images01: torch.Tensor, candidates: list[str], template: str = "a photo of {}") -> list[int]:
        """Per image, the index into ``candidates`` of the one whose templated phrase scores highest."""
        if not candidates:
            raise ConceptError("choose needs at least one candidate phrase")
        if "{}" not in template:
            raise ConceptError(f"the template {template!r} has no '{{}}' for the candidate; e.g. 'a photo of {{}}'")
        scores = self.score(images01, [template.format(c) for c in candidates])
        return [int(i) for i in scores.argmax(axis=1)]

    def __repr__(self) -> str:
        return f"ConceptModel({self.kind} {self.name!r} on {self.device}, {str(self.dtype).replace('torch.', '')})"


def _pooled(out: Any) -> torch.Tensor:
    """The feature tensor of ``get_*_features``: a tensor (older transformers) or a ModelOutput's pooler_output."""
    import torch

    return (out if isinstance(out, torch.Tensor) else out.pooler_output).detach().float().cpu()


def _checked_images(images01: Any) -> torch.Tensor:
    import torch

    if not isinstance(images01, torch.Tensor) or images01.ndim != 4 or images01.shape[1] != 3:
        shape = tuple(images01.shape) if hasattr(images01, "shape") else type(images01).__name__
        raise ConceptError(f"concept scoring takes a float tensor of images (N, 3, H, W), not {shape}")
    images = images01.detach().float().cpu()
    if images.numel() and (images.min() < -1e-3 or images.max() > 1 + 1e-3):
        raise ConceptError(f"concept scoring takes images in [0, 1], got values in [{float(images.min()):.3g}, "
                           f"{float(images.max()):.3g}]; divide 0-255 images by 255, map [-1, 1] ones with (x + 1) / 2")
    return images


def _looks_like_hub_id(text: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", text)) and not text.startswith((".", "/"))


def _hub_error(spec: str, e: Exception, unavailable: str | None) -> ConceptError:
    from huggingface_hub.errors import RepositoryNotFoundError

    if unavailable is not None:
        where = f"it is not in the local cache and {unavailable}"
    elif isinstance(e, RepositoryNotFoundError):
        where = "the hub has no such model (or it is private or gated)"
    else:
        where = f"the hub is unreachable ({_first_line(e)})"
    return ConceptError(f"could not load concept model {spec!r}: {where}; download it where the hub is reachable "
                        f"(hf download {spec} --local-dir DIR) and pass --concepts DIR")


def _domain_concepts(spec: str) -> Path | None:
    """The concept model folder of the domain named ``spec`` (probe.domains), or None when no domain has that name
    or the domain brings no concept model."""
    from probe.domains import domains

    domain = domains().get(spec)
    if domain is None or domain.concepts_path is None:
        return None
    try:
        return Path(domain.concepts_path())
    except ProbeError as e:
        raise ConceptError(str(e)) from e


@dataclass(frozen=True)
class _Source:
    """Where a concept model's files are: ``text`` (a folder, or a hub id), its ``folder`` (None for a hub id), its
    config.json, why only the cache may be read (None when the hub may be asked), and the domain it came from."""

    text: str
    folder: Path | None
    config_file: Path
    unavailable: str | None
    domain: Path | None


def check_concepts(spec: str | Path) -> None:
    """Everything about a concept model that can fail before its weights load (the path or hub id, config.json, a
    cached copy when the hub cannot be asked, the model type), as a one-line ConceptError: what ``probe audit``
    checks before any token is learned (a mistyped ``--concepts`` otherwise left every cue finding unverified,
    hours later)."""
    _resolve(spec)


def _resolve(spec: str | Path) -> _Source:
    text = str(spec)
    domain = _domain_concepts(text)
    if domain is not None:  # a domain's own concept model ("world": the shapes world's tiny CLIP)
        text = str(domain)
    path = Path(text).expanduser()
    folder = path if path.exists() else None
    if folder is None and not _looks_like_hub_id(text):
        raise ConceptError(f"concept model {text!r} is neither a folder nor a hub id (owner/name); check the path, "
                           f"or use one of: {', '.join(KNOWN_CONCEPT_MODELS)}")
    if folder is not None and not (folder / "config.json").is_file():
        raise ConceptError(f"concept model folder {text!r} has no config.json; pass a folder written by "
                           "model.save_pretrained() and processor.save_pretrained() for a CLIP or SigLIP model "
                           "(config.json, weights, tokenizer and preprocessor files)")
    unavailable = None if folder is not None else hub_unavailable()  # then only the cache is read, at once
    quiet_hf_libraries()
    try:
        if folder is not None:
            config_file = folder / "config.json"
        else:
            from huggingface_hub import hf_hub_download

            config_file = Path(hf_hub_download(text, "config.json", local_files_only=unavailable is not None))
        model_type = json.loads(config_file.read_text()).get("model_type")
    except Exception as e:
        if folder is not None:
            raise ConceptError(f"concept model folder {text!r} has an unreadable config.json: {_first_line(e)}") from e
        raise _hub_error(text, e, unavailable) from e
    kinds = _supported_kinds()
    if not isinstance(model_type, str) or model_type not in kinds:
        raise ConceptError(f"concept model {text!r} is a {model_type!r} model; concept scoring works with "
                           f"{', '.join(kinds.values())} models (model_type {', '.join(kinds)}), e.g. "
                           f"{', '.join(KNOWN_CONCEPT_MODELS)}")
    return _Source(text, folder, config_file, unavailable, domain)


def load_concepts(spec: str | Path, *, device: str = "cpu", batch_size: int = 16,
                  dtype: str | None = None) -> ConceptModel:
    """Load a CLIP or SigLIP concept model from a local folder, a hub id (see ``KNOWN_CONCEPT_MODELS``) or the name
    of a domain that brings its own (``"world"``: the shapes world's tiny CLIP, probe/world/assets/concepts).

    A folder must hold what ``model.save_pretrained`` and ``processor.save_pretrained`` write (config.json, the
    weights, the tokenizer and image processor files); it is read with ``local_files_only``. A hub id is fetched
    from the Hugging Face cache or hub; with ``HF_HUB_OFFLINE=1`` only the cache is used. Any other model type, a
    folder without config.json or an unreachable hub is a one-line ConceptError saying what to do
    (:func:`check_concepts`, before any weight loads). Weights load as float32 and run in ``dtype``
    (:class:`ConceptModel`: half precision by default on a GPU).
    """
    import torch
    from transformers import AutoModel, AutoProcessor

    src = _resolve(spec)
    text, folder, config_file, unavailable, domain = src.text, src.folder, src.config_file, src.unavailable, src.domain
    local = folder is not None or unavailable is not None
    # with the hub unavailable a cached id is loaded from its snapshot folder: transformers' own local_files_only
    # does not reach its adapter lookup (transformers 5.x asked the hub for adapter_config.json, five retries)
    source = str(folder) if folder is not None else str(config_file.parent) if unavailable is not None else text
    try:
        model = AutoModel.from_pretrained(source, dtype=torch.float32, local_files_only=local, trust_remote_code=False)
        processor = AutoProcessor.from_pretrained(source, local_files_only=local, trust_remote_code=False)
    except Exception as e:
        if "sentencepiece" in str(e).lower():
            raise ConceptError(f"could not load concept model {text!r}: its tokenizer needs sentencepiece; install it "
                               "with pip install 'probe-audit[siglip]' (in a checkout: pip install -e '.[siglip]')") from e
        if folder is not None:
            raise ConceptError(f"could not load the concept model in {text!r}: {_first_line(e)}; check that the "
                               "folder holds the weights and the processor files (tokenizer, "
                               "preprocessor_config.json or processor_config.json)") from e
        raise _hub_error(text, e, unavailable) from e
    name = str(spec) if domain is not None else text if folder is None else folder.resolve().name
    return ConceptModel(model, processor, name=name, device=device, batch_size=batch_size, dtype=dtype)
