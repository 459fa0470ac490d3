"""A transformers classifier's image processor, asked what it does rather than read: ``processor_data(folder, model)``
gives the data config (mean, std and crop mode measured through the processor; sizes from its JSON) and the model,
wrapped in :class:`ChannelOrder` where the processor reorders channels; ``folder_of(model)`` finds the folder a model
in memory came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from probe.classifiers import data_config as dc

__all__ = ["ChannelOrder", "measure_processor", "processor_data", "folder_of"]


class ChannelOrder(nn.Module):
    """A network whose processor reorders the colour channels (MobileViT's flip to BGR): probe's preprocessing
    normalises RGB, this hands the network the order it was trained on. Gradients pass through (a permutation)."""

    def __init__(self, model: nn.Module, order: tuple[int, ...]):
        super().__init__()
        self.model = model
        self.order = tuple(int(k) for k in order)
        #: what a run's config.json names as the model's class: the network, and what this adds
        self.class_name = f"{type(model).__name__} (channels {''.join('RGB'[k] for k in self.order)})"

    def forward(self, pixel_values, *args, **kwargs):
        return self.model(pixel_values[:, list(self.order)], *args, **kwargs)


#: the colours pushed through a processor to read its pixel transform: black, red, green, blue, white
_PROBE_COLOURS = ((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255))


def measured_name(path: Path) -> str:
    try:
        raw = json.loads((path / "preprocessor_config.json").read_text())
        return str(raw.get("image_processor_type") or raw["feature_extractor_type"])
    except Exception:
        return "image processor"


def measure_processor(path: Path) -> tuple[dict[str, tuple[float, ...]], tuple[int, ...] | None] | None:
    """The folder's transformers image processor, asked what it does to a pixel: flat black, red, green, blue and white
    images go through it and each output channel is read as ``a * input_channel + b``; a 2:1 image with a red band on
    its left edge tells a squash (the band survives) from a center crop (it is cut). Returns probe's mean, std (in
    RGB) and crop mode, and the channel order the network wants (None for RGB), or None when the processor does not
    load or is not a per-channel affine map of RGB (then the JSON's fields stand).

    Reading the JSON alone gets processors wrong whose class has no normalisation step or reorders channels:
    apple/mobilevit-small's config names neither mean nor std (its network wants [0, 1], in BGR), so the JSON reading
    gave it ImageNet's statistics in RGB."""
    import numpy as np

    try:
        from PIL import Image
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        images = [Image.fromarray(np.full((64, 64, 3), colour, dtype=np.uint8)) for colour in _PROBE_COLOURS]
        pixels = np.asarray(processor(images=images, return_tensors="np")["pixel_values"], dtype=np.float64)
        wide = np.zeros((64, 128, 3), dtype=np.uint8)
        wide[:, :16, 0] = 255  # a red band on the left eighth of a 2:1 image: kept by a squash, cut by a center crop
        band = np.asarray(processor(images=[Image.fromarray(wide)], return_tensors="np")["pixel_values"], dtype=np.float64)
    except Exception:  # a processor transformers cannot build or run here: the JSON reading stands
        return None
    if pixels.ndim != 4 or pixels.shape[:2] != (5, 3):
        return None
    value = pixels[:, :, pixels.shape[2] // 2, pixels.shape[3] // 2]  # (colour, channel) at the centre
    black, white, rise = value[0], value[4], value[1:4] - value[0]  # rise[k, c]: channel c's answer to input k
    order, gain = [], []
    for c in range(3):
        k = int(np.argmax(np.abs(rise[:, c])))
        if abs(rise[k, c]) < 1e-6 or (np.delete(np.abs(rise[:, c]), k) > 1e-3 * abs(rise[k, c])).any():
            return None  # a channel that mixes colours (or ignores them) is not a mean and a std
        order.append(k)
        gain.append(float(rise[k, c]))
    if sorted(order) != [0, 1, 2] or min(gain) <= 0 or not np.allclose(white, black + np.array(gain), atol=1e-3 * max(gain)):
        return None
    mean, std = [0.0] * 3, [1.0] * 3
    for c, k in enumerate(order):  # output c = (input k - mean[k]) / std[k]
        std[k] = 1.0 / gain[c]
        mean[k] = float(-black[c] / gain[c])
    red = order.index(0)  # the output channel that carries red
    if band.ndim != 4 or band.shape[:2] != (1, 3):
        return None
    edge = (band[0, red, band.shape[2] // 2, max(0, band.shape[3] // 50)] - black[red]) / gain[red]
    found = {"mean": tuple(round(m, 6) + 0.0 for m in mean), "std": tuple(round(v, 6) for v in std),
             "crop_mode": "squash" if edge > 0.5 else "center"}
    return found, (tuple(order) if order != [0, 1, 2] else None)


def processor_data(folder: Path, model: nn.Module) -> tuple[dict[str, Any], str | None, nn.Module]:
    """The data config a transformers classifier's folder gives (its preprocessor_config.json, with mean, std and
    crop mode measured through the processor itself; else its config's image_size), its source, and the model,
    wrapped in :class:`ChannelOrder` where the processor reorders the channels."""
    data: dict[str, Any] = {}
    source = None
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        data = dc.from_hf_preprocessor(pre)
        source = str(pre) if data else None
        measured = measure_processor(folder)
        if measured is not None:  # what the processor really does to a pixel, over what its JSON seems to say
            normalisation, order = measured
            data.update(normalisation)
            source = f"{pre} (mean, std and crop mode measured through its {measured_name(folder)})"
            if order is not None:
                model = ChannelOrder(model, order)
                source += ", channels reordered to " + "".join("RGB"[k] for k in order)
    config = getattr(getattr(model, "model", model), "config", None)
    channels = int(getattr(config, "num_channels", 3) or 3)
    image_size = getattr(config, "image_size", None)
    if "input_size" not in data and isinstance(image_size, int):
        data["input_size"] = (channels, image_size, image_size)
        source = source or "config.image_size"
    if "input_size" in data and data["input_size"][0] != channels and channels in (1, 3):
        # a processor's sizes carry no channel count: a greyscale network (num_channels 1) takes one
        data["input_size"] = (channels, *data["input_size"][1:])
        for key in ("mean", "std"):
            if key in data and len(data[key]) not in (1, channels):
                data[key] = (sum(data[key]) / len(data[key]),)
    return data, source, model


def folder_of(model: nn.Module) -> Path | None:
    """The folder a transformers model in memory was loaded from (``from_pretrained``'s local folder, or the hub
    cache's copy of its repository when its processor is cached there), so that a notebook's model gets its
    processor's data config as a folder would; None for anything else."""
    name = str(getattr(model, "name_or_path", "") or "")
    if not name or not hasattr(model, "config"):
        return None
    if Path(name).is_dir():
        return Path(name)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "preprocessor_config.json")
    except Exception:  # not a repository id, or no hub library: nothing to read
        return None
    return Path(cached).parent if isinstance(cached, str) else None
