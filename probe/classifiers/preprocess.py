"""Differentiable preprocessing: images in [0, 1] -> the tensor the network expects.

The same steps as timm's eval transform (resize, center crop, normalize), written
with tensor ops so that gradients reach the input image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from probe.classifiers.data_config import DataConfig
from probe.errors import ClassifierError

# Luminance weights (ITU-R 601-2), as PIL's convert("L").
_GREY = (0.299, 0.587, 0.114)


class Preprocess(nn.Module):
    """Resize (shorter side), center crop, normalize; every step differentiable.

    Bilinear and bicubic filters resize with PyTorch's antialiased kernels (they have a backward pass), as
    torchvision's Resize does on tensors: PIL's filters, also when enlarging (bicubic with a = -0.5, where the plain
    kernel's -0.75 was 0.002 off on average); nearest and area modes have none and do without.
    Resized values are clamped to [0, 1], as an 8-bit image pipeline would.
    """

    def __init__(self, config: DataConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.input_size[0]
        self.register_buffer("mean", torch.tensor(config.mean, dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(config.std, dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("grey", torch.tensor(_GREY, dtype=torch.float32).view(1, 3, 1, 1))

    def _resize(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        mode = self.config.interpolation
        kwargs: dict = {}
        if mode in ("bilinear", "bicubic"):
            kwargs = {"align_corners": False, "antialias": True}
        y = F.interpolate(x, size=size, mode=mode, **kwargs)
        return y.clamp(0.0, 1.0) if mode == "bicubic" else y

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ClassifierError(
                f"images: expected a (B, 3, H, W) tensor in [0, 1], got {shape}; stack images into one batch"
            )
        if not images.is_floating_point():
            raise ClassifierError(
                f"images: dtype {images.dtype} is not floating point; pass floats in [0, 1] (e.g. x.float() / 255)"
            )
        x = images.to(self.mean.dtype)
        cfg = self.config
        out_h, out_w = cfg.image_size
        in_h, in_w = x.shape[-2:]
        # 1. Resize: the shorter side to floor(size / crop_pct) for square inputs (timm's rule), the longer side
        #    truncated as torchvision's Resize(int) does (timm's eval transform is that Resize); both sides for
        #    non-square inputs and for a classifier whose own pipeline squashes (crop_mode "squash").
        if out_h == out_w and cfg.crop_mode == "center":
            scale = cfg.resize_size[0]
            target = (scale, int(scale * in_w / in_h)) if in_h <= in_w else (int(scale * in_h / in_w), scale)
        else:
            target = cfg.resize_size
        x = self._resize(x, target)
        # 2. Center crop to the network's input size, an odd margin halved as the classifier's own pipeline halves
        #    it: torchvision's CenterCrop rounds half to even (a margin of 35 starts the crop at 18), a Hugging Face
        #    image processor floors (17).
        half = (lambda m: m // 2) if cfg.crop_offset == "floor" else (lambda m: int(round(m / 2.0)))
        top, left = max(0, half(x.shape[-2] - out_h)), max(0, half(x.shape[-1] - out_w))
        x = x[..., top : top + out_h, left : left + out_w]
        # 3. Channels: grey models get luminance, RGB models get grey images repeated.
        if cfg.input_size[0] == 1 and x.shape[1] == 3:
            x = (x * self.grey).sum(dim=1, keepdim=True)
        elif cfg.input_size[0] == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        # 4. Normalize.
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"resize={c.resize_size}{' (squash)' if c.crop_mode == 'squash' else ''}, crop={c.image_size}, "
            f"interpolation={c.interpolation}, "
            f"mean={tuple(round(m, 4) for m in c.mean)}, std={tuple(round(s, 4) for s in c.std)}"
        )
