"""Model folders with a config.json: a transformers image classifier (``save_pretrained``) or a timm hub folder
(``timm.models.save_for_hf``), as a local folder or the hub cache's copy (probe.classifiers.hub)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

from probe.classifiers import data_config as dc
from probe.classifiers.hf_processor import processor_data
from probe.classifiers.labels import is_generic
from probe.classifiers.failures import first_line
from probe.classifiers.loaders import Loaded, introspect
from probe.errors import ClassifierError
from probe.progress import quiet_hf_libraries


# --------------------------------------------------------------------------- timm hub folder


def load_timm_folder(path: Path) -> Loaded:
    """A folder as timm saves it to the Hugging Face hub (config.json with "architecture", model.safetensors or
    pytorch_model.bin): what ``hf download timm/NAME --local-dir DIR`` gives. timm builds it (``local-dir:``), the
    weights are read as tensors only; the data config comes from its pretrained_cfg, the labels from its
    label_descriptions or label_names, else ImageNet's when its tag says it was trained on an ImageNet subset."""
    try:
        import timm
    except ImportError as e:  # pragma: no cover - a dependency
        raise ClassifierError(f"model {path}: timm is not installed; pip install timm") from e
    arch = None
    try:
        arch = json.loads((path / "config.json").read_text(encoding="utf-8"))["architecture"]
        base = arch.split(".", 1)[0]
        if not timm.is_model(base):
            raise ClassifierError(f"model {path}: timm {timm.__version__} has no model {base!r}; pip install -U timm")
        model = timm.create_model(f"local-dir:{path}", pretrained=True)
    except ClassifierError:
        raise
    except Exception as e:
        raise ClassifierError(
            f"model {path}: the timm folder could not be loaded ({type(e).__name__}: {first_line(e, 160)}); it needs "
            "config.json and model.safetensors (or pytorch_model.bin) as timm saves them"
        ) from e
    cfg = getattr(model, "pretrained_cfg", None) or {}
    labels, labels_source = None, None
    for key in ("label_descriptions", "label_names"):
        names = cfg.get(key)
        if isinstance(names, Mapping):
            names = [names[k] for k in sorted(names, key=lambda k: int(k))] if all(str(k).isdigit() for k in names) else None
        if isinstance(names, (list, tuple)) and names and not is_generic([str(n) for n in names]):
            labels, labels_source = [str(n) for n in names], f"{path / 'config.json'} {key}"
            break
    if labels is None:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(model)
        if subset and re.search(r"in1k|in12k|in22k|imagenet", str(cfg.get("tag", "")) + str(cfg.get("hf_hub_id", ""))):
            labels, labels_source = list(ImageNetInfo(subset).label_descriptions()), f"timm {subset}"
    data = dc.from_timm_model(model)
    return Loaded(
        model=model,
        format="timm",
        name=path.name,
        source=str(path),
        arch=f"timm:{arch}",
        labels=labels,
        labels_source=labels_source,
        data=data,
        data_source=f"{path / 'config.json'} pretrained_cfg" if data else None,
    )


# --------------------------------------------------------------------------- Hugging Face


def load_huggingface(path: Path) -> Loaded:
    try:
        from transformers import AutoConfig, AutoModelForImageClassification
    except ImportError as e:  # pragma: no cover
        raise ClassifierError(f"model {path}: transformers is not installed; pip install transformers") from e
    quiet_hf_libraries()
    try:
        declared = json.loads((path / "config.json").read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        declared = {}  # transformers' own reading below names the problem
    if isinstance(declared, dict) and declared.get("auto_map"):
        # transformers would offer to run the folder's Python files ("Do you wish to run the custom code? [y/N]")
        raise ClassifierError(
            f"model {path}: its config.json maps to the folder's own Python code (auto_map {_names(declared['auto_map'])}), "
            "which probe never runs; save the model as a torch.export program (.pt2), or pass a factory "
            "(package.module:function) that you trust to build it")
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as e:
        raise ClassifierError(
            f"model {path}: config.json is not a readable transformers config ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160] if str(e) else ''}); check the folder"
        ) from e
    try:
        model = AutoModelForImageClassification.from_pretrained(str(path), local_files_only=True,
                                                                trust_remote_code=False)
    except ValueError as e:
        archs = getattr(config, "architectures", None)
        raise ClassifierError(
            f"model {path}: a {getattr(config, 'model_type', '?')} model ({archs}) is not an image classifier "
            "for transformers' AutoModelForImageClassification; give an image-classification folder"
        ) from e
    except Exception as e:
        raise ClassifierError(
            f"model {path}: the Hugging Face weights could not be loaded ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160] if str(e) else ''}); the folder needs config.json and "
            "model.safetensors (or pytorch_model.bin)"
        ) from e
    _, labels, _, labels_source = introspect(model)
    data, data_source, model = processor_data(path, model)
    return Loaded(
        model=model,
        format="huggingface",
        name=path.name,
        source=str(path),
        arch=(config.architectures or [None])[0] if getattr(config, "architectures", None) else None,
        labels=labels,
        labels_source=labels_source,
        data=data,
        data_source=data_source,
        multi_label=getattr(config, "problem_type", None) == "multi_label_classification",
    )


def _names(auto_map) -> str:
    """What an ``auto_map`` maps, for a message: its keys, or (a value of another shape) its text, cut."""
    return str(sorted(str(k) for k in auto_map)) if isinstance(auto_map, dict) else repr(auto_map)[:80]
