"""Fidelity of the shapes world's generator, measured with the attribute oracles.

Images are generated through ``StableDiffusionPipeline.from_pretrained`` (the code path real
Stable Diffusion takes) from full captions of (shape, color, background) combinations the
generator never saw in training, and each attribute is checked by its oracle.  Partial prompts
("a photo of a star") are also checked: the shape must be right while the omitted attributes
spread over their values, so that a class token can pick among them.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe.world.oracles import ATTRIBUTES, load_oracles
from probe.world.scenes import SHAPES, VOCAB

FIDELITY_BAR = 0.90


@dataclass(frozen=True)
class FidelityResult:
    accuracy: dict[str, float]  # held-out full captions, per attribute
    n_images: int
    steps: int
    guidance: float
    seconds: float
    partial: dict[str, Any] = field(default_factory=dict)  # "a photo of a {shape}" statistics

    @property
    def passed(self) -> bool:
        return all(v >= FIDELITY_BAR for v in self.accuracy.values())

    def table(self) -> str:
        lines = [f"held-out caption combinations: {self.n_images} images, {self.steps} DDIM steps, guidance {self.guidance}",
                 "| attribute | oracle accuracy |", "|---|---|"]
        lines += [f"| {a} | {v:.3f} |" for a, v in self.accuracy.items()]
        if self.partial:
            lines.append(f"partial prompts 'a photo of a {{shape}}' ({self.partial['n_images']} images): "
                         f"shape accuracy {self.partial['shape_accuracy']:.3f}; omitted attributes spread over "
                         + ", ".join(f"{a} {len(c)}/{len(VOCAB[a])} values" for a, c in self.partial["counts"].items()))
        lines.append(f"bar {FIDELITY_BAR:.2f}: {'PASS' if self.passed else 'FAIL'} ({self.seconds:.0f} s)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        acc = ", ".join(f"{a}={v:.3f}" for a, v in self.accuracy.items())
        return f"FidelityResult({acc}; n={self.n_images}, passed={self.passed})"


def _generate(pipe, prompts: list[str], seed: int, steps: int, guidance: float, batch: int) -> torch.Tensor:
    out = []
    for i in range(0, len(prompts), batch):
        g = torch.Generator(device="cpu").manual_seed(seed + i)
        res = pipe(prompts[i:i + batch], num_inference_steps=steps, guidance_scale=guidance, generator=g,
                   output_type="pt", negative_prompt=[""] * len(prompts[i:i + batch]))
        out.append(res.images.float().cpu())
    return torch.cat(out)


def measure_fidelity(pipeline_path: str | Path | None = None, *, seeds_per_case: int = 1, steps: int = 20,
                     guidance: float = 4.0, max_cases: int | None = None, partial_per_shape: int = 0,
                     batch: int = 48, seed: int = 0, device: str = "cpu") -> FidelityResult:
    """Generate from held-out full captions and score each attribute with the oracles."""
    from diffusers import StableDiffusionPipeline

    from probe.world.assets import bundled_generator_path
    from probe.world.training.train import fidelity_cases

    t0 = time.time()
    path = Path(pipeline_path) if pipeline_path is not None else bundled_generator_path()
    pipe = StableDiffusionPipeline.from_pretrained(str(path), dtype=torch.float32).to(device)
    pipe.set_progress_bar_config(disable=True)
    oracles = load_oracles(device="cpu")
    cases = fidelity_cases(seeds_per_case)
    if max_cases is not None:
        rng = np.random.default_rng(seed)
        cases = [cases[i] for i in sorted(rng.choice(len(cases), size=min(max_cases, len(cases)), replace=False))]
    images = _generate(pipe, [c["prompt"] for c in cases], seed, steps, guidance, batch)
    pred = oracles.predict(images)
    accuracy = {a: float(np.mean([p == c[a] for p, c in zip(pred[a], cases)])) for a in ATTRIBUTES}
    partial: dict[str, Any] = {}
    if partial_per_shape > 0:
        prompts = [f"a photo of a {s}" for s in SHAPES for _ in range(partial_per_shape)]
        truth = [s for s in SHAPES for _ in range(partial_per_shape)]
        imgs = _generate(pipe, prompts, seed + 10_000, steps, guidance, batch)
        p = oracles.predict(imgs)
        partial = {
            "n_images": len(prompts),
            "shape_accuracy": float(np.mean([a == b for a, b in zip(p["shape"], truth)])),
            "counts": {a: dict(Counter(p[a])) for a in ("color", "background", "tag")},
        }
    return FidelityResult(accuracy=accuracy, n_images=len(cases), steps=steps, guidance=guidance,
                          seconds=time.time() - t0, partial=partial)
