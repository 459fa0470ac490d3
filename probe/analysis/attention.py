"""Where is the object? Cross-attention maps collected while sampling.

:class:`CrossAttentionCapture` wraps every attention processor of the
generator's UNet; on cross-attention calls it also computes the attention
probabilities of the conditional half of the batch (diffusers orders it
[unconditional..., conditional...] under classifier-free guidance) for the
prompt tokens of interest (the class word and the learned token), averages
heads, layers and steps at a common resolution, and restores the original
processors on exit. The resulting map is thresholded (Otsu) into an object
mask, which gives the share of attribution mass off the object and, in the
shapes world, an IoU against the renderer's true masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from probe.analysis._util import generate
from probe.analysis.errors import AnalysisError

__all__ = [
    "CrossAttentionCapture",
    "token_positions",
    "capture_cross_attention",
    "object_mask",
    "otsu_threshold",
    "off_object_share",
    "mask_iou",
    "denoising_attention_maps",
    "attention_iou",
]


def token_positions(tokenizer, prompt: str, words: list[str]) -> list[int]:
    """Positions in the padded prompt ids of every occurrence of each word's token ids."""
    enc = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
    ids = list(enc["input_ids"])
    out: list[int] = []
    for word in words:
        if not word:
            continue
        wids = list(tokenizer(word, add_special_tokens=False)["input_ids"])
        if not wids:
            continue
        for i in range(len(ids) - len(wids) + 1):
            if ids[i : i + len(wids)] == wids:
                out.extend(range(i, i + len(wids)))
    return sorted(set(out))


class _CaptureProcessor:
    def __init__(self, inner, owner: "CrossAttentionCapture"):
        self.inner = inner
        self.owner = owner

    def __call__(self, attn, hidden_states, *args, **kwargs):
        ehs = kwargs.get("encoder_hidden_states", args[0] if args else None)
        if ehs is not None and hidden_states.ndim == 3:
            with torch.no_grad():
                self.owner._record(attn, hidden_states.detach(), ehs.detach())
        return self.inner(attn, hidden_states, *args, **kwargs)


class CrossAttentionCapture:
    """Context manager collecting cross-attention maps for chosen token positions.

    ``token_indices[i]`` lists the prompt positions whose attention is summed
    for conditional row ``i``. ``maps()`` returns (N, res, res) averaged over
    heads, layers and denoising steps.
    """

    def __init__(self, unet, token_indices: list[list[int]], res: int = 32):
        if not hasattr(unet, "attn_processors") or not hasattr(unet, "set_attn_processor"):
            raise AnalysisError("the generator's unet has no attention processors; cross-attention capture needs a diffusers UNet.")
        self.unet = unet
        self.token_indices = [list(t) for t in token_indices]
        self.res = int(res)
        self._sum = torch.zeros(len(self.token_indices), self.res, self.res)
        self._count = 0
        self.skipped_calls = 0
        self._saved = None

    def __enter__(self) -> "CrossAttentionCapture":
        self._saved = dict(self.unet.attn_processors)
        self.unet.set_attn_processor({k: _CaptureProcessor(v, self) for k, v in self._saved.items()})
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is not None:
            self.unet.set_attn_processor(dict(self._saved))
            self._saved = None

    def _record(self, attn, hidden_states: torch.Tensor, ehs: torch.Tensor) -> None:
        n = len(self.token_indices)
        b = hidden_states.shape[0]
        if b == 2 * n:
            rows = slice(n, 2 * n)
        elif b == n:
            rows = slice(0, n)
        else:
            self.skipped_calls += 1
            return
        hs = hidden_states[rows]
        ctx = ehs[rows] if ehs.shape[0] == b else ehs
        if getattr(attn, "norm_cross", None):
            ctx = attn.norm_encoder_hidden_states(ctx)
        q, k = attn.to_q(hs), attn.to_k(ctx)
        heads = attn.heads
        nq, nk = q.shape[1], k.shape[1]
        q = q.reshape(n, nq, heads, -1).transpose(1, 2)
        k = k.reshape(n, nk, heads, -1).transpose(1, 2)
        scale = getattr(attn, "scale", q.shape[-1] ** -0.5)
        probs = torch.softmax((q.float() @ k.float().transpose(-1, -2)) * scale, dim=-1).mean(1)  # (n, nq, nk)
        g = math.isqrt(nq)
        if g * g != nq:
            self.skipped_calls += 1
            return
        sel = torch.zeros(n, nq)
        for i, idx in enumerate(self.token_indices):
            idx = [j for j in idx if j < nk]
            if idx:
                sel[i] = probs[i][:, idx].sum(-1).cpu()
        m = F.interpolate(sel.reshape(n, 1, g, g), size=(self.res, self.res), mode="bilinear", align_corners=False)
        self._sum += m[:, 0]
        self._count += 1

    @property
    def calls(self) -> int:
        return self._count

    def maps(self) -> torch.Tensor:
        if self._count == 0:
            raise AnalysisError(
                "no cross-attention call was captured; the generator must call its unet with encoder_hidden_states."
            )
        return self._sum / self._count


