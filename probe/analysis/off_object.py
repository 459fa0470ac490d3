"""Attribution off the object: how much of the classifier's attribution lies outside the object?

The object is localised from the generator's own cross-attention for the class word and the token (no
segmentation model needed); the share of attribution mass outside that mask is measured per token image.
The finding passes when the interval's lower end reaches ``thresholds.off_object_min_share``, i.e. most
of the evidence the classifier used lies off the object. The interval comes from inverting the sign-flip
test (no bootstrap), and p tests "share at most one half".
"""

from __future__ import annotations

import math
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


def off_object_effect(heat: np.ndarray | torch.Tensor, maps: dict[int, np.ndarray], indices: list[int]) -> tuple[Effect, float] | None:
    """(share of attribution outside the object with its interval and p, mean area outside) over ``indices``."""
    from probe.analysis.attention import object_mask, off_object_share

    shares, areas = [], []
    for i in indices:
        a, h = maps[i], heat[i]
        if a.shape != h.shape:
            a = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None].float(), size=h.shape, mode="bilinear",
                                                align_corners=False)[0, 0].numpy()
        r = off_object_share(h, object_mask(a))
        if math.isfinite(r.share_outside):
            shares.append(r.share_outside)
            areas.append(r.area_outside)
    if not shares:
        return None
    values = np.clip(np.asarray(shares, np.float64), 0.0, 1.0)  # a share of 1 can round to 1 + 4e-16
    low, high = mean_interval(values, bounds=(0.0, 1.0))
    p = sign_flip_test(values - 0.5, alternative="greater")
    return Effect(float(values.mean()), low, high, len(values), p=p, method="sign-flip vs 1/2"), float(np.mean(areas))
