"""The token's gradient for one optimisation step, with memory bounded by a chunk of images, not the batch.

``token_gradient_step(generator, prompts, seeds, loss_fn, ...)`` samples the whole batch together without
gradient up to the last ``grad_steps`` UNet calls (batching is where the speed comes from), then, for each
chunk of ``max_batch`` images, runs those UNet calls with gradient, the VAE decode, ``loss_fn`` and the
backward pass before the next chunk starts. Only one chunk's graph is alive at a time. Each chunk's loss is
scaled by chunk/total, so with a loss that is a mean over images the accumulated gradient equals the
unchunked step's up to float error (deterministic schedulers; DDPM, Euler-ancestral and LCM draw fresh noise,
which differs per chunk as it does per call).

The gradient reaches the trainable token through the text encoder. Each chunk backpropagates into a detached
copy of the prompt embeddings; their accumulated gradient goes through the text encoder once at the end.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from probe.errors import GeneratorError

#: loss_fn(images, rows) -> (loss, logits): ``images`` are rows ``rows`` of the batch, (n,3,H,W) float32 in
#: [0,1]; ``loss`` is the mean over those images, ``logits`` (n, classes) are kept detached for the metrics.
LossFn = Callable[[torch.Tensor, slice], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass
class GradientStep:
    """One step's loss (the batch mean), the classifier's logits for every image (detached) and the chunks."""

    loss: float
    logits: torch.Tensor
    chunks: tuple[int, ...]

    def __repr__(self) -> str:
        return f"GradientStep(loss {self.loss:.4f}, {self.logits.shape[0]} images in chunks {list(self.chunks)})"


def chunk_slices(n: int, max_batch: int | None) -> list[slice]:
    """Rows 0..n-1 in consecutive chunks of at most ``max_batch`` (None: one chunk)."""
    if max_batch is not None and max_batch < 1:
        raise GeneratorError(f"max_batch={max_batch} must be >= 1 or None")
    step = n if not max_batch else min(max_batch, n)
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def token_gradient_step(generator, prompts: Sequence[str], seeds: Sequence[int], loss_fn: LossFn, *,
                        steps: int | None = None, guidance_scale: float | None = None, grad_steps: int = 1,
                        max_batch: int | None = None, scheduler: str | None = None,
                        gradient_checkpointing: bool = False, pad_last_chunk: bool | None = None) -> GradientStep:
    """Accumulate d(mean loss)/d(token) into the trainable token's ``.grad``; return the loss and logits.

    The caller zeroes the gradient before and steps the optimiser after; nothing here updates a weight.
    ``pad_last_chunk`` (default: when the generator is compiled) runs a short last chunk at the full chunk size,
    repeating its last image, whose copies are left out of the loss: every chunk then has one shape, so the
    compiled graphs are built once per run.
    """
    n = len(prompts)
    if n != len(seeds):
        raise GeneratorError(f"got {n} prompts but {len(seeds)} seeds; pass one seed per prompt")
    if grad_steps < 1:
        raise GeneratorError(f"grad_steps={grad_steps} must be at least 1 for a gradient step")
    compiled = generator.is_compiled
    pad = compiled if pad_last_chunk is None else pad_last_chunk
    # 1. The plan: fresh scheduler, timesteps (one per UNet call), which calls carry gradient.
    sampling = generator.start_sampling(seeds, steps=steps, guidance_scale=guidance_scale, grad_steps=grad_steps,
                                        scheduler=scheduler)
    generator.unet.train(False)
    generator.set_gradient_checkpointing(gradient_checkpointing)
    # 2. Prompt embeddings with the token's graph, once; each chunk sees a detached leaf in their place.
    uncond, cond = generator.text_context(prompts, grad=True)
    cond_leaf = cond.detach().requires_grad_(cond.requires_grad)
    # 3. Sampling without gradient, the whole batch in one UNet batch, up to the first call with gradient.
    latents = sampling.latents
    with torch.no_grad():
        for i in range(sampling.first_grad):
            latents = generator.denoise(sampling, i, latents, uncond, cond_leaf, compiled=compiled)
    snapshot = sampling.scheduler
    # 4. Per chunk: the grad-carrying UNet calls on a copy of the scheduler holding only the chunk's state,
    #    decode, loss scaled to its share of the batch, backward; the chunk's graph is freed before the next.
    #    (Compiled: a short last chunk is padded to the chunk size with copies that stay out of the loss.)
    total_loss, logits_parts, chunks = 0.0, [], []
    slices = chunk_slices(n, max_batch)
    for rows in slices:
        size = rows.stop - rows.start
        padding = slices[0].stop - size if pad else 0  # the first chunk is the full one
        index = torch.tensor(list(range(rows.start, rows.stop)) + [rows.stop - 1] * padding, device=latents.device)
        chunk_sched = _scheduler_rows(snapshot, index, latents)
        with torch.enable_grad():
            chunk = latents[index]
            for i in range(sampling.first_grad, sampling.calls):
                chunk = generator.denoise(sampling, i, chunk, uncond[index], cond_leaf[index], scheduler=chunk_sched,
                                          compiled=compiled, which=list(range(rows.start, rows.stop)) + [None] * padding)
            images = generator.decode(chunk, compiled=compiled)[:size]  # padded copies carry no loss, no gradient
            loss, logits = loss_fn(images, rows)
            scaled = loss * (size / n)
            if scaled.requires_grad:
                scaled.backward()
        total_loss += float(scaled.detach())
        logits_parts.append(logits.detach().float())
        chunks.append(size)
        del chunk, images, loss, logits, scaled
    # 5. The prompt embeddings' accumulated gradient through the text encoder into the token, once.
    if cond.requires_grad and cond_leaf.grad is not None:
        cond.backward(cond_leaf.grad)
    logits = torch.cat(logits_parts)
    return GradientStep(loss=total_loss, logits=logits, chunks=tuple(chunks))


def _scheduler_rows(scheduler, rows: torch.Tensor, latents: torch.Tensor):
    """A copy of ``scheduler`` whose per-image state (PNDM's history, DPM's model outputs, ...) holds only ``rows``
    (indices into the batch).

    Per-image state is recognised by shape: a tensor shaped like the batch's latents. Everything else
    (timesteps, sigmas, counters) is copied as is, so the copy continues exactly where the batch stood.
    """
    sched = copy.copy(scheduler)
    for name, value in vars(scheduler).items():
        setattr(sched, name, _rows_of(value, rows, latents.shape))
    return sched


def _rows_of(value, rows: torch.Tensor, shape: torch.Size):
    if isinstance(value, torch.Tensor):
        return value[rows].clone() if value.shape == shape else value.clone()
    if isinstance(value, list):
        return [_rows_of(v, rows, shape) for v in value]
    if isinstance(value, tuple):
        return tuple(_rows_of(v, rows, shape) for v in value)
    if isinstance(value, dict) and not type(value).__name__ == "FrozenDict":
        return {k: _rows_of(v, rows, shape) for k, v in value.items()}
    return value
