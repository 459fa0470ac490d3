"""The classifier's data configuration: input size, normalisation, crop and interpolation.

Resolved per field with this precedence (highest first):

1. explicit arguments to :func:`probe.load_classifier` (CLI flags ``--input-size`` ...);
2. the sidecar ``X.data.json`` next to the model file ``X.ext``;
3. what the model itself says: timm's ``pretrained_cfg``, a Hugging Face
   ``preprocessor_config.json``, torchvision's weight transforms, or the example
   input shape stored in a ``torch.export`` program;
4. defaults: 224, ImageNet mean/std, crop_pct 0.875, bicubic.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from probe.errors import ClassifierError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")
FIELDS = ("input_size", "mean", "std", "crop_pct", "interpolation", "crop_mode", "crop_offset")
#: how an image of another aspect ratio reaches the input size: "center" resizes its shorter side and center-crops
#: (timm's default, torchvision's); "squash" resizes both sides, distorting it (a Hugging Face processor whose size is
#: {height, width}: ViT, DeiT, Swin, BEiT; timm's crop_mode="squash"). Generated images are square, so it matters for
#: your own photos (`probe confirm`), where a center crop can cut off the background the classifier would have seen.
CROP_MODES = ("center", "squash")
#: where a center crop starts when its margin is odd: "round" halves it rounding half to even (torchvision's
#: CenterCrop, so timm's eval transform), "floor" rounds down (Hugging Face image processors' center_crop)
CROP_OFFSETS = ("round", "floor")

# PIL resample codes as stored in Hugging Face image-processor configs.
# Lanczos / hamming / box have no differentiable counterpart; the closest one is used.
_PIL_RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "area", 5: "bilinear"}
# Names timm or users may give for the same filters.
_INTERP_ALIASES = {"lanczos": "bicubic", "hamming": "bilinear", "box": "area", "random": "bilinear"}


def _what(name: str, value: Any, source: str) -> str:
    """How a message names a setting: the CLI flag (``--crop-pct 1.5``) when it came from the command line
    (``source == "flags"``), else the source and the field (``model.data.json: crop_pct=1.5``)."""
    if source == "flags":
        return f"--{name.replace('_', '-')} {value!r}"
    return f"{source}: {name}={value!r}"


def _as_input_size(value: Any, source: str) -> tuple[int, int, int]:
    """Normalise 224 / (224, 224) / (3, 224, 224) / "224" / "3,224,224" to (C, H, W)."""
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise ClassifierError(
                f"{_what('input_size', value, source)} is not a size; give 224, 224,224 (H,W) or 3,224,224 (C,H,W)"
            ) from None
    if isinstance(value, bool):
        raise ClassifierError(f"{_what('input_size', value, source)} is not a size; give e.g. 224")
    if isinstance(value, int):
        value = (3, value, value)
    try:
        size = tuple(int(v) for v in value)
    except (TypeError, ValueError, OverflowError):  # the last: an infinite size (1e999 in JSON)
        raise ClassifierError(
            f"{_what('input_size', value, source)} is not a size; give 224, (224, 224) or (3, 224, 224)"
        ) from None
    if len(size) == 1:
        size = (3, size[0], size[0])
    elif len(size) == 2:
        size = (3, *size)
    if len(size) != 3 or size[0] not in (1, 3) or min(size[1:]) < 1:
        raise ClassifierError(
            f"{_what('input_size', value, source)} must be (C, H, W) with C 1 or 3 and H, W >= 1; e.g. (3, 224, 224)"
        )
    return size  # type: ignore[return-value]


def _as_triple(value: Any, name: str, source: str) -> tuple[float, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)):
        value = [value]
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ClassifierError(f"{_what(name, value, source)} is not a list of numbers; give e.g. 0.5,0.5,0.5") from None
    if len(vals) not in (1, 3) or any(not math.isfinite(v) for v in vals):
        raise ClassifierError(f"{_what(name, value, source)} needs 1 or 3 finite numbers, one per channel")
    return vals


def normalize_crop_mode(value: Any, source: str = "data config") -> str:
    """One of :data:`CROP_MODES` (timm's "border", which pads, is read as "center": the nearest of the two)."""
    name = str(value).strip().lower() if isinstance(value, str) else None
    if name == "border":
        return "center"
    if name in CROP_MODES:
        return name
    raise ClassifierError(f"{_what('crop_mode', value, source)} is not supported; use one of {', '.join(CROP_MODES)}")


def normalize_crop_offset(value: Any, source: str = "data config") -> str:
    """One of :data:`CROP_OFFSETS`."""
    name = str(value).strip().lower() if isinstance(value, str) else None
    if name in CROP_OFFSETS:
        return name
    raise ClassifierError(f"{_what('crop_offset', value, source)} is not supported; use one of {', '.join(CROP_OFFSETS)}")


def normalize_interpolation(value: Any, source: str = "data config") -> str:
    """Map a name or PIL resample code to one of :data:`INTERPOLATIONS`."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value in _PIL_RESAMPLE:
            return _PIL_RESAMPLE[value]
    elif isinstance(value, str):
        name = value.strip().lower()
        name = _INTERP_ALIASES.get(name, name)
        if name in INTERPOLATIONS:
            return name
    elif hasattr(value, "value"):  # enums: PIL.Image.Resampling, torchvision InterpolationMode
        return normalize_interpolation(value.value, source)
    raise ClassifierError(
        f"{_what('interpolation', value, source)} is not supported; use one of {', '.join(INTERPOLATIONS)}"
    )


@dataclass(frozen=True)
class DataConfig:
    """How images are prepared for the classifier (mirrors timm's eval transform).

    ``input_size`` is (C, H, W); square inputs are resized on the shorter side to
    ``floor(size / crop_pct)`` then center-cropped to ``size``; non-square inputs,
    and every input with ``crop_mode="squash"``, are resized to
    ``floor(H / crop_pct), floor(W / crop_pct)`` then cropped.
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    crop_mode: str = "center"
    crop_offset: str = "round"

    def __post_init__(self) -> None:
        src = "DataConfig"
        object.__setattr__(self, "input_size", _as_input_size(self.input_size, src))
        channels = self.input_size[0]
        for name in ("mean", "std"):
            vals = _as_triple(getattr(self, name), name, src)
            if len(vals) == 1:
                vals = vals * channels
            if len(vals) != channels:
                raise ClassifierError(
                    f"{src}: {name} has {len(vals)} values but input_size has {channels} channels; give {channels}"
                )
            object.__setattr__(self, name, vals)
        if any(s <= 0 for s in self.std):
            raise ClassifierError(f"{src}: std={self.std} must be positive; e.g. 0.229,0.224,0.225")
        try:
            crop = float(self.crop_pct)
        except (TypeError, ValueError):
            raise ClassifierError(f"{src}: crop_pct={self.crop_pct!r} is not a number; give e.g. 0.875") from None
        if not (0.0 < crop <= 1.0):
            raise ClassifierError(f"{src}: crop_pct={self.crop_pct!r} must be in (0, 1]; 1.0 means no crop")
        object.__setattr__(self, "crop_pct", crop)
        object.__setattr__(self, "interpolation", normalize_interpolation(self.interpolation, src))
        object.__setattr__(self, "crop_mode", normalize_crop_mode(self.crop_mode, src))
        object.__setattr__(self, "crop_offset", normalize_crop_offset(self.crop_offset, src))

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the tensor that reaches the network."""
        return self.input_size[1], self.input_size[2]

    @property
    def resize_size(self) -> tuple[int, int]:
        """(H, W) before the center crop."""
        # timm's floor(size / crop_pct); the 1e-9 keeps a crop_pct read from a transform (224 / 400) from flooring
        # to one pixel less than the transform's own Resize: Resize(400) + CenterCrop(224) gave 399.99999999999994
        return (
            int(math.floor(self.input_size[1] / self.crop_pct + 1e-9)),
            int(math.floor(self.input_size[2] / self.crop_pct + 1e-9)),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    def replace(self, **changes: Any) -> "DataConfig":
        d = self.to_dict()
        d.update({k: v for k, v in changes.items() if v is not None})
        return DataConfig(**d)


def check_partial(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Validate a partial data config (some fields), normalising each field's value."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ClassifierError(
            f"{source}: unknown data config keys {unknown}; allowed keys are {', '.join(FIELDS)}"
        )
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key == "input_size":
            out[key] = _as_input_size(value, source)
        elif key in ("mean", "std"):
            out[key] = _as_triple(value, key, source)
            if key == "std" and any(v <= 0 for v in out[key]):
                raise ClassifierError(f"{_what('std', value, source)} must be positive; e.g. 0.229,0.224,0.225")
        elif key == "crop_pct":
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                raise ClassifierError(f"{_what('crop_pct', value, source)} is not a number; give e.g. 0.875") from None
            if not 0.0 < out[key] <= 1.0:
                raise ClassifierError(f"{_what('crop_pct', value, source)} must be in (0, 1]; 1.0 means no crop")
        elif key == "crop_mode":
            out[key] = normalize_crop_mode(value, source)
        elif key == "crop_offset":
            out[key] = normalize_crop_offset(value, source)
        else:
            out[key] = normalize_interpolation(value, source)
    return out


def _read_json(path: Path, what: str, fix: str) -> Any:
    """``path``'s JSON (a BOM allowed), or a one-line ClassifierError naming ``what`` and the ``fix``."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClassifierError(f"{what}: not readable JSON ({e}); {fix}") from e


def read_data_sidecar(path: Path) -> dict[str, Any]:
    """Read ``X.data.json``: a JSON object with some of the :data:`FIELDS`."""
    raw = _read_json(path, f"data config {path}", "fix or delete the file")
    if not isinstance(raw, dict):
        raise ClassifierError(
            f"data config {path}: expected a JSON object like {{\"input_size\": 224}}, got {type(raw).__name__}"
        )
    return check_partial(raw, f"data config {path}")


def from_timm_model(model: Any) -> dict[str, Any]:
    """Data config fields from a timm model's ``pretrained_cfg`` (empty if it has none)."""
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key in FIELDS:
        if cfg.get(key) is not None:
            out[key] = cfg[key]
    try:
        return check_partial(out, "timm pretrained_cfg")
    except ClassifierError:
        return {}


def from_torchvision(name: str) -> dict[str, Any]:
    """Data config of torchvision's default weights for ``name`` (offline metadata only)."""
    try:
        import torchvision

        weights = torchvision.models.get_model_weights(name).DEFAULT
        tr = weights.transforms()
        crop = int(tr.crop_size[0])
        resize = int(tr.resize_size[0])
        return check_partial(
            {
                "input_size": crop,
                "crop_pct": crop / resize if resize >= crop else 1.0,
                "mean": tr.mean,
                "std": tr.std,
                "interpolation": tr.interpolation,
            },
            f"torchvision weights for {name}",
        )
    except Exception:
        return {}


#: transform steps that change dtype or container only (torchvision v1 and v2, timm)
_INERT_STEPS = {"ToTensor", "PILToTensor", "ConvertImageDtype", "ToImage", "ToDtype", "ToPureTensor", "ToImageTensor",
                "MaybeToTensor", "MaybePILToTensor", "Identity"}


def _steps(transform: Any) -> list:
    """The steps of a transform pipeline, nested ``Compose`` (torchvision v1 and v2, timm's) flattened."""
    inner = getattr(transform, "transforms", None)
    if isinstance(inner, (list, tuple)):
        return [step for t in inner for step in _steps(t)]
    return [transform]


def from_transform(transform: Any) -> dict[str, Any]:
    """Data config fields of the evaluation transform a notebook already has: a torchvision ``Compose`` (v1 or v2)
    of ``Resize``, ``CenterCrop``, ``Normalize``, ``Grayscale`` and tensor conversions, timm's
    ``create_transform(..., is_training=False)``, or torchvision's weights preset (``weights.transforms()``).
    A random step (a training transform) or a step probe cannot read is a one-line ClassifierError: reading around
    it would preprocess the images otherwise than the classifier expects."""
    shorter = squash = crop = None
    channels, out = 3, {}
    for step in _steps(transform):
        name = type(step).__name__
        if name in _INERT_STEPS:
            continue
        if name == "ImageClassification":  # torchvision's weights.transforms()
            shorter, crop = int(step.resize_size[0]), (int(step.crop_size[0]),) * 2
            out.update(mean=step.mean, std=step.std, interpolation=step.interpolation)
        elif name == "Resize":
            if step.size is None:  # v2's Resize(size=None, max_size=N): the longer side to N
                raise ClassifierError("transform: Resize(size=None) sets only the longer side; pass input_size= "
                                      "(and crop_pct=) instead")
            size = [step.size] if isinstance(step.size, int) else list(step.size)
            if getattr(step, "max_size", None) is not None and step.max_size < max(size):
                raise ClassifierError(f"transform: Resize's max_size {step.max_size} caps its size {size}; pass "
                                      "input_size= (and crop_pct=) instead")
            if len(size) == 1:
                shorter = int(size[0])
            else:
                squash = (int(size[0]), int(size[1]))
            out["interpolation"] = step.interpolation
        elif name == "CenterCrop":
            size = [step.size] if isinstance(step.size, int) else list(step.size)
            crop = (int(size[0]), int(size[-1]))
        elif name == "Normalize":
            out.update(mean=tuple(round(float(v), 6) for v in step.mean), std=tuple(round(float(v), 6) for v in step.std))
        elif name == "Grayscale":
            channels = int(step.num_output_channels)
        elif name.startswith("Random") or name in ("ColorJitter", "AutoAugment", "RandAugment", "TrivialAugmentWide",
                                                    "AugMix", "GaussianBlur", "ElasticTransform"):
            raise ClassifierError(f"transform: {name} is a random step of a training transform; pass the evaluation "
                                  "transform (timm: create_transform(..., is_training=False))")
        else:
            raise ClassifierError(f"transform: probe does not read a {name} step; pass the data settings instead "
                                  "(input_size=, mean=, std=, crop_pct=, interpolation=)")
    if crop is not None and squash is not None:  # both sides resized, then cropped (timm's crop_mode "squash")
        if abs(crop[0] / squash[0] - crop[1] / squash[1]) > 1e-6:
            raise ClassifierError(f"transform: Resize to {list(squash)} then CenterCrop {list(crop)} crops the two "
                                  "sides by different fractions; pass input_size= and crop_pct= instead")
        out.update(input_size=(channels, *crop), crop_mode="squash", crop_pct=min(1.0, crop[0] / squash[0]))
    elif crop is not None:
        out.update(input_size=(channels, *crop), crop_mode="center",
                   crop_pct=min(1.0, crop[0] / shorter) if shorter else 1.0)
    elif squash is not None:
        out.update(input_size=(channels, *squash), crop_mode="squash", crop_pct=1.0)
    elif shorter is not None:
        out.update(input_size=(channels, shorter, shorter), crop_pct=1.0)
    elif channels != 3:
        raise ClassifierError("transform: it makes grey images but sets no size; pass input_size=(1, H, W) as well")
    return check_partial(out, "transform")


def _hw(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, Mapping):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value:
            return int(value["shortest_edge"]), int(value["shortest_edge"])
    return None


def from_hf_preprocessor(path: Path) -> dict[str, Any]:
    """Data config fields from a Hugging Face ``preprocessor_config.json``."""
    raw = _read_json(path, str(path), "fix it or pass --input-size/--mean/--std")
    if not isinstance(raw, dict):
        return {}
    try:
        out = _hf_fields(raw)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):  # {"height": null}, a zero size, 1e999
        return {}  # as for fields check_partial refuses below: the folder's other configs or the defaults decide
    try:
        return check_partial(out, str(path))
    except ClassifierError:
        return {}


def _hf_fields(raw: dict) -> dict[str, Any]:
    """The data config fields a ``preprocessor_config.json`` states (unchecked)."""
    out: dict[str, Any] = {}
    size = _hw(raw.get("size")) if raw.get("do_resize", True) else None
    crop = _hw(raw.get("crop_size")) if raw.get("do_center_crop", False) else None
    if size is not None and (isinstance(raw.get("size"), Mapping) and "height" in raw["size"] and "width" in raw["size"]):
        out["crop_mode"] = "squash"  # transformers resizes to exactly {height, width}, whatever the aspect
    if crop is not None:
        out["input_size"] = (3, *crop)
        if size is not None:
            out["crop_pct"] = min(1.0, crop[0] / size[0])
    elif size is not None:
        out["input_size"] = (3, *size)
        crop_pct = raw.get("crop_pct")
        # ConvNeXt-style processors crop only below 384 px.
        if isinstance(raw.get("size"), Mapping) and "shortest_edge" in raw["size"] and crop_pct and size[0] < 384:
            out["crop_pct"] = float(crop_pct)
        else:
            out["crop_pct"] = 1.0
    if raw.get("do_normalize", True):
        if raw.get("image_mean") is not None:
            out["mean"] = raw["image_mean"]
        if raw.get("image_std") is not None:
            out["std"] = raw["image_std"]
    else:
        out["mean"], out["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if raw.get("resample") is not None:
        out["interpolation"] = raw["resample"]
    if out:
        out["crop_offset"] = "floor"  # transformers' center_crop floors an odd margin's half
    return out


def resolve(*layers: Mapping[str, Any]) -> DataConfig:
    """Merge partial configs, the first layer winning, on top of the defaults."""
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        merged.update({k: v for k, v in layer.items() if v is not None})
    # Single-channel classifiers without their own statistics get the grey average of ImageNet's.
    size = merged.get("input_size")
    if size is not None and size[0] == 1:
        merged.setdefault("mean", (sum(IMAGENET_MEAN) / 3,))
        merged.setdefault("std", (sum(IMAGENET_STD) / 3,))
    return DataConfig(**merged)
