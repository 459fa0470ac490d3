"""Attribution off the object: does the classifier's attribution lie outside the object more than chance?

1. The object is localised from the generator's own cross-attention for the class word and the token (no
   segmentation model needed).
2. Per token image, the share of attribution mass outside that mask is compared with the share of the
   *area* outside it: uniform attribution puts as much mass outside as there is area outside, so the
   measured effect is the *excess* ``share_outside - area_outside`` (0 for attribution spread evenly,
   positive when the evidence sits off the object more than its area explains).
3. Screening: the excess on the run's token gallery. A class whose screen reaches the effect threshold is
   confirmed on fresh token images (``confirm_off_object``), generated with seeds the gallery did not use.
4. The confirmed excess gets an interval (the inverted sign-flip test), a one-sided p-value for "no
   excess" and, in the engine, a q-value in the same false-discovery-rate family as the cue tests; it
   passes under the same rule as they do (``probe.analysis.policy``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from probe.analysis.errors import AnalysisError
from probe.analysis.stats import Effect, mean_interval, sign_flip_test


def attention_maps(generator, records: list[dict], indices: list[int], stems: list[str], words: list[str],
                   folder: Path, *, batch_size: int, gen_kwargs: dict, res: int) -> dict[int, np.ndarray]:
    """Cross-attention maps of ``words`` for the images ``indices`` (cached as .npy beside the class's images)."""
    from probe.analysis.attention import capture_cross_attention

    maps: dict[int, np.ndarray] = {}
    for i in indices:
        f = folder / f"{stems[i]}.npy"
        if f.is_file():
            maps[i] = np.load(f)
    missing = [i for i in indices if i not in maps]
    if missing:
        prompts = [records[i].get("prompt") for i in missing]
        if any(p is None for p in prompts):
            raise AnalysisError("metrics.json images lack 'prompt'; cannot regenerate attention maps")
        kw = {k: v for k, v in gen_kwargs.items() if k != "max_batch"}
        _, amaps = capture_cross_attention(generator, prompts, [int(records[i]["seed"]) for i in missing],
                                           [words] * len(missing), batch_size=batch_size, gen_kwargs=kw, res=res)
        folder.mkdir(parents=True, exist_ok=True)
        for i, a in zip(missing, amaps.numpy()):
            maps[i] = a.astype(np.float32)
            np.save(folder / f"{stems[i]}.npy", maps[i])
    return maps


@dataclass(frozen=True)
class OffObjectMeasure:
    """The excess of attribution off the object over the area off it, on ``effect.n`` images."""

    effect: Effect  # mean excess (share_outside - area_outside), its interval, p for "no excess" (one-sided)
    share_outside: float  # mean share of attribution mass outside the object
    area_outside: float  # mean share of the image outside the object
    values: tuple[float, ...] = ()  # the per-image excesses (analysis.json keeps them, like the cue tests' pairs)


def excess_effect(heat: np.ndarray | torch.Tensor, maps: dict[int, np.ndarray], indices: list[int]) -> OffObjectMeasure | None:
    """Step 2-4 for the images ``indices``: the excess of attribution off the object, or None without a finite share."""
    from probe.analysis.attention import object_mask, off_object_share

    shares, areas = [], []
    for i in indices:
        a, h = maps[i], heat[i]
        if a.shape != h.shape:
            a = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None].float(), size=h.shape, mode="bilinear",
                                                align_corners=False)[0, 0].numpy()
        r = off_object_share(h, object_mask(a))
        if math.isfinite(r.share_outside):
            shares.append(min(max(r.share_outside, 0.0), 1.0))  # a share of 1 can round to 1 + 4e-16
            areas.append(r.area_outside)
    if not shares:
        return None
    excess = np.asarray(shares, np.float64) - np.asarray(areas, np.float64)
    low, high = mean_interval(excess, bounds=(-1.0, 1.0))
    p = sign_flip_test(excess, alternative="greater")
    effect = Effect(float(excess.mean()), low, high, len(excess), p=p, method="sign-flip, excess over area")
    return OffObjectMeasure(effect, float(np.mean(shares)), float(np.mean(areas)),
                            tuple(round(float(v), 5) for v in excess))


def confirm_off_object(generator, attribute, records: list[dict], token_indices: list[int], words: list[str],
                       n_images: int, first_seed: int, *, batch_size: int, gen_kwargs: dict,
                       res: int) -> OffObjectMeasure | None:
    """Step 3's confirmation: ``n_images`` fresh token images (the gallery's token prompts in turn, seeds from
    ``first_seed``), generated once with their cross-attention captured, attributed by ``attribute(images)``
    (heatmaps (N,H,W)), and measured like the gallery."""
    from probe.analysis.attention import capture_cross_attention

    prompts = [records[i].get("prompt") for i in token_indices]
    if not prompts or any(p is None for p in prompts):
        raise AnalysisError("metrics.json token images lack 'prompt'; cannot confirm off-object on fresh images")
    chosen = [prompts[k % len(prompts)] for k in range(n_images)]
    seeds = [first_seed + k for k in range(n_images)]
    kw = {k: v for k, v in gen_kwargs.items() if k != "max_batch"}
    images, amaps = capture_cross_attention(generator, chosen, seeds, [words] * n_images, batch_size=batch_size,
                                            gen_kwargs=kw, res=res)
    heat = attribute(images)
    if heat is None:
        return None
    maps = {k: m.astype(np.float32) for k, m in enumerate(amaps.numpy())}
    return excess_effect(heat, maps, list(range(n_images)))