def capture_cross_attention(
    generator,
    prompts: list[str],
    seeds: list[int],
    words: list[list[str]],
    *,
    batch_size: int = 8,
    gen_kwargs: dict | None = None,
    res: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``prompts`` with ``seeds`` while capturing attention for ``words[i]`` in prompt i.

    Returns (images (N,3,H,W) in [0,1], maps (N,H,W) in [0,1] at image size).
    """
    if not (len(prompts) == len(seeds) == len(words)):
        raise AnalysisError(f"capture_cross_attention got {len(prompts)} prompts, {len(seeds)} seeds, {len(words)} word lists; pass one of each per image.")
    imgs, maps = [], []
    for start in range(0, len(prompts), batch_size):
        p = prompts[start : start + batch_size]
        idx = [token_positions(generator.tokenizer, pr, w) for pr, w in zip(p, words[start : start + batch_size])]
        cap = CrossAttentionCapture(generator.unet, idx, res=res)
        with cap:
            im = generate(generator, p, seeds[start : start + batch_size], gen_kwargs)
        m = cap.maps()
        m = F.interpolate(m[:, None], size=im.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        lo = m.amin(dim=(1, 2), keepdim=True)
        hi = m.amax(dim=(1, 2), keepdim=True)
        maps.append((m - lo) / (hi - lo).clamp_min(1e-12))
        imgs.append(im)
    return torch.cat(imgs), torch.cat(maps)


def otsu_threshold(x: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold of the values in ``x`` (maximises between-class variance)."""
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-12:
        return hi
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centers) - np.cumsum(hist * centers)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[1:][int(np.argmax(between[:-1]))]) if bins > 1 else float(centers[0])


def object_mask(attention_map, threshold: float | None = None) -> np.ndarray:
    """Boolean object mask from an attention map: above Otsu's threshold (or the given one)."""
    a = np.asarray(attention_map, dtype=np.float64)
    t = otsu_threshold(a) if threshold is None else threshold
    return a > t


@dataclass(frozen=True)
class OffObject:
    share_outside: float  # share of |attribution| mass outside the object mask
    area_outside: float  # share of the image outside the object mask

    @property
    def excess(self) -> float:
        return self.share_outside - self.area_outside


def off_object_share(heat, mask) -> OffObject:
    """Share of attribution mass (|heat|) outside ``mask`` and the share of the area outside it."""
    h = np.abs(np.asarray(heat, dtype=np.float64))
    m = np.asarray(mask, dtype=bool)
    if h.shape != m.shape:
        raise AnalysisError(f"heatmap shape {h.shape} and mask shape {m.shape} differ; resize one to the other.")
    total = h.sum()
    share = float(h[~m].sum() / total) if total > 0 else float("nan")
    return OffObject(share, float((~m).mean()))


def mask_iou(a, b) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise AnalysisError(f"mask shapes {a.shape} and {b.shape} differ; resize one to the other before IoU.")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def denoising_attention_maps(
    generator,
    images01: torch.Tensor,
    prompts: list[str],
    words: list[list[str]],
    *,
    noise_levels: tuple[float, ...] = (0.3, 0.5, 0.7),
    seed: int = 0,
    res: int = 32,
) -> torch.Tensor:
    """Cross-attention maps for given images: encode each with the VAE, noise it to a few levels
    (fractions of the training schedule), run the UNet once per level on its prompt and average the
    maps for ``words``. Returns (N,H,W) in [0,1] at image size.

    Used to check the attention-based object masks against known masks (the shapes world's renders):
    the image, and so its true mask, is fixed, unlike freshly sampled images.
    """
    n = images01.shape[0]
    if not (n == len(prompts) == len(words)):
        raise AnalysisError(f"denoising_attention_maps got {n} images, {len(prompts)} prompts, {len(words)} word lists.")
    vae, unet = generator.vae, generator.unet
    dev = getattr(generator, "device", None) or next(unet.parameters()).device
    dtype = getattr(generator, "dtype", None) or next(unet.parameters()).dtype
    sched = generator.make_scheduler() if hasattr(generator, "make_scheduler") else generator.scheduler
    n_train = int(sched.config.num_train_timesteps)
    idx = [token_positions(generator.tokenizer, p, w) for p, w in zip(prompts, words)]
    cap = CrossAttentionCapture(unet, idx, res=res)
    with torch.no_grad():
        x = images01.to(dev, vae.dtype) * 2 - 1  # the VAE may run in float32 (SDXL's fp16 upcast)
        z = vae.encode(x).latent_dist.mean.to(dtype)
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        z = (z - shift) * vae.config.scaling_factor
        if hasattr(generator, "encode"):
            cond = generator.encode(prompts).to(dtype)
        else:  # pragma: no cover - any diffusers-like bundle
            ids = generator.tokenizer(prompts, padding="max_length", max_length=generator.tokenizer.model_max_length,
                                      truncation=True, return_tensors="pt").input_ids.to(dev)
            cond = generator.text_encoder(ids)[0].to(dtype)
        g = torch.Generator("cpu").manual_seed(int(seed))
        with cap:
            for level in noise_levels:
                t = torch.tensor(min(n_train - 1, max(0, int(level * n_train))), device=dev)
                noise = torch.randn(z.shape, generator=g).to(dev, dtype)
                if hasattr(generator, "unet_call"):  # the family unpacks its conditioning (SDXL: pooled, sizes)
                    generator.unet_call(unet, sched.add_noise(z, noise, t), t, cond)
                else:
                    unet(sched.add_noise(z, noise, t), t, encoder_hidden_states=cond)
    m = cap.maps()
    m = F.interpolate(m[:, None], size=images01.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo, hi = m.amin(dim=(1, 2), keepdim=True), m.amax(dim=(1, 2), keepdim=True)
    return (m - lo) / (hi - lo).clamp_min(1e-12)


def attention_iou(generator, images01: torch.Tensor, true_masks, prompts: list[str], words: list[list[str]], **kw) -> list[float]:
    """IoU between the Otsu mask of each image's cross-attention map and its true object mask."""
    maps = denoising_attention_maps(generator, images01, prompts, words, **kw)
    return [mask_iou(object_mask(m.numpy()), np.asarray(t, dtype=bool)) for m, t in zip(maps, true_masks)]
