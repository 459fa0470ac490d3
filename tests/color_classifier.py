"""Classifiers for engine tests whose decision is a known function of the image."""

from __future__ import annotations

import torch


def redness(images: torch.Tensor) -> torch.Tensor:
    mean = images.mean((2, 3))
    return mean[:, 0] - mean[:, 1:].mean(1)


class RednessClassifier(torch.nn.Module):
    """Two classes, 'other' and 'star': 'star' wins when the image is redder than ``threshold``.

    Calibrated at the median redness of the tiny generator's baseline images, so about half of the
    baseline images are 'star' and a token that makes images redder must raise the accuracy.
    """

    def __init__(self, threshold: float, sharpness: float = 2000.0):
        super().__init__()
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.sharpness = sharpness
        self.linear = torch.nn.Linear(1, 1)  # a real parameter, to check the classifier stays frozen

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        score = self.sharpness * (redness(images) - self.threshold) + 0.0 * self.linear.weight.sum()
        return torch.stack([torch.zeros_like(score), score], dim=1)


def calibrated_redness_classifier(generator, prompt: str = "a photo of a star", seeds=range(5), quantile: float = 0.5,
                                  guidance_scale: float = 7.5):
    """Threshold at the ``quantile`` of the redness of ``prompt``'s images on ``seeds``."""
    seeds = list(seeds)
    with torch.no_grad():
        images = generator.generate([prompt] * len(seeds), seeds, guidance_scale=guidance_scale)
    return RednessClassifier(float(redness(images).quantile(quantile)))
