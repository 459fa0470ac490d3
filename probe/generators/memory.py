"""How many images per gradient chunk (``--max-batch``) a GPU takes, when the user does not say.

The token's gradient is taken chunk by chunk (probe/generators/gradient.py), so the peak memory of a step is about
the model weights plus one chunk's graph. ``choose_max_batch`` is a pure function of the free memory and
the run's shapes; ``resolve_max_batch`` reads the free memory of the generator's device and calls it once
per run (a run keeps one chunk size, so compiled shapes stay static and classes are comparable).

The per-image estimate is calibrated on the issue-9 measurement (one H200, SD 1.x architecture at full
size, fp16, 512 px, 5 images per step): the VAE decode with gradient held 2.95 GiB per image, and the last
UNet call with gradient 9.0 GiB at a batch of 10 UNet rows (5 images x (unconditional, conditional)), i.e.
0.9 GiB per row. Activations scale with pixels and with bytes per element; each UNet call that carries
gradient keeps its own activations. The estimate ignores gradient checkpointing (which lowers the real
figure), so it errs on the safe side.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

GIB = 1024 ** 3
VAE_DECODE_GIB = 2.95  # VAE decode with gradient, per image (SD 1.x, 512 px, fp16)
UNET_ROW_GIB = 0.9  # one UNet call with gradient, per UNet row (SD 1.x, 512 px, fp16)
REFERENCE_PIXELS = 512 * 512
REFERENCE_ELEMENT_BYTES = 2  # fp16
USABLE_FRACTION = 0.8  # of the free memory: the classifier's activations, fragmentation, library workspaces
RESERVE_GIB = 0.5  # ... and this much more left alone
# Beyond about two 512-px images per chunk (4 UNet rows under guidance, 2 VAE decodes at 512 px) a data-centre
# GPU is already busy, so a larger chunk buys little speed for a lot of memory: the auto choice stops there
# (measured with benchmarks/gpu_step.py on an H200, SD 1.x, 5 images: chunks of 2 peak at 11.24 GiB and take
# 0.989 s/step against 24.74 GiB and 0.928 s for one chunk of 5). Smaller images allow proportionally more.
SATURATING_PIXELS = 2 * 512 * 512


def _element_bytes(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4


def per_image_bytes(image_size: int, dtype: torch.dtype, *, grad_steps: int = 1, guidance: bool = True,
                    vae_dtype: torch.dtype | None = None) -> int:
    """Estimated memory one image's gradient chunk holds: its grad-carrying UNet calls (in ``dtype``) and its VAE
    decode (in ``vae_dtype``, default ``dtype``: SDXL's own VAE runs in float32 beside an fp16 UNet, ``force_upcast``,
    and its decode holds twice the bytes an fp16 one does)."""
    pixels = image_size * image_size / REFERENCE_PIXELS
    unet = UNET_ROW_GIB * (2 if guidance else 1) * grad_steps * _element_bytes(dtype) / REFERENCE_ELEMENT_BYTES
    vae = VAE_DECODE_GIB * _element_bytes(vae_dtype or dtype) / REFERENCE_ELEMENT_BYTES
    return int((vae + unet) * pixels * GIB)


@dataclass(frozen=True)
class MaxBatchChoice:
    """The chunk size a run uses and why: ``source`` is "given" (--max-batch), "auto" (chosen here) or "off"
    (not a CUDA device: one chunk, no chunking unless --max-batch is given)."""

    max_batch: int | None
    batch_size: int
    source: str
    limited_by: str = ""  # "memory", "speed" (SATURATING_PIXELS) or "batch" (the whole batch fits)
    free_bytes: int | None = None
    per_image_bytes: int | None = None

    @property
    def chunks(self) -> list[int]:
        step = self.max_batch or self.batch_size
        return [min(step, self.batch_size - start) for start in range(0, self.batch_size, step)]

    @property
    def fits(self) -> bool:
        """False when even one image per chunk exceeds the estimate of usable memory."""
        if self.free_bytes is None or self.per_image_bytes is None:
            return True
        return self.per_image_bytes <= _usable(self.free_bytes)

    def line(self) -> str:
        """One line for the console: what was chosen and from what."""
        chunks = ", ".join(str(c) for c in self.chunks)
        if self.source == "given":
            return f"gradient chunks: --max-batch {self.max_batch} (given): images per chunk {chunks}"
        if self.source == "off":
            return f"gradient chunks: one chunk of {self.batch_size} images (no --max-batch; chunking is automatic on CUDA only)"
        text = (f"gradient chunks: --max-batch {self.max_batch} (auto, by {self.limited_by}): images per chunk {chunks}; "
                f"{self.free_bytes / GIB:.1f} GiB free, ~{self.per_image_bytes / GIB:.2f} GiB per image with gradient")
        if not self.fits:
            text += "; one image may not fit: try --gradient-checkpointing or fewer --grad-steps"
        return text

    def to_dict(self) -> dict:
        return {**asdict(self), "chunks": self.chunks}

    def __repr__(self) -> str:
        return f"MaxBatchChoice({self.line()})"


def _usable(free_bytes: int) -> float:
    return free_bytes * USABLE_FRACTION - RESERVE_GIB * GIB


def choose_max_batch(free_bytes: int, *, image_size: int, dtype: torch.dtype, batch_size: int, grad_steps: int = 1,
                     guidance: bool = True, saturating_pixels: int = SATURATING_PIXELS,
                     vae_dtype: torch.dtype | None = None) -> MaxBatchChoice:
    """Images per gradient chunk for ``batch_size`` images per step, from ``free_bytes`` of free GPU memory.

    1. as many images as the usable memory holds by the per-image estimate (at least 1);
    2. at most ``saturating_pixels`` worth of images (a bigger chunk buys little speed on a busy GPU);
    3. at most the batch; then the chunks are evened out: 5 images with at most 4 per chunk become 3 + 2
       rather than 4 + 1 (as many chunks, a lower peak).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    each = per_image_bytes(image_size, dtype, grad_steps=grad_steps, guidance=guidance, vae_dtype=vae_dtype)
    by_memory = max(1, int(_usable(free_bytes) // max(each, 1)))
    by_speed = max(1, saturating_pixels // (image_size * image_size))
    limit = min(by_memory, by_speed, batch_size)
    limited_by = "batch" if limit == batch_size else ("memory" if by_memory <= by_speed else "speed")
    n_chunks = math.ceil(batch_size / limit)
    even = math.ceil(batch_size / n_chunks)
    return MaxBatchChoice(max_batch=even, batch_size=batch_size, source="auto", limited_by=limited_by,
                          free_bytes=int(free_bytes), per_image_bytes=each)


def free_device_bytes(device: torch.device) -> int:
    """Free memory on a CUDA device, counting what PyTorch's caching allocator holds but does not use."""
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + max(cached, 0))


def resolve_max_batch(generator, token_config) -> MaxBatchChoice:
    """The run's chunk size: the user's --max-batch, else on CUDA the choice from free memory, else one chunk."""
    batch = token_config.batch_size
    if token_config.max_batch is not None:
        return MaxBatchChoice(max_batch=token_config.max_batch, batch_size=batch, source="given")
    device = torch.device(generator.device)
    if device.type != "cuda":
        return MaxBatchChoice(max_batch=None, batch_size=batch, source="off")
    guidance = token_config.guidance_scale if token_config.guidance_scale is not None else generator.defaults.guidance_scale
    vae = getattr(generator, "vae", None)
    vae_dtype = getattr(vae, "dtype", None) if isinstance(getattr(vae, "dtype", None), torch.dtype) else None
    return choose_max_batch(free_device_bytes(device), image_size=generator.image_size, dtype=generator.dtype,
                            batch_size=batch, grad_steps=token_config.grad_steps, guidance=guidance > 1.0,
                            vae_dtype=vae_dtype)
