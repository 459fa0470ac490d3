"""What the attributions mark outside the object: image pairs that let discovery read where the classifier looks.

Discovery (probe/analysis/discovery.py) proposes cues from what a concept model reads in the token's images; the
classifier's attributions say where in those images its evidence lies. Per token image of the gallery:

1. the object: the generator's cross-attention for the token and the class word above Otsu's threshold (the mask
   the off-object measure uses, probe/analysis/off_object.py);
2. outside the object, the pixels split at their median attribution: *marked* (the upper half, where the
   classifier's evidence off the object sits) and *unmarked* (the lower half); an image with less than
   ``MIN_OUTSIDE`` of its area outside the object, or no spread in attribution there, gives no pair;
3. two images, each keeping one half's pixels and greying out everything else (the object included), saved at
   ``SIZE`` px under the class's ``analysis/outside/`` as ``marked_<stem>.png`` and ``unmarked_<stem>.png``.

Discovery scores both halves of every pair against its vocabulary: a phrase that scores higher on the marked half
than on the unmarked half of the same images (paired z at least its ``min_z``) describes what the classifier looks
at off the object, and is proposed with the reason "attributions outside the object". Only a concept model reads
such partial images; the world's oracles read whole scenes and skip this source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["FOLDER", "clear_outside_pairs", "save_outside_pairs", "load_outside_pairs"]

FOLDER = "analysis/outside"  # under the class's directory
MIN_OUTSIDE = 0.05
SIZE = 224
GREY = 0.5


def _resized(a, size: tuple[int, int]) -> np.ndarray:
    t = torch.as_tensor(np.asarray(a, dtype=np.float32))
    if tuple(t.shape) != size:
        t = torch.nn.functional.interpolate(t[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return t.numpy()


def clear_outside_pairs(folder: Path) -> None:
    """Remove an earlier analysis's pairs (a re-analysis that makes none must not read stale ones)."""
    if folder.is_dir():
        for f in [*folder.glob("marked_*.png"), *folder.glob("unmarked_*.png")]:
            f.unlink()


def save_outside_pairs(images: torch.Tensor, heat, attention: dict[int, np.ndarray], indices: list[int],
                       stems: list[str], folder: Path) -> int:
    """Steps 1-3 for the images ``indices`` (``images`` (N,3,H,W) in [0,1], ``heat`` (N,h,w) attributions,
    ``attention`` {index: cross-attention map}); returns the number of pairs saved."""
    from probe.analysis.attention import object_mask
    from probe.files import save_png

    saved = 0
    for i in indices:
        if i not in attention:
            continue
        image = images[i].float()
        size = tuple(image.shape[-2:])
        outside = ~object_mask(_resized(attention[i], size))  # 1.
        h = np.abs(_resized(heat[i].detach().cpu().numpy() if torch.is_tensor(heat[i]) else heat[i], size))
        if outside.mean() < MIN_OUTSIDE or not np.isfinite(h[outside]).all() or np.ptp(h[outside]) <= 0:
            continue
        median = np.median(h[outside])  # 2. (ties at the median, e.g. Grad-CAM's zeros, go to the unmarked half
        marked = outside & (h > median)  #    unless nothing lies above it)
        marked = marked if marked.any() else outside & (h >= median)
        unmarked = outside & ~marked
        if not marked.any() or not unmarked.any():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for name, keep in (("marked", marked), ("unmarked", unmarked)):  # 3.
            kept = torch.from_numpy(keep)[None].float()
            half = image * kept + GREY * (1 - kept)
            small = torch.nn.functional.interpolate(half[None], size=(SIZE, SIZE), mode="bilinear", antialias=True,
                                                    align_corners=False)[0].clamp(0, 1)
            save_png(folder / f"{name}_{stems[i]}.png", small)
        saved += 1
    return saved


def load_outside_pairs(folder: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(marked, unmarked) images of every complete pair in ``folder``, in the same order; None without two pairs."""
    from probe.analysis._util import load_png

    if not folder.is_dir():
        return None
    stems = sorted(p.name[len("marked_"):] for p in folder.glob("marked_*.png") if (folder / f"un{p.name}").is_file())
    if len(stems) < 2:
        return None
    return (torch.stack([load_png(folder / f"marked_{s}") for s in stems]),
            torch.stack([load_png(folder / f"unmarked_{s}") for s in stems]))
