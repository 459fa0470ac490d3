"""Small helpers shared by the analysis modules (not public API)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from probe.analysis.errors import AnalysisError
from probe.classifiers.classifier import probabilities
from probe.devices import module_device
from probe.errors import ProbeError


def classify_probs(classifier, images: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """P(class) (N, C) as float32 numpy (softmax, or each class's sigmoid for a multi-label classifier), classified in
    batches without gradient."""
    out = []
    dev = module_device(classifier)
    try:
        with torch.no_grad():
            for i in range(0, images.shape[0], batch_size):
                logits = classifier(images[i : i + batch_size].to(dev))
                out.append(probabilities(classifier, logits).cpu().numpy())
    except Exception as e:  # a user's model failing inside our code
        raise AnalysisError(
            f"the classifier failed on generated images of shape {tuple(images.shape)}: {type(e).__name__}: {e}; "
            "check that it accepts (B,3,H,W) images in [0,1]."
        ) from e
    return np.concatenate(out, 0).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def generate(generator, prompts: list[str], seeds: list[int], gen_kwargs: dict | None = None) -> torch.Tensor:
    """Call ``generator.generate`` and wrap failures in an AnalysisError."""
    try:
        with torch.no_grad():
            imgs = generator.generate(list(prompts), [int(s) for s in seeds], **(gen_kwargs or {}))
    except ProbeError:
        raise
    except Exception as e:
        raise AnalysisError(
            f"the generator failed on {len(prompts)} prompts (first: {prompts[0]!r}): {type(e).__name__}: {e}; "
            "try a smaller max_batch or check the generator folder."
        ) from e
    return imgs.detach().float().clamp(0, 1).cpu()


def load_png(path: Path) -> torch.Tensor:
    """Read a PNG as (3,H,W) float32 in [0,1]."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


